package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDemo runs the whole demo, as "go run ./cmd/raftkv demo" does. It takes
// a few seconds, so it runs in -short mode too.
func TestDemo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"demo"}, &stdout, &stderr)
	output := stdout.String()
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", output, stderr.String())
	assert.Empty(t, stderr.String(), "the nodes' logs stay quiet without -v")

	for _, want := range []string{
		"node1 at 127.0.0.1:",
		"bootstrapped a new cluster",
		"node2 at 127.0.0.1:",
		"joined through node1",
		"joined through node2, a follower, which redirected it to the leader",
		"Cluster of 3 voters",
		"a request without the token gets 401 Unauthorized",
		"Writing 1000 keys",
		"written 1000/1000",
		"1000 writes in",
		"every node returns all 1000 keys",
		"every node has taken a snapshot",
		"Stopping the leader",
		"elected leader after",
		"writes continue: 100 more keys",
		"Restarting",
		"restored its snapshot, caught up, and returns all 1100 keys",
		"Summary",
		"nodes:             3",
		"leader changes:    1",
		"writes:            1100 at",
		"bytes replicated:",
		"total time:",
	} {
		assert.Contains(t, output, want)
	}
	// Not a terminal: progress is whole lines, no carriage returns.
	assert.NotContains(t, output, "\r")
	// The order of the story.
	previous := -1
	for _, step := range []string{"bootstrapped", "joined through node2", "Writing", "Stopping the leader", "elected leader", "Restarting", "Summary"} {
		at := strings.Index(output, step)
		assert.Greater(t, at, previous, "%q out of order", step)
		previous = at
	}
	assert.NotContains(t, output, "data directories kept", "without -keep the data is removed")
}

func TestDemoCommandLine(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		wantStderr string
	}{
		{name: "-h", args: []string{"demo", "-h"}, code: 0, wantStderr: "Usage: raftkv demo"},
		{name: "--help", args: []string{"demo", "--help"}, code: 0, wantStderr: "-keep"},
		{name: "extra argument", args: []string{"demo", "extra"}, code: 2, wantStderr: `unexpected argument "extra"`},
		{name: "unknown flag", args: []string{"demo", "-bootstrap"}, code: 2, wantStderr: "flag provided but not defined: -bootstrap"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, test.args...)
			assert.Equal(t, test.code, code)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, test.wantStderr)
		})
	}
}
