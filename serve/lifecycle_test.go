package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/yedge/yedge/config"
	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/internal/testkit/testmodels"
	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/plan"
	"github.com/yedge/yedge/serve"
)

// lcDaemon is a daemon of the lifecycle tests.
type lcDaemon struct {
	srv    *serve.Server
	addr   string
	logs   *testdaemon.SyncBuffer
	cancel context.CancelFunc
	done   chan error
}

// lcPlan builds a plan from YAML without preparing it (no quantization
// here: the daemon does it in the background).
func lcPlan(t *testing.T, yaml string) *plan.Daemon {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	d, err := plan.Build(cfg, plan.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onnxrt.Init(d.Library, d.LibraryConfig); err != nil {
		t.Fatal(err)
	}
	return d
}

func lcStart(t *testing.T, p serve.Plan, prepare func(context.Context, func(int, int)) (serve.ModelFile, error)) *lcDaemon {
	t.Helper()
	logs := &testdaemon.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := serve.New(ctx, p, serve.Options{Logger: log, Version: "test", Prepare: prepare})
	if err != nil {
		cancel()
		t.Fatalf("serve.New: %v", err)
	}
	d := &lcDaemon{srv: srv, addr: srv.Addr(), logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("daemon log (tail):\n%s", ftTail(logs.String(), 8000))
		}
	})
	return d
}

func (d *lcDaemon) stop(t *testing.T) {
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("Run did not return within 60s")
	}
}

// lcStatus is the part of /status these tests read.
type lcStatus struct {
	Models []struct {
		Precision string `json:"precision"`
		SHA256    string `json:"sha256"`
		Serving   bool   `json:"serving"`
	} `json:"models"`
	Lifecycle struct {
		Phase       string `json:"phase"`
		Calibration *struct {
			Done, Total int
		} `json:"calibration"`
		Build *struct {
			Seconds float64 `json:"seconds"`
		} `json:"build"`
		Last *struct {
			Model, Source, Result, Reason string
			Frames                        int
			Recall, Precision             float64
		} `json:"last_decision"`
		Streams map[string]struct {
			Precision, Model string
		} `json:"streams"`
		Store *struct {
			Dir      string `json:"dir"`
			Promoted string `json:"promoted"`
		} `json:"store"`
	} `json:"lifecycle"`
}

