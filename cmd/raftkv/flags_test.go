package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runCommand runs raftkv with args and returns its exit code and output.
func runCommand(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// serveArgs is a valid serve command line with overrides: a value of "" for
// a flag removes it; extra goes at the end.
func serveArgs(t *testing.T, overrides map[string]string, extra ...string) []string {
	flags := map[string]string{
		"-id":     "node1",
		"-listen": "127.0.0.1:0",
		"-data":   t.TempDir(),
	}
	for name, value := range overrides {
		flags[name] = value
	}
	args := []string{"serve"}
	for _, name := range []string{"-id", "-listen", "-advertise", "-data", "-join", "-tls-cert", "-tls-key", "-tls-ca", "-token-file", "-cluster-id", "-log-level", "-max-value", "-snapshot-threshold"} {
		if value := flags[name]; value != "" {
			args = append(args, name, value)
		}
	}
	return append(args, extra...)
}

// writeFile writes content to a new file in a directory of t's and returns
// its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestServeFlagErrors(t *testing.T) {
	missingToken := filepath.Join(t.TempDir(), "missing-token")
	emptyToken := writeFile(t, "empty", "")
	blankToken := writeFile(t, "blank", " \n\t\n")
	twoTokens := writeFile(t, "two", "first-secret\nsecond-secret\n")
	spacedToken := writeFile(t, "spaced", "Bearer first-secret\n")
	hugeToken := writeFile(t, "huge", strings.Repeat("x", maxTokenLength+1))
	tests := []struct {
		name      string
		overrides map[string]string
		extra     []string
		want      string
	}{
		{name: "missing id", overrides: map[string]string{"-id": ""}, extra: []string{"-bootstrap"}, want: "-id is required"},
		{name: "missing listen", overrides: map[string]string{"-listen": ""}, extra: []string{"-bootstrap"}, want: "-listen is required"},
		{name: "missing data", overrides: map[string]string{"-data": ""}, extra: []string{"-bootstrap"}, want: "-data is required"},
		{name: "empty id", extra: []string{"-id=", "-bootstrap"}, want: "-id is required"},
		{name: "bootstrap with join", overrides: map[string]string{"-join": "127.0.0.1:8001"}, extra: []string{"-bootstrap"}, want: "-bootstrap and -join exclude each other"},
		{name: "nonvoter with bootstrap", extra: []string{"-bootstrap", "-nonvoter"}, want: "-nonvoter cannot -bootstrap"},
		{name: "tls cert without key", overrides: map[string]string{"-tls-cert": "cert.pem"}, extra: []string{"-bootstrap"}, want: "-tls-cert and -tls-key go together"},
		{name: "tls key without cert", overrides: map[string]string{"-tls-key": "key.pem"}, extra: []string{"-bootstrap"}, want: "-tls-cert and -tls-key go together"},
		{name: "tls ca without cert", overrides: map[string]string{"-tls-ca": "ca.pem"}, extra: []string{"-bootstrap"}, want: "-tls-ca needs -tls-cert"},
		{name: "listen without port", overrides: map[string]string{"-listen": "127.0.0.1"}, extra: []string{"-bootstrap"}, want: `-listen "127.0.0.1": want host:port`},
		{name: "listen garbage", overrides: map[string]string{"-listen": "not an address"}, extra: []string{"-bootstrap"}, want: "want host:port"},
		{name: "listen wildcard without advertise", overrides: map[string]string{"-listen": "0.0.0.0:8001"}, extra: []string{"-bootstrap"}, want: "set -advertise"},
		{name: "listen empty host without advertise", overrides: map[string]string{"-listen": ":8001"}, extra: []string{"-bootstrap"}, want: "set -advertise"},
		{name: "listen ipv6 wildcard without advertise", overrides: map[string]string{"-listen": "[::]:8001"}, extra: []string{"-bootstrap"}, want: "set -advertise"},
		{name: "advertise ipv4 wildcard", overrides: map[string]string{"-advertise": "0.0.0.0:8001"}, extra: []string{"-bootstrap"}, want: "not a wildcard"},
		{name: "advertise ipv6 wildcard", overrides: map[string]string{"-advertise": "[::]:8001"}, extra: []string{"-bootstrap"}, want: "not a wildcard"},
		{name: "advertise empty host", overrides: map[string]string{"-advertise": ":8001"}, extra: []string{"-bootstrap"}, want: "not a wildcard"},
		{name: "advertise without port", overrides: map[string]string{"-advertise": "10.0.0.1"}, extra: []string{"-bootstrap"}, want: `-advertise "10.0.0.1": want host:port`},
		{name: "join without port", overrides: map[string]string{"-join": "127.0.0.1"}, want: `-join "127.0.0.1": want host:port`},
		{name: "join second entry bad", overrides: map[string]string{"-join": "127.0.0.1:8001,nowhere"}, want: `-join "nowhere": want host:port`},
		{name: "join trailing comma", overrides: map[string]string{"-join": "127.0.0.1:8001,"}, want: `-join "": want host:port`},
		{name: "bad log level", overrides: map[string]string{"-log-level": "loud"}, extra: []string{"-bootstrap"}, want: `-log-level "loud"`},
		{name: "max value zero", overrides: map[string]string{"-max-value": "0"}, extra: []string{"-bootstrap"}, want: "-max-value must be positive"},
		{name: "max value negative", overrides: map[string]string{"-max-value": "-1"}, extra: []string{"-bootstrap"}, want: "-max-value must be positive"},
		{name: "snapshot threshold zero", overrides: map[string]string{"-snapshot-threshold": "0"}, extra: []string{"-bootstrap"}, want: "-snapshot-threshold must be positive"},
		{name: "positional argument", extra: []string{"-bootstrap", "extra"}, want: `unexpected argument "extra"`},
		// Without -bootstrap or -join, so that a check that is missing
		// fails the start-up instead of starting a node.
		{name: "token file missing", overrides: map[string]string{"-token-file": missingToken}, want: "-token-file: open " + missingToken},
		{name: "token file a directory", overrides: map[string]string{"-token-file": t.TempDir()}, want: "-token-file: read "},
		{name: "token file empty", overrides: map[string]string{"-token-file": emptyToken}, want: "-token-file " + emptyToken + " is empty"},
		{name: "token file blank", overrides: map[string]string{"-token-file": blankToken}, want: "-token-file " + blankToken + " is empty"},
		{name: "token file two lines", overrides: map[string]string{"-token-file": twoTokens}, want: "want one token on one line"},
		{name: "token file with scheme", overrides: map[string]string{"-token-file": spacedToken}, want: "want one token on one line"},
		{name: "token too long", overrides: map[string]string{"-token-file": hugeToken}, want: "a token has at most 4096"},
		{name: "cluster id spaced", overrides: map[string]string{"-cluster-id": " prod"}, want: `-cluster-id " prod": no white space around it`},
		{name: "cluster id control", overrides: map[string]string{"-cluster-id": "pr\x01od"}, want: "no control characters"},
		{name: "cluster id too long", overrides: map[string]string{"-cluster-id": strings.Repeat("c", 257)}, want: "-cluster-id is 257 bytes long: at most 256"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			args := serveArgs(t, test.overrides, test.extra...)
			code, stdout, stderr := runCommand(t, args...)
			assert.Equal(t, 2, code, "args %q: stderr %q", args, stderr)
			assert.Empty(t, stdout)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "want a one-line reason, got %q", stderr)
			assert.True(t, strings.HasPrefix(stderr, "raftkv serve: "), "stderr %q", stderr)
			assert.Contains(t, stderr, test.want)
			assert.NotContains(t, stderr, "Usage", "a bad combination gives its reason, not the usage")
			assert.NotContains(t, stderr, "secret", "the token is not shown")
		})
	}
}

