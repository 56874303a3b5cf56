package main

// Multi-process tests of how raftkv serve restarts: over a locked data
// directory, with a new address, after the node's removal, and under a
// signal during start-up. They use process_test.go's cluster.

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedExitWait bounds the exit of a process on a data directory in use:
// storeLockTimeout, and room for a loaded machine.
const lockedExitWait = storeLockTimeout + 10*time.Second

// restartWith starts p again with its ID and data directory, listening on
// listen, with the flags in extra; it returns once the node listens.
func (c *cluster) restartWith(p *process, listen string, extra ...string) *process {
	c.t.Helper()
	select {
	case <-p.exited:
	default:
		c.t.Fatalf("%s: restart while still running", p.id)
	}
	again := &process{t: c.t, id: p.id, listen: listen, dataDir: p.dataDir, incarnation: p.incarnation + 1}
	c.start(again, extra...)
	return again
}

// waitExit waits up to wait for p to exit by itself and returns its exit
// code; if it does not, the test fails and p is killed.
func (p *process) waitExit(wait time.Duration) int {
	p.t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		p.t.Errorf("%s: still running after %v", p.name(), wait)
		p.cmd.Process.Kill()
		<-p.exited
	}
	return p.cmd.ProcessState.ExitCode()
}

// waitAddress waits until every node in nodes lists id at address in its
// configuration.
func (c *cluster) waitAddress(nodes []*process, id, address string) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("every node lists %s at %s", id, address), func() string {
		for _, p := range nodes {
			status, err := c.status(p)
			if err != nil {
				return fmt.Sprintf("%s: %v", p.id, err)
			}
			found := false
			for _, server := range status.Servers {
				if server.ID == id {
					found = true
					if server.Address != address {
						return fmt.Sprintf("%s lists %s at %s", p.id, id, server.Address)
					}
				}
			}
			if !found {
				return fmt.Sprintf("%s does not list %s", p.id, id)
			}
		}
		return ""
	})
}

// remove asks the cluster, through p, to remove the member id.
func (c *cluster) remove(p *process, id string) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("remove %s through %s", id, p.id), func() string {
		request, err := http.NewRequest(http.MethodDelete, c.url(p, raftPath+"?id="+id), nil)
		require.NoError(c.t, err)
		response, err := c.client.Do(request)
		if err != nil {
			return err.Error()
		}
		response.Body.Close()
		switch response.StatusCode {
		case http.StatusOK:
			return ""
		case http.StatusServiceUnavailable:
			return response.Status
		}
		c.t.Fatalf("remove %s through %s: %s", id, p.id, response.Status)
		return ""
	})
}

// TestServeLockedDataDir starts a second process on a data directory a
// running node holds: it fails within storeLockTimeout and a margin, with
// exit status 1 and a message naming the directory, and the running node
// is untouched.
func TestServeLockedDataDir(t *testing.T) {
	c := newCluster(t, nil)
	node := c.newNode("solo", "-bootstrap")
	c.waitStable([]*process{node}, "solo")

	second := &process{t: t, id: "solo", incarnation: 1, listen: "127.0.0.1:0", dataDir: node.dataDir}
	started := time.Now()
	c.launch(second)
	code := second.waitExit(lockedExitWait)
	elapsed := time.Since(started)
	assert.Equal(t, 1, code, "exit status on a data directory in use")
	output := second.output.String()
	assert.Contains(t, output, "data directory "+node.dataDir+" is in use by another process")
	assert.NotContains(t, output, "listening")
	t.Logf("the second process exited %d after %v", code, elapsed)

	c.put(node, "still", "serving")
}

// TestServeSignalWhileDataDirLocked sends SIGTERM to a process waiting for
// the lock on its data directory: it exits 0 at once, well before the
// lock's timeout.
func TestServeSignalWhileDataDirLocked(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			c := newCluster(t, nil)
			node := c.newNode("solo", "-bootstrap")
			c.waitStable([]*process{node}, "solo")

			second := &process{t: t, id: "solo", incarnation: 1, listen: "127.0.0.1:0", dataDir: node.dataDir}
			c.launch(second, "-log-level", "debug")
			second.output.Await(t, regexp.MustCompile(`(opening the data directory)`), second.exited)
			started := time.Now()
			code := second.signalWithin(sig, storeLockTimeout-time.Second)
			assert.Equal(t, 0, code, "exit status after %v while waiting for the lock", sig)
			t.Logf("exited %v after %v", code, time.Since(started))
			assert.Contains(t, second.output.String(), "shutting down during start-up")
		})
	}
}

// TestServeSignalDuringRejoin sends SIGTERM to a node restarted from its
// data with -join naming a member nobody serves: the join is under way and
// retrying, and the node exits 0 promptly.
func TestServeSignalDuringRejoin(t *testing.T) {
	c := newCluster(t, nil)
	c.restartable = true
	node := c.newNode("solo", "-bootstrap")
	c.waitStable([]*process{node}, "solo")
	node.stop(syscall.SIGTERM)

	nowhere := clustertest.RefusingAddr(t)
	node = c.restartWith(node, node.listen, "-join", nowhere)
	node.output.Await(t, regexp.MustCompile(`(join failed)`), node.exited)
	code := node.signalWithin(syscall.SIGTERM, 10*time.Second)
	assert.Equal(t, 0, code, "exit status after SIGTERM during the join")
}

