package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/fixtures"
)

// TestServeWatchConfigMap: serve --watch-config on a config laid out as a
// Kubernetes ConfigMap volume (yedge.yaml -> ..data/yedge.yaml, ..data ->
// a timestamped folder swapped on update) picks up a streams-only change
// without a signal and without reloading the models.
func TestServeWatchConfigMap(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (about 20s)")
	}
	fp32, int8 := fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx")
	video := fixtures.Path(t, "media", "vtest.avi")
	dir := t.TempDir()
	listen := freePort(t)
	gen := 0
	publish := func(streams ...string) { // as the kubelet updates a ConfigMap volume
		gen++
		ts := fmt.Sprintf("..2026_12_03_08_00_%02d.%d", gen, gen)
		if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("listen: %s\nmodel:\n  fp32: %s\n  int8: %s\n  batch: 1\nprovider:\n  name: cpu\n  threads: 1\nshadow:\n  every_n: 1000\nstreams:\n", listen, fp32, int8)
		for _, s := range streams {
			cfg += fmt.Sprintf("  - {name: %s, uri: %s, loop: true, fps: 2}\n", s, video)
		}
		if err := os.WriteFile(filepath.Join(dir, ts, "yedge.yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("a")
	cfgPath := filepath.Join(dir, "yedge.yaml")
	if err := os.Symlink("..data/yedge.yaml", cfgPath); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(binPath, "serve", "--config", cfgPath, "--watch-config")
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
	streams := func() []string {
		resp, err := http.Get("http://" + listen + "/status")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var st struct {
			Streams []struct{ Name string } `json:"streams"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&st)
		var names []string
		for _, s := range st.Streams {
			names = append(names, s.Name)
		}
		slices.Sort(names)
		return names
	}
	waitFor(t, "/readyz", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	publish("a", "b")
	waitFor(t, "the watcher to add stream b", 30*time.Second, func() bool { return slices.Equal(streams(), []string{"a", "b"}) })
	publish("b")
	waitFor(t, "the watcher to drop stream a", 30*time.Second, func() bool { return slices.Equal(streams(), []string{"b"}) })
	if n := strings.Count(logs.String(), "model ready"); n != 2 {
		t.Errorf("%d \"model ready\" lines, want 2: a streams-only change reloaded the models", n)
	}
	if n := strings.Count(logs.String(), "config file changed"); n != 2 {
		t.Errorf("%d reloads by the watcher, want 2", n)
	}

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("no exit within 20s of SIGTERM")
	}
}