func TestServeFlagParseErrors(t *testing.T) {
	// Errors the flag package reports itself: its message and the usage,
	// and still exit code 2.
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown flag", args: []string{"serve", "-id", "n", "-frobnicate"}, want: "flag provided but not defined: -frobnicate"},
		{name: "max value not a number", args: []string{"serve", "-max-value", "lots"}, want: `invalid value "lots" for flag -max-value`},
		{name: "bootstrap not a bool", args: []string{"serve", "-bootstrap=maybe"}, want: `invalid boolean value "maybe" for -bootstrap`},
		{name: "flag without value", args: []string{"serve", "-id"}, want: "flag needs an argument: -id"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, test.args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, test.want)
			assert.Contains(t, stderr, "Usage: raftkv serve")
		})
	}
}

func TestServeHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, "serve", arg)
			require.Equal(t, 0, code)
			help := stdout + stderr
			assert.Contains(t, help, "Usage: raftkv serve")
			for _, name := range []string{"id", "listen", "advertise", "data", "bootstrap", "join", "nonvoter",
				"leave-on-shutdown", "tls-cert", "tls-key", "tls-ca", "token-file", "cluster-id", "max-value", "snapshot-threshold", "log-level"} {
				// flag prints "  -name type\n    \tdescription", bool flags without the type.
				assert.Regexp(t, `\n  -`+name+`( \w+)?\n    \t\S`, help, "flag -%s is not documented", name)
			}
			// The defaults are shown.
			assert.Contains(t, help, "1048576")
			assert.Contains(t, help, "512")
			assert.Contains(t, help, `(default "info")`)
		})
	}
}

