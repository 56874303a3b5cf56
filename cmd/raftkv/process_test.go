package main

// Multi-process tests: each starts real "raftkv serve" processes from the
// built binary on loopback ports and talks to them over HTTP only. A node
// binds port 0 and the test reads the address it got from its "listening"
// log line, unless the test restarts nodes (cluster.restartable).

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafthttp/rafthttp/internal/clustertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	// processWait bounds every wait for the processes to reach a state.
	processWait = 30 * time.Second
	// processExitWait bounds the wait for a process to exit after a signal.
	processExitWait = 30 * time.Second
	// pollInterval is the pause between two polls of a condition.
	pollInterval = 50 * time.Millisecond
)

// buildRaftkv builds the raftkv binary into a directory of t's and returns
// its path. Go's build cache makes every build after the first a link only.
func buildRaftkv(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test: skipped in -short mode")
	}
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to build raftkv")
	binary := filepath.Join(t.TempDir(), "raftkv")
	build := exec.Command(goTool, "build", "-o", binary, ".")
	output, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/raftkv:\n%s", output)
	return binary
}

// listening matches the line a node logs once it listens, before it
// bootstraps or joins; the group is the address it advertises.
var listening = regexp.MustCompile(`raftkv: listening: .*\badvertise=(\S+)`)

// tlsFiles are the PEM files of a generated CA and of the one certificate
// every node (and the test's client) uses.
type tlsFiles struct {
	cert, key, ca string
	// client presents the certificate and trusts the CA.
	client *tls.Config
	// pool trusts the CA.
	pool *x509.CertPool
}

// newTLSFiles makes a CA and a certificate for 127.0.0.1 valid for server
// and client authentication, and writes them as PEM files in a directory of
// t's.
func newTLSFiles(t *testing.T) *tlsFiles {
	t.Helper()
	ca := clustertest.NewCA(t)
	files := &tlsFiles{pool: ca.Pool}
	files.cert, files.key, files.ca = ca.WriteFiles(t, t.TempDir())
	files.client = &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Certificate}, MinVersion: tls.VersionTLS12}
	return files
}

// newClient returns an HTTP client that keeps no idle connections (so no
// transport goroutine outlives a test), with tlsConfig if not nil, and
// following redirects or not.
func newClient(tlsConfig *tls.Config, followRedirects bool) *http.Client {
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsConfig},
		Timeout:   15 * time.Second,
	}
	if !followRedirects {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return client
}

// cluster is a set of raftkv serve processes started by one test.
type cluster struct {
	t      *testing.T
	binary string
	tls    *tlsFiles
	scheme string
	// client follows redirects; direct does not.
	client, direct *http.Client
	// tokenFile and clusterID, if set, go to every node as -token-file
	// and -cluster-id, and client and direct send the token.
	tokenFile, clusterID string
	// restartable makes newNode start each node on a port reserved for
	// the whole test (clustertest.ReservedAddr) instead of port 0, so
	// that restart can bring it back at the address its peers know: a
	// port released when the process exits could be taken by then.
	restartable bool
}

func newCluster(t *testing.T, tlsFiles *tlsFiles) *cluster {
	c := &cluster{t: t, binary: buildRaftkv(t), tls: tlsFiles, scheme: "http"}
	var tlsConfig *tls.Config
	if tlsFiles != nil {
		c.scheme = "https"
		tlsConfig = tlsFiles.client
	}
	c.client = newClient(tlsConfig, true)
	c.direct = newClient(tlsConfig, false)
	return c
}

// secure makes the nodes c starts from now on share token and clusterID,
// and c's clients send the token.
func (c *cluster) secure(token, clusterID string) {
	c.tokenFile = writeTokenFile(c.t, token)
	c.clusterID = clusterID
	for _, client := range []*http.Client{c.client, c.direct} {
		client.Transport = withToken{token: bearerToken(token), base: client.Transport}
	}
}

// writeTokenFile writes token, with a newline as an editor would, to a
// file of t's and returns its path.
func writeTokenFile(t *testing.T, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte(token+"\n"), 0o600))
	return path
}

