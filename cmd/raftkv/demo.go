package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

const (
	demoKeys       = 1000
	demoMoreKeys   = 100
	demoValueSize  = 128
	demoWriters    = 8
	demoWait       = 30 * time.Second
	demoMaxRunTime = 2 * time.Minute
)

// demo runs a three-node cluster in this process and narrates what it does.
type demo struct {
	out      io.Writer
	terminal bool
	dir      string
	logger   hclog.Logger
	// token is the nodes' shared token; client sends it.
	token   bearerToken
	client  *http.Client
	nodes   []*node
	configs []nodeConfig
	ctx     context.Context

	leaderChanges int
	writeRate     float64
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("raftkv demo", flag.ContinueOnError)
	flags.SetOutput(stderr)
	keep := flags.Bool("keep", false, "keep the data directories instead of removing them at exit")
	verbose := flags.Bool("v", false, "show the nodes' logs on stderr")
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), "Usage: raftkv demo [-keep] [-v]\n\nRuns three nodes in this process on loopback ports and shows replication,\nfailover and recovery from disk.\n\nFlags:\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "raftkv demo: unexpected argument %q\n", flags.Arg(0))
		return 2
	}
	dir, err := os.MkdirTemp("", "raftkv-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "raftkv demo: %v\n", err)
		return 1
	}
	logOutput := io.Discard
	if *verbose {
		logOutput = stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), demoMaxRunTime)
	defer cancel()
	token := make([]byte, 32)
	rand.Read(token)
	d := &demo{
		out:      stdout,
		terminal: isTerminal(stdout),
		dir:      dir,
		logger:   hclog.New(&hclog.LoggerOptions{Name: "raftkv", Output: logOutput, Level: hclog.Info}),
		token:    bearerToken(base64.RawURLEncoding.EncodeToString(token)),
		ctx:      ctx,
	}
	d.client = &http.Client{Timeout: 10 * time.Second, Transport: withToken{token: d.token, base: http.DefaultTransport}}
	err = d.run()
	d.stopAll()
	if *keep {
		fmt.Fprintf(stdout, "data directories kept in %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv demo: FAILED: %v\n", err)
		return 1
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	file, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := file.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

func (d *demo) printf(format string, args ...any) {
	fmt.Fprintf(d.out, format, args...)
}

func (d *demo) run() error {
	start := time.Now()
	d.printf("Starting three nodes; each serves raft, membership and the key-value API on one HTTP port.\n")
	d.printf("They share a bearer token, required on every request, and a cluster ID (-token-file, -cluster-id).\n")
	for i := 1; i <= 3; i++ {
		config := nodeConfig{
			ID:      fmt.Sprintf("node%d", i),
			Listen:  "127.0.0.1:0",
			DataDir: filepath.Join(d.dir, fmt.Sprintf("node%d", i)),
			// Small enough that 1,000 writes take snapshots, checked often.
			SnapshotThreshold: 256,
			SnapshotInterval:  time.Second,
			Logger:            d.logger.Named(fmt.Sprintf("node%d", i)),
			Token:             d.token,
			ClusterID:         "raftkv-demo",
		}
		switch i {
		case 1:
			config.Bootstrap = true
		case 2:
			config.Join = []string{d.nodes[0].layer.Addr().String()}
		case 3:
			// Through the follower, which redirects the join to the leader.
			config.Join = []string{d.nodes[1].layer.Addr().String()}
		}
		if i > 1 {
			if _, err := d.waitLeader(d.nodes); err != nil {
				return err
			}
		}
		n, err := startNode(d.ctx, config)
		if err != nil {
			return fmt.Errorf("start %s: %w", config.ID, err)
		}
		// Restarts listen where the node was: its address is in the
		// cluster's configuration.
		config.Listen = n.layer.Addr().String()
		config.Bootstrap, config.Join = false, nil
		d.nodes = append(d.nodes, n)
		d.configs = append(d.configs, config)
		switch i {
		case 1:
			d.printf("  node1 at %s bootstrapped a new cluster\n", config.Listen)
		case 2:
			d.printf("  node2 at %s joined through node1\n", config.Listen)
		case 3:
			d.printf("  node3 at %s joined through node2, a follower, which redirected it to the leader\n", config.Listen)
		}
	}
	if err := d.waitServers(d.nodes, 3); err != nil {
		return err
	}
	leader, err := d.waitLeader(d.nodes)
	if err != nil {
		return err
	}
	d.printf("Cluster of 3 voters; leader is %s.\n", leader.config.ID)
	refused, err := d.withoutToken(leader)
	if err != nil {
		return err
	}
	d.printf("  a request without the token gets %s\n\n", refused)

	d.printf("Writing %d keys through the HTTP API of %s...\n", demoKeys, leader.config.ID)
	writeStart := time.Now()
	if err := d.write(leader, 0, demoKeys); err != nil {
		return err
	}
	elapsed := time.Since(writeStart)
	d.writeRate = float64(demoKeys) / elapsed.Seconds()
	d.printf("  %d writes in %v (%.0f writes/s)\n", demoKeys, elapsed.Round(time.Millisecond), d.writeRate)

	if err := d.readBack(d.nodes, demoKeys); err != nil {
		return err
	}
	d.printf("  every node returns all %d keys\n", demoKeys)
	if err := d.waitSnapshots(); err != nil {
		return err
	}
	d.printf("  every node has taken a snapshot of its state\n\n")

	stopped := d.indexOf(leader)
	d.printf("Stopping the leader, %s...\n", leader.config.ID)
	stopTime := time.Now()
	leader.stop()
	d.nodes[stopped] = nil
	survivors := d.running()
	newLeader, err := d.waitLeader(survivors)
	if err != nil {
		return err
	}
	d.leaderChanges++
	term, _ := newLeader.status()
	d.printf("  %s elected leader after %v (term %d)\n", newLeader.config.ID, time.Since(stopTime).Round(time.Millisecond), term.Term)

	if err := d.write(newLeader, demoKeys, demoMoreKeys); err != nil {
		return err
	}
	if err := d.readBack(survivors, demoKeys+demoMoreKeys); err != nil {
		return err
	}
	d.printf("  writes continue: %d more keys on the two remaining nodes\n\n", demoMoreKeys)

	d.printf("Restarting %s from its data directory...\n", d.configs[stopped].ID)
	restarted, err := startNode(d.ctx, d.configs[stopped])
	if err != nil {
		return fmt.Errorf("restart %s: %w", d.configs[stopped].ID, err)
	}
	d.nodes[stopped] = restarted
	if restarted.raft.Stats()["last_snapshot_index"] == "0" {
		return fmt.Errorf("%s restarted without a snapshot", restarted.config.ID)
	}
	if err := d.readBack(d.nodes, demoKeys+demoMoreKeys); err != nil {
		return err
	}
	d.printf("  %s restored its snapshot, caught up, and returns all %d keys\n\n", restarted.config.ID, demoKeys+demoMoreKeys)

	final, err := d.waitLeader(d.nodes)
	if err != nil {
		return err
	}
	written := uint64(0)
	for _, n := range d.nodes {
		written = max(written, n.fsm.AppliedBytes())
	}
	d.printf("Summary\n")
	d.printf("  nodes:             3 (leader now %s)\n", final.config.ID)
	d.printf("  leader changes:    %d\n", d.leaderChanges)
	d.printf("  writes:            %d at %.0f writes/s\n", demoKeys+demoMoreKeys, d.writeRate)
	d.printf("  bytes replicated:  %d KiB of keys and values to each of 2 followers\n", written/1024)
	d.printf("  total time:        %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func (d *demo) indexOf(n *node) int {
	for i, candidate := range d.nodes {
		if candidate == n {
			return i
		}
	}
	return -1
}

func (d *demo) running() []*node {
	var nodes []*node
	for _, n := range d.nodes {
		if n != nil {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

func (d *demo) stopAll() {
	for i, n := range d.nodes {
		if n != nil {
			n.stop()
			d.nodes[i] = nil
		}
	}
}

// waitFor polls condition until it returns nil, for at most demoWait.
func (d *demo) waitFor(what string, condition func() error) error {
	deadline := time.Now().Add(demoWait)
	for {
		err := condition()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || d.ctx.Err() != nil {
			return fmt.Errorf("%s: not within %v: %w", what, demoWait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLeader waits until one of nodes leads and all of them know it.
func (d *demo) waitLeader(nodes []*node) (*node, error) {
	var leader *node
	err := d.waitFor("elect a leader", func() error {
		leader = nil
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, n := range nodes {
			if address, _ := n.leader(); address != leader.layer.Addr().String() {
				return fmt.Errorf("%s does not know the leader yet", n.config.ID)
			}
		}
		return nil
	})
	return leader, err
}

func (d *demo) waitServers(nodes []*node, count int) error {
	return d.waitFor("agree on the membership", func() error {
		for _, n := range nodes {
			status, err := n.status()
			if err != nil {
				return err
			}
			if len(status.Servers) != count {
				return fmt.Errorf("%s sees %d servers", n.config.ID, len(status.Servers))
			}
		}
		return nil
	})
}

func (d *demo) waitSnapshots() error {
	return d.waitFor("take snapshots", func() error {
		for _, n := range d.nodes {
			snapshots, err := n.snapshots.List()
			if err != nil {
				return err
			}
			if len(snapshots) == 0 {
				return fmt.Errorf("%s has no snapshot yet", n.config.ID)
			}
		}
		return nil
	})
}

func demoKey(i int) string { return fmt.Sprintf("key-%05d", i) }

func demoValue(i int) []byte {
	value := fmt.Sprintf("value-%05d-", i)
	return []byte(value + strings.Repeat("x", demoValueSize-len(value)))
}

// write puts keys [from, from+count) through the HTTP API of target, with a
// few writers in parallel, showing progress.
func (d *demo) write(target *node, from, count int) error {
	var done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	next := make(chan int)
	var workers sync.WaitGroup
	for range demoWriters {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range next {
				if err := d.put(target, demoKey(i), demoValue(i)); err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				done.Add(1)
			}
		}()
	}
	progress := time.NewTicker(100 * time.Millisecond)
	defer progress.Stop()
	lastShown := int64(-1)
	show := func(final bool) {
		n := done.Load()
		if d.terminal {
			d.printf("\r  written %d/%d", n, count)
			if final {
				d.printf("\n")
			}
		} else if final || n/250 != lastShown/250 {
			d.printf("  written %d/%d\n", n, count)
		}
		lastShown = n
	}
	for i := from; i < from+count; i++ {
		select {
		case next <- i:
		case <-progress.C:
			show(false)
			i--
		case <-d.ctx.Done():
			close(next)
			workers.Wait()
			return d.ctx.Err()
		}
	}
	close(next)
	workers.Wait()
	show(true)
	if firstErr != nil {
		return fmt.Errorf("write: %w", firstErr)
	}
	return nil
}

func (d *demo) put(target *node, key string, value []byte) error {
	url := fmt.Sprintf("http://%s/kv/%s", target.layer.Addr(), key)
	for attempt := 0; ; attempt++ {
		request, err := http.NewRequestWithContext(d.ctx, http.MethodPut, url, bytes.NewReader(value))
		if err != nil {
			return err
		}
		response, err := d.client.Do(request)
		if err != nil {
			return fmt.Errorf("PUT %s: %w", key, err)
		}
		body, _ := io.ReadAll(io.LimitReader(response.Body, 512))
		response.Body.Close()
		switch {
		case response.StatusCode == http.StatusNoContent:
			return nil
		case response.StatusCode == http.StatusServiceUnavailable && attempt < 50:
			time.Sleep(50 * time.Millisecond) // an election is under way
		default:
			return fmt.Errorf("PUT %s: %s: %s", key, response.Status, strings.TrimSpace(string(body)))
		}
	}
}

// withoutToken sends GET /status to n without the token and returns the
// answer's status, which must be 401.
func (d *demo) withoutToken(n *node) (string, error) {
	request, err := http.NewRequestWithContext(d.ctx, http.MethodGet, fmt.Sprintf("http://%s/status", n.layer.Addr()), nil)
	if err != nil {
		return "", err
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		return "", fmt.Errorf("GET /status without the token: %w", err)
	}
	io.Copy(io.Discard, response.Body)
	response.Body.Close()
	if response.StatusCode != http.StatusUnauthorized {
		return "", fmt.Errorf("GET /status without the token: %s, want 401", response.Status)
	}
	return response.Status, nil
}

// withToken is an http.RoundTripper that sends the cluster's token, as a
// client of nodes started with -token-file must.
type withToken struct {
	token bearerToken
	base  http.RoundTripper
}

func (t withToken) RoundTrip(request *http.Request) (*http.Response, error) {
	// A RoundTripper must not change the caller's request.
	request = request.Clone(request.Context())
	request.Header.Set("Authorization", "Bearer "+string(t.token))
	return t.base.RoundTrip(request)
}

// readBack waits until every node has applied the leader's log, then reads
// every key from every node through the HTTP API and checks its value.
func (d *demo) readBack(nodes []*node, count int) error {
	err := d.waitFor("replicate every key", func() error {
		for _, n := range nodes {
			if got := n.fsm.Len(); got < count {
				return fmt.Errorf("%s has %d of %d keys", n.config.ID, got, count)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range nodes {
		for i := range count {
			value, err := d.get(n, demoKey(i))
			if err != nil {
				return err
			}
			if !bytes.Equal(value, demoValue(i)) {
				return fmt.Errorf("%s returned a wrong value for %s", n.config.ID, demoKey(i))
			}
		}
	}
	return nil
}

func (d *demo) get(n *node, key string) ([]byte, error) {
	request, err := http.NewRequestWithContext(d.ctx, http.MethodGet, fmt.Sprintf("http://%s/kv/%s", n.layer.Addr(), key), nil)
	if err != nil {
		return nil, err
	}
	response, err := d.client.Do(request)
	if err != nil {
		return nil, fmt.Errorf("GET %s from %s: %w", key, n.config.ID, err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		return nil, err
	}
	if response.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s from %s: %s", key, n.config.ID, response.Status)
	}
	return body, nil
}
