package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rafthttp/rafthttp/internal/clustertest"
)

// TestReadmeQuickstartIsThisProgram keeps the README's quickstart block and
// this program identical, so the code a newcomer copies is the code tested.
func TestReadmeQuickstartIsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	program, err := os.ReadFile("main.go")
	require.NoError(t, err)

	const fence = "```go\n"
	start := bytes.Index(readme, []byte(fence+"// Command quickstart"))
	require.GreaterOrEqual(t, start, 0, "README has no quickstart block")
	block := readme[start+len(fence):]
	end := bytes.Index(block, []byte("```"))
	require.GreaterOrEqual(t, end, 0, "quickstart block is not closed")
	require.Equal(t, string(program), string(block[:end]), "README quickstart differs from examples/quickstart/main.go")
}

// serving matches the line the program logs once it has bootstrapped or
// joined; the group is the address it listens on.
var serving = regexp.MustCompile(`serving raft and the application on (\S+)`)

// TestQuickstartFormsACluster runs the program three times, as the README
// says, and waits until every node reports the same leader and three
// servers. Each node listens on port 0 and the test reads the address it
// got from its log: a port found free beforehand could be taken by another
// test before the node binds it.
func TestQuickstartFormsACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes")
	}
	binary := filepath.Join(t.TempDir(), "quickstart")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	// start runs one node and returns its address once it has
	// bootstrapped or joined: the next node can join through it.
	start := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, binary, args...)
		output := &clustertest.Output{}
		cmd.Stdout, cmd.Stderr = output, output
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		var waitErr error
		go func() {
			waitErr = cmd.Wait()
			close(exited)
		}()
		t.Cleanup(func() {
			defer cancel()
			cmd.Process.Signal(syscall.SIGINT)
			<-exited
			if t.Failed() || waitErr != nil {
				t.Logf("%v: %v\n%s", args, waitErr, output)
			}
			require.NoError(t, waitErr, "a node did not shut down cleanly on SIGINT")
		})
		return output.Await(t, serving, exited)
	}
	first := start("-id", "node1", "-addr", "127.0.0.1:0")
	second := start("-id", "node2", "-addr", "127.0.0.1:0", "-join", first)
	// The third joins through a follower, which redirects it to the leader.
	third := start("-id", "node3", "-addr", "127.0.0.1:0", "-join", second)

	client := &http.Client{Timeout: time.Second}
	require.Eventually(t, func() bool {
		for _, addr := range []string{first, second, third} {
			status, err := get(client, addr)
			if err != nil || !strings.Contains(status, "leader="+first) || !strings.Contains(status, "servers=3") {
				return false
			}
		}
		return true
	}, time.Minute, 50*time.Millisecond, "the three nodes never agreed on a three-server cluster")
}

func get(client *http.Client, addr string) (string, error) {
	response, err := client.Get(fmt.Sprintf("http://%s/", addr))
	if err != nil {
		return "", err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	return string(body), err
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
