package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rafthttp/rafthttp"
	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// rejectingLogStore fails the next StoreLogs calls while reject is above
// zero, so that the follower rejects the appends that carry them.
type rejectingLogStore struct {
	*raft.InmemStore
	reject   atomic.Int32
	rejected atomic.Int32
}

func (s *rejectingLogStore) StoreLogs(logs []*raft.Log) error {
	if s.reject.Add(-1) >= 0 {
		s.rejected.Add(1)
		return errors.New("rejected by the test")
	}
	s.reject.Store(0)
	return s.InmemStore.StoreLogs(logs)
}

func (s *rejectingLogStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// TestReplicationSurvivesRejectedAppends has a follower reject appends,
// again and again, while the leader takes writes: each time, replication
// to it must resume, and the leader must then shut down promptly. With
// raft's default pipelining (MaxRPCsInFlight 2) about every other
// rejection wedged replication to the follower for good and made
// raft.Shutdown hang; newTransport turns pipelining off.
func TestReplicationSurvivesRejectedAppends(t *testing.T) {
	type member struct {
		raft      *raft.Raft
		transport *raft.NetworkTransport
		addr      raft.ServerAddress
	}
	followerStore := &rejectingLogStore{InmemStore: raft.NewInmemStore()}
	start := func(id string, logs raft.LogStore) *member {
		handler := rafthttp.NewHandlerWithLogger(clustertest.Logger(t, id))
		mux := http.NewServeMux()
		mux.Handle(raftPath, handler)
		server := httptest.NewServer(mux)
		t.Cleanup(server.Close)
		addr := server.Listener.Addr()
		layer, err := rafthttp.NewLayerWithConfig(rafthttp.LayerConfig{Path: raftPath, Addr: addr, Handler: handler})
		if err != nil {
			t.Fatal(err)
		}
		transport := newTransport(layer, clustertest.Logger(t, id+".transport"))
		config := clustertest.Config(raft.ServerID(id), clustertest.Logger(t, id+".raft"))
		r, err := raft.NewRaft(config, &raft.MockFSM{}, logs, raft.NewInmemStore(), raft.NewInmemSnapshotStore(), transport)
		if err != nil {
			t.Fatal(err)
		}
		m := &member{raft: r, transport: transport, addr: raft.ServerAddress(addr.(*net.TCPAddr).String())}
		t.Cleanup(func() {
			// Bounded: a wedged raft never returns from Shutdown, and
			// the test has failed already.
			done := make(chan struct{})
			go func() {
				r.Shutdown().Error()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("raft.Shutdown of %s did not return", id)
			}
			transport.Close()
		})
		return m
	}
	leader := start("leader", raft.NewInmemStore())
	follower := start("follower", followerStore)
	configuration := raft.Configuration{Servers: []raft.Server{
		{ID: "leader", Address: leader.addr}, {ID: "follower", Address: follower.addr},
	}}
	// Only the leader holds the configuration, so only it can stand.
	if err := leader.raft.BootstrapCluster(configuration).Error(); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, func() error {
		if leader.raft.State() != raft.Leader {
			return errors.New("leader not elected")
		}
		return nil
	})

	// Writers keep the leader's replication triggered: a new entry
	// arrives while the last is in flight.
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopWriter := func() { stopOnce.Do(func() { close(stop) }) }
	var writer sync.WaitGroup
	for range 16 {
		writer.Go(func() {
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				leader.raft.Apply([]byte("w"), time.Second).Error()
			}
		})
	}
	defer func() {
		stopWriter()
		// A writer waits for its entry to commit, which a wedged
		// follower never lets happen: the test has failed already.
		if !t.Failed() {
			writer.Wait()
		}
	}()

	for round := range 20 {
		before := followerStore.rejected.Load()
		followerStore.reject.Store(1)
		clustertest.Eventually(t, func() error {
			if followerStore.rejected.Load() == before {
				return errors.New("no append rejected yet")
			}
			return nil
		})
		target := leader.raft.LastIndex()
		clustertest.Eventually(t, func() error {
			if got := follower.raft.LastIndex(); got < target {
				return fmt.Errorf("round %d: the follower has index %d of %d: replication to it stopped after the rejection", round, got, target)
			}
			return nil
		})
	}
	stopWriter()
	writer.Wait()

	done := make(chan error, 1)
	go func() { done <- leader.raft.Shutdown().Error() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("raft.Shutdown of the leader did not return")
	}
}
