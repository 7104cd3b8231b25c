package serve_test

// Fault-injection tests of the daemon, run in-process on the shared
// fixtures: a stalled network source, corrupt video files, a model file
// rewritten while serving, a full disk under a sink, and /metrics under
// concurrent load. Helpers here are prefixed ft (faults) so that they do
// not collide with other test files of the package.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/serve"
	"github.com/yedge/yedge/source"
)

// ftFileStream is a streams: section with one looping video file.
func ftFileStream(tb testing.TB) string {
	return fmt.Sprintf("streams:\n  - name: cam\n    uri: %s\n    loop: true\n", fixtures.Path(tb, "media", "vtest.avi"))
}

// ftDaemon is a daemon running in this process.
type ftDaemon struct {
	tb     testing.TB
	srv    *serve.Server
	cfg    serve.Plan
	addr   string
	logs   *testdaemon.SyncBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// ftStart starts the daemon on cfg (listen 127.0.0.1:0 unless the config
// says otherwise) with its log captured, and stops it at the end of the
// test.
func ftStart(tb testing.TB, cfg serve.Plan) *ftDaemon {
	tb.Helper()
	logs := &testdaemon.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := serve.New(ctx, cfg, serve.Options{Logger: log, Version: "test"})
	if err != nil {
		cancel()
		tb.Fatalf("serve.New: %v", err)
	}
	d := &ftDaemon{tb: tb, srv: srv, cfg: cfg, addr: srv.Addr(), logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- srv.Run(ctx) }()
	tb.Cleanup(func() {
		d.stop()
		if tb.Failed() {
			tb.Logf("daemon log (tail):\n%s", ftTail(logs.String(), 6000))
		}
	})
	return d
}

// stop stops the daemon and checks that Run returns cleanly in bounded time.
func (d *ftDaemon) stop() {
	d.once.Do(func() {
		d.cancel()
		select {
		case err := <-d.done:
			if err != nil {
				d.tb.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			d.tb.Errorf("Run did not return within 30s of cancellation")
		}
	})
}

func ftTail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// metrics scrapes /metrics (nil on failure).
func (d *ftDaemon) metrics() testdaemon.Samples { return testdaemon.Scrape(nil, d.addr) }

// metric is one series of /metrics (0 when absent).
func (d *ftDaemon) metric(name string, kv ...string) float64 {
	v, _ := d.metrics().Value(name, kv...)
	return v
}

// inferred is yedge_frames_inferred_total of a stream at int8.
func (d *ftDaemon) inferred(stream string) float64 {
	return d.metric("yedge_frames_inferred_total", "stream", stream, "precision", "int8")
}

// ftStatus is the part of /status the tests read.
type ftStatus struct {
	Ready   bool `json:"ready"`
	Streams []struct {
		Name       string `json:"name"`
		Source     string `json:"source"`
		Up         bool   `json:"up"`
		Frames     int64  `json:"frames_read"`
		Reconnects int64  `json:"reconnects"`
		LastError  string `json:"last_error"`
	} `json:"streams"`
	Errors []struct {
		Error string `json:"error"`
	} `json:"last_errors"`
	Pending []string `json:"pending_restart"`
}

func (d *ftDaemon) status() (ftStatus, string) {
	var st ftStatus
	body, _ := testdaemon.GetStatus(nil, d.addr, &st)
	return st, body
}

// waitRising waits until the int8 frames inferred of every named stream
// grew by at least n, and fails after timeout.
func (d *ftDaemon) waitRising(what string, n float64, timeout time.Duration, streams ...string) {
	d.tb.Helper()
	base := map[string]float64{}
	for _, s := range streams {
		base[s] = d.inferred(s)
	}
	testdaemon.Wait(d.tb, what, timeout, func() bool {
		m := d.metrics()
		for _, s := range streams {
			v, _ := m.Value("yedge_frames_inferred_total", "stream", s, "precision", "int8")
			if v < base[s]+n {
				return false
			}
		}
		return true
	})
}

// TestFaultStalledSource: an HTTP camera that sends part of a clip and
// then nothing more, keeping the connection open. With read_timeout 1s
// the stall is detected, the stream goes down and reconnects; once the
// camera sends normally again the stream comes back up.
func TestFaultStalledSource(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection with the daemon (about 20s)")
	}
	dir := t.TempDir()
	clipPath := filepath.Join(dir, "cam.avi")
	testdaemon.MakeClip(t, clipPath, 60)
	clip, err := os.ReadFile(clipPath)
	if err != nil {
		t.Fatal(err)
	}
	cam := testdaemon.StartClipServer(t, clip, len(clip)*2/5)
	cam.Stall.Store(true)

	cfg := testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: web
    uri: http://%s/cam.avi
    read_timeout: 1s
    reconnect:
      min_backoff: 200ms
      max_backoff: 1s
shadow:
  every_n: 10
shutdown_timeout: 5s
`, testdaemon.Models(t, 2), cam.Addr))
	d := ftStart(t, cfg)

	// The partial clip gives frames, then the source stalls: the stall is
	// detected, the stream goes down and reconnects (to a camera that
	// stalls again).
	testdaemon.Wait(t, "frames from the partial clip", 30*time.Second, func() bool {
		return d.metric("yedge_frames_read_total", "stream", "web") > 0
	})
	testdaemon.Wait(t, "the stall to be detected (yedge_stream_up 0, read stalled in /status)", 20*time.Second, func() bool {
		st, _ := d.status()
		return len(st.Streams) == 1 && !st.Streams[0].Up && strings.Contains(st.Streams[0].LastError, "stalled") &&
			d.metric("yedge_stream_up", "stream", "web") == 0
	})
	rec := d.metric("yedge_stream_reconnects_total", "stream", "web")
	testdaemon.Wait(t, "reconnects while the camera stalls", 20*time.Second, func() bool {
		return d.metric("yedge_stream_reconnects_total", "stream", "web") >= rec+1 && cam.Stalled.Load() >= 2
	})
	if !strings.Contains(d.logs.String(), "read stalled") {
		t.Error("the stall is not in the log")
	}

	// Now the camera stalls before the container header is complete: the
	// open itself stalls. It is bounded too, so the stall is reported and
	// reconnect attempts go on (FFmpeg alone waits 30s in such an open).
	// The abandoned open still holds OpenCV's process-wide FFmpeg open lock
	// until FFmpeg gives up, so the next attempts only reach the camera
	// then: count the attempts, not the connections.
	cam.Partial.Store(1000)
	rec = d.metric("yedge_stream_reconnects_total", "stream", "web")
	testdaemon.Wait(t, "reconnect attempts while the camera stalls during the open", 25*time.Second, func() bool {
		return d.metric("yedge_stream_reconnects_total", "stream", "web") >= rec+2
	})
	// FFmpeg's own socket timeout (the read timeout) usually ends the open
	// first ("sent no video within 1s"); else the open's bound does.
	stallErr := func(e string) bool {
		return strings.Contains(e, "opening took longer") || strings.Contains(e, "sent no video")
	}
	if st, _ := d.status(); len(st.Streams) != 1 || st.Streams[0].Up || !stallErr(st.Streams[0].LastError) {
		t.Errorf("stream status during an open stall: %+v", st.Streams)
	}

	// The camera recovers: the stream comes back up and frames flow again.
	cam.Stall.Store(false)
	cam.DropStalled()
	read := d.metric("yedge_frames_read_total", "stream", "web")
	testdaemon.Wait(t, "the stream to come back up after the camera recovered", 30*time.Second, func() bool {
		m := d.metrics()
		up, _ := m.Value("yedge_stream_up", "stream", "web")
		n, _ := m.Value("yedge_frames_read_total", "stream", "web")
		return cam.Normal.Load() > 0 && up == 1 && n > read
	})
	d.waitRising("inference on the recovered stream", 3, 30*time.Second, "web")
	st, _ := d.status()
	t.Logf("stalled responses %d, normal %d, stream %+v", cam.Stalled.Load(), cam.Normal.Load(), st.Streams)
}

// ftDamage returns a copy of data with a few random bytes overwritten every
// ~50 KB after the first 64 KB (the AVI header and first frames).
func ftDamage(data []byte, seed uint64) []byte {
	out := bytes.Clone(data)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for off := 64 << 10; off < len(out); off += 40<<10 + r.IntN(20<<10) {
		for k := 0; k < 16 && off+k < len(out); k++ {
			out[off+k] = byte(r.IntN(256))
		}
	}
	return out
}

// TestFaultCorruptFrames: a truncated copy (first 60%) and a byte-damaged
// copy of vtest.avi, and the same of a short MJPG clip made from it (so
// that the truncation is reached within seconds of real-time playback), as
// looping file streams beside a healthy one: every stream keeps producing
// inferred frames, the daemon does not crash and the healthy stream is
// unaffected.
func TestFaultCorruptFrames(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection with the daemon (about 25s)")
	}
	dir := t.TempDir()
	orig, err := os.ReadFile(fixtures.Path(t, "media", "vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	clipPath := filepath.Join(dir, "clip.avi")
	const clipFrames = 40
	testdaemon.MakeClip(t, clipPath, clipFrames)
	clip, err := os.ReadFile(clipPath)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"truncated":      orig[:len(orig)*6/10],
		"damaged":        ftDamage(orig, 1),
		"clip-truncated": clip[:len(clip)*6/10],
		"clip-damaged":   ftDamage(clip, 2),
	}
	names := []string{"truncated", "damaged", "clip-truncated", "clip-damaged"}
	paths := map[string]string{}
	for _, n := range names {
		paths[n] = filepath.Join(dir, n+".avi")
		if err := os.WriteFile(paths[n], files[n], 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The source layer alone, as fast as it decodes: each file is read
	// through its truncation or damage and loops (two passes and more).
	for _, n := range names {
		spec, err := source.Parse(paths[n])
		if err != nil {
			t.Fatal(err)
		}
		spec.Loop = true
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		src, err := source.Open(ctx, spec, slog.New(slog.DiscardHandler))
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", n, err)
		}
		m := gocv.NewMat()
		loops, want := 0, 2
		var last time.Duration
		for i := 0; loops < want; i++ {
			f, err := src.Read(ctx, &m)
			if err != nil {
				t.Errorf("%s: frame %d: %v", n, i, err)
				break
			}
			if m.Empty() || m.Cols() != 768 || m.Rows() != 576 {
				t.Errorf("%s: frame %d is %dx%d", n, i, m.Cols(), m.Rows())
				break
			}
			if f.PTS < last {
				loops++
			}
			last = f.PTS
		}
		m.Close()
		src.Close()
		cancel()
	}

	var streams strings.Builder
	fmt.Fprintf(&streams, "  - name: healthy\n    uri: %s\n    loop: true\n", fixtures.Path(t, "media", "vtest.avi"))
	for _, n := range names {
		fmt.Fprintf(&streams, "  - name: %s\n    uri: %s\n    loop: true\n", n, paths[n])
	}
	cfg := testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
%sshadow:
  every_n: 10
shutdown_timeout: 5s
`, testdaemon.Models(t, 2), streams.String()))
	d := ftStart(t, cfg)
	started := time.Now()
	all := append([]string{"healthy"}, names...)
	d.waitRising("first frames of every stream", 1, 25*time.Second, all...)
	// Over several seconds every stream keeps going; the short clips pass
	// their truncation or damage (24 frames at 10 fps) and loop.
	d.waitRising("frames inferred rising on every stream", 2, 25*time.Second, all...)
	testdaemon.Wait(t, "the truncated clip to loop past its truncation", 10*time.Second, func() bool {
		return d.metric("yedge_frames_read_total", "stream", "clip-truncated") > clipFrames*6/10+5
	})
	d.waitRising("frames inferred rising on every stream after the clips looped", 1, 15*time.Second, all...)
	m := d.metrics()
	for _, n := range all {
		if v, _ := m.Value("yedge_stream_up", "stream", n); v != 1 {
			t.Errorf("stream %s is down", n)
		}
	}
	if v, _ := m.Value("yedge_stream_reconnects_total", "stream", "healthy"); v != 0 {
		t.Errorf("the healthy stream reconnected %v times", v)
	}
	for _, s := range m {
		if s.Name == "yedge_frames_failed_total" && s.Value > 0 {
			t.Errorf("frames failed: %v = %v", s.Labels, s.Value)
		}
	}
	if code, _, err := testdaemon.Get(nil, d.addr, "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz: %d %v", code, err)
	}
	// Files play in real time (10 fps), across loops too: a stream that
	// decodes as fast as it can would take CPU from the others.
	limit := 10*time.Since(started).Seconds()*1.5 + 10
	for _, s := range m {
		if s.Name == "yedge_frames_read_total" && s.Value > limit {
			t.Errorf("stream %s read %.0f frames in %v: not paced at 10 fps", s.Labels["stream"], s.Value, time.Since(started).Round(time.Second))
		}
	}
	for _, n := range all {
		t.Logf("%s: inferred %.0f, read %.0f, skipped %.0f, reconnects %.0f", n, d.inferred(n),
			d.metric("yedge_frames_read_total", "stream", n), d.metric("yedge_frames_skipped_total", "stream", n),
			d.metric("yedge_stream_reconnects_total", "stream", n))
	}
}

