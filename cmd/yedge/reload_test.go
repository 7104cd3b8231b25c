package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/internal/testkit/testmodels"
)

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
	listen := testdaemon.FreePort(t)
	cfgPath := filepath.Join(dir, "yedge.yaml")
	write := func(text string) {
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := func(int8 string) string {
		return fmt.Sprintf(`listen: %s
%sstreams:
  - name: file
    uri: %s
    loop: true
canary:
  frames: 3
shutdown_timeout: 10s
`, listen, testdaemon.ModelsYAML(fixtures.Model(t, "yolov5n.onnx"), int8, 2), fixtures.Path(t, "media", "vtest.avi"))
	}
	write(config(oldModel))
	d := startServe(t, "--config", cfgPath)
	ready := func() bool {
		code, _, err := testdaemon.Get(nil, listen, "/readyz")
		return err == nil && code == http.StatusOK
	}
	inferred := func() float64 {
		v, _ := testdaemon.Scrape(nil, listen).Value("yedge_frames_inferred_total", "precision", "int8", "stream", "file")
		return v
	}
	reloads := func(result string) float64 {
		v, _ := testdaemon.Scrape(nil, listen).Value("yedge_reload_total", "result", result)
		return v
	}
	status := func() reloadStatus {
		var st reloadStatus
		_, _ = testdaemon.GetStatus(nil, listen, &st)
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
	testdaemon.Poll(t, pollEvery, "/readyz", 60*time.Second, ready)
	testdaemon.Poll(t, pollEvery, "first frames", 30*time.Second, func() bool { return inferred() > 0 })

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
		_ = d.cmd.Process.Signal(syscall.SIGHUP)
		testdaemon.Poll(t, pollEvery, tc.name+": the refusal in yedge_reload_total", 60*time.Second, func() bool { return reloads("rejected") == float64(i+1) })
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
		testdaemon.Poll(t, pollEvery, tc.name+": the running pipeline to keep serving", 30*time.Second, func() bool { return inferred() > before+2 && ready() })
	}
	if n := strings.Count(d.logs.String(), "model ready"); n != 2 {
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
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	testdaemon.Poll(t, pollEvery, "the reload on the good model", 60*time.Second, func() bool { return reloads("applied") == 1 })
	st := status()
	if st.Reload == nil || st.Reload.Result != "applied" || strings.Join(st.Reload.Changed, ",") != "int8 model (canary)" {
		t.Errorf("/status reload = %+v, want applied, changed [int8 model (canary)]", st.Reload)
	}
	testdaemon.Poll(t, pollEvery, "the new model promoted by its canary", 60*time.Second, func() bool { return int8Path(status()) == newModel })
	if strings.Contains(d.logs.String(), "stream opened") && strings.Count(d.logs.String(), "stream opened") != 1 {
		t.Errorf("the stream was reopened by a models-only reload")
	}
	before := inferred()
	testdaemon.Poll(t, pollEvery, "frames on the new model", 30*time.Second, func() bool { return inferred() > before })

	d.term(t)
}

// TestServeFlagsOverrideConfig: global flags given on the command line win
// over the file, the start-up log states the effective values, and an
// explicit provider that is absent is exit 4, as in every command.
func TestServeFlagsOverrideConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "yedge.yaml")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: file
    uri: %s
`, testdaemon.Models(t, 2), fixtures.Path(t, "media", "vtest.avi"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// --threads 1 over the file's 2: the start-up log says threads=1.
	d := startServe(t, "--config", cfgPath, "--threads", "1")
	testdaemon.Poll(t, pollEvery, "the start-up log", 60*time.Second, func() bool { return strings.Contains(d.logs.String(), "msg=starting") })
	line := d.logs.String()
	line = line[strings.Index(line, "msg=starting"):]
	line = line[:strings.IndexByte(line+"\n", '\n')]
	for _, want := range []string{"provider=cpu", "threads=1", "fp32=" + fixtures.Model(t, "yolov5n.onnx")} {
		if !strings.Contains(line, want) {
			t.Errorf("start-up log %q lacks %q", line, want)
		}
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-d.exited; err != nil { // not what this test checks
		t.Logf("exit after SIGTERM: %v", err)
	}

	// --provider tensorrt where TensorRT is absent: exit 4, one line.
	var out bytes.Buffer
	bad := exec.Command(binPath, "serve", "--config", cfgPath, "--provider", "tensorrt")
	bad.Env, bad.Stdout, bad.Stderr = ortEnv(), &out, &out
	err := bad.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitRuntime {
		t.Fatalf("--provider tensorrt: %v, want exit %d\n%s", err, exitRuntime, out.String())
	}
	if !strings.Contains(out.String(), "tensorrt") || !strings.Contains(out.String(), "not available") {
		t.Errorf("--provider tensorrt output lacks the reason:\n%s", out.String())
	}
}

// TestServeReloadProcessSettings: a SIGHUP that changes log_level applies
// it (the INFO line of the reload shows, where warn hid every INFO line
// before); one that changes onnxruntime.library, which the process loads
// once, is listed in /status pending_restart.
func TestServeReloadProcessSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (about 10s)")
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.Symlink(filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1"), lib); err != nil {
		t.Fatal(err)
	}
	listen := testdaemon.FreePort(t)
	cfgPath := filepath.Join(dir, "yedge.yaml")
	config := func(extra string) {
		text := fmt.Sprintf(`listen: %s
%sstreams:
  - name: file
    uri: %s
    loop: true
%s`, listen, testdaemon.ModelsYAML(fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), 1),
			fixtures.Path(t, "media", "vtest.avi"), extra)
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config("log_level: warn\n")
	d := startServe(t, "--config", cfgPath)
	testdaemon.Poll(t, pollEvery, "/readyz", 60*time.Second, func() bool {
		code, _, err := testdaemon.Get(nil, listen, "/readyz")
		return err == nil && code == http.StatusOK
	})
	if strings.Contains(d.logs.String(), "level=INFO") {
		t.Fatalf("INFO lines at log_level warn:\n%s", d.logs.String())
	}

	config("log_level: info\nonnxruntime:\n  library: " + lib + "\n")
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	var st struct {
		Pending []string `json:"pending_restart"`
		Reload  *struct{ Result string }
	}
	testdaemon.Poll(t, pollEvery, "the reload applied", 30*time.Second, func() bool {
		_, _ = testdaemon.GetStatus(nil, listen, &st)
		return st.Reload != nil && st.Reload.Result == "applied"
	})
	if got := strings.Join(st.Pending, ","); got != "onnxruntime.library" {
		t.Errorf("pending_restart = %q, want onnxruntime.library", got)
	}
	testdaemon.Poll(t, pollEvery, "the reload's INFO line (log_level info applied)", 10*time.Second, func() bool {
		return strings.Contains(d.logs.String(), "level=INFO msg=\"reload applied\"")
	})
	d.term(t)
}
