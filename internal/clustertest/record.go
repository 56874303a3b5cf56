package clustertest

import (
	"net/http"
	"sync"
)

// Exchange is one request a Recorder saw and the answer it got.
type Exchange struct {
	// Host is the request's Host: the address of the node that served it.
	Host   string
	Method string
	// Query is the raw query string.
	Query string
	// TLS reports whether the request came in over TLS.
	TLS bool
	// Status is the answer's status code; 101 for a connection the handler
	// took over (it writes its 101 itself, bypassing the ResponseWriter).
	Status int
	// Location is the answer's Location header, set on redirects.
	Location string
}

// Recorder is middleware that records every request and its answer. Use
// its Wrap as Options.Wrap.
//
// It wraps the ResponseWriter in a type that hides http.Hijacker and
// http.Flusher but has an Unwrap method, as most logging middleware does:
// upgrades work through it only if the Handler finds Hijack through
// http.NewResponseController.
type Recorder struct {
	mu        sync.Mutex
	exchanges []Exchange
}

// Wrap returns next with recording in front of it.
func (rec *Recorder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writer := &recordingWriter{ResponseWriter: w}
		next.ServeHTTP(writer, r)
		status := writer.status
		if status == 0 && r.Header.Get("Upgrade") != "" {
			status = http.StatusSwitchingProtocols
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		rec.exchanges = append(rec.exchanges, Exchange{
			Host: r.Host, Method: r.Method, Query: r.URL.RawQuery, TLS: r.TLS != nil,
			Status: status, Location: writer.location,
		})
	})
}

// Exchanges returns the exchanges recorded so far, in the order their
// handlers returned.
func (rec *Recorder) Exchanges() []Exchange {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]Exchange(nil), rec.exchanges...)
}

// Find returns the recorded exchanges for which match is true.
func (rec *Recorder) Find(match func(Exchange) bool) []Exchange {
	var found []Exchange
	for _, exchange := range rec.Exchanges() {
		if match(exchange) {
			found = append(found, exchange)
		}
	}
	return found
}

// recordingWriter deliberately embeds the http.ResponseWriter interface
// rather than the concrete writer, so it has no Hijack method of its own.
type recordingWriter struct {
	http.ResponseWriter
	status   int
	location string
}

func (w *recordingWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
		w.location = w.Header().Get("Location")
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.NewResponseController reach the server's writer.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