// ftCopy copies a file, for a model the test may rewrite.
func ftCopy(tb testing.TB, from, to string) []byte {
	tb.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return data
}

// TestFaultModelRewritten: a model file replaced on disk while the daemon
// runs. serve.CheckModels (what a reload runs before restarting the
// pipeline) refuses the file while it is half-written, at any point of a
// non-atomic copy, the running server keeps serving meanwhile, and once
// the new file is complete (atomic rename) the check passes.
func TestFaultModelRewritten(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection with the daemon (about 15s)")
	}
	dir := t.TempDir()
	int8Path := filepath.Join(dir, "int8.onnx")
	fp32Path := filepath.Join(dir, "fp32.onnx")
	int8Data := ftCopy(t, fixtures.Model(t, "yolov5n-qdq-torch.onnx"), int8Path)
	fp32Data := ftCopy(t, fixtures.Model(t, "yolov5n.onnx"), fp32Path)
	cfg := testdaemon.Plan(t, "listen: 127.0.0.1:0\n"+testdaemon.ModelsYAML(fp32Path, int8Path, 2)+ftFileStream(t)+"shutdown_timeout: 5s\n")
	d := ftStart(t, cfg)
	d.waitRising("first frames", 1, 30*time.Second, "cam")
	if err := serve.CheckModels(context.Background(), cfg, nil); err != nil {
		t.Fatalf("CheckModels on the complete models: %v", err)
	}

	for _, m := range []struct {
		name, path string
		data       []byte
	}{{"int8", int8Path, int8Data}, {"fp32", fp32Path, fp32Data}} {
		// A copy in progress over the model: truncated, then written
		// piece by piece. Every prefix on the way is refused.
		f, err := os.OpenFile(m.path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		written := 0
		for _, frac := range []float64{0, 0.001, 0.1, 0.5, 0.9, 0.999} {
			n := int(float64(len(m.data)) * frac)
			if _, err := f.Write(m.data[written:n]); err != nil {
				t.Fatal(err)
			}
			written = n
			if err := serve.CheckModels(context.Background(), cfg, nil); err == nil {
				t.Errorf("%s: CheckModels accepted the model half-written (%d of %d bytes)", m.name, n, len(m.data))
			} else if frac == 0.5 {
				t.Logf("%s half-written: %v", m.name, err)
			}
			if frac == 0.5 {
				// The running server keeps serving while the file is
				// being rewritten.
				d.waitRising("inference while the model file is half-written", 2, 20*time.Second, "cam")
				for _, p := range []string{"/healthz", "/readyz", "/status"} {
					if code, _, err := testdaemon.Get(nil, d.addr, p); err != nil || code != http.StatusOK {
						t.Errorf("%s while the model is half-written: %d %v", p, code, err)
					}
				}
			}
		}
		f.Close()
		// The complete new file arrives by atomic rename.
		tmp := m.path + ".tmp"
		if err := os.WriteFile(tmp, m.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, m.path); err != nil {
			t.Fatal(err)
		}
		if err := serve.CheckModels(context.Background(), cfg, nil); err != nil {
			t.Errorf("%s: CheckModels after the atomic rename: %v", m.name, err)
		}
	}
	d.waitRising("inference after the models were replaced", 2, 20*time.Second, "cam")
	if v := d.metric("yedge_frames_failed_total"); v != 0 {
		t.Errorf("frames failed: %v", v)
	}
}

