package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
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
	listen := testdaemon.FreePort(t)
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

	d := startServe(t, "--config", cfgPath, "--watch-config")
	client := &http.Client{Timeout: 10 * time.Second}
	streams := func() []string {
		var st struct {
			Streams []struct{ Name string } `json:"streams"`
		}
		if _, err := testdaemon.GetStatus(client, listen, &st); err != nil {
			return nil
		}
		var names []string
		for _, s := range st.Streams {
			names = append(names, s.Name)
		}
		slices.Sort(names)
		return names
	}
	testdaemon.Wait(t, "/readyz", 60*time.Second, func() bool {
		code, _, err := testdaemon.Get(client, listen, "/readyz")
		return err == nil && code == http.StatusOK
	})

	publish("a", "b")
	testdaemon.Wait(t, "the watcher to add stream b", 30*time.Second, func() bool { return slices.Equal(streams(), []string{"a", "b"}) })
	publish("b")
	testdaemon.Wait(t, "the watcher to drop stream a", 30*time.Second, func() bool { return slices.Equal(streams(), []string{"b"}) })
	if n := strings.Count(d.logs.String(), "model ready"); n != 2 {
		t.Errorf("%d \"model ready\" lines, want 2: a streams-only change reloaded the models", n)
	}
	if n := strings.Count(d.logs.String(), "config file changed"); n != 2 {
		t.Errorf("%d reloads by the watcher, want 2", n)
	}

	d.term(t)
}
