package main

import (
	"net/http"
	"sync"
	"time"

	metrics "github.com/hashicorp/go-metrics/compat"
	metricsprometheus "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// processMetrics makes a Prometheus sink the process's go-metrics sink,
// once, and returns the handler that serves it. raft and rafthttp both
// emit through go-metrics' compat package, so GET /metrics shows them
// together. The sink is the process's, as go-metrics' global is: nodes
// started in one process (as the demo and tests do) share it.
var processMetrics = sync.OnceValues(func() (http.Handler, error) {
	registry := prometheus.NewRegistry()
	sink, err := metricsprometheus.NewPrometheusSinkFrom(metricsprometheus.PrometheusOpts{
		Registerer: registry,
		// A series not updated for this long is dropped from the
		// scrape: a connection gauge of a peer long gone, say.
		Expiration: 10 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	config := metrics.DefaultConfig("")
	config.EnableHostname = false
	// The Go runtime's own metrics are Prometheus' to report.
	config.EnableRuntimeMetrics = false
	if _, err := metrics.NewGlobal(config, sink); err != nil {
		return nil, err
	}
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(registry, promhttp.HandlerOpts{}), nil
})

// serveMetrics answers GET /metrics in Prometheus' text format.
func serveMetrics(w http.ResponseWriter, r *http.Request) {
	handler, err := processMetrics()
	if err != nil {
		http.Error(w, "raftkv: metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	handler.ServeHTTP(w, r)
}