// process is one raftkv serve process.
type process struct {
	t  *testing.T
	id string
	// listen is the -listen flag: port 0, or a reserved address.
	listen string
	// addr is the address the node reported, once start has returned.
	addr    string
	dataDir string
	// incarnation counts the starts of this node, to tell their logs apart.
	incarnation int
	cmd         *exec.Cmd
	output      *clustertest.Output
	exited      chan struct{}
	// waitErr is cmd.Wait's result, set before exited closes.
	waitErr error
}

// newNode starts a new node with a fresh data directory, on port 0 or, in
// a restartable cluster, on a reserved port; extra are more serve flags,
// such as -bootstrap or -join. It returns once the node listens.
func (c *cluster) newNode(id string, extra ...string) *process {
	c.t.Helper()
	p := &process{t: c.t, id: id, listen: "127.0.0.1:0", dataDir: filepath.Join(c.t.TempDir(), "data")}
	if c.restartable {
		p.listen = clustertest.ReservedAddr(c.t)
	}
	c.start(p, extra...)
	return p
}

// restart starts p again with its ID, address and data directory, and no
// other flag: no -bootstrap, no -join.
func (c *cluster) restart(p *process) *process {
	c.t.Helper()
	select {
	case <-p.exited:
	default:
		c.t.Fatalf("%s: restart while still running", p.id)
	}
	if !c.restartable {
		c.t.Fatalf("%s: restart in a cluster that is not restartable: its port was released at exit", p.id)
	}
	again := &process{t: c.t, id: p.id, listen: p.listen, dataDir: p.dataDir, incarnation: p.incarnation + 1}
	c.start(again)
	require.Equal(c.t, p.addr, again.addr, "%s: address after the restart", again.name())
	return again
}

// start runs p's process and waits until it reports the address it
// listens on. A cleanup stops it with SIGTERM if it still runs and expects
// exit code 0; on failure it logs the process's output. extra comes after
// the cluster's flags, so it can override them.
func (c *cluster) start(p *process, extra ...string) {
	c.t.Helper()
	c.launch(p, extra...)
	p.addr = p.output.Await(c.t, listening, p.exited)
}

// launch is start without the wait for the address.
func (c *cluster) launch(p *process, extra ...string) {
	t := c.t
	t.Helper()
	args := []string{"serve", "-id", p.id, "-listen", p.listen, "-data", p.dataDir}
	if c.tls != nil {
		args = append(args, "-tls-cert", c.tls.cert, "-tls-key", c.tls.key, "-tls-ca", c.tls.ca)
	}
	if c.tokenFile != "" {
		args = append(args, "-token-file", c.tokenFile)
	}
	if c.clusterID != "" {
		args = append(args, "-cluster-id", c.clusterID)
	}
	args = append(args, extra...)
	p.output = &clustertest.Output{}
	p.exited = make(chan struct{})
	p.cmd = exec.Command(c.binary, args...)
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	// Bound Wait should a descendant hold the output pipes.
	p.cmd.WaitDelay = 5 * time.Second
	require.NoError(t, p.cmd.Start(), "start %s", p.id)
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			assert.Equal(t, 0, p.signal(syscall.SIGTERM), "%s: exit code after SIGTERM at the end of the test", p.name())
		}
		if t.Failed() {
			t.Logf("output of %s (%s):\n%s", p.name(), strings.Join(args, " "), p.output)
		}
	})
}

func (p *process) name() string {
	if p.incarnation == 0 {
		return p.id
	}
	return fmt.Sprintf("%s (restart %d)", p.id, p.incarnation)
}

// signal sends sig to the process and returns its exit code, or -1 if a
// signal ended it. If it does not exit in time, it is killed and the test
// fails.
func (p *process) signal(sig syscall.Signal) int {
	p.t.Helper()
	return p.signalWithin(sig, processExitWait)
}

// signalWithin is signal with a bound of its own on the wait for exit.
func (p *process) signalWithin(sig syscall.Signal, wait time.Duration) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Errorf("%s: send %v: %v", p.name(), sig, err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		p.t.Errorf("%s: still running %v after %v; killing it", p.name(), wait, sig)
		p.cmd.Process.Kill()
		<-p.exited
	}
	return p.cmd.ProcessState.ExitCode()
}

