// Package testdaemon holds the helpers that the tests of the daemon share:
// the in-process tests of serve and the tests of `yedge serve` in
// cmd/yedge. It builds plans from YAML, captures logs, makes clips and
// image folders from the shared fixtures, serves clips over HTTP as a
// camera does, waits for conditions, and reads the daemon's /status and
// /metrics.
//
// Only tests import it; it is a normal package (not a _test.go file) so
// that tests of several packages can share it. It uses gocv to write clips,
// hence its entry in the gocv allow-list of .golangci.yml.
package testdaemon

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writes (a slog handler,
// a child process's stdout and stderr) and reads by the test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Wait polls cond every 100ms until it holds, failing the test after
// timeout.
func Wait(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	Poll(tb, 100*time.Millisecond, what, timeout, cond)
}

// Poll polls cond every interval until it holds, failing the test after
// timeout. cond is evaluated at least once, and once more after the
// deadline has passed.
func Poll(tb testing.TB, every time.Duration, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(every)
	}
}

// FreePort returns a loopback address ("127.0.0.1:port") whose port was
// free a moment ago: nothing listens there once it returns.
func FreePort(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