func (d *lcDaemon) status(t *testing.T) lcStatus {
	t.Helper()
	var st lcStatus
	resp, err := http.Get("http://" + d.addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// inferred is yedge_frames_inferred_total of a precision, summed over the
// streams, as a scrape reads it.
func (d *lcDaemon) inferred(precision string) int64 {
	fams, err := d.srv.Metrics().Registry.Gather()
	if err != nil {
		panic(err)
	}
	var n float64
	for _, f := range fams {
		if f.GetName() != metrics.NameFramesInferred {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "precision" && l.GetValue() == precision {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int64(n)
}

// lcWait polls cond every 100ms until it holds, failing after timeout.
func lcWait(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sinkRecord is the part of a sink record these tests read.
type sinkRecord struct {
	Stream    string `json:"stream"`
	Frame     int64  `json:"frame"`
	Precision string `json:"precision"`
}

// readSink reads the jsonl sink's records.
func readSink(t *testing.T, path string) []sinkRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []sinkRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var r sinkRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("sink line %d: %v", len(out)+1, err)
		}
		out = append(out, r)
	}
	return out
}

// checkContiguous checks that the stream's frame indices have no gap and
// no repeat, and returns the precisions in order, run-length encoded.
func checkContiguous(t *testing.T, recs []sinkRecord) []string {
	t.Helper()
	var runs []string
	for i, r := range recs {
		if i > 0 && r.Frame != recs[i-1].Frame+1 {
			t.Errorf("frame %d follows frame %d: a frame was lost or repeated", r.Frame, recs[i-1].Frame)
		}
		if len(runs) == 0 || runs[len(runs)-1] != r.Precision {
			runs = append(runs, r.Precision)
		}
	}
	return runs
}

// TestStartupServesFP32ThenInt8 quantizes at start-up: FP32 serves the
// first frames while the int8 model is calibrated in the background; the
// int8 model runs as a canary and is swapped in between two frames (the
// folder stream's frame indices in the sink stay contiguous). A restart
// with the same config and state folder serves the store's promoted model
// without calibrating again.
func TestStartupServesFP32ThenInt8(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes a model")
	}
	dir := t.TempDir()
	sink := filepath.Join(dir, "detections.jsonl")
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  quantize:
    calib: %s
    images: 8
    target: cpu
    cache_dir: %s
provider:
  name: cpu
  threads: 2
streams:
  - name: cam
    uri: %s
    loop: true
shadow:
  every_n: 2
# 8 calibration images make a coarser model than yedge quantize's 128:
# the canary's bar is lower here (the test is about the swap).
canary:
  frames: 10
  min_recall: 0.6
  min_precision: 0.6
state_dir: %s
sinks:
  - type: jsonl
    path: %s
    flush_interval: 200ms
`, fixtures.Model(t, "yolov5n.onnx"), fixtures.Path(t, "datasets", "coco-calib128", "images"), filepath.Join(dir, "quant"),
		fixtures.Path(t, "datasets", "coco-val128", "images"), filepath.Join(dir, "state"), sink)
	pd := lcPlan(t, yaml)
	log := slog.New(slog.DiscardHandler)

	t0 := time.Now()
	d := lcStart(t, pd.Serve, pd.Background(log))
	lcWait(t, "the first FP32 frame", 60*time.Second, func() bool { return d.inferred("fp32") > 0 })
	first := time.Since(t0)
	if n := d.inferred("int8"); n != 0 {
		t.Fatalf("%d int8 frames before the first FP32 one", n)
	}
	resp, err := http.Get("http://" + d.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz %d while FP32 serves, want 200", resp.StatusCode)
	}
	var st lcStatus
	lcWait(t, "the int8 model promoted", 5*time.Minute, func() bool {
		st = d.status(t)
		return st.Lifecycle.Last != nil && st.Lifecycle.Last.Result != ""
	})
	toInt8 := time.Since(t0)
	if l := st.Lifecycle.Last; l.Result != "promoted" || l.Source != "startup" {
		t.Fatalf("start-up decision %+v, want promoted", *l)
	}
	if c := st.Lifecycle.Calibration; c == nil || c.Done != 8 || c.Total != 8 {
		t.Errorf("calibration progress %+v, want 8/8", c)
	}
	fp32Frames := d.inferred("fp32")
	lcWait(t, "int8 frames", 60*time.Second, func() bool { return d.inferred("int8") >= 5 })
	if s := st.Lifecycle.Streams["cam"]; s.Precision != "int8" || len(s.Model) != 12 {
		t.Errorf("stream serves %+v, want int8 with a short hash", s)
	}
	if st.Lifecycle.Store == nil || st.Lifecycle.Store.Promoted == "" {
		t.Errorf("store %+v, want a promoted model", st.Lifecycle.Store)
	}
	promoted := st.Lifecycle.Store.Promoted
	d.stop(t)

	recs := readSink(t, sink)
	runs := checkContiguous(t, recs)
	if len(runs) != 2 || runs[0] != "fp32" || runs[1] != "int8" {
		t.Errorf("precisions in frame order %v, want [fp32 int8]", runs)
	}
	t.Logf("first detection (FP32) %.2fs after start; int8 promoted %.2fs after start (canary recall %.3f precision %.3f on %d frames); %d FP32 frames served meanwhile; %d sink records, frame indices contiguous across the swap (0 lost, 0 repeated)",
		first.Seconds(), toInt8.Seconds(), st.Lifecycle.Last.Recall, st.Lifecycle.Last.Precision, st.Lifecycle.Last.Frames, fp32Frames, len(recs))

	// A restart: the store's promoted model serves, no calibration.
	if err := os.Remove(sink); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	d2 := lcStart(t, pd.Serve, pd.Background(log))
	lcWait(t, "the stored model restored", 2*time.Minute, func() bool {
		st = d2.status(t)
		return st.Lifecycle.Last != nil
	})
	if l := st.Lifecycle.Last; l.Result != "restored" || st.Lifecycle.Calibration != nil {
		t.Errorf("after a restart: decision %+v, calibration %+v; want restored without calibration", *l, st.Lifecycle.Calibration)
	}
	if st.Lifecycle.Store.Promoted != promoted {
		t.Errorf("promoted model after a restart %s, want %s", st.Lifecycle.Store.Promoted, promoted)
	}
	t.Logf("restart: int8 serves %.2fs after start without calibrating", time.Since(t1).Seconds())
}

// TestPushAndCanary pushes the shared Q/DQ model with POST /models while
// FP32 serves: it passes the canary and is swapped in seamlessly. Then a
// reload (SIGHUP's path) brings a broken Q/DQ model (activation scales x50):
// the canary rejects it, the serving model stays, and the store keeps it
// with the reason.
func TestPushAndCanary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three models")
	}
	dir := t.TempDir()
	sink := filepath.Join(dir, "detections.jsonl")
	qdq := fixtures.Model(t, "yolov5n-qdq-torch.onnx")
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 2
streams:
  - name: cam
    uri: %s
    loop: true
shadow:
  every_n: 2
canary:
  frames: 6
state_dir: %s
sinks:
  - type: jsonl
    path: %s
    flush_interval: 200ms
`, fixtures.Model(t, "yolov5n.onnx"), qdq, fixtures.Path(t, "datasets", "coco-val128", "images"), filepath.Join(dir, "state"), sink)
	pd := lcPlan(t, yaml)
	p := pd.Serve
	p.Models.Int8 = serve.ModelFile{} // FP32 serves, nothing prepared
	d := lcStart(t, p, nil)
	lcWait(t, "FP32 frames", 60*time.Second, func() bool { return d.inferred("fp32") > 2 })

	body, err := os.ReadFile(qdq)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+d.addr+"/models", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /models: %d", resp.StatusCode)
	}
	pushed := time.Now()
	var st lcStatus
	lcWait(t, "the canary decision on the pushed model", 3*time.Minute, func() bool {
		st = d.status(t)
		return st.Lifecycle.Last != nil
	})
	if l := st.Lifecycle.Last; l.Result != "promoted" || l.Source != "push" {
		t.Fatalf("pushed model: decision %+v, want promoted", *l)
	}
	m, err := onnx.Load(qdq)
	if err != nil {
		t.Fatal(err)
	}
	good := m.SHA256()
	if st.Models[0].SHA256 != good || !st.Models[0].Serving {
		t.Errorf("serving model %+v, want %s", st.Models[0], good)
	}
	t.Logf("pushed model promoted %.2fs after POST /models (canary recall %.3f precision %.3f)",
		time.Since(pushed).Seconds(), st.Lifecycle.Last.Recall, st.Lifecycle.Last.Precision)
	lcWait(t, "int8 frames", 60*time.Second, func() bool { return d.inferred("int8") > 3 })

	// A broken model through the reload path.
	broken := testmodels.ScaledActivations(t, qdq, 50)
	bm, err := onnx.Load(broken)
	if err != nil {
		t.Fatal(err)
	}
	next := p
	next.Models.Int8 = serve.ModelFile{Path: broken, SHA256: bm.SHA256()}
	ch, err := d.srv.Reload(context.Background(), next)
	if err != nil || !ch.Int8 {
		t.Fatalf("reload: %+v %v", ch, err)
	}
	lcWait(t, "the canary decision on the broken model", 3*time.Minute, func() bool {
		st = d.status(t)
		return st.Lifecycle.Last != nil && st.Lifecycle.Last.Source == "reload"
	})
	l := st.Lifecycle.Last
	if l.Result != "rejected" || l.Reason == "" {
		t.Fatalf("broken model: decision %+v, want rejected with a reason", *l)
	}
	if st.Models[0].SHA256 != good {
		t.Errorf("serving model after the rejection %s, want %s (unchanged)", st.Models[0].SHA256, good)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "models", bm.SHA256()+".rejected.json")); err != nil {
		t.Errorf("the rejected model's reason is not in the store: %v", err)
	}
	t.Logf("broken model rejected: %s", l.Reason)
	before := d.inferred("int8")
	lcWait(t, "int8 frames after the rejection", 60*time.Second, func() bool { return d.inferred("int8") > before+2 })

	// A reload that changes the FP32 model and brings another broken int8
	// model: FP32 swaps at once, the new int8 model still runs as a canary
	// and is rejected, the good int8 model keeps serving.
	fp32Copy := filepath.Join(dir, "fp32-copy.onnx")
	data, err := os.ReadFile(fixtures.Model(t, "yolov5n.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fp32Copy, data, 0o644); err != nil {
		t.Fatal(err)
	}
	broken2 := testmodels.ScaledActivations(t, qdq, 80)
	bm2, err := onnx.Load(broken2)
	if err != nil {
		t.Fatal(err)
	}
	next2 := next
	next2.Models.FP32.Path = fp32Copy
	next2.Models.Int8 = serve.ModelFile{Path: broken2, SHA256: bm2.SHA256()}
	ch, err = d.srv.Reload(context.Background(), next2)
	if err != nil || !ch.Models || !ch.Int8 {
		t.Fatalf("reload of both models: %+v %v", ch, err)
	}
	lcWait(t, "the canary decision on the second broken model", 3*time.Minute, func() bool {
		st = d.status(t)
		return st.Lifecycle.Last != nil && st.Lifecycle.Last.Model == bm2.SHA256()[:12]
	})
	if l := st.Lifecycle.Last; l.Result != "rejected" {
		t.Errorf("second broken model: decision %+v, want rejected", *l)
	}
	if st.Models[0].SHA256 != good {
		t.Errorf("serving int8 model after a reload of both models %s, want %s (unchanged until a canary passes)", st.Models[0].SHA256, good)
	}
	before = d.inferred("int8")
	lcWait(t, "int8 frames after the second rejection", 60*time.Second, func() bool { return d.inferred("int8") > before+2 })
	d.stop(t)
	runs := checkContiguous(t, readSink(t, sink))
	if len(runs) != 2 || runs[0] != "fp32" || runs[1] != "int8" {
		t.Errorf("precisions in frame order %v, want [fp32 int8]", runs)
	}
}