// stop sends sig and requires exit code 0.
func (p *process) stop(sig syscall.Signal) {
	p.t.Helper()
	code := p.signal(sig)
	require.Equal(p.t, 0, code, "%s: exit code after %v (wait: %v)", p.name(), sig, p.waitErr)
}

// kill crashes the process with SIGKILL.
func (p *process) kill() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Kill())
	<-p.exited
}

// url returns the node's URL for path, which may hold a query.
func (c *cluster) url(p *process, path string) string {
	return c.scheme + "://" + p.addr + path
}

// status fetches GET /status from p.
func (c *cluster) status(p *process) (statusJSON, error) {
	var status statusJSON
	response, err := c.direct.Get(c.url(p, "/status"))
	if err != nil {
		return status, err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		return status, err
	}
	if response.StatusCode != http.StatusOK {
		return status, fmt.Errorf("GET /status: %s: %s", response.Status, body)
	}
	err = json.Unmarshal(body, &status)
	return status, err
}

// waitFor polls check until it returns "" (done) or processWait passes, and
// then fails the test with check's last reason.
func waitFor(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(processWait)
	for {
		reason := check()
		if reason == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %v: %s", what, processWait, reason)
		}
		time.Sleep(pollInterval)
	}
}

// waitStable waits until every node in nodes reports the same leader, one of
// nodes, and a configuration of exactly the servers in members (their IDs);
// it returns the leader.
func (c *cluster) waitStable(nodes []*process, members ...string) *process {
	c.t.Helper()
	slices.Sort(members)
	var leader *process
	waitFor(c.t, fmt.Sprintf("every node of %v agrees on a leader and on servers %v", names(nodes), members), func() string {
		leader = nil
		var leaderID string
		for _, p := range nodes {
			status, err := c.status(p)
			if err != nil {
				return fmt.Sprintf("%s: %v", p.id, err)
			}
			if status.ID != p.id {
				return fmt.Sprintf("%s reports id %q", p.id, status.ID)
			}
			if status.Leader == nil {
				return fmt.Sprintf("%s knows no leader", p.id)
			}
			if leaderID == "" {
				leaderID = status.Leader.ID
			} else if status.Leader.ID != leaderID {
				return fmt.Sprintf("%s sees leader %s, another node %s", p.id, status.Leader.ID, leaderID)
			}
			var ids []string
			for _, server := range status.Servers {
				ids = append(ids, server.ID)
				if server.Suffrage != "Voter" {
					return fmt.Sprintf("%s: server %s is a %s", p.id, server.ID, server.Suffrage)
				}
			}
			slices.Sort(ids)
			if !slices.Equal(ids, members) {
				return fmt.Sprintf("%s: servers %v", p.id, ids)
			}
			if status.State == "Leader" {
				if status.Leader.ID != p.id || status.Leader.Address != p.addr {
					return fmt.Sprintf("%s leads but reports leader %+v", p.id, *status.Leader)
				}
				leader = p
			}
		}
		if leader == nil || leader.id != leaderID {
			return fmt.Sprintf("leader %s is not among %v in state Leader", leaderID, names(nodes))
		}
		return ""
	})
	return leader
}

func names(nodes []*process) []string {
	var ids []string
	for _, p := range nodes {
		ids = append(ids, p.id)
	}
	return ids
}

// put writes key=value through p with the redirect-following client,
// retrying while the cluster answers 503 (no leader for a moment).
func (c *cluster) put(p *process, key, value string) {
	c.t.Helper()
	c.write(p, http.MethodPut, key, value)
}

func (c *cluster) delete(p *process, key string) {
	c.t.Helper()
	c.write(p, http.MethodDelete, key, "")
}

func (c *cluster) write(p *process, method, key, value string) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("%s %s through %s", method, key, p.id), func() string {
		request, err := http.NewRequest(method, c.url(p, "/kv/"+url.PathEscape(key)), bytes.NewReader([]byte(value)))
		require.NoError(c.t, err)
		response, err := c.client.Do(request)
		require.NoError(c.t, err, "%s %s through %s", method, key, p.id)
		body, _ := io.ReadAll(response.Body)
		response.Body.Close()
		switch response.StatusCode {
		case http.StatusNoContent:
			return ""
		case http.StatusServiceUnavailable:
			return fmt.Sprintf("%s: %s", response.Status, body)
		}
		c.t.Fatalf("%s %s through %s: %s: %s", method, key, p.id, response.Status, body)
		return ""
	})
}

