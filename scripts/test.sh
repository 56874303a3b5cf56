#!/usr/bin/env bash
# The whole test suite: formatting, vet, staticcheck, and every test with the
# race detector. CI runs exactly this; so should you before sending a change.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	printf 'gofmt would change:\n%s\n' "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
# Pinned by the tool directive in go.mod: nothing to install but Go itself.
go tool staticcheck ./...

echo "== benchmarks (smoke: one iteration each, so they cannot rot)"
go test -run '^$' -bench . -benchtime=1x ./...

echo "== go test -race"
go test -race -count=1 ./...
