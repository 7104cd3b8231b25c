package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/config"
	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testmodels"
	"github.com/yedge/yedge/sinks"
)

var binPath string

// TestMain builds the yedge binary once; the tests run it as a user would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "yedge-cli")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "yedge")
	// The daemons the tests start keep their model store here, not in the
	// user's state folder (the default state_dir).
	_ = os.Unsetenv("STATE_DIRECTORY")
	_ = os.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building yedge: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// yedge runs the binary with the repository's onnxruntime library.
func yedge(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return yedgeIn(t, "", env, args...)
}

// yedgeIn is yedge run in the working directory dir ("" for the test's).
func yedgeIn(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Dir = dir
	lib := filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1")
	cmd.Env = append(os.Environ(), "YEDGE_ORT_LIB="+lib)
	cmd.Env = append(cmd.Env, env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, so.String(), se.String()}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"detect", "--help"}, {"eval", "--help"}, {"inspect", "--help"}, {"version", "--help"},
	} {
		r := yedge(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	r := yedge(t, nil, "version")
	if r.code != 0 || !strings.Contains(r.stdout, "onnxruntime 1.24") || !strings.Contains(r.stdout, "opencv 4.") {
		t.Errorf("version: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// smallDataset links the first n images of coco-val128 (and their labels)
// into a temporary YOLO dataset.
func smallDataset(t *testing.T, n int) string {
	src := fixtures.Path(t, "datasets", "coco-val128")
	dst := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dst, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dst, "labels"), 0o755); err != nil {
		t.Fatal(err)
	}
	imgs, _ := filepath.Glob(filepath.Join(src, "images", "*.jpg"))
	for _, p := range imgs[:n] {
		if err := os.Symlink(p, filepath.Join(dst, "images", filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
		lbl := strings.TrimSuffix(filepath.Base(p), ".jpg") + ".txt"
		if _, err := os.Stat(filepath.Join(src, "labels", lbl)); err == nil {
			if err := os.Symlink(filepath.Join(src, "labels", lbl), filepath.Join(dst, "labels", lbl)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Symlink(filepath.Join(src, "data.yaml"), filepath.Join(dst, "data.yaml")); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestEvalJSON(t *testing.T) {
	data := smallDataset(t, 8)
	// A corrupt image is skipped with a warning and counted.
	if err := os.WriteFile(filepath.Join(data, "images", "zz-broken.jpg"), []byte("not a jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := yedge(t, nil, "eval", "--model", fixtures.Model(t, "yolov5n-qdq-torch.onnx"), "--data", data, "--json", "--provider", "cpu")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	for _, k := range []string{"map50", "map50_95", "precision", "recall", "images", "labels", "per_class"} {
		if _, ok := out[k]; !ok {
			t.Errorf("missing key %q", k)
		}
	}
	if out["images"].(float64) != 8 || out["skipped"].(float64) != 1 {
		t.Errorf("images %v skipped %v, want 8 and 1", out["images"], out["skipped"])
	}
	if m := out["map50_95"].(float64); m <= 0.1 || m > 1 {
		t.Errorf("map50_95 = %v", m)
	}
	if !strings.Contains(r.stderr, "zz-broken.jpg") {
		t.Errorf("no warning naming the broken image:\n%s", r.stderr)
	}
}

func TestDetectVideo(t *testing.T) {
	video := fixtures.Path(t, "media", "vtest.avi")
	model := fixtures.Model(t, "yolov5n.onnx")
	dir := t.TempDir()
	out := filepath.Join(dir, "det.jsonl")
	frames := filepath.Join(dir, "frames")
	// The stages run concurrently: every frame of a file comes out, in
	// order, with its own detections and saved image.
	const n = 24
	r := yedge(t, nil, "detect", "--model", model, "--source", video, "--max-frames", strconv.Itoa(n), "--out", out, "--save", frames)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := readLines(t, out)
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	for i, l := range lines {
		var rec sinks.Record
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Frame != int64(i) || rec.Width != 768 || rec.Height != 576 || rec.Ms["infer"] <= 0 || rec.Precision != "fp32" || rec.Corrupt {
			t.Errorf("line %d: %+v", i, rec)
		}
		people := 0
		for _, d := range rec.Detections {
			if d.Name == "person" {
				people++
			}
		}
		if people == 0 {
			t.Errorf("frame %d: no person", i)
		}
	}
	for _, want := range []string{fmt.Sprintf("%d frames", n), "preprocess", "infer", "p95", "queue wait", "busy"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.stderr)
		}
	}
	jpgs, _ := filepath.Glob(filepath.Join(frames, "*.jpg"))
	if len(jpgs) != n {
		t.Errorf("%d annotated frames saved, want %d", len(jpgs), n)
	}
	img := gocv.IMRead(jpgs[0], gocv.IMReadColor)
	defer img.Close()
	if img.Cols() != 768 {
		t.Errorf("saved frame is %dx%d", img.Cols(), img.Rows())
	}
	// Video output.
	mp4 := filepath.Join(dir, "out.mp4")
	r = yedge(t, nil, "detect", "--model", model, "--source", video, "--max-frames", "3", "--save", mp4)
	if st, err := os.Stat(mp4); r.code != 0 || err != nil || st.Size() == 0 {
		t.Errorf("--save out.mp4: exit %d, %v: %s", r.code, err, r.stderr)
	}
	// An output that is not a regular file is written, not truncated.
	if r = yedge(t, nil, "detect", "--model", model, "--source", video, "--max-frames", "2", "--out", os.DevNull); r.code != 0 {
		t.Errorf("--out %s: exit %d: %s", os.DevNull, r.code, r.stderr)
	}
}

// Static models at another size run with only --model; the dynamic model
// runs at --imgsz; either interpolation runs.
func TestDetectOtherSizes(t *testing.T) {
	video := fixtures.Path(t, "media", "vtest.avi")
	dyn := fixtures.Model(t, "yolov5n-dynamic.onnx")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"static 416", []string{"--model", testmodels.Static(t, dyn, 416, 416, 13)}},
		{"static 320x640 opset 12", []string{"--model", testmodels.Static(t, dyn, 320, 640, 12)}},
		{"dynamic --imgsz 416", []string{"--model", dyn, "--imgsz", "416"}},
		{"dynamic --imgsz 320x640", []string{"--model", dyn, "--imgsz", "320x640"}},
		{"--interp linear", []string{"--model", dyn, "--interp", "linear"}},
		{"--interp area", []string{"--model", dyn, "--interp", "area"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := yedge(t, nil, append([]string{"detect", "--source", video, "--max-frames", "2"}, tc.args...)...)
			if r.code != 0 || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, "person") {
				t.Errorf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

func TestInspect(t *testing.T) {
	for _, tc := range []struct{ model, want string }{
		{"yolov5n.onnx", "fp32"},
		{"yolov5n-dynamic.onnx", "fp32"},
		{"yolov5n-qdq-torch.onnx", "int8-qdq"},
	} {
		r := yedge(t, nil, "inspect", fixtures.Model(t, tc.model))
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) || !strings.Contains(r.stdout, "opset") {
			t.Errorf("%s: exit %d\n%s%s", tc.model, r.code, r.stdout, r.stderr)
		}
	}
}

// Bad input: a clear error naming the thing at fault and a non-zero exit
// code that scripts can rely on.
func TestBadInput(t *testing.T) {
	video := fixtures.Path(t, "media", "vtest.avi")
	model := fixtures.Model(t, "yolov5n.onnx")
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.onnx")
	data, _ := os.ReadFile(model)
	if err := os.WriteFile(truncated, data[:len(data)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	notOnnx := filepath.Join(dir, "readme.onnx")
	if err := os.WriteFile(notOnnx, []byte("# not a model\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := testmodels.WrongOutput(t, model)
	onlyBroken := filepath.Join(dir, "broken-images")
	if err := os.MkdirAll(onlyBroken, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(onlyBroken, "a.jpg"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"missing model", nil, []string{"detect", "--model", filepath.Join(dir, "nope.onnx"), "--source", video}, exitModel, "nope.onnx"},
		{"truncated model", nil, []string{"detect", "--model", truncated, "--source", video}, exitModel, "truncated.onnx"},
		{"not ONNX", nil, []string{"detect", "--model", notOnnx, "--source", video}, exitModel, "readme.onnx"},
		{"output not YOLOv5", nil, []string{"detect", "--model", wrong, "--source", video}, exitModel, "YOLOv5-shaped"},
		{"inspect not ONNX", nil, []string{"inspect", notOnnx}, exitModel, "readme.onnx"},
		{"missing onnxruntime library", []string{"YEDGE_ORT_LIB=/nonexistent/libonnxruntime.so"}, []string{"detect", "--model", model, "--source", video}, exitRuntime, "/nonexistent/libonnxruntime.so"},
		{"missing video", nil, []string{"detect", "--model", model, "--source", filepath.Join(dir, "nope.avi")}, exitSource, "nope.avi"},
		{"folder of unreadable images", nil, []string{"detect", "--model", model, "--source", onlyBroken}, exitSource, "a.jpg"},
		{"tensorrt absent", nil, []string{"detect", "--model", model, "--source", video, "--provider", "tensorrt"}, exitRuntime, "tensorrt"},
		{"cuda absent", nil, []string{"detect", "--model", model, "--source", video, "--provider", "cuda"}, exitRuntime, "cuda"},
		{"unknown provider", nil, []string{"detect", "--model", model, "--source", video, "--provider", "npu"}, exitUsage, "npu"},
		{"bad imgsz", nil, []string{"detect", "--model", model, "--source", video, "--imgsz", "big"}, exitUsage, "--imgsz"},
		{"bad interp", nil, []string{"detect", "--model", model, "--source", video, "--interp", "cubic"}, exitUsage, "--interp"},
		{"bench bad interp", nil, []string{"bench", "--model", model, "--interp", "nearest"}, exitUsage, "--interp"},
		{"unknown flag", nil, []string{"detect", "--model", model, "--frobnicate"}, exitUsage, "frobnicate"},
		{"no source", nil, []string{"detect", "--model", model}, exitUsage, "--source"},
		{"missing dataset", nil, []string{"eval", "--model", model, "--data", filepath.Join(dir, "nodata")}, exitUsage, "nodata"},
		{"credentials never printed", nil, []string{"detect", "--model", model, "--source", "rtsp://admin:hunter2@127.0.0.1:1/stream"}, exitSource, "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := yedge(t, tc.env, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\n%s", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr does not mention %q:\n%s", tc.want, r.stderr)
			}
			if strings.Contains(r.stderr+r.stdout, "hunter2") {
				t.Errorf("credentials leaked:\n%s", r.stderr)
			}
		})
	}
}

// Without any library in reach, the error lists the places tried.
func TestNoLibraryAnywhere(t *testing.T) {
	fixtures.Model(t, "yolov5n.onnx")
	dir := t.TempDir()
	bin := filepath.Join(dir, "yedge")
	data, _ := os.ReadFile(binPath)
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "detect", "--model", fixtures.Model(t, "yolov5n.onnx"), "--source", fixtures.Path(t, "media", "vtest.avi"))
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LD_LIBRARY_PATH=" + dir}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("err = %v\n%s", err, out)
	}
	if _, serr := os.Stat("/usr/local/lib/libonnxruntime.so"); serr == nil {
		t.Skip("a system onnxruntime is installed")
	}
	if ee.ExitCode() != exitRuntime || !strings.Contains(string(out), "tried:") || !strings.Contains(string(out), "--ort-lib") {
		t.Errorf("exit %d:\n%s", ee.ExitCode(), out)
	}
}

// Ctrl-C stops cleanly: exit 0, every line written is complete, summary printed.
func TestDetectInterrupt(t *testing.T) {
	video := fixtures.Path(t, "media", "vtest.avi")
	model := fixtures.Model(t, "yolov5n.onnx")
	out := filepath.Join(t.TempDir(), "det.jsonl")
	cmd := exec.Command(binPath, "detect", "--model", model, "--source", video, "--loop", "--out", out, "--threads", "1")
	cmd.Env = append(os.Environ(), "YEDGE_ORT_LIB="+filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1"))
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(out); err == nil && st.Size() > 2000 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if err != nil {
		t.Fatalf("exit after SIGINT: %v\n%s", err, se.String())
	}
	lines := readLines(t, out)
	if len(lines) < 2 {
		t.Fatalf("%d lines written", len(lines))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("partial line %q", l)
		}
	}
	if !strings.Contains(se.String(), "frames in") {
		t.Errorf("no summary after Ctrl-C:\n%s", se.String())
	}
}

func readLines(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// TestCobraErrorsAreUsage: cobra's own errors (an unknown command or
// flag, a missing or extra argument, a required flag left out) exit 2
// through typed errors, not by matching their text; no command alone is
// help and exit 0.
func TestCobraErrorsAreUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"detect", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"detect"}, `required flag(s) "model" not set`},
		{[]string{"inspect"}, "accepts 1 arg(s), received 0"},
		{[]string{"inspect", "a.onnx", "b.onnx"}, "accepts 1 arg(s), received 2"},
		{[]string{"quantize", "--model", "m.onnx"}, `required flag(s) "out" not set`},
		{[]string{"version", "extra"}, `unknown command "extra"`},
		{[]string{"eval", "--threads", "x"}, "invalid argument"},
	} {
		r := yedge(t, nil, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("yedge %s: exit %d, want %d and %q in\n%s", strings.Join(tc.args, " "), r.code, exitUsage, tc.want, r.stderr)
		}
	}
	if r := yedge(t, nil); r.code != exitOK || !strings.Contains(r.stdout, "Available Commands") {
		t.Errorf("yedge alone: exit %d, want help and 0\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestFlagRangesAreTheConfigs: a flag that sets the same value as a
// configuration key is checked against that key's declaration, so the
// two cannot drift: each bound is accepted exactly when the key's range
// accepts it.
func TestFlagRangesAreTheConfigs(t *testing.T) {
	for _, tc := range []struct {
		flag, key string
		integer   bool
	}{
		{"conf", "thresholds.conf", false},
		{"iou", "thresholds.iou", false},
		{"max-det", "thresholds.max_det", true},
		{"threads", "provider.threads", true},
		{"device-id", "provider.device_id", true},
	} {
		r, ok := config.RangeOf(tc.key)
		if !ok {
			t.Fatalf("%s: no declared range", tc.key)
		}
		step := 1e-6
		if tc.integer {
			step = 1
		}
		for _, v := range []float64{r.Min - step, r.Min, r.Max, r.Max + step} {
			inside := (v > r.Min || (v == r.Min && !r.MinOpen)) && (v < r.Max || (v == r.Max && !r.MaxOpen))
			if err := keyInRange(tc.flag, tc.key, v, tc.integer); (err == nil) != inside {
				t.Errorf("--%s %v: error %v, want accepted = %v (%s: %s)", tc.flag, v, err, inside, tc.key, r)
			}
		}
	}
}
