package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testmodels"
)

func TestConfigCheck(t *testing.T) {
	fixtures.Model(t, "yolov5n.onnx")
	fixtures.Path(t, "media", "vtest.avi")
	fixtures.Path(t, "datasets", "coco-val128")
	dev := filepath.Join(fixtures.Root(), "configs", "testdata", "dev.yaml")
	r := yedge(t, nil, "config", "check", dev)
	if r.code != exitOK || !strings.Contains(r.stdout, dev+": ok (2 streams, model ") || !strings.Contains(r.stdout, "yolov5n-qdq-torch.onnx") {
		t.Errorf("dev.yaml: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	dir := t.TempDir()
	data, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	// Relative paths follow the file: rewrite them to absolute ones.
	text := strings.ReplaceAll(string(data), "../../../shared", fixtures.SharedDir())
	lines := strings.Split(text, "\n")
	line := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "    loop: true") {
			lines[i] = "    lop: true"
			line = i + 1
			break
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	r = yedge(t, nil, "config", "check", bad)
	want := fmt.Sprintf("bad.yaml:%d: unknown key \"lop\" in streams[0] (did you mean \"loop\"?)", line)
	if r.code != exitUsage || !strings.Contains(r.stderr, want) {
		t.Errorf("unknown key: exit %d, want %d and %q in\n%s", r.code, exitUsage, want, r.stderr)
	}

	// Several problems: each printed with its line; credentials hidden.
	text = strings.Replace(text, "fps: 10", "fps: -10", 1)
	text = strings.Replace(text, "every_n: 5", "every_n: 0", 1)
	text = strings.Replace(text, "uri: "+fixtures.SharedDir()+"/media/vtest.avi\n    loop", "uri: ftp://admin:hunter2@10.0.0.1/x\n    loop", 1)
	if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r = yedge(t, nil, "config", "check", bad)
	for _, w := range []string{"streams[0].uri:", "streams[1].fps: -10 is out of range: want [0, 1000]", "shadow.every_n: 0 is out of range: want [1, 1000000]", "3 problems"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	if r.code != exitUsage || strings.Contains(r.stderr+r.stdout, "hunter2") {
		t.Errorf("exit %d (want %d), or credentials leaked:\n%s", r.code, exitUsage, r.stderr)
	}

	// A valid ONNX file of another network as the int8 model: the file is
	// fine for the schema, but serve (and a reload) would refuse it, so
	// check refuses it too.
	relu := strings.ReplaceAll(string(data), "../../../shared", fixtures.SharedDir())
	relu = strings.Replace(relu, fixtures.SharedDir()+"/models/yolov5n-qdq-torch.onnx", testmodels.SingleOp(t, "Relu", 1, 3, 640, 640), 1)
	reluPath := filepath.Join(dir, "relu.yaml")
	if err := os.WriteFile(reluPath, []byte(relu), 0o644); err != nil {
		t.Fatal(err)
	}
	r = yedge(t, nil, "config", "check", reluPath)
	if r.code != exitModel || !strings.Contains(r.stderr, "Relu.onnx") || !strings.Contains(r.stderr, "YOLOv5-shaped") {
		t.Errorf("Relu int8 model: exit %d (want %d)\n%s%s", r.code, exitModel, r.stdout, r.stderr)
	}

	r = yedge(t, nil, "config", "check", filepath.Join(dir, "nope.yaml"))
	if r.code != exitUsage || !strings.Contains(r.stderr, "nope.yaml") {
		t.Errorf("missing file: exit %d\n%s", r.code, r.stderr)
	}
}

// TestConfigCheckFolders: config check meets the folders as the daemon
// will: a state_dir that is a file or read-only, and a quantize.calib
// folder without images, are refused (exit 2) with the key named; good
// folders pass.
func TestConfigCheckFolders(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "yolov5n.onnx")
	video := filepath.Join(dir, "vtest.avi")
	for from, to := range map[string]string{fixtures.Model(t, "yolov5n.onnx"): model, fixtures.Path(t, "media", "vtest.avi"): video} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	calib := mkdir("calib")
	img, err := os.ReadFile(filepath.Join(fixtures.SharedDir(), "datasets", "coco-calib128", "images", firstImage(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(calib, "a.jpg"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	noImages := mkdir("no-images")
	if err := os.WriteFile(filepath.Join(noImages, "README.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "state-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	readOnly := mkdir("read-only")
	if os.Geteuid() == 0 {
		// Root writes through mode bits: a read-only mount refuses it.
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", readOnly).CombinedOutput(); err != nil {
			t.Fatalf("mount a read-only tmpfs: %v\n%s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", readOnly).Run() })
	} else if err := os.Chmod(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, state, calib string
		want               string // in stderr; "" : ok
	}{
		{"good folders", filepath.Join(dir, "state", "new"), calib, ""},
		{"state_dir is a file", file, calib, "is a file, not a folder"},
		{"state_dir read-only", readOnly, calib, "read-only"},
		{"state_dir under a read-only folder", filepath.Join(readOnly, "yedge"), calib, "cannot be made"},
		{"calib folder without images", filepath.Join(dir, "state", "x"), noImages, "model.quantize.calib: calibration folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "yedge.yaml")
			yaml := fmt.Sprintf("model:\n  fp32: %s\n  quantize:\n    calib: %s\n    cache_dir: %s\nstreams:\n  - name: a\n    uri: %s\nstate_dir: %s\n",
				model, tc.calib, filepath.Join(dir, "cache"), video, tc.state)
			if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			r := yedge(t, nil, "config", "check", cfg)
			if tc.want == "" {
				if r.code != exitOK {
					t.Errorf("exit %d, want 0\n%s", r.code, r.stderr)
				}
				return
			}
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, want %d and %q in\n%s", r.code, exitUsage, tc.want, r.stderr)
			}
		})
	}
}

// firstImage is the name of the first calibration image of the fixtures.
func firstImage(t *testing.T) string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(fixtures.SharedDir(), "datasets", "coco-calib128", "images"))
	if err != nil || len(es) == 0 {
		t.Fatalf("calibration images: %v", err)
	}
	return es[0].Name()
}