// TestFaultSinkDiskFull: a jsonl sink whose file is a symlink to /dev/full
// (every write fails with ENOSPC): the errors are counted and reported,
// detection goes on, and another sink keeps writing.
func TestFaultSinkDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection with the daemon (about 10s)")
	}
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	dir := t.TempDir()
	full := filepath.Join(dir, "full.jsonl")
	if err := os.Symlink("/dev/full", full); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.jsonl")
	cfg := testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: cam
    uri: %s
    loop: true
sinks:
  - type: jsonl
    path: %s
    flush_interval: 100ms
  - type: jsonl
    path: %s
    flush_interval: 100ms
shutdown_timeout: 5s
`, testdaemon.Models(t, 2), fixtures.Path(t, "media", "vtest.avi"), full, good))
	d := ftStart(t, cfg)
	fullName, goodName := "jsonl:"+full, "jsonl:"+good
	testdaemon.Wait(t, "yedge_sink_errors_total of the full sink", 30*time.Second, func() bool {
		return d.metric("yedge_sink_errors_total", "sink", fullName) > 0
	})
	testdaemon.Wait(t, "the sink error in /status last_errors", 10*time.Second, func() bool {
		st, _ := d.status()
		for _, e := range st.Errors {
			if strings.Contains(e.Error, fullName) && strings.Contains(e.Error, "no space left on device") {
				return true
			}
		}
		return false
	})
	if !strings.Contains(d.logs.String(), "sink write failed") {
		t.Error("the sink error is not in the log")
	}
	errs := d.metric("yedge_sink_errors_total", "sink", fullName)
	d.waitRising("detection while the sink's disk is full", 3, 30*time.Second, "cam")
	testdaemon.Wait(t, "more sink errors as records keep coming", 10*time.Second, func() bool {
		return d.metric("yedge_sink_errors_total", "sink", fullName) > errs
	})
	testdaemon.Wait(t, "the healthy sink to keep writing", 10*time.Second, func() bool {
		return d.metric("yedge_sink_records_total", "sink", goodName) > 0
	})
	if code, _, err := testdaemon.Get(nil, d.addr, "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("/readyz with a full sink: %d %v", code, err)
	}
	nerrs := d.metric("yedge_sink_errors_total", "sink", fullName)
	d.stop()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("healthy sink line %d is not JSON: %q", i, l)
		}
	}
	t.Logf("full sink: %.0f errors; healthy sink: %d records", nerrs, len(lines))
}

// TestFaultMetricsScrapeLoad: 200 concurrent clients scrape /metrics for
// 10s while detection runs: every scrape succeeds and detection goes on.
// Latency is only reported here (BenchmarkMetricsScrapeLoad reports it as
// metrics); it is not asserted.
func TestFaultMetricsScrapeLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test with the daemon (about 20s)")
	}
	d := ftStart(t, testdaemon.Plan(t, "listen: 127.0.0.1:0\n"+testdaemon.Models(t, 2)+ftFileStream(t)+"shutdown_timeout: 5s\n"))
	d.waitRising("first frames", 1, 30*time.Second, "cam")
	before := d.inferred("cam")
	res := ftScrapeLoad(d.addr, 200, 10*time.Second)
	after := d.inferred("cam")
	t.Logf("%d scrapes in %v (%.0f/s), status %v, errors %d, p50 %.1f ms, p99 %.1f ms, max %.1f ms; frames inferred during the load %.0f",
		len(res.lat), res.elapsed.Round(time.Millisecond), float64(len(res.lat))/res.elapsed.Seconds(), res.codes, len(res.errs),
		res.quantile(0.5), res.quantile(0.99), res.quantile(1), after-before)
	if len(res.errs) > 0 {
		t.Errorf("%d scrapes failed, first: %v", len(res.errs), res.errs[0])
	}
	for code, n := range res.codes {
		if code != http.StatusOK {
			t.Errorf("%d scrapes answered %d", n, code)
		}
	}
	if res.codes[http.StatusOK] < 200 {
		t.Errorf("only %d scrapes succeeded", res.codes[http.StatusOK])
	}
	if after-before < 2 {
		t.Errorf("detection stalled under the scrape load: %.0f frames inferred in %v", after-before, res.elapsed)
	}
	d.waitRising("detection after the load", 2, 20*time.Second, "cam")
}

// ftHungCamera is an HTTP "camera" that answers 200 with a multipart
// MJPEG header and then sends nothing, keeping every connection open
// until the test ends.
func ftHungCamera(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "--frame\r\nContent-Type: image/jpeg\r\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() {
		close(release)
		_ = srv.Close()
	})
	return "http://" + ln.Addr().String() + "/video.mjpg"
}

// TestFaultHungSourceHoldsNothing: a camera that hangs after its headers
// and a FIFO given as a video stream, beside a video file. The file's
// stream runs; a file stream added by a reload opens and runs too; the
// hung camera and the FIFO are counted in yedge_errors_total{class=
// "stream"} and named in last_errors (the FIFO refused up front, the
// camera as timed out); and the daemon stops within shutdown_timeout + 1s.
func TestFaultHungSourceHoldsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection with the daemon (about 20s)")
	}
	dir := t.TempDir()
	video := filepath.Join(dir, "vtest.avi")
	ftCopy(t, fixtures.Path(t, "media", "vtest.avi"), video)
	fifo := filepath.Join(dir, "cam.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	hung := ftHungCamera(t)
	streams := fmt.Sprintf(`streams:
  - name: hung
    uri: %s
    read_timeout: 3s
    reconnect:
      max_backoff: 2s
  - name: fifo
    uri: %s
  - name: file
    uri: %s
    loop: true
