package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"unicode"

	"github.com/hashicorp/go-hclog"

	"github.com/rafthttp/rafthttp"
)

// maxTokenLength bounds the token: it travels in the Authorization header
// of every request, raft's upgrades included, where it takes room from
// the early data and counts against the peers' MaxHeaderBytes.
const maxTokenLength = 4096

// bearerToken is the cluster's shared secret. It formats as a placeholder
// so that a log line or error that prints a configuration does not leak it.
type bearerToken string

func (bearerToken) String() string   { return "[redacted]" }
func (bearerToken) GoString() string { return "[redacted]" }

// readToken reads the token of -token-file: the whole file, white space
// around it trimmed. The error names the file, never its contents.
func readToken(path string) (bearerToken, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", usageError{fmt.Sprintf("-token-file: %v", err)}
	}
	token := strings.TrimSpace(string(data))
	switch {
	case token == "":
		return "", usageError{fmt.Sprintf("-token-file %s is empty: it must hold the cluster's shared token", path)}
	case len(token) > maxTokenLength:
		return "", usageError{fmt.Sprintf("-token-file %s holds %d bytes: a token has at most %d", path, len(token), maxTokenLength)}
	case strings.ContainsFunc(token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return "", usageError{fmt.Sprintf("-token-file %s holds white space or control characters inside the token: want one token on one line", path)}
	}
	return bearerToken(token), nil
}

// authError is a refused request's reason. It wraps rafthttp.ErrUnauthorized,
// so the Handler answers 401, as the API does.
type authError struct {
	reason string
	// bearer says the token is what was missing or wrong.
	bearer bool
}

func (e authError) Error() string { return e.reason }

func (e authError) Unwrap() error { return rafthttp.ErrUnauthorized }

// newAuthorizer returns the check every request to the node passes first,
// raft's through HandlerConfig.Authorize and the API's through
// requireAuthorized: a verified client certificate when certificate is
// set (mutual TLS), "Authorization: Bearer <token>" when token is not
// empty, both when both. It returns nil, checking nothing, with neither.
func newAuthorizer(token bearerToken, certificate bool) func(*http.Request) error {
	if token == "" && !certificate {
		return nil
	}
	// Compare digests, so that the comparison takes as long whatever the
	// length of what was sent.
	want := sha256.Sum256([]byte(token))
	return func(r *http.Request) error {
		// The TLS server already refuses a handshake without a
		// certificate the CA signed; this check keeps that true should
		// a request ever reach the handlers another way.
		if certificate && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			return authError{reason: "no verified client certificate"}
		}
		if token == "" {
			return nil
		}
		values := r.Header.Values("Authorization")
		switch len(values) {
		case 0:
			return authError{reason: "no Authorization header", bearer: true}
		case 1:
		default:
			return authError{reason: "more than one Authorization header", bearer: true}
		}
		scheme, credentials, ok := strings.Cut(values[0], " ")
		// The scheme is case-insensitive (RFC 9110, section 11.1).
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return authError{reason: "Authorization is not Bearer", bearer: true}
		}
		got := sha256.Sum256([]byte(strings.TrimLeft(credentials, " ")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return authError{reason: "wrong bearer token", bearer: true}
		}
		return nil
	}
}

// requireAuthorized puts authorize in front of the key-value API: the
// token and the certificate protect the whole node, since whoever can PUT
// can change the data raft replicates. A nil authorize lets everything
// through.
func requireAuthorized(authorize func(*http.Request) error, logger hclog.Logger, next http.Handler) http.Handler {
	if authorize == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := authorize(r); err != nil {
			logger.Info("refused request: not authorized", "method", r.Method, "path", r.URL.Path,
				"remote-address", r.RemoteAddr, "error", err)
			var refused authError
			if errors.As(err, &refused) && refused.bearer {
				// RFC 6750, section 3: a 401 names the scheme it wants.
				w.Header().Set("WWW-Authenticate", `Bearer realm="raftkv"`)
			}
			http.Error(w, "raftkv: unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
