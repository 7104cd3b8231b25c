package testdaemon

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
)

// MakeClip writes the first n frames of the shared vtest.avi to path as an
// MJPG .avi at 10 frames/s.
func MakeClip(tb testing.TB, path string, n int) {
	tb.Helper()
	vc, err := gocv.VideoCaptureFile(fixtures.Path(tb, "media", "vtest.avi"))
	if err != nil {
		tb.Fatal(err)
	}
	defer vc.Close()
	img := gocv.NewMat()
	defer img.Close()
	var w *gocv.VideoWriter
	for i := 0; i < n && vc.Read(&img); i++ {
		if w == nil {
			if w, err = gocv.VideoWriterFile(path, "MJPG", 10, img.Cols(), img.Rows(), true); err != nil {
				tb.Fatal(err)
			}
		}
		if err := w.Write(img); err != nil {
			tb.Fatal(err)
		}
	}
	if w == nil {
		tb.Fatal("vtest.avi gave no frame")
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// ClipServer serves an .avi clip over HTTP at /cam.avi, as an IP camera
// does. It is stopped at the end of the test, or earlier by Stop.
//
// A server from StartClipServer sends the clip at a steady pace (about
// 1.5 MB/s). While Stall is set it instead sends the headers (with the
// full Content-Length) and the first Partial bytes of the clip, then keeps
// the connection open without sending more, as a camera whose encoder
// froze, until DropStalled or the end of the test.
//
// A server from ServeClipFile serves a file as it is (http.ServeFile:
// at full speed, with range requests); Stall has no effect on it.
type ClipServer struct {
	Addr    string       // the address it listens on
	Partial atomic.Int64 // bytes sent before a stall
	Stall   atomic.Bool  // whether new responses stall
	Stalled atomic.Int64 // stalled responses started
	Normal  atomic.Int64 // paced responses started

	clip     []byte
	shutdown time.Duration // Stop's bound on the graceful shutdown
	release  chan struct{} // closed by Stop
	drop     chan struct{} // closed by DropStalled
	dropOnce sync.Once
	srv      *http.Server
	stopOnce sync.Once
}

// StartClipServer serves clip, paced and possibly stalling (see
// ClipServer), on a free loopback port; partial is the initial Partial.
func StartClipServer(tb testing.TB, clip []byte, partial int) *ClipServer {
	tb.Helper()
	c := &ClipServer{clip: clip, shutdown: 5 * time.Second}
	c.Partial.Store(int64(partial))
	c.start(tb, "127.0.0.1:0", http.HandlerFunc(c.serve))
	return c
}

// ServeClipFile serves the file at path as it is (see ClipServer) on addr.
// addr may be one a stopped server used: the port may linger briefly
// after a stop, so listening is retried for up to 5s.
func ServeClipFile(tb testing.TB, addr, path string) *ClipServer {
	tb.Helper()
	c := &ClipServer{shutdown: 2 * time.Second}
	c.start(tb, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) }))
	return c
}

func (c *ClipServer) start(tb testing.TB, addr string, h http.Handler) {
	tb.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	c.Addr = ln.Addr().String()
	c.release, c.drop = make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/cam.avi", h)
	c.srv = &http.Server{Handler: mux}
	go func() { _ = c.srv.Serve(ln) }()
	tb.Cleanup(c.Stop)
}

func (c *ClipServer) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "video/x-msvideo")
	w.Header().Set("Content-Length", strconv.Itoa(len(c.clip)))
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if c.Stall.Load() {
		c.Stalled.Add(1)
		_, _ = w.Write(c.clip[:min(int(c.Partial.Load()), len(c.clip))])
		if fl != nil {
			fl.Flush()
		}
		// Hold the connection open, sending nothing, until the test ends.
		select {
		case <-c.release:
		case <-c.drop:
		case <-r.Context().Done():
		}
		return
	}
	c.Normal.Add(1)
	const chunk = 32 << 10
	for off := 0; off < len(c.clip); off += chunk {
		if _, err := w.Write(c.clip[off:min(off+chunk, len(c.clip))]); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		select { // pace: about 1.5 MB/s
		case <-time.After(20 * time.Millisecond):
		case <-c.release:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// DropStalled closes the stalled connections (a camera that reboots).
func (c *ClipServer) DropStalled() { c.dropOnce.Do(func() { close(c.drop) }) }

// Stop stops the server: stalled and paced responses end, and the server
// shuts down (gracefully, within 5s for StartClipServer and 2s for
// ServeClipFile, then by closing the connections). Later calls do nothing.
func (c *ClipServer) Stop() {
	c.stopOnce.Do(func() {
		close(c.release)
		ctx, cancel := context.WithTimeout(context.Background(), c.shutdown)
		defer cancel()
		_ = c.srv.Shutdown(ctx)
		c.srv.Close()
	})
}