// TestServeRestartNewAddress restarts a member with its data directory on
// a new address, with -join: it asks to join again, the cluster updates its
// address, and it becomes a follower that replicates, not a candidate
// forever.
func TestServeRestartNewAddress(t *testing.T) {
	c := newCluster(t, nil)
	c.restartable = true
	nodes, leader := c.startThree()
	moving := follower(nodes, leader)
	c.put(leader, "before", "move")
	moving.stop(syscall.SIGTERM)

	newAddr := clustertest.ReservedAddr(t)
	moved := c.restartWith(moving, newAddr, "-join", leader.addr)
	require.Equal(t, newAddr, moved.addr)

	var others []*process
	for _, p := range nodes {
		if p != moving {
			others = append(others, p)
		}
	}
	all := append(others, moved)
	c.waitAddress(all, moved.id, newAddr)
	c.waitStable(all, "node1", "node2", "node3")
	status, err := c.status(moved)
	require.NoError(t, err)
	assert.Contains(t, []string{"Follower", "Leader"}, status.State)
	assert.Regexp(t, `raftkv: starting: .*found=existing .*action="resuming, and asking to join again via `+regexp.QuoteMeta(leader.addr)+`"`, moved.output.String())

	// Peers replicate to the new address.
	c.put(leader, "after", "move")
	leader = c.waitStable(all, "node1", "node2", "node3")
	c.waitApplied(leader, all)
	c.checkData([]*process{moved}, map[string]string{"before": "move", "after": "move"}, nil)
}

// TestServeRemovedAndRejoin removes a follower, and then the leader
// itself: each exits with exitRemoved and says why, and each, restarted
// from its data directory with -join, becomes a member again.
func TestServeRemovedAndRejoin(t *testing.T) {
	c := newCluster(t, nil)
	c.restartable = true
	nodes, leader := c.startThree()
	c.put(leader, "k", "v")

	rest := func(gone *process, from []*process) []*process {
		var kept []*process
		for _, p := range from {
			if p.id != gone.id {
				kept = append(kept, p)
			}
		}
		return kept
	}
	ids := func(from []*process) []string { return names(from) }

	// Removed by another: a follower.
	removed := follower(nodes, leader)
	c.remove(leader, removed.id)
	code := removed.waitExit(processWait)
	assert.Equal(t, exitRemoved, code, "exit status of a removed follower")
	assert.Contains(t, removed.output.String(), "removed from the cluster")
	others := rest(removed, nodes)
	leader = c.waitStable(others, ids(others)...)

	back := c.restartWith(removed, removed.listen, "-join", leader.addr)
	nodes = append(others, back)
	leader = c.waitStable(nodes, "node1", "node2", "node3")
	c.put(leader, "k", "again")
	c.waitApplied(leader, nodes)
	c.checkData([]*process{back}, map[string]string{"k": "again"}, nil)

	// Removed by itself: the leader.
	self := leader
	c.remove(self, self.id)
	code = self.waitExit(processWait)
	assert.Equal(t, exitRemoved, code, "exit status of a leader that removed itself")
	assert.Contains(t, self.output.String(), "removed from the cluster")
	others = rest(self, nodes)
	leader = c.waitStable(others, ids(others)...)

	back = c.restartWith(self, self.listen, "-join", leader.addr)
	nodes = append(others, back)
	leader = c.waitStable(nodes, "node1", "node2", "node3")
	c.put(leader, "k", "third")
	c.waitApplied(leader, nodes)
	c.checkData([]*process{back}, map[string]string{"k": "third"}, nil)
}

// TestServeStartLogLine checks the one line every start logs about what it
// found and what it does, including -bootstrap over existing state.
func TestServeStartLogLine(t *testing.T) {
	c := newCluster(t, nil)
	c.restartable = true
	node := c.newNode("solo", "-bootstrap")
	c.waitStable([]*process{node}, "solo")
	assert.Regexp(t, `raftkv: starting: .*found=new .*action="bootstrapping a new cluster"`, node.output.String())
	c.put(node, "k", "v")
	node.stop(syscall.SIGTERM)

	node = c.restartWith(node, node.listen, "-bootstrap")
	c.waitStable([]*process{node}, "solo")
	output := node.output.String()
	assert.Regexp(t, `raftkv: starting: .*found=existing last-index=[1-9][0-9]* term=[1-9][0-9]* action="resuming \(not bootstrapping`, output)
	assert.Equal(t, 1, strings.Count(output, "raftkv: starting:"), output)
	node.stop(syscall.SIGTERM)

	node = c.restartWith(node, node.listen)
	c.waitStable([]*process{node}, "solo")
	assert.Regexp(t, `raftkv: starting: .*found=existing .*action=resuming`, node.output.String())
}

// TestServeRemovedWhileDown removes a follower while it is down and
// restarts it without -join: its own configuration still lists it, and no
// leader will ever tell it otherwise, so it asks the leader, learns it was
// removed, and exits with exitRemoved instead of campaigning forever.
func TestServeRemovedWhileDown(t *testing.T) {
	c := newCluster(t, nil)
	c.restartable = true
	nodes, leader := c.startThree()
	gone := follower(nodes, leader)
	gone.stop(syscall.SIGTERM)
	c.remove(leader, gone.id)
	var others []*process
	for _, p := range nodes {
		if p != gone {
			others = append(others, p)
		}
	}
	c.waitStable(others, names(others)...)
	// At a new address, so that nothing the leader may still send to the
	// old one reaches it: only the leader's answer can tell it.
	back := c.restartWith(gone, clustertest.ReservedAddr(t))
	code := back.waitExit(processWait)
	assert.Equal(t, exitRemoved, code, "exit status of a node removed while it was down")
	assert.Contains(t, back.output.String(), "the leader's configuration no longer lists this node")
	c.waitStable(others, names(others)...)
}