// get reads key from p with client; it returns the status code and body.
func (c *cluster) get(client *http.Client, p *process, key, query string) (*http.Response, string) {
	c.t.Helper()
	target := c.url(p, "/kv/"+url.PathEscape(key))
	if query != "" {
		target += "?" + query
	}
	response, err := client.Get(target)
	require.NoError(c.t, err, "GET %s", target)
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	require.NoError(c.t, err)
	return response, string(body)
}

// waitApplied waits until every node has applied at least the leader's
// applied index as it is now.
func (c *cluster) waitApplied(leader *process, nodes []*process) {
	c.t.Helper()
	status, err := c.status(leader)
	require.NoError(c.t, err)
	target := status.AppliedIndex
	waitFor(c.t, fmt.Sprintf("every node applies up to index %d", target), func() string {
		for _, p := range nodes {
			status, err := c.status(p)
			if err != nil {
				return fmt.Sprintf("%s: %v", p.id, err)
			}
			if status.AppliedIndex < target {
				return fmt.Sprintf("%s applied up to %d", p.id, status.AppliedIndex)
			}
		}
		return ""
	})
}

// checkData requires every node to hold exactly want, with plain (local)
// reads; deleted lists keys that must be missing.
func (c *cluster) checkData(nodes []*process, want map[string]string, deleted []string) {
	c.t.Helper()
	for _, p := range nodes {
		for key, value := range want {
			response, body := c.get(c.direct, p, key, "")
			require.Equal(c.t, http.StatusOK, response.StatusCode, "GET %s on %s: %s", key, p.id, body)
			require.Equal(c.t, value, body, "GET %s on %s", key, p.id)
		}
		for _, key := range deleted {
			response, body := c.get(c.direct, p, key, "")
			require.Equal(c.t, http.StatusNotFound, response.StatusCode, "GET deleted %s on %s: %s", key, p.id, body)
		}
	}
}

// follower returns a node of nodes other than leader.
func follower(nodes []*process, leader *process) *process {
	for _, p := range nodes {
		if p != leader {
			return p
		}
	}
	return nil
}

// startThree starts node1 with -bootstrap, node2 joining node1 and node3
// joining through node2 (a follower, so the join is redirected) then node1,
// and waits until all three agree. extra[i] are more flags for node i+1.
func (c *cluster) startThree(extra ...[]string) ([]*process, *process) {
	c.t.Helper()
	flags := func(i int) []string {
		if i < len(extra) {
			return extra[i]
		}
		return nil
	}
	node1 := c.newNode("node1", append([]string{"-bootstrap"}, flags(0)...)...)
	c.waitStable([]*process{node1}, "node1")
	node2 := c.newNode("node2", append([]string{"-join", node1.addr}, flags(1)...)...)
	c.waitStable([]*process{node1, node2}, "node1", "node2")
	node3 := c.newNode("node3", append([]string{"-join", node2.addr + "," + node1.addr}, flags(2)...)...)
	nodes := []*process{node1, node2, node3}
	leader := c.waitStable(nodes, "node1", "node2", "node3")
	return nodes, leader
}

// checkRedirect requires a write of key through follower, without following
// redirects, to be answered 307 to the leader's /kv/key.
func (c *cluster) checkRedirect(follower, leader *process, key string) {
	c.t.Helper()
	escaped := url.PathEscape(key)
	request, err := http.NewRequest(http.MethodPut, c.url(follower, "/kv/"+escaped), strings.NewReader("redirected"))
	require.NoError(c.t, err)
	response, err := c.direct.Do(request)
	require.NoError(c.t, err)
	io.Copy(io.Discard, response.Body)
	response.Body.Close()
	require.Equal(c.t, http.StatusTemporaryRedirect, response.StatusCode, "PUT %s through follower %s", key, follower.id)
	require.Equal(c.t, c.scheme+"://"+leader.addr+"/kv/"+escaped, response.Header.Get("Location"))
}

