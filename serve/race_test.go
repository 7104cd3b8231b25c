package serve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/serve"
	"github.com/yedge/yedge/source"
)

// This file holds an in-process concurrency test of the daemon, meant to be
// run under the race detector (go test -race ./serve), and the helpers it
// shares with the soak test (soak_test.go, -tags matprofile). Helper names
// start with "soak" to stay clear of other test files of the package.

// soakMats counts the live gocv Mats; soak_test.go sets it when built with
// -tags matprofile (gocv's Mat profile), else it is nil and the tests here
// skip their Mat checks.
var soakMats func() int

// soakMatsLeft fails the test when Mats are alive that were not at the
// baseline.
func soakMatsLeft(t *testing.T, baseline int) {
	t.Helper()
	if soakMats == nil {
		return
	}
	// Fewer is possible: goroutines of earlier tests of the package (a
	// capture abandoned on a stalled read) may close theirs meanwhile.
	if n := soakMats(); n > baseline {
		t.Errorf("%d gocv Mats alive after Run returned, %d before New", n, baseline)
	}
}

// soakInferred reads yedge_frames_inferred_total from the registry: the
// total of one precision and the count per stream.
func soakInferred(t *testing.T, m *metrics.Metrics, precision string) (float64, map[string]float64) {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total, by := 0.0, map[string]float64{}
	for _, f := range fams {
		if f.GetName() != metrics.NameFramesInferred {
			continue
		}
		for _, x := range f.GetMetric() {
			var stream, prec string
			for _, l := range x.GetLabel() {
				switch l.GetName() {
				case "stream":
					stream = l.GetValue()
				case "precision":
					prec = l.GetValue()
				}
			}
			if prec == precision {
				total += x.GetCounter().GetValue()
				by[stream] += x.GetCounter().GetValue()
			}
		}
	}
	return total, by
}

// soakRSS is the resident set size of this process (VmRSS), in bytes.
func soakRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// soakFDs counts the open file descriptors of this process.
func soakFDs(t *testing.T) int {
	t.Helper()
	e, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(e)
}

// soakDaemon is a daemon running in-process.
type soakDaemon struct {
	srv    *serve.Server
	cancel context.CancelFunc
	done   chan error
	exited bool // Run has returned and stop has seen it
	log    *testdaemon.SyncBuffer
}

// soakStart creates the server (models loaded, address bound) and runs it.
func soakStart(t *testing.T, cfg serve.Plan) *soakDaemon {
	t.Helper()
	d := soakNew(t, cfg, slog.LevelInfo)
	d.run()
	return d
}

// soakNew creates the server without running it.
func soakNew(t *testing.T, cfg serve.Plan, level slog.Level) *soakDaemon {
	t.Helper()
	d := &soakDaemon{log: &testdaemon.SyncBuffer{}, done: make(chan error, 1)}
	logger := slog.New(slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: level}))
	srv, err := serve.New(context.Background(), cfg, serve.Options{Logger: logger, Version: "test"})
	if err != nil {
		t.Fatalf("serve.New: %v", err)
	}
	d.srv = srv
	// Registered after the test's temporary folders, so run before their
	// removal: a test that failed half-way stops its daemon first.
	t.Cleanup(func() {
		if d.cancel != nil && !d.exited {
			d.cancel()
			select {
			case err := <-d.done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(time.Minute):
				t.Error("Run did not return within a minute of the cancel")
			}
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	return d
}

// run runs the server until stop.
func (d *soakDaemon) run() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- d.srv.Run(ctx) }()
}

// stop cancels Run and waits for it to return.
func (d *soakDaemon) stop(t *testing.T, within time.Duration) {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		d.exited = true
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(within):
		t.Fatalf("Run did not return within %v of the cancel", within)
	}
}