func TestRunCommands(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{name: "no arguments", args: nil, code: 2, wantStderr: "Usage:"},
		{name: "empty arguments", args: []string{}, code: 2, wantStderr: "Usage:"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, wantStderr: `unknown command "frobnicate"`},
		{name: "flag as command", args: []string{"-id", "x"}, code: 2, wantStderr: `unknown command "-id"`},
		{name: "-h", args: []string{"-h"}, code: 0, wantStdout: "raftkv serve [flags]"},
		{name: "--help", args: []string{"--help"}, code: 0, wantStdout: "raftkv demo"},
		{name: "help", args: []string{"help"}, code: 0, wantStdout: "Usage:"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, test.args...)
			assert.Equal(t, test.code, code)
			if test.wantStdout != "" {
				assert.Contains(t, stdout, test.wantStdout)
				assert.Empty(t, stderr)
			}
			if test.wantStderr != "" {
				assert.Contains(t, stderr, test.wantStderr)
				assert.Contains(t, stderr, "raftkv serve", "the usage lists the commands")
				assert.Empty(t, stdout)
			}
		})
	}
}

// A new data directory needs -bootstrap or -join; only startNode can tell,
// after opening it, and it still exits 2 with one line.
func TestServeNewDataDirNeedsBootstrapOrJoin(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runCommand(t, "serve", "-id", "node1", "-listen", "127.0.0.1:0", "-data", dir, "-log-level", "error")
	assert.Equal(t, 2, code)
	assert.Empty(t, stdout)
	assert.Equal(t, "raftkv serve: a new data directory needs -bootstrap or -join\n", stderr)

	// The failed start leaves nothing that makes the directory look like
	// existing state: the next attempt says the same.
	code, _, stderr = runCommand(t, "serve", "-id", "node1", "-listen", "127.0.0.1:0", "-data", dir, "-log-level", "error")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "needs -bootstrap or -join")
}

func TestParseServe(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, config nodeConfig)
	}{
		{
			name: "bootstrap with defaults",
			args: []string{"-id", "n1", "-listen", "127.0.0.1:8001", "-data", "/tmp/d", "-bootstrap"},
			check: func(t *testing.T, config nodeConfig) {
				assert.Equal(t, "n1", config.ID)
				assert.Equal(t, "127.0.0.1:8001", config.Listen)
				assert.Empty(t, config.Advertise)
				assert.Equal(t, "/tmp/d", config.DataDir)
				assert.True(t, config.Bootstrap)
				assert.Empty(t, config.Join)
				assert.False(t, config.Nonvoter)
				assert.False(t, config.LeaveOnShutdown)
				assert.Equal(t, int64(defaultMaxValue), config.MaxValue)
				assert.Equal(t, uint64(defaultSnapshotThreshold), config.SnapshotThreshold)
				require.NotNil(t, config.Logger)
				assert.True(t, config.Logger.IsInfo())
				assert.False(t, config.Logger.IsDebug())
				assert.Empty(t, config.Token)
				assert.Empty(t, config.ClusterID)
				assert.False(t, config.WebSocket)
			},
		},
		{
			name: "token and cluster id",
			args: []string{"-id", "n1", "-listen", "127.0.0.1:8001", "-data", "d", "-bootstrap",
				"-token-file", writeFile(t, "token", "\n  s3cr3t-T0ken/+=  \r\n"), "-cluster-id", "prod eu-1"},
			check: func(t *testing.T, config nodeConfig) {
				// White space around the token is trimmed; inside it, the
				// cluster ID may hold spaces.
				assert.Equal(t, bearerToken("s3cr3t-T0ken/+="), config.Token)
				assert.Equal(t, "prod eu-1", config.ClusterID)
				// Printing the configuration, as a log line might, does
				// not show the token.
				for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
					assert.NotContains(t, fmt.Sprintf(format, config), "s3cr3t", "format %s", format)
				}
			},
		},
		{
			name: "join list nonvoter",
			args: []string{"-id", "n4", "-listen", "0.0.0.0:8004", "-advertise", "10.0.0.4:8004", "-data", "d",
				"-join", "10.0.0.1:8001,10.0.0.2:8002,[fe80::1]:8003", "-nonvoter", "-leave-on-shutdown", "-log-level", "debug",
				"-websocket"},
			check: func(t *testing.T, config nodeConfig) {
				assert.True(t, config.WebSocket)
				assert.Equal(t, "10.0.0.4:8004", config.Advertise)
				assert.Equal(t, []string{"10.0.0.1:8001", "10.0.0.2:8002", "[fe80::1]:8003"}, config.Join)
				assert.False(t, config.Bootstrap)
				assert.True(t, config.Nonvoter)
				assert.True(t, config.LeaveOnShutdown)
				assert.True(t, config.Logger.IsDebug())
			},
		},
		{
			name: "tls limits and restart without bootstrap or join",
			args: []string{"-id", "n1", "-listen", "localhost:8001", "-data", "d", "-tls-cert", "c.pem", "-tls-key", "k.pem",
				"-tls-ca", "ca.pem", "-max-value", "4096", "-snapshot-threshold", "100", "-log-level", "ERROR"},
			check: func(t *testing.T, config nodeConfig) {
				assert.Equal(t, "c.pem", config.TLSCert)
				assert.Equal(t, "k.pem", config.TLSKey)
				assert.Equal(t, "ca.pem", config.TLSCA)
				assert.Equal(t, int64(4096), config.MaxValue)
				assert.Equal(t, uint64(100), config.SnapshotThreshold)
				assert.True(t, config.Logger.IsError())
				assert.False(t, config.Logger.IsWarn())
			},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			var stderr bytes.Buffer
			config, err := parseServe(test.args, &stderr)
			require.NoError(t, err)
			assert.Empty(t, stderr.String())
			test.check(t, config)
		})
	}

	t.Run("help", func(t *testing.T) {
		var stderr bytes.Buffer
		_, err := parseServe([]string{"-h"}, &stderr)
		assert.True(t, errors.Is(err, flag.ErrHelp))
	})
	t.Run("usage error type", func(t *testing.T) {
		_, err := parseServe([]string{"-id", "n1"}, &bytes.Buffer{})
		var bad usageError
		require.True(t, errors.As(err, &bad), "got %T %v", err, err)
		assert.Equal(t, "-listen is required", bad.Error())
	})
}

