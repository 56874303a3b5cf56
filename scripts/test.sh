#!/usr/bin/env bash
# The whole test suite: formatting, vet, staticcheck, every test with the
# race detector, and a few seconds of fuzzing per fuzz target. CI runs
# exactly this; so should you before sending a change.
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

echo "== fuzz (smoke: each target for a few seconds, so they cannot rot)"
# go test -fuzz runs one target per invocation. The seed corpus
# (testdata/fuzz) already ran with the tests above; RELIABILITY.md says how
# to fuzz for longer.
targets=$(go test -list '^Fuzz' . | grep '^Fuzz')
for target in $targets; do
	go test -run '^$' -fuzz "^${target}\$" -fuzztime 3s .
done