// waitInferred polls the int8 frame count until cond holds on it.
func (d *soakDaemon) waitInferred(t *testing.T, what string, timeout time.Duration, cond func(total float64, by map[string]float64) bool) (float64, map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		total, by := soakInferred(t, d.srv.Metrics(), "int8")
		if cond(total, by) {
			return total, by
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (int8 frames %v)", timeout, what, by)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// soakStatus is the part of /status the tests read.
type soakStatus struct {
	Ready   bool `json:"ready"`
	Streams []struct {
		Name   string `json:"name"`
		Frames int64  `json:"frames_read"`
	} `json:"streams"`
	Eval map[string]struct {
		MAP5095 float64 `json:"map50_95"`
		Images  int     `json:"images"`
		Error   string  `json:"error"`
	} `json:"eval"`
	EvalBusy bool `json:"eval_running"`
}

// soakPoller hits /status, /metrics and /readyz in a loop, as monitoring
// does, until stopped; it records the first unexpected answer.
type soakPoller struct {
	stopc    chan struct{}
	done     chan struct{}
	requests atomic.Int64
	mu       sync.Mutex
	err      error
}

func startSoakPoller(c *http.Client, addr string, every time.Duration) *soakPoller {
	p := &soakPoller{stopc: make(chan struct{}), done: make(chan struct{})}
	fail := func(err error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.err == nil {
			p.err = err
		}
	}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stopc:
				return
			case <-time.After(every):
			}
			if _, err := testdaemon.GetStatus(c, addr, &soakStatus{}); err != nil {
				fail(err)
			}
			code, body, err := testdaemon.Get(c, addr, "/metrics")
			switch {
			case err != nil:
				fail(err)
			case code != http.StatusOK || !strings.Contains(body, metrics.NameReady):
				fail(fmt.Errorf("/metrics: %d, %d bytes", code, len(body)))
			}
			// /readyz is 503 until a stream is up: only the transport must work.
			if _, _, err := testdaemon.Get(c, addr, "/readyz"); err != nil {
				fail(err)
			}
			p.requests.Add(3)
		}
	}()
	return p
}

func (p *soakPoller) stop() error {
	close(p.stopc)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// soakCheckSink checks that every line of a JSON-lines sink is complete
// JSON and returns the number of records.
func soakCheckSink(t *testing.T, path string) int {
	t.Helper()
	files, _ := filepath.Glob(path + "*") // with the rotated files
	n := 0
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if !json.Valid(sc.Bytes()) {
				t.Errorf("%s: record %d is not complete JSON: %q", p, n, sc.Text())
			}
			n++
		}
		f.Close()
	}
	return n
}

// TestRaceServe runs the daemon in-process with everything that happens
// concurrently in production at once: two streams (a video file played in
// real time and an image folder at 20 frames/s), the FP32 shadow
// on every second frame, a client polling /status, /metrics and /readyz,
// two stream reloads (one stream replaced by another, one changed in place)
// while frames flow, and POST /eval on a 4-image dataset. It checks the
// results and that no goroutine outlives Run. Its purpose is
// `go test -race ./serve`: the race detector checks every access made.
func TestRaceServe(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process daemon test (about 30s, more under -race)")
	}
	video := fixtures.Path(t, "media", "vtest.avi")
	data := fixtures.Path(t, "datasets", "coco-val128")
	folder := testdaemon.ImageFolder(t, 0, 8)
	folder2 := testdaemon.ImageFolder(t, 8, 8)
	sink := filepath.Join(t.TempDir(), "detections.jsonl")
	stream := func(name, uri string, fps int) serve.StreamPlan {
		spec, err := source.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		spec.Loop = true
		return serve.StreamPlan{Name: name, Source: spec, FPS: float64(fps)}
	}
	cfg := testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: video
    uri: %s
    loop: true
  - name: folder
    uri: %s
    loop: true
    fps: 20
shadow:
  every_n: 2
eval:
  data: %s
  images: 4
  on_start: false
sinks:
  - type: jsonl
    path: %s
    flush_interval: 100ms
