package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCommandRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		op    byte
		key   string
		value []byte
	}{
		{name: "put", op: opPut, key: "greeting", value: []byte("hello")},
		{name: "put empty value", op: opPut, key: "empty", value: []byte{}},
		{name: "put unicode key", op: opPut, key: "ключ-キー-🔑", value: []byte("v")},
		{name: "put binary value", op: opPut, key: "bin", value: []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}},
		{name: "put long key", op: opPut, key: string(bytes.Repeat([]byte("k"), 300)), value: []byte("v")},
		{name: "put large value", op: opPut, key: "big", value: bytes.Repeat([]byte{0xab}, 1<<16)},
		{name: "delete", op: opDelete, key: "greeting"},
		{name: "delete unicode key", op: opDelete, key: "ключ"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			var command []byte
			if test.op == opPut {
				command = encodePut(test.key, test.value)
			} else {
				command = encodeDelete(test.key)
			}
			op, key, value, err := decodeCommand(command)
			require.NoError(t, err)
			assert.Equal(t, test.op, op)
			assert.Equal(t, test.key, key)
			assert.Equal(t, len(test.value), len(value))
			assert.True(t, bytes.Equal(test.value, value), "value differs")
		})
	}
}

func TestCommandDecodeRejects(t *testing.T) {
	valid := encodePut("key", []byte("value"))
	tests := []struct {
		name    string
		command []byte
		want    string
	}{
		{name: "nil", command: nil, want: "empty command"},
		{name: "empty", command: []byte{}, want: "empty command"},
		{name: "op only", command: []byte{opPut}, want: "truncated"},
		{name: "key shorter than its length", command: valid[:3], want: "truncated"},
		{name: "length only", command: valid[:2], want: "truncated"},
		{name: "unterminated uvarint", command: []byte{opPut, 0x80, 0x80}, want: "truncated"},
		{name: "overflowing uvarint", command: append([]byte{opDelete}, bytes.Repeat([]byte{0xff}, 11)...), want: "truncated"},
		{name: "huge length", command: binary.AppendUvarint([]byte{opPut}, 1<<62), want: "truncated"},
		{name: "unknown op", command: append([]byte{0x7f}, valid[1:]...), want: "unknown op"},
		{name: "zero op", command: append([]byte{0}, valid[1:]...), want: "unknown op"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, _, _, err := decodeCommand(test.command)
			require.Error(t, err)
			assert.Contains(t, err.Error(), test.want)
		})
	}
}

func applyOK(t *testing.T, fsm *kvFSM, index uint64, command []byte) {
	t.Helper()
	result := fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: command})
	require.Nil(t, result, "Apply(%d)", index)
}

func TestFSMApply(t *testing.T) {
	fsm := newKVFSM()
	data := encodePut("a", []byte("1"))
	applyOK(t, fsm, 1, data)
	// The FSM must keep its own copy: raft may reuse the entry's buffer.
	data[len(data)-1] = '9'
	value, ok := fsm.Get("a")
	require.True(t, ok)
	assert.Equal(t, "1", string(value))

	applyOK(t, fsm, 2, encodePut("a", []byte("2")))
	applyOK(t, fsm, 3, encodePut("b", nil))
	value, ok = fsm.Get("a")
	require.True(t, ok)
	assert.Equal(t, "2", string(value))
	value, ok = fsm.Get("b")
	require.True(t, ok, "a key with an empty value exists")
	assert.Empty(t, value)
	assert.Equal(t, 2, fsm.Len())
	assert.Equal(t, uint64(len("a1a2b")), fsm.AppliedBytes())

	applyOK(t, fsm, 4, encodeDelete("a"))
	_, ok = fsm.Get("a")
	assert.False(t, ok)
	applyOK(t, fsm, 5, encodeDelete("missing"))
	assert.Equal(t, 1, fsm.Len())
}

func TestFSMApplyBadCommand(t *testing.T) {
	tests := []struct {
		name    string
		command []byte
	}{
		{name: "empty", command: nil},
		{name: "truncated", command: []byte{opPut, 10, 'a'}},
		{name: "unknown op", command: []byte{9, 1, 'a'}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			fsm := newKVFSM()
			applyOK(t, fsm, 1, encodePut("keep", []byte("me")))
			var result any
			require.NotPanics(t, func() {
				result = fsm.Apply(&raft.Log{Index: 42, Type: raft.LogCommand, Data: test.command})
			})
			err, ok := result.(error)
			require.True(t, ok, "Apply returned %T %v, want an error", result, result)
			assert.Contains(t, err.Error(), "log entry 42")
			// The state is untouched.
			assert.Equal(t, 1, fsm.Len())
			value, ok := fsm.Get("keep")
			require.True(t, ok)
			assert.Equal(t, "me", string(value))
		})
	}
}

// memorySink is a raft.SnapshotSink that keeps the snapshot in memory.
type memorySink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memorySink) ID() string    { return "memory" }
func (s *memorySink) Close() error  { s.closed = true; return nil }
func (s *memorySink) Cancel() error { s.cancelled = true; return nil }
func (s *memorySink) reader() io.ReadCloser {
	return io.NopCloser(bytes.NewReader(s.Bytes()))
}

// failingSink fails every write.
type failingSink struct{ memorySink }

