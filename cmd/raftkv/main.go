// Command raftkv is a replicated key-value server built on rafthttp: raft
// traffic, membership changes and the key-value API share one HTTP port per
// node, and each node keeps its raft log and snapshots on disk.
//
//	raftkv demo                      run a three-node cluster in this process and show it at work
//	raftkv serve -id ID -listen ...  run one node of a real cluster
//
// Run "raftkv serve -h" for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"unicode"

	"github.com/hashicorp/go-hclog"
)

const usage = `raftkv: a replicated key-value server built on rafthttp.

Usage:
  raftkv demo [-keep]     run three nodes in this process and show the cluster at work
  raftkv serve [flags]    run one node of a cluster (raftkv serve -h lists the flags)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes a subcommand and returns the exit code: 0 on success, 1 on
// failure, 2 for a bad command line, exitRemoved (3) when serve's node was
// removed from its cluster.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "demo":
		return runDemo(args[1:], stdout, stderr)
	case "serve":
		return runServe(args[1:], stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "raftkv: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// usageError is a bad command line: reported in one line, exit code 2.
type usageError struct{ reason string }

func (e usageError) Error() string { return e.reason }

// parseServe reads serve's flags into a node configuration.
func parseServe(args []string, stderr io.Writer) (nodeConfig, error) {
	var config nodeConfig
	var join, logLevel, tokenFile string
	flags := flag.NewFlagSet("raftkv serve", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.StringVar(&config.ID, "id", "", "this node's raft server ID, unique in the cluster (required)")
	flags.StringVar(&config.Listen, "listen", "", "host:port to serve raft and the API on; port 0 picks a free port, which the \"listening\" log line shows (required)")
	flags.StringVar(&config.Advertise, "advertise", "", "host:port peers and clients reach this node at (default: the address -listen bound; must not be 0.0.0.0 or [::])")
	flags.StringVar(&config.DataDir, "data", "", "directory for the raft log, stable store and snapshots (required)")
	flags.BoolVar(&config.Bootstrap, "bootstrap", false, "start a new cluster with this node as its first member")
	flags.StringVar(&join, "join", "", "comma-separated host:port of existing members to ask, in order, to add this node")
	flags.BoolVar(&config.Nonvoter, "nonvoter", false, "join as a non-voter: receive the log without voting")
	flags.BoolVar(&config.LeaveOnShutdown, "leave-on-shutdown", false, "on SIGINT/SIGTERM, leave the cluster before stopping")
	flags.StringVar(&config.TLSCert, "tls-cert", "", "PEM certificate to serve and dial with (enables TLS; needs -tls-key)")
	flags.StringVar(&config.TLSKey, "tls-key", "", "PEM private key of -tls-cert")
	flags.StringVar(&config.TLSCA, "tls-ca", "", "PEM CA bundle: trust peers it signed and require them to present certificates (needs -tls-cert)")
	flags.StringVar(&tokenFile, "token-file", "", "file holding the cluster's shared token, the same on every node: required on every request, raft's and the API's, as \"Authorization: Bearer TOKEN\"")
	flags.StringVar(&config.ClusterID, "cluster-id", "", "the cluster's name, the same on every node: raft and membership requests naming another cluster, or none, are refused (412)")
	flags.BoolVar(&config.WebSocket, "websocket", false, "dial peers with WebSocket upgrades (Upgrade: websocket, subprotocol raft) instead of raw ones, for proxies that forward WebSocket alone (Envoy, Istio, CDNs); every node serves both")
	flags.Int64Var(&config.MaxValue, "max-value", defaultMaxValue, "largest value a PUT may store, in bytes")
	flags.Uint64Var(&config.SnapshotThreshold, "snapshot-threshold", defaultSnapshotThreshold, "log entries since the last snapshot that trigger a new one")
	flags.StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn or error")
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), "Usage: raftkv serve -id ID -listen HOST:PORT -data DIR (-bootstrap | -join HOST:PORT[,HOST:PORT...]) [flags]\n\nA restarted node needs neither -bootstrap nor -join: its data directory holds its membership.\nWith -join it asks to join again, which updates its address if it changed and lets a removed\nnode back in; with -bootstrap it resumes, bootstrapping nothing.\n\nExit status: 0 after SIGINT or SIGTERM, 1 on failure (a data directory in use by another\nprocess among them), 2 for a bad command line, 3 when the node was removed from the cluster.\n\nFlags:\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return config, err
	}
	if flags.NArg() > 0 {
		return config, usageError{fmt.Sprintf("unexpected argument %q", flags.Arg(0))}
	}
	if join != "" {
		config.Join = strings.Split(join, ",")
	}
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		return config, usageError{fmt.Sprintf("-log-level %q: want trace, debug, info, warn or error", logLevel)}
	}
	config.Logger = hclog.New(&hclog.LoggerOptions{Name: "raftkv", Level: level, Output: stderr})
	if err := validateServe(config); err != nil {
		return config, err
	}
	if tokenFile != "" {
		// Read now, so that a missing or empty file is a bad command
		// line, reported before anything starts.
		var err error
		if config.Token, err = readToken(tokenFile); err != nil {
			return config, err
		}
	}
	return config, nil
}

// validateServe checks the flag combinations that need no disk or network.
func validateServe(config nodeConfig) error {
	switch {
	case config.ID == "":
		return usageError{"-id is required"}
	case config.Listen == "":
		return usageError{"-listen is required"}
	case config.DataDir == "":
		return usageError{"-data is required"}
	case config.Bootstrap && len(config.Join) > 0:
		return usageError{"-bootstrap and -join exclude each other: bootstrap starts a new cluster, join enters an existing one"}
	case config.Bootstrap && config.Nonvoter:
		return usageError{"-nonvoter cannot -bootstrap: the first node of a cluster must vote"}
	case (config.TLSCert == "") != (config.TLSKey == ""):
		return usageError{"-tls-cert and -tls-key go together"}
	case config.TLSCA != "" && config.TLSCert == "":
		return usageError{"-tls-ca needs -tls-cert and -tls-key: with a CA, this node must present a certificate too"}
	case config.MaxValue <= 0:
		return usageError{"-max-value must be positive"}
	case config.SnapshotThreshold == 0:
		return usageError{"-snapshot-threshold must be positive"}
	case len(config.ClusterID) > maxClusterID:
		return usageError{fmt.Sprintf("-cluster-id is %d bytes long: at most %d", len(config.ClusterID), maxClusterID)}
	case strings.TrimSpace(config.ClusterID) != config.ClusterID || strings.ContainsFunc(config.ClusterID, unicode.IsControl):
		// It travels in a header of every request.
		return usageError{fmt.Sprintf("-cluster-id %q: no white space around it and no control characters in it", config.ClusterID)}
	}
	listenHost, _, err := net.SplitHostPort(config.Listen)
	if err != nil {
		return usageError{fmt.Sprintf("-listen %q: want host:port", config.Listen)}
	}
	if config.Advertise == "" {
		if unspecifiedHost(listenHost) {
			return usageError{fmt.Sprintf("-listen %q is not an address peers can reach: set -advertise", config.Listen)}
		}
	} else {
		host, _, err := net.SplitHostPort(config.Advertise)
		if err != nil {
			return usageError{fmt.Sprintf("-advertise %q: want host:port", config.Advertise)}
		}
		if unspecifiedHost(host) {
			return usageError{fmt.Sprintf("-advertise %q must be an address peers can reach, not a wildcard", config.Advertise)}
		}
	}
	for _, member := range config.Join {
		if _, _, err := net.SplitHostPort(member); err != nil {
			return usageError{fmt.Sprintf("-join %q: want host:port", member)}
		}
	}
	return nil
}

func unspecifiedHost(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

func runServe(args []string, stderr io.Writer) int {
	config, err := parseServe(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		var bad usageError
		if errors.As(err, &bad) {
			fmt.Fprintf(stderr, "raftkv serve: %v\n", err)
		}
		// flag has already printed its own errors with the usage.
		return 2
	}
	// Signals are caught before start-up so that one arriving while the
	// node joins ends the join and shuts the node down in order.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var interrupted atomic.Bool
	startupDone, watcherDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watcherDone)
		select {
		case received := <-signals:
			interrupted.Store(true)
			config.Logger.Info("shutting down during start-up", "signal", received.String())
			cancel()
		case <-startupDone:
		}
	}()

	n, err := startNode(ctx, config)
	close(startupDone)
	// Wait for the watcher, so a signal it took is seen here and one it
	// did not take is still in the channel for the wait below.
	<-watcherDone
	if interrupted.Load() {
		// startNode stopped what it had started when its join ended.
		if err == nil {
			n.stop()
		}
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv serve: %v\n", err)
		var bad usageError
		if errors.As(err, &bad) {
			return 2
		}
		return 1
	}
	select {
	case received := <-signals:
		n.logger.Info("shutting down", "signal", received.String())
		n.stop()
		return 0
	case reason := <-n.removed:
		n.logger.Error("removed from the cluster: shutting down", "reason", reason, "exit-status", exitRemoved)
		n.stop()
		fmt.Fprintf(stderr, "raftkv serve: removed from the cluster (%s); restart with -join to rejoin\n", reason)
		return exitRemoved
	}
}