func TestValidateServeAccepts(t *testing.T) {
	base := func() nodeConfig {
		return nodeConfig{ID: "n1", Listen: "127.0.0.1:8001", DataDir: "d", MaxValue: 1, SnapshotThreshold: 1}
	}
	tests := []struct {
		name   string
		change func(*nodeConfig)
	}{
		{name: "restart without bootstrap or join", change: func(*nodeConfig) {}},
		{name: "bootstrap", change: func(c *nodeConfig) { c.Bootstrap = true }},
		{name: "join one", change: func(c *nodeConfig) { c.Join = []string{"127.0.0.1:8002"} }},
		{name: "join many hostnames", change: func(c *nodeConfig) { c.Join = []string{"a.example:1", "b.example:2", "[::1]:3"} }},
		{name: "nonvoter join", change: func(c *nodeConfig) { c.Nonvoter = true; c.Join = []string{"127.0.0.1:8002"} }},
		{name: "leave on shutdown", change: func(c *nodeConfig) { c.LeaveOnShutdown = true; c.Bootstrap = true }},
		{name: "wildcard listen with advertise", change: func(c *nodeConfig) { c.Listen = "0.0.0.0:8001"; c.Advertise = "10.0.0.1:8001" }},
		{name: "empty-host listen with advertise", change: func(c *nodeConfig) { c.Listen = ":8001"; c.Advertise = "node1.example:8001" }},
		{name: "ipv6 wildcard listen with advertise", change: func(c *nodeConfig) { c.Listen = "[::]:8001"; c.Advertise = "[2001:db8::1]:8001" }},
		{name: "hostname listen", change: func(c *nodeConfig) { c.Listen = "localhost:8001" }},
		{name: "ipv6 loopback listen", change: func(c *nodeConfig) { c.Listen = "[::1]:8001" }},
		{name: "port zero", change: func(c *nodeConfig) { c.Listen = "127.0.0.1:0" }},
		{name: "tls cert and key", change: func(c *nodeConfig) { c.TLSCert, c.TLSKey = "c", "k" }},
		{name: "tls with ca", change: func(c *nodeConfig) { c.TLSCert, c.TLSKey, c.TLSCA = "c", "k", "ca" }},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			config := base()
			test.change(&config)
			assert.NoError(t, validateServe(config))
		})
	}
}