func TestServeCluster(t *testing.T) {
	c := newCluster(t, nil)
	c.restartable = true
	nodes, leader := c.startThree()
	via := follower(nodes, leader)

	// A follower redirects writes to the leader; the key needs escaping,
	// which the redirect keeps.
	c.checkRedirect(via, leader, "hello world")

	want := map[string]string{}
	for i := range 40 {
		key := fmt.Sprintf("key-%02d", i)
		want[key] = fmt.Sprintf("value %d", i)
		c.put(via, key, want[key])
	}
	want["hello world"] = "spaced"
	c.put(via, "hello world", want["hello world"])
	c.checkData([]*process{leader}, want, nil)

	// Crash the leader: the other two elect a new one, with the crashed
	// node still in the configuration.
	leader.kill()
	crashed := leader
	survivors := slices.DeleteFunc(slices.Clone(nodes), func(p *process) bool { return p == crashed })
	leader = c.waitStable(survivors, "node1", "node2", "node3")
	require.NotEqual(t, crashed.id, leader.id)

	// Writes go on, through both survivors: overwrites, new keys, deletes.
	for i := range 40 {
		key := fmt.Sprintf("key-%02d", i)
		switch {
		case i%10 == 0:
			c.delete(survivors[i%2], key)
			delete(want, key)
		case i%2 == 0:
			want[key] = fmt.Sprintf("rewritten %d", i)
			c.put(survivors[i%2], key, want[key])
		}
		more := fmt.Sprintf("after-%02d", i)
		want[more] = fmt.Sprintf("after crash %d", i)
		c.put(survivors[(i+1)%2], more, want[more])
	}
	deleted := []string{"key-00", "key-10", "key-20", "key-30"}

	// The crashed node comes back from its data directory alone: no
	// -bootstrap, no -join.
	restarted := c.restart(crashed)
	for i, p := range nodes {
		if p == crashed {
			nodes[i] = restarted
		}
	}
	leader = c.waitStable(nodes, "node1", "node2", "node3")
	c.waitApplied(leader, nodes)
	c.checkData(nodes, want, deleted)

	// A consistent read on a follower goes to the leader.
	via = follower(nodes, leader)
	response, body := c.get(c.direct, via, "key-01", "consistent=true")
	require.Equal(t, http.StatusTemporaryRedirect, response.StatusCode, body)
	require.Equal(t, "http://"+leader.addr+"/kv/key-01?consistent=true", response.Header.Get("Location"))
	response, body = c.get(c.client, via, "key-01", "consistent=true")
	require.Equal(t, http.StatusOK, response.StatusCode, body)
	require.Equal(t, want["key-01"], body)
	response, body = c.get(c.client, via, "key-00", "consistent=true")
	require.Equal(t, http.StatusNotFound, response.StatusCode, body)
	// The leader answers a consistent read itself.
	response, body = c.get(c.direct, leader, "after-39", "consistent=true")
	require.Equal(t, http.StatusOK, response.StatusCode, body)
	require.Equal(t, want["after-39"], body)
}

func TestServeClusterTLS(t *testing.T) {
	files := newTLSFiles(t)
	c := newCluster(t, files)
	nodes, leader := c.startThree()
	via := follower(nodes, leader)

	c.checkRedirect(via, leader, "secret")
	c.put(via, "secret", "over TLS")
	response, body := c.get(c.direct, leader, "secret", "")
	require.Equal(t, http.StatusOK, response.StatusCode, body)
	require.Equal(t, "over TLS", body)
	c.waitApplied(leader, nodes)
	c.checkData(nodes, map[string]string{"secret": "over TLS"}, nil)

	// Without a client certificate, the handshake is refused.
	anonymous := newClient(&tls.Config{RootCAs: files.pool, MinVersion: tls.VersionTLS12}, false)
	for _, p := range nodes {
		response, err := anonymous.Get(c.url(p, "/status"))
		if err == nil {
			response.Body.Close()
		}
		require.Error(t, err, "GET /status on %s without a client certificate", p.id)
		require.Contains(t, err.Error(), "tls:", "GET /status on %s without a client certificate", p.id)
	}
	// A client that does not trust the CA refuses the nodes.
	untrusting := newClient(&tls.Config{Certificates: files.client.Certificates, MinVersion: tls.VersionTLS12}, false)
	response, err := untrusting.Get(c.url(leader, "/status"))
	if err == nil {
		response.Body.Close()
	}
	var unknownAuthority x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknownAuthority)
	// Plain HTTP to a TLS port gets no answer.
	response, err = newClient(nil, false).Get("http://" + leader.addr + "/status")
	if err == nil {
		response.Body.Close()
		require.NotEqual(t, http.StatusOK, response.StatusCode, "plain HTTP to a TLS node")
	}
}

