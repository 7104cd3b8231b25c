package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/fixtures"
	"github.com/yedge/yedge/internal/testmodels"
)

// reloadLog collects the daemon's output for concurrent reads.
type reloadLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *reloadLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *reloadLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// reloadStatus is the part of /status the reload tests read.
type reloadStatus struct {
	Models []struct{ Precision, Path string } `json:"models"`
	Reload *struct {
		Result, Error string
		Changed       []string
	} `json:"reload"`
	Errors []struct{ Class, Error string } `json:"last_errors"`
}

// TestServeReload: SIGHUP reloads that cannot be applied (a model of
// another network, a half-written model, a missing file, a YAML syntax
// error) leave the daemon serving exactly as it was, each refusal shown in
// /status (reload and last_errors) and counted in
// yedge_reload_total{result="rejected"}; a good model then reloads as a
// diff (models only: the stream keeps running).
func TestServeReload(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (about 40s)")
	}
	dir := t.TempDir()
	data, err := os.ReadFile(fixtures.Model(t, "yolov5n-qdq-torch.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	oldModel, newModel := filepath.Join(dir, "int8-a.onnx"), filepath.Join(dir, "int8-b.onnx")
	if err := os.WriteFile(oldModel, data, 0o644); err != nil {
		t.Fatal(err)
	}
	halfWritten := filepath.Join(dir, "half.onnx")
	if err := os.WriteFile(halfWritten, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	cfgPath := filepath.Join(dir, "yedge.yaml")
	write := func(text string) {
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := func(int8 string) string {
		return fmt.Sprintf(`listen: %s
model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 2
streams:
  - name: file
    uri: %s
    loop: true
canary:
  frames: 3
shutdown_timeout: 10s
`, listen, fixtures.Model(t, "yolov5n.onnx"), int8, fixtures.Path(t, "media", "vtest.avi"))
	}
	write(config(oldModel))
	cmd := exec.Command(binPath, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "YEDGE_ORT_LIB="+filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1"))
	logs := &reloadLog{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("yedge log:\n%s", logs.String())
		}
	}()
	ready := func() bool {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	inferred := func() float64 {
		v, _ := metricValue(scrape(listen), `yedge_frames_inferred_total{precision="int8",stream="file"}`)
		return v
	}
	reloads := func(result string) float64 {
		v, _ := metricValue(scrape(listen), `yedge_reload_total{result="`+result+`"}`)
		return v
	}
	status := func() reloadStatus {
		var st reloadStatus
		resp, err := http.Get("http://" + listen + "/status")
		if err != nil {
			return st
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st
	}
	int8Path := func(st reloadStatus) string {
		for _, m := range st.Models {
			if m.Precision == "int8" {
				return m.Path
			}
		}
		return ""
	}
	waitFor(t, "/readyz", 60*time.Second, ready)
	waitFor(t, "first frames", 30*time.Second, func() bool { return inferred() > 0 })

	for i, tc := range []struct {
		name, config, reason string
	}{
		{"a single Relu (NCHW image in and out)", config(testmodels.SingleOp(t, "Relu", 1, 3, 640, 640)), "YOLOv5-shaped"},
		{"an Identity on a YOLOv5 output shape", config(testmodels.SingleOp(t, "Identity", 1, 25200, 85)), "NCHW image"},
		{"the network cut after its first Conv", config(testmodels.WrongOutput(t, fixtures.Model(t, "yolov5n.onnx"))), "YOLOv5-shaped"},
		{"a half-written model", config(halfWritten), "half.onnx"},
		{"a missing model file", config(filepath.Join(dir, "missing.onnx")), "missing.onnx"},
		{"a YAML syntax error", config(oldModel) + "streams: [\n", "invalid YAML"},
	} {
		write(tc.config)
		_ = cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, tc.name+": the refusal in yedge_reload_total", 60*time.Second, func() bool { return reloads("rejected") == float64(i+1) })
		st := status()
		if st.Reload == nil || st.Reload.Result != "rejected" || !strings.Contains(st.Reload.Error, tc.reason) {
			t.Errorf("%s: /status reload = %+v, want rejected with %q", tc.name, st.Reload, tc.reason)
		}
		if n := len(st.Errors); n == 0 || st.Errors[n-1].Class != "reload" {
			t.Errorf("%s: /status last_errors = %+v, want a reload error last", tc.name, st.Errors)
		}
		if p := int8Path(st); p != oldModel {
			t.Errorf("%s: int8 model after the refused reload: %q, want %q", tc.name, p, oldModel)
		}
		before := inferred()
		waitFor(t, tc.name+": the running pipeline to keep serving", 30*time.Second, func() bool { return inferred() > before+2 && ready() })
	}
	if n := strings.Count(logs.String(), "model ready"); n != 2 {
		t.Errorf("%d \"model ready\" lines after the refused reloads, want 2 (nothing reloaded)", n)
	}

	// A good model, complete by atomic rename: only the int8 model
	// changes; it is loaded beside the serving one, runs as a canary and
	// is swapped in when it passes.
	if err := os.WriteFile(newModel+".tmp", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newModel+".tmp", newModel); err != nil {
		t.Fatal(err)
	}
	write(config(newModel))
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload on the good model", 60*time.Second, func() bool { return reloads("applied") == 1 })
	st := status()
	if st.Reload == nil || st.Reload.Result != "applied" || strings.Join(st.Reload.Changed, ",") != "int8 model (canary)" {
		t.Errorf("/status reload = %+v, want applied, changed [int8 model (canary)]", st.Reload)
	}
	waitFor(t, "the new model promoted by its canary", 60*time.Second, func() bool { return int8Path(status()) == newModel })
	if strings.Contains(logs.String(), "stream opened") && strings.Count(logs.String(), "stream opened") != 1 {
		t.Errorf("the stream was reopened by a models-only reload")
	}
	before := inferred()
	waitFor(t, "frames on the new model", 30*time.Second, func() bool { return inferred() > before })

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
}

// TestServeFlagsOverrideConfig: global flags given on the command line win
// over the file, the start-up log states the effective values, and an
// explicit provider that is absent is exit 4, as in every command.
func TestServeFlagsOverrideConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "yedge.yaml")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 2
streams:
  - name: file
    uri: %s
`, fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), fixtures.Path(t, "media", "vtest.avi"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "YEDGE_ORT_LIB="+filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1"))

	// --threads 1 over the file's 2: the start-up log says threads=1.
	cmd := exec.Command(binPath, "serve", "--config", cfgPath, "--threads", "1")
	cmd.Env = env
	logs := &reloadLog{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	waitFor(t, "the start-up log", 60*time.Second, func() bool { return strings.Contains(logs.String(), "msg=starting") })
	line := logs.String()
	line = line[strings.Index(line, "msg=starting"):]
	line = line[:strings.IndexByte(line+"\n", '\n')]
	for _, want := range []string{"provider=cpu", "threads=1", "fp32=" + fixtures.Model(t, "yolov5n.onnx")} {
		if !strings.Contains(line, want) {
			t.Errorf("start-up log %q lacks %q", line, want)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()

	// --provider tensorrt where TensorRT is absent: exit 4, one line.
	var out bytes.Buffer
	bad := exec.Command(binPath, "serve", "--config", cfgPath, "--provider", "tensorrt")
	bad.Env, bad.Stdout, bad.Stderr = env, &out, &out
	err := bad.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitRuntime {
		t.Fatalf("--provider tensorrt: %v, want exit %d\n%s", err, exitRuntime, out.String())
	}
	if !strings.Contains(out.String(), "tensorrt") || !strings.Contains(out.String(), "not available") {
		t.Errorf("--provider tensorrt output lacks the reason:\n%s", out.String())
	}
}
