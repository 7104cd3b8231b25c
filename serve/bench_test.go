package serve_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline/calib"
	"github.com/yedge/yedge/quant"
)

// ftLoadResult is the outcome of a scrape load.
type ftLoadResult struct {
	lat     []time.Duration // every completed scrape
	codes   map[int]int     // status -> count
	errs    []error         // transport errors
	elapsed time.Duration
}

// quantile returns the q-quantile of the latencies in milliseconds.
func (r ftLoadResult) quantile(q float64) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	i := min(len(s)-1, int(q*float64(len(s))))
	return float64(s[i].Microseconds()) / 1000
}

// ftScrapeLoad runs clients concurrent clients, each scraping /metrics in
// a loop (reading the whole body) for dur, and records every latency.
func ftScrapeLoad(addr string, clients int, dur time.Duration) ftLoadResult {
	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := "http://" + addr + "/metrics"
	var mu sync.Mutex
	res := ftLoadResult{codes: map[int]int{}}
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			codes := map[int]int{}
			var errs []error
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := c.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				lat = append(lat, time.Since(t0))
				codes[resp.StatusCode]++
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			for k, v := range codes {
				res.codes[k] += v
			}
			res.errs = append(res.errs, errs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// BenchmarkMetricsScrapeLoad: 200 concurrent clients scraping /metrics
// for 10s while one stream is being detected; reports the p50 and p99
// scrape latency and the scrape rate. Each b.N iteration is one 10s load.
//
//	go test -run '^$' -bench MetricsScrapeLoad -benchtime 1x ./serve
func BenchmarkMetricsScrapeLoad(b *testing.B) {
	d := ftStart(b, testdaemon.Plan(b, "listen: 127.0.0.1:0\n"+testdaemon.Models(b, 2)+ftFileStream(b)+"shutdown_timeout: 5s\n"))
	d.waitRising("first frames", 1, 30*time.Second, "cam")
	b.ResetTimer()
	var all ftLoadResult
	all.codes = map[int]int{}
	for i := 0; i < b.N; i++ {
		r := ftScrapeLoad(d.addr, 200, 10*time.Second)
		all.lat = append(all.lat, r.lat...)
		all.errs = append(all.errs, r.errs...)
		all.elapsed += r.elapsed
		for k, v := range r.codes {
			all.codes[k] += v
		}
	}
	b.StopTimer()
	b.ReportMetric(all.quantile(0.5), "p50-ms")
	b.ReportMetric(all.quantile(0.99), "p99-ms")
	b.ReportMetric(float64(len(all.lat))/all.elapsed.Seconds(), "scrapes/s")
	b.ReportMetric(float64(len(all.lat)-all.codes[http.StatusOK]+len(all.errs)), "failed")
	b.Logf("status %v, transport errors %d", all.codes, len(all.errs))
}

// ftQuantizeCPU makes the int8 model the daemon serves on CPU: the shared
// FP32 yolov5n quantized for the cpu target (QLinear fusion), mse
// calibrator, Detect head kept in float, on 8 calibration images.
func ftQuantizeCPU(tb testing.TB, out string) {
	tb.Helper()
	if _, err := onnxrt.Init("", ""); err != nil {
		tb.Fatalf("onnxruntime: %v", err)
	}
	m, err := onnx.Load(fixtures.Model(tb, "yolov5n.onnx"))
	if err != nil {
		tb.Fatal(err)
	}
	inputs, err := calib.NewImageInputs(fixtures.Path(tb, "datasets", "coco-calib128", "images"), 8, 640, 640)
	if err != nil {
		tb.Fatal(err)
	}
	defer inputs.Close()
	log := slog.New(slog.DiscardHandler)
	o := quant.Options{Target: quant.TargetCPU, Method: quant.MSE, KeepHead: true, Preprocess: inputs.Describe(), Logger: log}
	o.Calibrate.Runtime = onnxrt.Options{Provider: "cpu", Threads: 2, Quiet: true, Logger: log}
	o.Calibrate.Logger = log
	res, err := quant.Quantize(context.Background(), m, inputs, o)
	if err != nil {
		tb.Fatalf("quantize: %v", err)
	}
	if err := res.Model.Save(out); err != nil {
		tb.Fatal(err)
	}
}

// ftStreamsFPS runs a fresh daemon with the given number of image-folder
// streams and returns the int8 frames inferred per second of each stream
// over window, after a warm-up.
func ftStreamsFPS(b *testing.B, int8Path, images string, streams int, window time.Duration) (fps []float64, cpuPerFrame float64) {
	b.Helper()
	var sb strings.Builder
	names := make([]string, streams)
	for i := range names {
		names[i] = fmt.Sprintf("s%d", i)
		fmt.Fprintf(&sb, "  - name: %s\n    uri: %s\n    loop: true\n", names[i], images)
	}
	cfg := testdaemon.Plan(b, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
%sshadow:
  every_n: 10
shutdown_timeout: 10s
`, testdaemon.ModelsYAML(fixtures.Model(b, "yolov5n.onnx"), int8Path, 2), sb.String()))
	d := ftStart(b, cfg)
	defer d.stop()
	d.waitRising("warm-up frames", 10, 60*time.Second, names...)
	count := func() []float64 {
		m := d.metrics()
		out := make([]float64, streams)
		for i, n := range names {
			out[i], _ = m.Value("yedge_frames_inferred_total", "stream", n, "precision", "int8")
		}
		return out
	}
	read := func() float64 {
		v := 0.0
		for _, n := range names {
			v += d.metric("yedge_frames_read_total", "stream", n)
		}
		return v
	}
	c0, r0, cpu0, t0 := count(), read(), ftCPUTime(), time.Now()
	time.Sleep(window) // the measurement window
	c1, r1, cpu1, dt := count(), read(), ftCPUTime(), time.Since(t0)
	fps = make([]float64, streams)
	total := 0.0
	for i := range fps {
		fps[i] = (c1[i] - c0[i]) / dt.Seconds()
		total += c1[i] - c0[i]
	}
	cpuPerFrame = (cpu1 - cpu0).Seconds() * 1000 / max(total, 1)
	b.Logf("%d stream(s): int8 fps %.2f (total %.2f), frames decoded %.1f/s, process CPU %.0f%% of a core, %.1f CPU-ms per inferred frame",
		streams, fps, total/dt.Seconds(), (r1-r0)/dt.Seconds(), 100*(cpu1-cpu0).Seconds()/dt.Seconds(), cpuPerFrame)
	return fps, cpuPerFrame
}

// ftCPUTime is the CPU time (user and system) used by this process so far.
func ftCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStreams measures the throughput requirement: with the int8
// model from the quantizer (cpu target) on a 2-core machine, two streams
// each keep at least 80% of half the frame rate of one stream alone
// (ratio >= 0.8), with the FP32 shadow on every 10th frame. Sources are
// image folders (faster than inference, not paced); each configuration
// runs on a fresh daemon for about 20s. Run it once:
//
//	go test -run '^$' -bench Streams -benchtime 1x ./serve
func BenchmarkStreams(b *testing.B) {
	int8Path := filepath.Join(b.TempDir(), "int8-cpu.onnx")
	t0 := time.Now()
	ftQuantizeCPU(b, int8Path)
	b.Logf("quantized in %v", time.Since(t0).Round(time.Second))
	images := testdaemon.ImageFolder(b, 0, 20)
	const window = 20 * time.Second
	b.ResetTimer()
	var fps1, fps2, cpu1, cpu2 float64
	for i := 0; i < b.N; i++ {
		one, c1 := ftStreamsFPS(b, int8Path, images, 1, window)
		two, c2 := ftStreamsFPS(b, int8Path, images, 2, window)
		fps1 += one[0]
		fps2 += (two[0] + two[1]) / 2
		cpu1 += c1
		cpu2 += c2
	}
	b.StopTimer()
	n := float64(b.N)
	fps1, fps2 = fps1/n, fps2/n
	b.ReportMetric(fps1, "fps-1stream")
	b.ReportMetric(fps2, "fps-per-stream-2")
	b.ReportMetric(fps2/(fps1/2), "ratio")
	// On a shared machine the CPU a run gets varies: CPU time per inferred
	// frame does not, and its ratio is the frame-rate ratio that both
	// configurations would have with the same CPU.
	b.ReportMetric(cpu1/n, "cpu-ms/frame-1stream")
	b.ReportMetric(cpu2/n, "cpu-ms/frame-2streams")
	b.ReportMetric(cpu1/cpu2, "ratio-same-cpu")
}