shutdown_timeout: 10s
`, testdaemon.Models(t, 2), video, folder, data, sink))
	// A reload passes the running plan with other streams.
	withStreams := func(list ...serve.StreamPlan) serve.Plan {
		p := cfg
		p.Streams = list
		return p
	}

	ignore := goleak.IgnoreCurrent()
	mats := 0
	if soakMats != nil {
		mats = soakMats()
	}
	d := soakStart(t, cfg)
	addr := d.srv.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr() = %q, want the bound port", addr)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	poller := startSoakPoller(client, addr, 20*time.Millisecond)

	d.waitInferred(t, "20 int8 frames from both streams", 3*time.Minute, func(total float64, by map[string]float64) bool {
		return total >= 20 && by["video"] > 0 && by["folder"] > 0
	})
	// Reload 1, from another goroutine (as the command's SIGHUP handling is)
	// while the evaluation starts: folder is replaced by folder2, video kept.
	reloaded := make(chan error, 1)
	go func() {
		reloaded <- reloadErr(d.srv.Reload(context.Background(), withStreams(stream("video", video, 0), stream("folder2", folder2, 20))))
	}()
	resp, err := client.Post("http://"+addr+"/eval", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /eval: %s", resp.Status)
	}
	if err := <-reloaded; err != nil {
		t.Fatalf("reload 1: %v", err)
	}
	// A second POST while the first runs is refused; once it is done, taken.
	resp, err = client.Post("http://"+addr+"/eval", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict && resp.StatusCode != http.StatusAccepted {
		t.Errorf("second POST /eval: %s, want 409 (or 202 if the first was done)", resp.Status)
	}
	total, _ := d.waitInferred(t, "frames from the new stream", 3*time.Minute, func(total float64, by map[string]float64) bool {
		return by["folder2"] >= 5
	})
	// Reload 2: video changes (a frame-rate cap) and restarts in place.
	if err := reloadErr(d.srv.Reload(context.Background(), withStreams(stream("video", video, 5), stream("folder2", folder2, 20)))); err != nil {
		t.Fatalf("reload 2: %v", err)
	}
	_, by := d.waitInferred(t, "60 int8 frames", 3*time.Minute, func(t2 float64, by map[string]float64) bool {
		return t2 >= max(60, total+10)
	})
	var st soakStatus
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st = soakStatus{}
		if _, err = testdaemon.GetStatus(client, addr, &st); err != nil {
			t.Fatal(err)
		}
		if !st.EvalBusy && len(st.Eval) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("evaluation not done after 3 minutes: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := poller.stop(); err != nil {
		t.Errorf("monitoring client: %v", err)
	}
	var names []string
	for _, s := range st.Streams {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"folder2", "video"}) {
		t.Errorf("/status streams after the reloads = %v, want [folder2 video]", names)
	}
	for prec, e := range st.Eval {
		if e.Error != "" || e.Images != 4 || e.MAP5095 <= 0 {
			t.Errorf("eval %s: %+v", prec, e)
		}
	}
	_, body, err := testdaemon.Get(client, addr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, `stream="folder"`) {
			t.Errorf("a metric of the removed stream is still exported: %s", l)
		}
	}
	shadow, _ := soakInferred(t, d.srv.Metrics(), "fp32")
	t.Logf("int8 frames by stream %v, fp32 shadow frames %v, %d monitoring requests, eval %+v", by, shadow, poller.requests.Load(), st.Eval)
	if shadow == 0 {
		t.Error("no frame went through the FP32 shadow")
	}

	d.stop(t, 30*time.Second)
	client.CloseIdleConnections()
	if n := soakCheckSink(t, sink); n == 0 {
		t.Error("no record in the sink")
	}
	// Every goroutine started since the snapshot (stream readers, the
	// processing loop, HTTP connections, the sink's flusher, the
	// evaluation) must be gone once Run has returned, and every Mat.
	goleak.VerifyNone(t, ignore)
	soakMatsLeft(t, mats)
}

// TestRaceReloadStartStop reloads streams and asks for evaluations
// without a pause from before Run starts until after it has returned, so
// that they meet the start-up (Run starting the configured streams) and the
// shutdown (Run stopping the streams and waiting for the evaluation). Every
// stream started must be stopped, nothing may race, no goroutine (and, with
// -tags matprofile, no Mat) may be left, and a stopped server must refuse
// reloads.
func TestRaceReloadStartStop(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process daemon test")
	}
	data := fixtures.Path(t, "datasets", "coco-val128")
	a, b := testdaemon.ImageFolder(t, 0, 2), testdaemon.ImageFolder(t, 2, 2)
	cfg := testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: a
    uri: %s
    loop: true
shadow:
  enabled: false
eval:
  data: %s
  images: 1
  on_start: false
`, testdaemon.Models(t, 1), a, data))
	one := cfg
	two := cfg
	bSpec, err := source.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	bSpec.Loop = true
	two.Streams = append(slices.Clone(cfg.Streams), serve.StreamPlan{Name: "b", Source: bSpec})

	ignore := goleak.IgnoreCurrent()
	mats := 0
	if soakMats != nil {
		mats = soakMats()
	}
	d := soakNew(t, cfg, slog.LevelWarn)
	addr := d.srv.Addr()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	stop := make(chan struct{})
	var reloads, evals atomic.Int64
	var wg sync.WaitGroup
	var pause sync.Mutex // held by the test to pause the reloads
	wg.Add(2)
	go func() { // SIGHUP after SIGHUP
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			list := one
			if i%2 == 1 {
				list = two
			}
			pause.Lock()
			if reloadErr(d.srv.Reload(context.Background(), list)) == nil {
				reloads.Add(1)
			}
			pause.Unlock()
		}
	}()
	go func() { // POST /eval after POST /eval
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			resp, err := client.Post("http://"+addr+"/eval", "text/plain", nil)
			if err != nil {
				continue // not serving yet, or any more
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				evals.Add(1)
			}
		}
	}()
	d.run()
	d.waitInferred(t, "a frame", time.Minute, func(total float64, _ map[string]float64) bool {
		return total > 0 && reloads.Load() > 10 && evals.Load() > 0
	})
	// Removing b while its frames are in flight: once Reload has
	// returned, no series of b may be left (or come back) in the metrics.
	pause.Lock()
	if err := reloadErr(d.srv.Reload(context.Background(), one)); err != nil {
		t.Fatal(err)
	}
	resurrected := 0
	for i := 0; i < 10; i++ {
		if err := reloadErr(d.srv.Reload(context.Background(), two)); err != nil {
			t.Fatal(err)
		}
		_, by := d.waitInferred(t, "a frame of b", time.Minute, func(_ float64, by map[string]float64) bool { return by["b"] > 0 })
		if i%2 == 1 {
			// The loop takes the streams in turn: after a frame of a,
			// one of b is likely in flight.
			a0 := by["a"]
			d.waitInferred(t, "a frame of a", time.Minute, func(_ float64, by map[string]float64) bool { return by["a"] > a0 })
		}
		if err := reloadErr(d.srv.Reload(context.Background(), one)); err != nil {
			t.Fatal(err)
		}
		// Two more frames of a: the batch in flight at the removal is done.
		_, by = soakInferred(t, d.srv.Metrics(), "int8")
		a0 := by["a"]
		if _, by = d.waitInferred(t, "frames of a", time.Minute, func(_ float64, by map[string]float64) bool { return by["a"] >= a0+2 }); by["b"] > 0 {
			resurrected++
		}
	}
	if resurrected > 0 {
		t.Errorf("in %d of 10 removals, stream b's metrics were exported after Reload had removed it", resurrected)
	}
	pause.Unlock()
	d.stop(t, 30*time.Second)
	time.Sleep(200 * time.Millisecond) // reloads and requests after Run has returned
	close(stop)
	wg.Wait()
	client.CloseIdleConnections()
	if err := reloadErr(d.srv.Reload(context.Background(), two)); err == nil {
		t.Error("Reload on a stopped server: no error (its streams would never be stopped)")
	}
	t.Logf("%d successful reloads, %d evaluations started", reloads.Load(), evals.Load())
	goleak.VerifyNone(t, ignore)
	soakMatsLeft(t, mats)
}

// reloadErr drops the change a reload reports.
func reloadErr(_ serve.Change, err error) error { return err }
