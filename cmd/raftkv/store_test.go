package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenStoreLocked opens a data directory another open holds: the second
// open fails after storeLockTimeout naming the directory, or at once when
// its context ends; once the first closes, it succeeds.
func TestOpenStoreLocked(t *testing.T) {
	dir := t.TempDir()
	first, err := openStore(context.Background(), dir)
	require.NoError(t, err)

	started := time.Now()
	_, err = openStore(context.Background(), dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "data directory "+dir+" is in use by another process")
	assert.GreaterOrEqual(t, time.Since(started), storeLockTimeout)

	// A start-up cancelled (by a signal) gives up after one poll.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	started = time.Now()
	_, err = openStore(ctx, dir)
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
	assert.Less(t, time.Since(started), storeLockTimeout/2)

	require.NoError(t, first.Close())
	second, err := openStore(context.Background(), dir)
	require.NoError(t, err)
	require.NoError(t, second.Close())
}