`, hung, fifo, video)
	base := fmt.Sprintf("listen: 127.0.0.1:0\n%sshutdown_timeout: 3s\n", testdaemon.Models(t, 1))
	d := ftStart(t, testdaemon.Plan(t, base+streams))
	d.waitRising("inference on the file stream beside the hung camera", 3, 60*time.Second, "file")

	// A reload adds a second file stream: it opens and runs although the
	// hung camera keeps reconnecting.
	next := testdaemon.Plan(t, base+streams+fmt.Sprintf("  - name: added\n    uri: %s\n    loop: true\n", video))
	if _, err := d.srv.Reload(context.Background(), next); err != nil {
		t.Fatalf("reload: %v", err)
	}
	d.waitRising("inference on the stream added by the reload", 3, 60*time.Second, "added")

	testdaemon.Wait(t, "the hung camera and the FIFO counted as stream errors", 30*time.Second, func() bool {
		return d.metric("yedge_errors_total", "class", "stream") >= 2
	})
	st, body := d.status()
	byName := map[string]string{}
	for _, s := range st.Streams {
		byName[s.Name] = s.LastError
	}
	if e := byName["fifo"]; !strings.Contains(e, "not a regular file (a FIFO)") {
		t.Errorf("fifo stream's error %q does not name the FIFO", e)
	}
	if e := byName["hung"]; !strings.Contains(e, "timed out") && !strings.Contains(e, "stalled") {
		t.Errorf("hung stream's error %q does not say it timed out", e)
	}
	var named int
	for _, e := range st.Errors {
		if strings.Contains(e.Error, "video.mjpg") || strings.Contains(e.Error, "cam.fifo") {
			named++
		}
	}
	if named == 0 {
		t.Errorf("last_errors names neither the hung camera nor the FIFO: %s", body)
	}

	// Shutdown is not held by the hung camera's open.
	t0 := time.Now()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		if took := time.Since(t0); took > 4*time.Second {
			t.Errorf("stopping took %v with a hung source, want within shutdown_timeout + 1s (4s)", took)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of cancellation")
	}
	d.once.Do(func() {})
}

// TestFaultReloadPendingAndEmptied: pending_restart lists exactly the
// restart-only keys that differ from the values the daemon started with
// (and is empty again once they are reverted), and a reload that removes
// every sink (a config cut short) warns, naming them.
func TestFaultReloadPendingAndEmptied(t *testing.T) {
	if testing.Short() {
		t.Skip("reloads of the daemon (about 10s)")
	}
	dir := t.TempDir()
	video := filepath.Join(dir, "vtest.avi")
	ftCopy(t, fixtures.Path(t, "media", "vtest.avi"), video)
	sink := filepath.Join(dir, "detections.jsonl")
	models := testdaemon.Models(t, 1)
	plan := func(listen, extra string) serve.Plan {
		return testdaemon.Plan(t, fmt.Sprintf("listen: %s\n%s%s", listen, models, extra))
	}
	full := fmt.Sprintf("streams:\n  - name: cam\n    uri: %s\n    loop: true\nsinks:\n  - type: jsonl\n    path: %s\n", video, sink)
	d := ftStart(t, plan("127.0.0.1:0", full))
	d.waitRising("inference", 2, 60*time.Second, "cam")

	reload := func(p serve.Plan) {
		t.Helper()
		if _, err := d.srv.Reload(context.Background(), p); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	pending := func() []string {
		st, _ := d.status()
		return st.Pending
	}
	reload(plan("127.0.0.1:1", full))
	if got := pending(); !slices.Equal(got, []string{"listen"}) {
		t.Errorf("pending_restart after changing listen = %v, want [listen]", got)
	}
	reload(plan("127.0.0.1:0", full))
	if got := pending(); len(got) != 0 {
		t.Errorf("pending_restart after reverting listen = %v, want none", got)
	}

	// The config cut short before its sinks (a config without streams
	// is refused: at least one is required).
	reload(plan("127.0.0.1:0", fmt.Sprintf("streams:\n  - name: cam\n    uri: %s\n    loop: true\n", video)))
	logs := d.logs.String()
	for _, want := range []string{"reload removed every sink", sink} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

// ftThreads is the process's OS thread count.
func ftThreads(tb testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// TestFaultReconnectsDoNotLeak: a stream on a camera that refuses every
// connection reconnects 50 more times, and one on a camera that accepts
// and then hangs 10 more times (each open abandoned after its read
// timeout); the daemon's goroutines and OS threads stay where they were
// after the first attempts, and every failed attempt is counted.
func TestFaultReconnectsDoNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection with the daemon (about 20s)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "rtsp://" + ln.Addr().String() + "/cam"
	ln.Close()
	for _, tc := range []struct {
		name, uri string
		more      float64
	}{
		{"refused", closed, 50},
		{"hung", ftHungCamera(t), 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: cam
    uri: %s
    read_timeout: 1s
    reconnect:
      min_backoff: 10ms
      max_backoff: 20ms
`, testdaemon.Models(t, 1), tc.uri))
			d := ftStart(t, cfg)
			reconnects := func() float64 { return d.metric("yedge_stream_reconnects_total", "stream", "cam") }
			testdaemon.Wait(t, "the first reconnect attempts", 60*time.Second, func() bool { return reconnects() >= 2 })
			g0, th0, e0 := runtime.NumGoroutine(), ftThreads(t), d.metric("yedge_errors_total", "class", "stream")
			base := reconnects()
			testdaemon.Wait(t, "more reconnect attempts", 120*time.Second, func() bool { return reconnects() >= base+tc.more })
			g1, th1 := runtime.NumGoroutine(), ftThreads(t)
			t.Logf("after %v more reconnects: goroutines %d -> %d, threads %d -> %d", reconnects()-base, g0, g1, th0, th1)
			// A leak adds a goroutine (and a thread blocked in C) per attempt.
			if g1 > g0+5 {
				t.Errorf("goroutines %d -> %d", g0, g1)
			}
			if th1 > th0+4 {
				t.Errorf("threads %d -> %d", th0, th1)
			}
			if n := d.metric("yedge_errors_total", "class", "stream") - e0; n < tc.more-1 {
				t.Errorf("yedge_errors_total{class=stream} grew by %v over %v attempts: want each counted", n, tc.more)
			}
			d.stop()
		})
	}
}
