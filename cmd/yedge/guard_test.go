package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/internal/testkit/testmodels"
	"github.com/yedge/yedge/onnx"
)

// TestServeGuardWithPrometheus starts the daemon with a broken int8 model
// (the shared Q/DQ model with its activation scales x50: it runs, its
// detections are garbage) and a short guard.for: the guard moves the
// stream to FP32, yedge_guard_fallback{stream} becomes 1, and the shipped
// YedgeInt8GuardFallback alert fires in a real Prometheus evaluating
// deploy/prometheus/alerts.yml. The stream keeps being served throughout,
// by FP32 after the fallback, and does not flap back.
func TestServeGuardWithPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus not installed (make setup installs Debian's prometheus)")
		}
		t.Skip("prometheus not installed")
	}
	dir := t.TempDir()
	broken := testmodels.ScaledActivations(t, fixtures.Model(t, "yolov5n-qdq-torch.onnx"), 50)
	listen := testdaemon.FreePort(t)
	sink := filepath.Join(dir, "detections.jsonl")
	cfgPath := filepath.Join(dir, "yedge.yaml")
	cfg := fmt.Sprintf(`listen: %s
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
  every_n: 1
  window: 20
guard:
  for: 2s
state_dir: %s
sinks:
  - type: jsonl
    path: %s
    flush_interval: 200ms
`, listen, fixtures.Model(t, "yolov5n.onnx"), broken, fixtures.Path(t, "datasets", "coco-val128", "images"), filepath.Join(dir, "state"), sink)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// Prometheus first, evaluating the shipped alerts every second.
	prom := testdaemon.FreePort(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	alerts := filepath.Join(fixtures.Root(), "deploy", "prometheus", "alerts.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: yedge
    static_configs:
      - targets: ['%s']
`, alerts, listen)), 0o644); err != nil {
		t.Fatal(err)
	}
	pc := exec.Command(promBin, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+prom, "--log.level=warn")
	var promLog bytes.Buffer
	pc.Stdout, pc.Stderr = &promLog, &promLog
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = pc.Process.Signal(syscall.SIGTERM)
		_ = pc.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	}()

	d := startServe(t, "--config", cfgPath)
	metric := func(series string) float64 {
		v, _ := testdaemon.Scrape(nil, listen).Series(series)
		return v
	}
	testdaemon.Poll(t, pollEvery, "int8 frames", 60*time.Second, func() bool { return metric(`yedge_frames_inferred_total{precision="int8",stream="cam"}`) > 0 })
	int8At := time.Now()
	testdaemon.Poll(t, pollEvery, "the guard's fallback", 60*time.Second, func() bool { return metric(`yedge_guard_fallback{stream="cam"}`) == 1 })
	reaction := time.Since(int8At)
	if v := metric(`yedge_serving_info{model="` + shortSHA(t, "yolov5n.onnx") + `",precision="fp32",stream="cam"}`); v != 1 {
		t.Errorf("yedge_serving_info of the FP32 model on cam = %v, want 1", v)
	}
	testdaemon.Poll(t, pollEvery, "YedgeInt8GuardFallback firing in Prometheus", 60*time.Second, func() bool {
		return promQuery(t, prom, `ALERTS{alertname="YedgeInt8GuardFallback",alertstate="firing"}`, "stream")["cam"] == 1
	})
	alertAfter := time.Since(int8At)
	fp32Before := metric(`yedge_frames_inferred_total{precision="fp32",stream="cam"}`)
	int8Before := metric(`yedge_frames_inferred_total{precision="int8",stream="cam"}`)
	testdaemon.Poll(t, pollEvery, "FP32 frames after the fallback", 30*time.Second, func() bool {
		return metric(`yedge_frames_inferred_total{precision="fp32",stream="cam"}`) > fp32Before+10
	})
	if v := metric(`yedge_frames_inferred_total{precision="int8",stream="cam"}`); v != int8Before {
		t.Errorf("int8 frames went on after the fallback: %v -> %v", int8Before, v)
	}
	if v := metric(`yedge_guard_transitions_total{stream="cam",to="fp32"}`); v != 1 {
		t.Errorf("yedge_guard_transitions_total{to=fp32} = %v, want 1 (no flapping)", v)
	}
	if v := metric(`yedge_guard_fallback{stream="cam"}`); v != 1 {
		t.Errorf("the stream left FP32 without a canary")
	}
	var st struct {
		Lifecycle struct {
			Streams map[string]struct {
				Precision string    `json:"precision"`
				Reason    string    `json:"guard_reason"`
				At        time.Time `json:"guard_at"`
			} `json:"streams"`
		} `json:"lifecycle"`
	}
	resp, err := http.Get("http://" + listen + "/status")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	cam := st.Lifecycle.Streams["cam"]
	if cam.Precision != "fp32" || cam.Reason == "" {
		t.Errorf("/status lifecycle cam = %+v, want fp32 with the guard's reason", cam)
	}

	d.term(t)
	// Served records: contiguous frames, int8 then FP32 for good.
	f, err := os.Open(sink)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var runs []string
	var prev int64 = -1
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var r struct {
			Frame     int64  `json:"frame"`
			Precision string `json:"precision"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if prev >= 0 && r.Frame != prev+1 {
			t.Errorf("frame %d follows frame %d", r.Frame, prev)
		}
		prev = r.Frame
		if len(runs) == 0 || runs[len(runs)-1] != r.Precision {
			runs = append(runs, r.Precision)
		}
		n++
	}
	if len(runs) != 2 || runs[0] != "int8" || runs[1] != "fp32" {
		t.Errorf("served precisions in frame order %v, want [int8 fp32]", runs)
	}
	t.Logf("guard fell back %.2fs after the first int8 frame (guard.for 2s, every frame shadowed; reason: %s); alert firing in Prometheus %.2fs after; %d records, frames contiguous",
		reaction.Seconds(), cam.Reason, alertAfter.Seconds(), n)
}

// shortSHA is the short content hash (yedge_serving_info's model label) of
// a shared model.
func shortSHA(t *testing.T, name string) string {
	t.Helper()
	m, err := onnx.Load(fixtures.Model(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return m.SHA256()[:12]
}