// snapshotFiles lists the snapshots in a node's data directory.
func snapshotFiles(t *testing.T, dataDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var snapshots []string
	for _, entry := range entries {
		if entry.IsDir() && !strings.HasSuffix(entry.Name(), ".tmp") {
			snapshots = append(snapshots, entry.Name())
		}
	}
	return snapshots
}

func TestServeRestartFromData(t *testing.T) {
	c := newCluster(t, nil)
	c.restartable = true
	node := c.newNode("solo", "-bootstrap", "-snapshot-threshold", "50")
	c.waitStable([]*process{node}, "solo")

	const keys = 300
	want := map[string]string{}
	for i := range keys {
		key := fmt.Sprintf("k%03d", i)
		want[key] = strings.Repeat(fmt.Sprintf("%d,", i), 10)
		c.put(node, key, want[key])
	}
	c.delete(node, "k000")
	delete(want, "k000")

	// With 300 entries past a threshold of 50, raft snapshots; it is worth
	// waiting a little for, so that the restart restores from one.
	deadline := time.Now().Add(15 * time.Second)
	for len(snapshotFiles(t, node.dataDir)) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	snapshotted := assert.NotEmpty(t, snapshotFiles(t, node.dataDir),
		"no snapshot in %s 15s after crossing -snapshot-threshold 50 six times", node.dataDir)

	node.stop(syscall.SIGTERM)
	node = c.restart(node)
	c.waitStable([]*process{node}, "solo")
	if snapshotted {
		assert.Contains(t, node.output.String(), "restored from snapshot")
	}
	status, err := c.status(node)
	require.NoError(t, err)
	require.Equal(t, "Leader", status.State)
	require.Equal(t, &leaderJSON{ID: "solo", Address: node.addr}, status.Leader)
	c.checkData([]*process{node}, want, []string{"k000"})

	// And it takes writes again.
	c.put(node, "after-restart", "yes")
	response, body := c.get(c.direct, node, "after-restart", "consistent=true")
	require.Equal(t, http.StatusOK, response.StatusCode, body)
	require.Equal(t, "yes", body)
}

func TestServeLeaveOnShutdown(t *testing.T) {
	c := newCluster(t, nil)
	// node1, the first leader, and node3 leave on shutdown; node2 does not.
	nodes, leader := c.startThree([]string{"-leave-on-shutdown"}, nil, []string{"-leave-on-shutdown"})
	node1, node2, node3 := nodes[0], nodes[1], nodes[2]
	c.put(node2, "before", "leave")

	// node3 (normally a follower) leaves.
	t.Logf("leader before node3 leaves: %s", leader.id)
	node3.stop(syscall.SIGTERM)
	leader = c.waitStable([]*process{node1, node2}, "node1", "node2")

	// node1 (normally the leader) leaves too: node2 is left alone, and
	// leads a cluster of one.
	t.Logf("leader before node1 leaves: %s", leader.id)
	node1.stop(syscall.SIGTERM)
	c.waitStable([]*process{node2}, "node2")
	c.put(node2, "after", "leave")
	c.checkData([]*process{node2}, map[string]string{"before": "leave", "after": "leave"}, nil)
	assert.Contains(t, node1.output.String(), "left the cluster")
	assert.Contains(t, node3.output.String(), "left the cluster")
}

func TestServeSignalExitCode(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			c := newCluster(t, nil)
			node := c.newNode("solo", "-bootstrap")
			c.waitStable([]*process{node}, "solo")
			c.put(node, "k", "v")
			node.stop(sig)
			output := node.output.String()
			assert.Contains(t, output, "shutting down")
			assert.Contains(t, output, sig.String())
		})
	}
}