// TestPushModelGuarded: POST /models and /models/rollback take the token
// as POST /eval does, the model's own size limit applies, and a refused
// push leaves nothing in the store.
func TestPushModelGuarded(t *testing.T) {
	if testing.Short() {
		t.Skip("loads two models")
	}
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 2
streams:
  - name: cam
    uri: %s
state_dir: %s
http:
  token_file: %s
  max_model_bytes: 1000
`, fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), fixtures.Path(t, "datasets", "coco-val128", "images"),
		filepath.Join(dir, "state"), token)
	d := lcStart(t, lcPlan(t, yaml).Serve, nil)
	post := func(path, tok string, body []byte) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+d.addr+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, path, token string
		body              []byte
		want              int
	}{
		{"no token", "/models", "", []byte("x"), http.StatusUnauthorized},
		{"wrong token", "/models", "nope", []byte("x"), http.StatusUnauthorized},
		{"too large", "/models", "s3cret", make([]byte, 2000), http.StatusRequestEntityTooLarge},
		{"rollback without token", "/models/rollback", "", nil, http.StatusUnauthorized},
		{"rollback with no history", "/models/rollback", "s3cret", nil, http.StatusConflict},
	} {
		if got := post(tc.path, tc.token, tc.body); got != tc.want {
			t.Errorf("%s: POST %s = %d, want %d", tc.name, tc.path, got, tc.want)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "state", "models"))
	if err != nil || len(entries) != 0 {
		t.Errorf("store after refused pushes: %v %v, want empty", entries, err)
	}
}
