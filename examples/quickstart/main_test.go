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

// TestQuickstartFormsACluster runs the program three times, as the README
// says, and waits until every node reports the same leader and three servers.
func TestQuickstartFormsACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes")
	}
	binary := filepath.Join(t.TempDir(), "quickstart")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	addrs := []string{clustertest.FreeAddr(t), clustertest.FreeAddr(t), clustertest.FreeAddr(t)}
	start := func(args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, binary, args...)
		var output bytes.Buffer
		cmd.Stdout, cmd.Stderr = &output, &output
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			defer cancel()
			cmd.Process.Signal(syscall.SIGINT)
			err := cmd.Wait()
			if t.Failed() || err != nil {
				t.Logf("%v: %v\n%s", args, err, output.String())
			}
			require.NoError(t, err, "a node did not shut down cleanly on SIGINT")
		})
	}
	start("-id", "node1", "-addr", addrs[0])
	start("-id", "node2", "-addr", addrs[1], "-join", addrs[0])
	// The third joins through a follower, which redirects it to the leader.
	start("-id", "node3", "-addr", addrs[2], "-join", addrs[1])

	client := &http.Client{Timeout: time.Second}
	require.Eventually(t, func() bool {
		for _, addr := range addrs {
			status, err := get(client, addr)
			if err != nil || !strings.Contains(status, "leader="+addrs[0]) || !strings.Contains(status, "servers=3") {
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