// A signal that arrives while a new node is still trying to join must stop
// it promptly, in order, with exit code 0: runServe catches signals before
// start-up for exactly this case.
func TestServeSignalDuringJoin(t *testing.T) {
	c := newCluster(t, nil)
	// Nothing listens at the member's address, so the join keeps retrying
	// (for up to joinTimeout, two minutes).
	nowhere := clustertest.RefusingAddr(t)
	node := c.newNode("joiner", "-join", nowhere)
	// The HTTP server answers while the join is under way.
	waitFor(t, "the joining node serves /status", func() string {
		if _, err := c.status(node); err != nil {
			return err.Error()
		}
		return ""
	})
	require.NotContains(t, node.output.String(), "joined the cluster")
	code := node.signalWithin(syscall.SIGINT, 10*time.Second)
	assert.Equal(t, 0, code, "exit code after SIGINT during the join")
}

// TestServeClusterTokenAndClusterID runs a cluster whose nodes share a
// token and a cluster ID: it forms, and takes writes through a follower.
// A request without the token is refused, and a node started with another
// token or cluster ID cannot join: it says why in one line and exits 1 at
// once, though its -join list has another member to ask.
func TestServeClusterTokenAndClusterID(t *testing.T) {
	const token = "the-cluster-token"
	c := newCluster(t, nil)
	c.secure(token, "prod")
	nodes, leader := c.startThree()
	via := follower(nodes, leader)
	c.checkRedirect(via, leader, "k")
	c.put(via, "k", "v")
	c.waitApplied(leader, nodes)
	c.checkData(nodes, map[string]string{"k": "v"}, nil)

	anonymous := newClient(nil, false)
	for _, p := range nodes {
		for _, request := range []struct{ method, path string }{
			{http.MethodGet, "/status"},
			{http.MethodGet, "/kv/k"},
			{http.MethodPut, "/kv/k"},
			{http.MethodDelete, "/kv/k"},
			{http.MethodPost, "/raft?id=intruder&address=127.0.0.1:1"},
		} {
			r, err := http.NewRequest(request.method, c.url(p, request.path), strings.NewReader("intruder"))
			require.NoError(t, err)
			r.Header.Set("Rafthttp-Cluster-Id", "prod")
			response, err := anonymous.Do(r)
			require.NoError(t, err)
			io.Copy(io.Discard, response.Body)
			response.Body.Close()
			require.Equal(t, http.StatusUnauthorized, response.StatusCode, "%s %s on %s without the token", request.method, request.path, p.id)
		}
	}
	c.checkData(nodes, map[string]string{"k": "v"}, nil)

	nowhere := clustertest.RefusingAddr(t)
	for i, test := range []struct {
		flags []string
		want  string
	}{
		{
			flags: []string{"-token-file", writeTokenFile(t, "not-the-token")},
			want:  "raftkv serve: join " + via.addr + " refused: 401 Unauthorized: check -token-file",
		},
		{
			flags: []string{"-cluster-id", "staging"},
			want:  `raftkv serve: join ` + via.addr + ` refused: cluster ID mismatch: this node is in cluster "staging", the peer in cluster "prod": check -cluster-id`,
		},
	} {
		joiner := c.newNode(fmt.Sprintf("intruder%d", i), append([]string{"-join", via.addr + "," + nowhere}, test.flags...)...)
		select {
		case <-joiner.exited:
		case <-time.After(processExitWait):
			t.Fatalf("%s (%v) still runs %v after it started joining", joiner.id, test.flags, processExitWait)
		}
		assert.Equal(t, 1, joiner.cmd.ProcessState.ExitCode(), "%s: exit code", joiner.id)
		output := strings.TrimRight(joiner.output.String(), "\n")
		lines := strings.Split(output, "\n")
		assert.Equal(t, test.want, lines[len(lines)-1], "%s: the last line of its output", joiner.id)
		assert.Equal(t, 1, strings.Count(output, "refused"), "%s: one line says why:\n%s", joiner.id, output)
		assert.NotContains(t, output, "the-token", "%s: the token is not shown", joiner.id)
		assert.NotContains(t, output, "the-cluster-token")
	}
	c.waitStable(nodes, "node1", "node2", "node3")
}
