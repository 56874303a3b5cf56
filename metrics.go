package rafthttp

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	metrics "github.com/hashicorp/go-metrics/compat"
)

// The transport's metrics go through go-metrics' compat package, as raft
// v1.7's do, so they land in whatever sink the application set up for
// raft's (metrics.NewGlobal): one sink, one scrape. Every name starts with
// "rafthttp"; the README lists them.
var (
	// metricUpgrade counts upgrade requests by the status they got: 101,
	// or the refusal's.
	metricUpgrade = []string{"rafthttp", "upgrade"}
	// metricMembership counts join, leave and membership-view requests by
	// kind and status.
	metricMembership = []string{"rafthttp", "membership"}
	// metricRefused counts requests refused by Authorize or the cluster-ID
	// check, by reason.
	metricRefused = []string{"rafthttp", "refused"}
	// metricOpenConns is the number of upgraded connections the Handlers
	// of this process hold open.
	metricOpenConns = []string{"rafthttp", "conns", "open"}
	// metricDial counts upgrade dials by mode (eager or early_data) and
	// outcome (ok, or the step that failed).
	metricDial = []string{"rafthttp", "dial"}
	// metricDialTime is how long an upgrade dial took, by mode and
	// outcome: connect and 101 for an eager dial, the connect alone for
	// one sending early data, whose 101 comes with raft's first answer.
	metricDialTime = []string{"rafthttp", "dial", "time"}
	// metricEarlyDataFallback counts the times a Layer stopped sending
	// early data to a peer for a while, after a failure that may have been
	// the early data's doing.
	metricEarlyDataFallback = []string{"rafthttp", "dial", "early_data_fallback"}
)

// openConns counts the upgraded connections every Handler of the process
// holds, for metricOpenConns: one gauge, however many raft groups share a
// server.
var openConns atomic.Int64

func addOpenConns(delta int64) {
	metrics.SetGauge(metricOpenConns, float32(openConns.Add(delta)))
}

// countAnswer counts the answer a Handler gave r.
func countAnswer(r *http.Request, status int) {
	labels := []metrics.Label{{Name: "status", Value: strconv.Itoa(status)}}
	switch r.Method {
	case http.MethodGet:
		if r.Header.Get("Upgrade") == "" {
			metrics.IncrCounterWithLabels(metricMembership, 1, append(labels, metrics.Label{Name: "kind", Value: "members"}))
			return
		}
		metrics.IncrCounterWithLabels(metricUpgrade, 1, labels)
	case http.MethodPost:
		metrics.IncrCounterWithLabels(metricMembership, 1, append(labels, metrics.Label{Name: "kind", Value: "join"}))
	case http.MethodDelete:
		metrics.IncrCounterWithLabels(metricMembership, 1, append(labels, metrics.Label{Name: "kind", Value: "leave"}))
	default:
		metrics.IncrCounterWithLabels(metricUpgrade, 1, labels)
	}
}

// countRefused counts a request Authorize ("authorize") or the cluster-ID
// check ("cluster_id") refused.
func countRefused(reason string) {
	metrics.IncrCounterWithLabels(metricRefused, 1, []metrics.Label{{Name: "reason", Value: reason}})
}

// countDial counts an upgrade dial that started at start, made in mode
// (see upgrader.dialMode); err is nil or the dial's *UpgradeError.
func countDial(start time.Time, mode string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "failed"
		if upgradeErr, ok := err.(*UpgradeError); ok {
			outcome = strings.ReplaceAll(string(upgradeErr.Step), " ", "_")
		}
	}
	labels := []metrics.Label{{Name: "mode", Value: mode}, {Name: "outcome", Value: outcome}}
	metrics.IncrCounterWithLabels(metricDial, 1, labels)
	metrics.MeasureSinceWithLabels(metricDialTime, start, labels)
}
