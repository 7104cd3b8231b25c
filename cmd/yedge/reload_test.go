package main

import (
	"bytes"
	"encoding/json"
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

// TestServeReloadHalfWrittenModel: a SIGHUP that points the daemon at a
// new int8 model still being copied (half-written) is refused and the
// running pipeline keeps serving; once the file is complete (atomic
// rename), the next SIGHUP restarts the pipeline on it.
func TestServeReloadHalfWrittenModel(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (about 30s)")
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
	listen := freePort(t)
	cfgPath := filepath.Join(dir, "yedge.yaml")
	writeCfg := func(int8 string) {
		cfg := fmt.Sprintf(`listen: %s
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
shutdown_timeout: 10s
`, listen, fixtures.Model(t, "yolov5n.onnx"), int8, fixtures.Path(t, "media", "vtest.avi"))
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(oldModel)
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
		cmd.Process.Kill()
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
	int8Path := func() string {
		resp, err := http.Get("http://" + listen + "/status")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var st struct {
			Models []struct{ Precision, Path string } `json:"models"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		for _, m := range st.Models {
			if m.Precision == "int8" {
				return m.Path
			}
		}
		return ""
	}
	waitFor(t, "/readyz", 60*time.Second, ready)
	waitFor(t, "first frames", 30*time.Second, func() bool { return inferred() > 0 })

	// The new model is being copied: half of it is on disk.
	if err := os.WriteFile(newModel, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	writeCfg(newModel)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to refuse the half-written model", 30*time.Second, func() bool {
		return strings.Contains(logs.String(), "reload: model not usable")
	})
	before := inferred()
	waitFor(t, "the running pipeline to keep serving", 30*time.Second, func() bool { return inferred() > before+2 && ready() })
	if p := int8Path(); p != oldModel {
		t.Errorf("int8 model after the refused reload: %q, want %q", p, oldModel)
	}
	if n := strings.Count(logs.String(), "model ready"); n != 2 {
		t.Errorf("%d \"model ready\" lines after the refused reload, want 2 (no restart)", n)
	}

	// The copy completes by atomic rename; the next SIGHUP takes it.
	if err := os.WriteFile(newModel+".tmp", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newModel+".tmp", newModel); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the pipeline to restart on the complete model", 60*time.Second, func() bool {
		return int8Path() == newModel && ready()
	})
	before = inferred()
	waitFor(t, "frames on the new model", 30*time.Second, func() bool { return inferred() > before })

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
}
