package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yedge/yedge/internal/testkit/fixtures"
)

func evalMAP(t *testing.T, model string) (map50, map5095 float64) {
	t.Helper()
	r := yedge(t, nil, "eval", "--model", model, "--data", fixtures.Path(t, "datasets", "coco-val128"), "--json", "--provider", "cpu")
	if r.code != 0 {
		t.Fatalf("eval %s: exit %d\n%s", model, r.code, r.stderr)
	}
	var out struct {
		Map50   float64 `json:"map50"`
		Map5095 float64 `json:"map50_95"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	return out.Map50, out.Map5095
}

// The accuracy floors of the quantizer with default settings, on held-out
// coco-val128, calibrated on coco-calib128 (128 images).
func TestQuantizeAccuracyFloors(t *testing.T) {
	if testing.Short() {
		t.Skip("calibrates on 128 images and evaluates twice")
	}
	model := fixtures.Model(t, "yolov5n.onnx")
	calib := fixtures.Path(t, "datasets", "coco-calib128", "images")
	dir := t.TempDir()
	cache := filepath.Join(dir, "calib.json")
	trt := filepath.Join(dir, "trt.onnx")
	table := filepath.Join(dir, "trt.table")
	r := yedge(t, nil, "quantize", "--model", model, "--calib", calib, "--target", "tensorrt", "--out", trt,
		"--calib-cache", cache, "--trt-calib-table", table)
	if r.code != 0 {
		t.Fatalf("quantize: exit %d\n%s", r.code, r.stderr)
	}
	m50, m := evalMAP(t, trt)
	t.Logf("tensorrt target (mse, head float): mAP50 %.4f mAP50-95 %.4f", m50, m)
	if m < 0.333 {
		t.Errorf("tensorrt target mAP50-95 %.4f < 0.333", m)
	}
	if b, err := os.ReadFile(table); err != nil || !strings.HasPrefix(string(b), "TRT-") || strings.Count(string(b), "\n") < 50 {
		t.Errorf("TensorRT calibration table: %v\n%.200s", err, b)
	}
	r = yedge(t, nil, "inspect", trt)
	if r.code != 0 || !strings.Contains(r.stdout, "follows the TensorRT Q/DQ placement rules") {
		t.Errorf("inspect tensorrt model:\n%s%s", r.stdout, r.stderr)
	}

	cpu := filepath.Join(dir, "cpu.onnx")
	r = yedge(t, nil, "quantize", "--model", model, "--calib", calib, "--target", "cpu", "--out", cpu, "--calib-cache", cache)
	if r.code != 0 || !strings.Contains(r.stdout, "calibration cache") {
		t.Fatalf("quantize cpu from the cache: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	m50, m = evalMAP(t, cpu)
	t.Logf("cpu target (mse, head float): mAP50 %.4f mAP50-95 %.4f", m50, m)
	if m < 0.323 {
		t.Errorf("cpu target mAP50-95 %.4f < 0.323", m)
	}
	r = yedge(t, nil, "inspect", cpu)
	if r.code != 0 || !strings.Contains(r.stdout, "0 deviations") {
		t.Errorf("inspect cpu model:\n%s%s", r.stdout, r.stderr)
	}

	// Deterministic: the same inputs and options give a byte-identical file.
	trt2 := filepath.Join(dir, "trt2.onnx")
	r = yedge(t, nil, "quantize", "--model", model, "--calib", calib, "--target", "tensorrt", "--out", trt2, "--calib-cache", cache)
	a, _ := os.ReadFile(trt)
	b, _ := os.ReadFile(trt2)
	if r.code != 0 || !bytes.Equal(a, b) {
		t.Errorf("re-quantizing gave a different file (exit %d)", r.code)
	}
}

func TestQuantizeBadInput(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	calib := fixtures.Path(t, "datasets", "coco-calib128", "images")
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.jpg", "b.png"} {
		if err := os.WriteFile(filepath.Join(broken, n), []byte("not an image"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "q.onnx")
	// A cache made for the dynamic model, refused for the static one.
	otherCache := filepath.Join(dir, "other.json")
	if r := yedge(t, nil, "quantize", "--model", fixtures.Model(t, "yolov5n-dynamic.onnx"), "--calib", calib, "--calib-images", "1",
		"--calib-cache", otherCache, "--out", filepath.Join(dir, "dyn.onnx")); r.code != 0 {
		t.Fatalf("making a cache: %s", r.stderr)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"empty calibration folder", []string{"--calib", empty}, exitUsage, "has no images"},
		{"unreadable calibration images", []string{"--calib", broken}, exitFailure, "none of the 2 inputs"},
		{"already Q/DQ", []string{"--model", fixtures.Model(t, "yolov5n-qdq-torch.onnx"), "--calib", calib}, exitModel, "already quantized"},
		{"output folder missing", []string{"--calib", calib, "--out", filepath.Join(dir, "no", "q.onnx")}, exitUsage, "does not exist"},
		{"cache from another model", []string{"--calib", calib, "--calib-cache", otherCache}, exitFailure, "was made for model"},
		{"bad target", []string{"--calib", calib, "--target", "fpga"}, exitUsage, "fpga"},
		{"bad method", []string{"--calib", calib, "--method", "magic"}, exitUsage, "magic"},
		{"bad exclude regex", []string{"--calib", calib, "--exclude", "("}, exitUsage, "--exclude"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"quantize", "--model", model, "--out", out, "--calib-images", "2"}
			args = append(args, tc.args...)
			r := yedge(t, nil, args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr lacks %q:\n%s", r.code, tc.code, tc.want, r.stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a model was written despite the error")
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
	// An exclude regex that matches nothing warns and still quantizes.
	r := yedge(t, nil, "quantize", "--model", model, "--out", out, "--calib", calib, "--calib-images", "1", "--exclude", "no-such-layer")
	if r.code != 0 || !strings.Contains(r.stderr, "matches no node") {
		t.Errorf("exit %d:\n%s", r.code, r.stderr)
	}
}

func TestQuantizeSensitivity(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	calib := fixtures.Path(t, "datasets", "coco-calib128", "images")
	dir := t.TempDir()
	out := filepath.Join(dir, "q.onnx")
	js := filepath.Join(dir, "sens.json")
	r := yedge(t, nil, "quantize", "--model", model, "--calib", calib, "--calib-images", "2", "--sensitivity",
		"--sensitivity-images", "1", "--sensitivity-json", js, "--auto-exclude", "2", "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var ranking []struct {
		Rank  int     `json:"rank"`
		Node  string  `json:"node"`
		Error float64 `json:"error"`
	}
	b, err := os.ReadFile(js)
	if err != nil || json.Unmarshal(b, &ranking) != nil {
		t.Fatalf("sensitivity JSON: %v %s", err, b)
	}
	if len(ranking) != 60 || ranking[0].Error < ranking[59].Error || ranking[0].Rank != 1 {
		t.Errorf("ranking of %d layers: first %+v last %+v", len(ranking), ranking[0], ranking[len(ranking)-1])
	}
	if !strings.Contains(r.stdout, "output error") || !strings.Contains(r.stdout, ranking[0].Node) {
		t.Errorf("no sensitivity table:\n%s", r.stdout)
	}
	r = yedge(t, nil, "inspect", out, "--json")
	if !strings.Contains(r.stdout, ranking[0].Node) || !strings.Contains(r.stdout, ranking[1].Node) {
		t.Errorf("the two most sensitive layers are not recorded as excluded:\n%.2000s", r.stdout)
	}
}

// --max-drop moves the most sensitive layers to float until the mAP50-95
// drop on a labelled calibration set is within the bound.
func TestQuantizeMaxDrop(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	src := fixtures.Path(t, "datasets", "coco-calib128")
	dir := t.TempDir()
	data := filepath.Join(dir, "calib")
	if err := os.MkdirAll(filepath.Join(data, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(data, "labels"), 0o755); err != nil {
		t.Fatal(err)
	}
	imgs, _ := filepath.Glob(filepath.Join(src, "images", "*.jpg"))
	for _, p := range imgs[:4] {
		if err := os.Symlink(p, filepath.Join(data, "images", filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
		lbl := strings.TrimSuffix(filepath.Base(p), ".jpg") + ".txt"
		if err := os.Symlink(filepath.Join(src, "labels", lbl), filepath.Join(data, "labels", lbl)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(src, "data.yaml"), filepath.Join(data, "data.yaml")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "q.onnx")
	// An impossible bound (no drop at all, at most 2 steps) ends at the step
	// limit with the two most sensitive layers in float.
	r := yedge(t, nil, "quantize", "--model", model, "--calib", filepath.Join(data, "images"), "--sensitivity-images", "1",
		"--max-drop", "0.0000001", "--max-drop-steps", "2", "--keep-head=false", "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "max-drop search") {
		t.Errorf("no search log:\n%s", r.stderr)
	}
	r = yedge(t, nil, "inspect", out, "--json")
	var rep struct {
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	var info struct {
		Excluded []string `json:"excluded"`
	}
	if err := json.Unmarshal([]byte(rep.Metadata["yedge_quantization"]), &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Excluded) != 2 {
		t.Errorf("want the 2 most sensitive layers in float, got %v", info.Excluded)
	}
	// Without labels next to the calibration images, --max-drop is a usage error.
	r = yedge(t, nil, "quantize", "--model", model, "--calib", fixtures.Path(t, "datasets", "coco-calib128", "images"),
		"--calib-images", "1", "--max-drop", "0.01", "--sensitivity-data", filepath.Join(dir, "nolabels"), "--out", out)
	if r.code != exitUsage || !strings.Contains(r.stderr, "labelled dataset") {
		t.Errorf("exit %d:\n%s", r.code, r.stderr)
	}
}
