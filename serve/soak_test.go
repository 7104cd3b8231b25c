//go:build matprofile

// The soak test needs gocv's Mat profile, which only counts Mats when gocv
// is built with -tags matprofile: make soak, or
//
//	go test -tags matprofile -run Soak -count=1 -timeout 15m ./serve
//
// With the tag, the tests of race_test.go check Mats too (soakMats).

package serve_test

import (
	"bytes"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
)

func init() { soakMats = func() int { return gocv.MatProfile.Count() } }

const (
	soakFrames     = 2000     // int8 frames inferred in all
	soakWarmFrames = 500      // frames before the first RSS reading
	soakMaxGrowth  = 64 << 20 // RSS growth allowed from soakWarmFrames to soakFrames
	soakTimeout    = 10 * time.Minute
)

// TestSoak runs the daemon in-process until it has inferred 2,000 int8
// frames, with an int8 model quantized at start-up (4 calibration images,
// CPU layout, MSE), two streams (an image folder at 30 frames/s, as a
// camera delivers them, and the pedestrian video played in real time at 10
// frames/s, both looping), the FP32
// shadow on every tenth frame, a JSON-lines sink, and a client
// reading /status and /metrics. It asserts that the resident set grows by
// less than 64 MiB from frame 500 to frame 2,000, and that once Run has
// returned no gocv Mat, goroutine or file descriptor is left over from
// before serve.New.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test (minutes)")
	}
	start := time.Now()
	fp32 := fixtures.Model(t, "yolov5n.onnx")
	calib := fixtures.Path(t, "datasets", "coco-calib128", "images")
	video := fixtures.Path(t, "media", "vtest.avi")
	folder := testdaemon.ImageFolder(t, 0, 20)
	tmp := t.TempDir()
	sink := filepath.Join(tmp, "detections.jsonl")
	// The folder is capped at 30 frames/s: uncapped, its reader decodes
	// JPEGs without a pause (most of them then skipped), a core of its own.
	cfg := testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  quantize:
    calib: %s
    images: 4
    target: cpu
    method: mse
    cache_dir: %s
provider:
  name: cpu
  threads: 2
streams:
  - name: folder
    uri: %s
    loop: true
    fps: 30
  - name: video
    uri: %s
    loop: true
shadow:
  every_n: 10
sinks:
  - type: jsonl
    path: %s
    max_size_mb: 1
    max_files: 2
    flush_interval: 200ms
shutdown_timeout: 10s
`, fp32, calib, filepath.Join(tmp, "quant"), folder, video, sink))

	// Baselines, before anything of the server exists. The goroutines of
	// the test framework and of earlier tests are ignored by the snapshot;
	// no other ignore is needed: onnxruntime's threads are not goroutines,
	// and the client's keep-alive connections are closed before the check.
	ignore := goleak.IgnoreCurrent()
	mats0 := gocv.MatProfile.Count()
	fds0 := soakFDs(t)
	goroutines0 := runtime.NumGoroutine()

	d := soakStart(t, cfg)
	addr := d.srv.Addr()
	started := time.Now()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	poller := startSoakPoller(client, addr, time.Second)

	var rss500, rss2000 int64
	var t500, t2000 time.Time
	var heap500, heap2000 uint64
	var f500, f2000 float64
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	var curve []string // RSS every 250 frames, to tell a plateau from a slope
	deadline := started.Add(soakTimeout)
	for {
		total, _ := soakInferred(t, d.srv.Metrics(), "int8")
		if total >= float64(250*(len(curve)+1)) {
			curve = append(curve, fmt.Sprintf("%.0f:%.1f", total, soakMiB(soakRSS(t))))
		}
		if t500.IsZero() && total >= soakWarmFrames {
			rss500, heap500, t500, f500 = soakRSS(t), heap(), time.Now(), total
			t.Logf("frame %.0f: RSS %.1f MiB, Go heap in use %.1f MiB, %v after Run started", total, soakMiB(rss500), soakMiB(int64(heap500)), t500.Sub(started).Round(time.Millisecond))
		}
		if total >= soakFrames {
			rss2000, heap2000, t2000, f2000 = soakRSS(t), heap(), time.Now(), total
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %.0f int8 frames after %v", total, soakTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fps := (f2000 - f500) / t2000.Sub(t500).Seconds()
	shadow, by := soakInferred(t, d.srv.Metrics(), "fp32")
	_, byInt8 := soakInferred(t, d.srv.Metrics(), "int8")
	t.Logf("frame %.0f: RSS %.1f MiB, Go heap in use %.1f MiB, %v after Run started", f2000, soakMiB(rss2000), soakMiB(int64(heap2000)), t2000.Sub(started).Round(time.Millisecond))
	t.Logf("RSS growth from frame %.0f to %.0f: %+.1f MiB (limit %d MiB); %.1f int8 frames/s; int8 frames %v, FP32 shadow frames %.0f %v; %d monitoring requests",
		f500, f2000, soakMiB(rss2000-rss500), soakMaxGrowth>>20, fps, byInt8, shadow, by, poller.requests.Load())
	t.Logf("RSS (MiB) by int8 frame: %s", strings.Join(curve, " "))
	if rss2000-rss500 >= soakMaxGrowth {
		t.Errorf("RSS grew by %.1f MiB from frame %.0f to %.0f (limit %d MiB)", soakMiB(rss2000-rss500), f500, f2000, soakMaxGrowth>>20)
	}
	if shadow == 0 {
		t.Error("no frame went through the FP32 shadow")
	}
	if err := poller.stop(); err != nil {
		t.Errorf("monitoring client: %v", err)
	}

	stopAt := time.Now()
	d.stop(t, time.Minute)
	t.Logf("Run returned %v after the cancel", time.Since(stopAt).Round(time.Millisecond))
	client.CloseIdleConnections()
	if n := soakCheckSink(t, sink); n == 0 {
		t.Error("no record in the sink")
	} else {
		t.Logf("%d records in the sink and its rotated files", n)
	}

	mats := gocv.MatProfile.Count()
	t.Logf("gocv Mats alive: %d before serve.New, %d after Run returned", mats0, mats)
	if mats != mats0 {
		var b bytes.Buffer
		_ = gocv.MatProfile.WriteTo(&b, 1)
		t.Errorf("%d Mats leaked; where the live ones were made:\n%s", mats-mats0, b.String())
	}
	goleak.VerifyNone(t, ignore)
	t.Logf("goroutines: %d before New, %d after Run returned", goroutines0, runtime.NumGoroutine())
	// The file descriptors of the sinks, the sources, the listener and the
	// connections are all closed (the shared libraries loaded by New are
	// mapped, not held open).
	if fds := soakFDs(t); fds != fds0 {
		t.Errorf("%d file descriptors open after Run returned, %d before New", fds, fds0)
	} else {
		t.Logf("file descriptors: %d before New, %d after Run returned", fds0, fds)
	}
	t.Logf("soak wall time %v (test start to checks done)", time.Since(start).Round(time.Second))
}

func soakMiB(b int64) float64 { return float64(b) / (1 << 20) }
