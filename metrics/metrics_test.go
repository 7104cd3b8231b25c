package metrics

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeStats is a Stats source for tests.
type fakeStats struct {
	mu      sync.Mutex
	streams []StreamStats
	sinks   []SinkStats
	daemon  DaemonStats
}

func (f *fakeStats) DaemonStats() DaemonStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.daemon
}

func (f *fakeStats) StreamStats() []StreamStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.streams)
	for i := range out {
		out[i].Inferred = maps.Clone(out[i].Inferred)
	}
	return out
}

func (f *fakeStats) SinkStats() []SinkStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sinks)
}

func (f *fakeStats) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.streams = slices.DeleteFunc(f.streams, func(s StreamStats) bool { return s.Name == name })
}

// touchAll gives every metric at least one series, for two streams.
func touchAll(m *Metrics) *fakeStats {
	fs := &fakeStats{sinks: []SinkStats{{Name: "jsonl", Written: 1, Errors: 1}}}
	fs.daemon = DaemonStats{Ready: true, Phase: PhaseServing, CalibDone: 8, CalibTotal: 8, LatencyRatio: 0.5,
		Models:  []ModelInfo{{PrecisionInt8, "yolov5n-int8.onnx", "abc", "tensorrt"}, {PrecisionFP32, "yolov5n.onnx", "def", "cuda"}},
		Eval:    []EvalStats{{Precision: PrecisionInt8, MAP50: 0.45, MAP50_95: 0.27, At: time.Unix(1.7e9, 0)}},
		Reloads: map[string]int64{"applied": 1}, Errors: map[string]int64{"stream": 1}, Canaries: map[string]int64{"promoted": 1},
		Busy: map[string]float64{StageInfer: 0.02}, Dropped: map[string]int64{"shadow": 1}}
	for _, s := range []string{"cam1", "cam2"} {
		for _, st := range []string{StageRead, StagePreprocess, StageInfer, StagePostprocess} {
			m.ObserveStage(s, PrecisionInt8, st, 4*time.Millisecond)
		}
		fs.streams = append(fs.streams, StreamStats{Name: s, Up: true, FramesRead: 1, FramesSkipped: 1, Reconnects: 1, ShadowFrames: 1,
			Inferred: map[string]int64{PrecisionInt8: 1}, Failed: map[string]int64{StageRead: 1}, Detections: map[string]int64{"person": 3},
			Agreement: &Agreement{Precision: 0.9, Recall: 0.95, MeanIoU: 0.8, ScoreDiff: 0.02, CountDiff: -0.1},
			Precision: PrecisionInt8, Model: "0123456789ab", Transitions: map[string]int64{PrecisionFP32: 1}})
	}
	m.Watch(fs)
	m.PipelineWait.WithLabelValues(StageInfer).Observe(0.001)
	return fs
}

func TestNewRegistersEveryName(t *testing.T) {
	m := New("v1.2.3", "deadbeef")
	touchAll(m)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var sawGo, sawProcess bool
	for _, mf := range mfs {
		name := mf.GetName()
		switch {
		case strings.HasPrefix(name, Namespace+"_"):
			got = append(got, name)
		case strings.HasPrefix(name, "go_"):
			sawGo = true
		case strings.HasPrefix(name, "process_"):
			sawProcess = true
		}
	}
	if !sawGo || !sawProcess {
		t.Errorf("go collector registered: %v, process collector registered: %v", sawGo, sawProcess)
	}
	want := Names()
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("gathered yedge_ families differ from Names():\n got %v\nwant %v", got, want)
	}
	for _, h := range Histograms() {
		if !slices.Contains(want, h) {
			t.Errorf("Histograms() lists %s, which Names() lacks", h)
		}
	}
	for _, name := range Names() {
		if n := testutil.CollectAndCount(m.Registry, name); n == 0 {
			t.Errorf("%s: no series", name)
		}
	}
	if n := testutil.CollectAndCount(m.Registry, NameBuildInfo); n != 1 {
		t.Errorf("%s: %d series, want 1", NameBuildInfo, n)
	}
}

func TestLintClean(t *testing.T) {
	m := New("v1.2.3", "deadbeef")
	touchAll(m)
	// Lint the whole registry (yedge_, go_ and process_ families).
	problems, err := testutil.GatherAndLint(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestNamingConventions(t *testing.T) {
	m := New("", "")
	touchAll(m)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, Namespace+"_") {
			continue
		}
		switch mf.GetType().String() {
		case "COUNTER":
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case "HISTOGRAM":
			if !strings.HasSuffix(name, "_seconds") {
				t.Errorf("histogram %s is not in seconds", name)
			}
		default:
			if strings.HasSuffix(name, "_total") {
				t.Errorf("non-counter %s ends in _total", name)
			}
		}
		for _, bad := range []string{"_ms", "millisecond", "_percent"} {
			if strings.Contains(name, bad) {
				t.Errorf("%s uses a non-base unit (%s)", name, bad)
			}
		}
	}
	// Empty version and revision become "unknown".
	if got := testutil.ToFloat64(m.BuildInfo.WithLabelValues("unknown", "unknown", runtime.Version())); got != 1 {
		t.Errorf("build info for unknown version = %v, want 1", got)
	}
}