func (s *failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestFSMSnapshotRestore(t *testing.T) {
	tests := []struct {
		name string
		data map[string][]byte
	}{
		{name: "empty", data: map[string][]byte{}},
		{name: "one key", data: map[string][]byte{"a": []byte("1")}},
		{name: "mixed", data: map[string][]byte{
			"empty":   {},
			"ключ":    []byte("значение"),
			"binary":  {0, 0xff, 1, 0},
			"a/b c?d": []byte("x"),
			"big":     bytes.Repeat([]byte("v"), 100_000),
		}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			source := newKVFSM()
			index := uint64(0)
			for key, value := range test.data {
				index++
				applyOK(t, source, index, encodePut(key, value))
			}
			snapshot, err := source.Snapshot()
			require.NoError(t, err)
			// Writes after the snapshot is taken are not part of it.
			applyOK(t, source, index+1, encodePut("later", []byte("not in snapshot")))

			sink := &memorySink{}
			require.NoError(t, snapshot.Persist(sink))
			snapshot.Release()
			assert.True(t, sink.closed)
			assert.False(t, sink.cancelled)

			restored := newKVFSM()
			applyOK(t, restored, 1, encodePut("stale", []byte("replaced by the restore")))
			require.NoError(t, restored.Restore(sink.reader()))
			assert.Equal(t, len(test.data), restored.Len())
			for key, want := range test.data {
				got, ok := restored.Get(key)
				require.True(t, ok, "key %q", key)
				assert.True(t, bytes.Equal(want, got), "key %q", key)
			}
			_, ok := restored.Get("stale")
			assert.False(t, ok, "restore replaces the whole state")
			_, ok = restored.Get("later")
			assert.False(t, ok)

			// The restored FSM takes writes.
			applyOK(t, restored, 100, encodePut("new", []byte("1")))
			assert.Equal(t, len(test.data)+1, restored.Len())
		})
	}
}

func TestFSMSnapshotPersistError(t *testing.T) {
	fsm := newKVFSM()
	applyOK(t, fsm, 1, encodePut("a", []byte("1")))
	snapshot, err := fsm.Snapshot()
	require.NoError(t, err)
	sink := &failingSink{}
	require.Error(t, snapshot.Persist(sink))
	assert.True(t, sink.cancelled, "a failed Persist cancels the sink")
}

func TestFSMRestoreRejectsGarbage(t *testing.T) {
	fsm := newKVFSM()
	applyOK(t, fsm, 1, encodePut("a", []byte("1")))
	err := fsm.Restore(io.NopCloser(bytes.NewReader([]byte("not a gob snapshot"))))
	require.Error(t, err)
	value, ok := fsm.Get("a")
	require.True(t, ok, "a failed restore leaves the state alone")
	assert.Equal(t, "1", string(value))
}

// TestFSMWaitApplied checks what a consistent read waits on: every way
// the applied index advances, and the ways a wait ends.
func TestFSMWaitApplied(t *testing.T) {
	// Each case starts from a map that has applied entry 1 and waits for
	// entry 5; advance is what happens while it waits.
	tests := []struct {
		name    string
		advance func(*kvFSM)
		// wake says whether the wait for 5 returns.
		wake bool
	}{
		{name: "command", advance: func(f *kvFSM) {
			f.Apply(&raft.Log{Index: 5, Type: raft.LogCommand, Data: encodePut("k", nil)})
		}, wake: true},
		{name: "command past the index", advance: func(f *kvFSM) {
			f.Apply(&raft.Log{Index: 9, Type: raft.LogCommand, Data: encodePut("k", nil)})
		}, wake: true},
		{name: "command before the index", advance: func(f *kvFSM) {
			f.Apply(&raft.Log{Index: 4, Type: raft.LogCommand, Data: encodePut("k", nil)})
		}},
		// Skipped, but applied: the read must not wait for the next write.
		{name: "bad command", advance: func(f *kvFSM) {
			f.Apply(&raft.Log{Index: 5, Type: raft.LogCommand, Data: []byte{9}})
		}, wake: true},
		{name: "configuration", advance: func(f *kvFSM) {
			f.StoreConfiguration(5, raft.Configuration{})
		}, wake: true},
		// A committed barrier, which raft does not hand to the FSM.
		{name: "barrier", advance: func(f *kvFSM) { f.markApplied(5) }, wake: true},
		{name: "restore", advance: func(f *kvFSM) {
			var sink memorySink
			snapshot, _ := f.Snapshot()
			snapshot.Persist(&sink)
			f.Restore(sink.reader())
		}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			fsm := newKVFSM()
			applyOK(t, fsm, 1, encodePut("k", nil))
			require.NoError(t, fsm.waitApplied(t.Context(), 1), "an index already applied")

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- fsm.waitApplied(ctx, 5) }()
			select {
			case err := <-done:
				t.Fatalf("the wait for 5 returned %v with 1 applied", err)
			default:
			}
			test.advance(fsm)
			if test.wake {
				select {
				case err := <-done:
					require.NoError(t, err)
				case <-time.After(waitTimeout):
					t.Fatal("the wait for 5 did not return")
				}
				assert.GreaterOrEqual(t, fsm.appliedIndex(), uint64(5))
				return
			}
			// Still waiting; it ends with its context.
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
			assert.Less(t, fsm.appliedIndex(), uint64(5))
		})
	}

	t.Run("never backwards", func(t *testing.T) {
		t.Parallel()
		fsm := newKVFSM()
		fsm.markApplied(7)
		fsm.StoreConfiguration(3, raft.Configuration{})
		applyOK(t, fsm, 2, encodePut("k", nil))
		assert.Equal(t, uint64(7), fsm.appliedIndex())
	})
}
