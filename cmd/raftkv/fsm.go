package main

import (
	"context"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"

	"github.com/hashicorp/raft"
)

// Commands in the raft log are one op byte, the key's length as a uvarint,
// the key, and for a put the value: compact, and no encoder to allocate.
const (
	opPut    byte = 1
	opDelete byte = 2
)

func encodePut(key string, value []byte) []byte {
	return encodeCommand(opPut, key, value)
}

func encodeDelete(key string) []byte {
	return encodeCommand(opDelete, key, nil)
}

func encodeCommand(op byte, key string, value []byte) []byte {
	command := make([]byte, 0, 1+binary.MaxVarintLen64+len(key)+len(value))
	command = append(command, op)
	command = binary.AppendUvarint(command, uint64(len(key)))
	command = append(command, key...)
	return append(command, value...)
}

func decodeCommand(command []byte) (op byte, key string, value []byte, err error) {
	if len(command) == 0 {
		return 0, "", nil, errors.New("empty command")
	}
	op = command[0]
	length, n := binary.Uvarint(command[1:])
	if n <= 0 || uint64(len(command)-1-n) < length {
		return 0, "", nil, errors.New("truncated command")
	}
	rest := command[1+n:]
	key, value = string(rest[:length]), rest[length:]
	switch op {
	case opPut, opDelete:
		return op, key, value, nil
	default:
		return 0, "", nil, fmt.Errorf("unknown op %d", op)
	}
}

// kvFSM is the replicated state: a map from key to value.
type kvFSM struct {
	mu   sync.RWMutex
	data map[string][]byte
	// bytes counts the key and value bytes of every put applied, for the
	// demo's summary.
	bytes uint64
	// applied is a log index the map reflects every entry up to: the last
	// command or configuration raft handed over, or a barrier's index
	// once the barrier has committed (see markApplied). Zero means
	// unknown, as after a Restore, which raft gives no index.
	applied uint64
	// advanced, if not nil, is closed when applied next grows; made only
	// when a reader waits, so writes allocate nothing for it.
	advanced chan struct{}
}

func newKVFSM() *kvFSM {
	return &kvFSM{data: make(map[string][]byte)}
}

// Apply applies one command. A command that does not decode is a bug in
// whichever node wrote it; it is skipped, not fatal, so one bad entry cannot
// stop every node of the cluster.
func (f *kvFSM) Apply(entry *raft.Log) any {
	op, key, value, err := decodeCommand(entry.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	// A skipped entry is applied all the same: a read waiting for it
	// must not wait for the next write.
	f.advanceLocked(entry.Index)
	if err != nil {
		return fmt.Errorf("raftkv: log entry %d: %w", entry.Index, err)
	}
	switch op {
	case opPut:
		// entry.Data belongs to raft; keep a copy.
		f.data[key] = append([]byte(nil), value...)
		f.bytes += uint64(len(key) + len(value))
	case opDelete:
		delete(f.data, key)
	}
	return nil
}

// StoreConfiguration makes kvFSM a raft.ConfigurationStore, which raft
// hands every committed configuration entry (a join, a leave) in log
// order. The map has nothing to store, but the entry's index counts as
// applied: otherwise a read whose index is a configuration entry would
// wait for the next write.
func (f *kvFSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(index)
}

// markApplied records that the map reflects every entry up to index. The
// read path calls it when a barrier at index has committed: raft does not
// hand barriers (nor a new leader's no-op entry) to the FSM, yet answers
// a barrier only after the FSM has applied everything before it.
func (f *kvFSM) markApplied(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(index)
}

// advanceLocked raises applied to index and wakes the waiting readers. f.mu
// must be held for writing.
func (f *kvFSM) advanceLocked(index uint64) {
	if index <= f.applied {
		return
	}
	f.applied = index
	if f.advanced != nil {
		close(f.advanced)
		f.advanced = nil
	}
}

// appliedIndex returns the index the map reflects every entry up to.
func (f *kvFSM) appliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// waitApplied returns once the map reflects every log entry up to index,
// or ctx's error if ctx ends first.
func (f *kvFSM) waitApplied(ctx context.Context, index uint64) error {
	if f.appliedIndex() >= index {
		return nil
	}
	for {
		f.mu.Lock()
		if f.applied >= index {
			f.mu.Unlock()
			return nil
		}
		if f.advanced == nil {
			f.advanced = make(chan struct{})
		}
		advanced := f.advanced
		f.mu.Unlock()
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Get returns the value of key and whether it exists.
func (f *kvFSM) Get(key string) ([]byte, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	value, ok := f.data[key]
	return value, ok
}

// Len returns the number of keys.
func (f *kvFSM) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.data)
}

// AppliedBytes returns the key and value bytes of the puts applied so far.
func (f *kvFSM) AppliedBytes() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.bytes
}

// Snapshot captures the map; values are never mutated in place, so a
// shallow copy is a consistent snapshot.
func (f *kvFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &kvSnapshot{data: maps.Clone(f.data)}, nil
}

// Restore replaces the map with a snapshot's.
func (f *kvFSM) Restore(reader io.ReadCloser) error {
	defer reader.Close()
	var data map[string][]byte
	if err := gob.NewDecoder(reader).Decode(&data); err != nil {
		return fmt.Errorf("raftkv: restore snapshot: %w", err)
	}
	if data == nil {
		data = make(map[string][]byte)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = data
	// The snapshot's index is raft's alone, and a snapshot sent by a
	// leader may even be older than what this map held: claim nothing
	// until the next entry. Only followers restore, and they serve no
	// consistent reads; a leader's barrier sets applied again.
	f.applied = 0
	return nil
}

type kvSnapshot struct {
	data map[string][]byte
}

func (s *kvSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := gob.NewEncoder(sink).Encode(s.data); err != nil {
		sink.Cancel()
		return fmt.Errorf("raftkv: write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *kvSnapshot) Release() {}