func TestHistogramBuckets(t *testing.T) {
	m := New("v", "r")
	m.ObserveStage("cam1", PrecisionInt8, StageInfer, 12*time.Millisecond)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var bounds []float64
	for _, mf := range mfs {
		if mf.GetName() != NameStageSeconds {
			continue
		}
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
		if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c != 1 {
			t.Errorf("sample count %d, want 1", c)
		}
		if s := mf.GetMetric()[0].GetHistogram().GetSampleSum(); s < 0.0119 || s > 0.0121 {
			t.Errorf("sample sum %v, want 0.012 (seconds)", s)
		}
	}
	if !slices.Equal(bounds, StageBuckets()) {
		t.Errorf("buckets %v, want %v", bounds, StageBuckets())
	}
	for _, want := range []float64{0.001, 0.2} {
		if !slices.Contains(bounds, want) {
			t.Errorf("buckets %v lack %v", bounds, want)
		}
	}
}

func TestForgetStream(t *testing.T) {
	m := New("v", "r")
	fs := touchAll(m)
	before := testutil.CollectAndCount(m.Registry, Names()...)
	// The 4 stage histograms are deleted; the 16 series read from the
	// stream's stats (13, plus serving info, guard fallback and one guard
	// transition) vanish with the stream.
	n := m.ForgetStream("cam1")
	if n != 4 {
		t.Errorf("ForgetStream deleted %d series, want 4", n)
	}
	fs.remove("cam1")
	after := testutil.CollectAndCount(m.Registry, Names()...)
	if before-after != 20 {
		t.Errorf("series before %d, after %d, want 20 fewer", before, after)
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	cam2 := 0
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() != "stream" {
					continue
				}
				switch lp.GetValue() {
				case "cam1":
					t.Errorf("%s still has a cam1 series", mf.GetName())
				case "cam2":
					cam2++
				}
			}
		}
	}
	if cam2 != 20 {
		t.Errorf("cam2 has %d series left, want 20", cam2)
	}
	// Series without a stream label survive.
	for _, name := range []string{NameBuildInfo, NameModelInfo, NameLatencyRatio, NameEvalMAP50, NameSinkWritten, NameReady} {
		if testutil.CollectAndCount(m.Registry, name) == 0 {
			t.Errorf("%s lost its series", name)
		}
	}
	if n := m.ForgetStream("cam1"); n != 0 {
		t.Errorf("second ForgetStream deleted %d series, want 0", n)
	}
}

// TestDaemonStatsAtScrape: the daemon-wide series are what the owners say
// at the scrape, no more: a replaced model or a phase left leaves no
// stale series.
func TestDaemonStatsAtScrape(t *testing.T) {
	m := New("v", "r")
	fs := touchAll(m)
	fs.mu.Lock()
	fs.daemon.Models = []ModelInfo{{PrecisionFP32, "b.onnx", "222", "cpu"}}
	fs.daemon.Phase = PhaseCanary
	fs.mu.Unlock()
	if n := testutil.CollectAndCount(m.Registry, NameModelInfo); n != 1 {
		t.Errorf("model info series %d, want 1", n)
	}
	text := scrape(t, m)
	for _, want := range []string{`yedge_model_info{model="b.onnx",precision="fp32",provider="cpu",sha256="222"} 1`,
		`yedge_model_phase{phase="canary"} 1`, `yedge_model_phase{phase="serving"} 0`, `yedge_ready 1`,
		`yedge_reload_total{result="applied"} 1`, `yedge_int8_fp32_latency_ratio 0.5`} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// scrape returns the registry's text exposition.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

func TestHandlerConcurrentScrapes(t *testing.T) {
	m := New("v", "r")
	fs := touchAll(m)
	srv := httptest.NewServer(m.Handler(WithMaxRequestsInFlight(0)))
	defer srv.Close()
	// A second Handler on the same registry must not panic (the promhttp
	// error counter is already registered).
	_ = m.Handler()

	const scrapers = 8
	var wg sync.WaitGroup
	errs := make(chan error, scrapers)
	stop := make(chan struct{})
	go func() { // the pipeline keeps updating while we scrape
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			m.ObserveStage("cam1", PrecisionInt8, StageInfer, time.Duration(i%50)*time.Millisecond)
			fs.mu.Lock()
			fs.streams[0].Inferred[PrecisionInt8]++
			fs.mu.Unlock()
		}
	}()
	for range scrapers {
		wg.Go(func() {
			for range 5 {
				resp, err := http.Get(srv.URL)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- err
					return
				}
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), NameStageSeconds+"_bucket") {
					errs <- &scrapeError{resp.StatusCode}
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestHandlerServes(t *testing.T) {
	m := New("v", "r")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if !strings.Contains(rec.Body.String(), NameBuildInfo) {
		t.Errorf("body lacks %s", NameBuildInfo)
	}
}

type scrapeError struct{ code int }

func (e *scrapeError) Error() string { return "bad scrape, status " + http.StatusText(e.code) }
