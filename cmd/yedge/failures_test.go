package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/sinks"
)

// flagCase is one numeric flag and the hostile values it must refuse.
type flagCase struct {
	flag   string
	values []string
}

var (
	// Hostile values for every integer flag; each flag adds its own
	// out-of-range ones.
	hostileInt = []string{"-4", "99999999999999999999", "abc", "NaN", "1.5", ""}
	// Hostile values for every float flag.
	hostileFloat = []string{"NaN", "Inf", "-Inf", "abc", "1e309", "-0.5", ""}
	// Hostile --imgsz values.
	hostileSize = []string{"99968", "4128", "0", "-640", "100", "abc", "NaN", "640x", "1x2x3", "99999999999999999999"}
)

func ints(extra ...string) []string   { return append(append([]string{}, hostileInt...), extra...) }
func floats(extra ...string) []string { return append(append([]string{}, hostileFloat...), extra...) }

// checkUsageError asserts the contract of a refused flag: exit 2, exactly
// one line on stderr starting "yedge: " and naming the flag, no trace.
func checkUsageError(t *testing.T, r result, flag string) {
	t.Helper()
	if r.code != exitUsage {
		t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, exitUsage, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "yedge: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not exactly one \"yedge: ...\" line:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "--"+flag) {
		t.Errorf("stderr does not name --%s:\n%s", flag, r.stderr)
	}
	for _, bad := range []string{"goroutine ", "panic:", "fatal error"} {
		if strings.Contains(r.stdout+r.stderr, bad) {
			t.Errorf("output contains %q:\n%s%s", bad, r.stdout, r.stderr)
		}
	}
}

// runHostile runs the command with base args plus --flag=value for every
// hostile value of every flag (the value comes last, so it wins over a
// value in base).
func runHostile(t *testing.T, base []string, cases []flagCase) {
	for _, fc := range cases {
		for _, v := range fc.values {
			t.Run(fc.flag+"="+v, func(t *testing.T) {
				r := yedge(t, nil, append(append([]string{}, base...), "--"+fc.flag+"="+v)...)
				checkUsageError(t, r, fc.flag)
			})
		}
	}
}

// The global flags, checked for every command.
var globalCases = []flagCase{
	{"threads", ints("-1", "1025", "2147483647")},
	{"device-id", ints("-1", "256", "2147483647")},
}

var modelCases = []flagCase{
	{"conf", floats("1.5", "-0.001", "1e300")},
	{"iou", floats("0", "1.0001", "1e300")},
	{"max-det", ints("0", "-1", "30001", "2147483647")},
	{"imgsz", hostileSize},
}

func TestHostileFlagsDetect(t *testing.T) {
	base := []string{"detect", "--model", fixtures.Model(t, "yolov5n-dynamic.onnx"), "--source", fixtures.Path(t, "media", "vtest.avi"), "--max-frames", "1"}
	cases := append(append([]flagCase{}, modelCases...), globalCases...)
	cases = append(cases,
		flagCase{"max-frames", ints("-1", "-9223372036854775808")},
		flagCase{"camera", ints("-2", "256", "2147483647")},
	)
	runHostile(t, base, cases)
}

func TestHostileFlagsEval(t *testing.T) {
	base := []string{"eval", "--model", fixtures.Model(t, "yolov5n-dynamic.onnx"), "--data", smallDataset(t, 2), "--provider", "cpu"}
	runHostile(t, base, append(append([]flagCase{}, modelCases...), globalCases...))
}

func TestHostileFlagsQuantize(t *testing.T) {
	base := []string{"quantize", "--model", fixtures.Model(t, "yolov5n-dynamic.onnx"), "--calib", fixtures.Path(t, "datasets", "coco-calib128", "images"),
		"--out", filepath.Join(t.TempDir(), "q.onnx")}
	runHostile(t, base, append([]flagCase{
		{"calib-images", ints("0", "-1", "100001", "2147483647")},
		{"percentile", floats("0", "100.01", "-1", "1e300")},
		{"imgsz", hostileSize},
	}, globalCases...))
}

// The layer-sensitivity flags of quantize.
func TestHostileFlagsSensitivity(t *testing.T) {
	base := []string{"quantize", "--model", fixtures.Model(t, "yolov5n.onnx"), "--calib", fixtures.Path(t, "datasets", "coco-calib128", "images"),
		"--out", filepath.Join(t.TempDir(), "q.onnx")}
	runHostile(t, base, []flagCase{
		{"sensitivity-images", ints("0", "-1", "100001", "2147483647")},
		{"auto-exclude", ints("-1", "10001", "2147483647")},
		{"max-drop", floats("1", "-0.01", "1e300")},
		{"max-drop-steps", ints("-1", "10001", "2147483647")},
	})
}

func TestHostileFlagsBench(t *testing.T) {
	base := []string{"bench", "--model", fixtures.Model(t, "yolov5n-dynamic.onnx"), "--runs", "1", "--warmup", "0", "--frames", "1", "--provider", "cpu"}
	runHostile(t, base, append([]flagCase{
		{"frames", ints("0", "-1", "1001", "2147483647")},
		{"warmup", ints("-1", "1000001", "2147483647")},
		{"runs", ints("0", "-1", "1000001", "2147483647")},
		{"imgsz", hostileSize},
	}, globalCases...))
}

// inspect has no numeric flag of its own: the global ones.
func TestHostileFlagsInspect(t *testing.T) {
	runHostile(t, []string{"inspect", fixtures.Model(t, "yolov5n.onnx")}, globalCases)
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// quantize --out never replaces its input, however the same file is
// spelled: relative, ./, sub/../, absolute, a symbolic link, a hard link.
func TestQuantizeRefusesInPlace(t *testing.T) {
	calib := fixtures.Path(t, "datasets", "coco-calib128", "images")
	src := fixtures.Model(t, "yolov5n.onnx")
	dir := t.TempDir()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "m.onnx")
	if err := os.WriteFile(model, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(model, filepath.Join(dir, "link.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(model, filepath.Join(dir, "hard.onnx")); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache.json")
	if err := os.WriteFile(cache, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := sha(t, model)
	q := filepath.Join(dir, "q.onnx")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"out=m.onnx", []string{"--out", "m.onnx"}},
		{"out=./m.onnx", []string{"--out", "./m.onnx"}},
		{"out=sub/../m.onnx", []string{"--out", "sub/../m.onnx"}},
		{"out=absolute", []string{"--out", model}},
		{"out=symlink", []string{"--out", "link.onnx"}},
		{"out=hard link", []string{"--out", "hard.onnx"}},
		{"out=the cache", []string{"--calib-cache", "cache.json", "--out", "sub/../cache.json"}},
		{"trt-calib-table=./m.onnx", []string{"--out", q, "--trt-calib-table", "./m.onnx"}},
		{"sensitivity-json=symlink", []string{"--out", q, "--sensitivity", "--sensitivity-json", "link.onnx"}},
		{"calib-cache=hard link", []string{"--out", q, "--calib-cache", "hard.onnx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"quantize", "--model", "m.onnx", "--calib", calib, "--calib-images", "2", "--provider", "cpu"}, tc.args...)
			r := yedgeIn(t, dir, nil, args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "would overwrite an input") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
			}
			if sha(t, model) != before {
				t.Fatal("the input model was changed")
			}
			if b, _ := os.ReadFile(cache); string(b) != "{}" {
				t.Fatal("the calibration cache was changed")
			}
			if _, err := os.Stat(q); err == nil {
				t.Error("an output was written although the command was refused")
			}
		})
	}
}

// copyFixture copies a shared fixture into dir: tests that aim outputs at
// inputs work on copies, so that a regression can never damage ../shared.
func copyFixture(t *testing.T, dir string, parts ...string) string {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path(t, parts...))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, parts[len(parts)-1])
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// detect --out and --save never replace the model or the source (copies of
// the fixtures, never the fixtures themselves).
func TestDetectRefusesInputAsOutput(t *testing.T) {
	dir := t.TempDir()
	video := copyFixture(t, dir, "media", "vtest.avi")
	model := copyFixture(t, dir, "models", "yolov5n.onnx")
	link := filepath.Join(dir, "link.avi")
	if err := os.Symlink(video, link); err != nil {
		t.Fatal(err)
	}
	imgs := filepath.Join(dir, "imgs")
	if err := os.MkdirAll(imgs, 0o755); err != nil {
		t.Fatal(err)
	}
	jpg := firstVal128(t)
	b, _ := os.ReadFile(jpg)
	if err := os.WriteFile(filepath.Join(imgs, "a.jpg"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	sums := map[string][32]byte{}
	for _, p := range []string{video, model, filepath.Join(imgs, "a.jpg")} {
		sums[p] = sha(t, p)
	}
	for _, args := range [][]string{
		{"--source", link, "--out", video},
		{"--source", video, "--out", model},
		{"--source", video, "--save", link},
		{"--source", imgs, "--save", imgs + "/."},
	} {
		r := yedge(t, nil, append([]string{"detect", "--model", model, "--max-frames", "1"}, args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "would overwrite an input") {
			t.Errorf("%v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	for p, sum := range sums {
		if sha(t, p) != sum {
			t.Errorf("input %s was changed", p)
		}
	}
}

func firstVal128(t *testing.T) string {
	t.Helper()
	imgs, _ := filepath.Glob(filepath.Join(fixtures.Path(t, "datasets", "coco-val128", "images"), "*.jpg"))
	if len(imgs) == 0 {
		t.Fatal("coco-val128 has no images")
	}
	return imgs[0]
}

// truncatedJPEG writes the first half of a real COCO JPEG: libjpeg decodes
// it with only a warning.
func truncatedJPEG(t *testing.T, dst string) {
	t.Helper()
	b, err := os.ReadFile(firstVal128(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
}

// A source that yields no frame at all is not success: exit 5.
func TestDetectZeroFrameVideo(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.avi")
	writeZeroFrameVideo(t, empty)
	garbage := filepath.Join(dir, "garbage.avi")
	if err := os.WriteFile(garbage, []byte("RIFF\x00\x00\x00\x00AVI not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{empty, garbage} {
		out := filepath.Join(dir, "det.jsonl")
		r := yedge(t, nil, "detect", "--model", model, "--source", v, "--out", out)
		if r.code != exitSource || !strings.Contains(r.stderr, filepath.Base(v)) {
			t.Errorf("%s: exit %d, want %d\n%s", filepath.Base(v), r.code, exitSource, r.stderr)
		}
		if strings.Contains(r.stderr, "goroutine ") {
			t.Errorf("trace in output:\n%s", r.stderr)
		}
	}
}

// An output that cannot be written is an error naming the path.
func TestDetectUnwritableSave(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	video := fixtures.Path(t, "media", "vtest.avi")
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, save := range []string{
		"/proc/yedge-test-out.mp4",                 // a folder nobody (not even root) can write
		filepath.Join(file, "out.mp4"),             // "folder" that is a file
		filepath.Join(file, "frames"),              // image folder under a file
		"/proc/yedge-test-frames",                  // image folder that cannot be created
		filepath.Join(dir, "nope", "sub", "o.avi"), // missing folder
	} {
		r := yedge(t, nil, "detect", "--model", model, "--source", video, "--max-frames", "2", "--save", save)
		if r.code == 0 || !strings.Contains(r.stderr, save) || strings.Contains(r.stderr, "detector ready") {
			t.Errorf("--save %s: exit %d (want an error naming the path before the model is loaded)\n%s", save, r.code, r.stderr)
		}
	}
	r := yedge(t, nil, "detect", "--model", model, "--source", video, "--max-frames", "2", "--out", "/proc/yedge-test.jsonl")
	if r.code == 0 || !strings.Contains(r.stderr, "/proc/yedge-test.jsonl") {
		t.Errorf("--out /proc/yedge-test.jsonl: exit %d\n%s", r.code, r.stderr)
	}
}

// A label whose class the model does not have fails eval with FILE:LINE,
// or, with --ignore-bad-labels, is dropped, warned about and counted.
func TestEvalBadClassLabel(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	data := smallDataset(t, 3)
	imgs, _ := filepath.Glob(filepath.Join(data, "images", "*.jpg"))
	lbl := filepath.Join(data, "labels", strings.TrimSuffix(filepath.Base(imgs[1]), ".jpg")+".txt")
	orig, err := os.ReadFile(lbl)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(lbl) // a symlink into ../shared: replace it, never write through it
	lines := strings.Count(string(orig), "\n")
	if err := os.WriteFile(lbl, append(append([]byte{}, orig...), "500 0.5 0.5 0.2 0.2\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	r := yedge(t, nil, "eval", "--model", model, "--data", data, "--provider", "cpu", "--json")
	want := filepath.Base(lbl) + ":" + itoa(lines+1)
	if r.code != exitUsage || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "class 500") {
		t.Errorf("exit %d, want %d and %q:\n%s", r.code, exitUsage, want, r.stderr)
	}
	r = yedge(t, nil, "eval", "--model", model, "--data", data, "--provider", "cpu", "--json", "--ignore-bad-labels")
	if r.code != 0 {
		t.Fatalf("--ignore-bad-labels: exit %d\n%s", r.code, r.stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out["bad_labels"] != 1.0 || !strings.Contains(r.stderr, want) {
		t.Errorf("bad_labels = %v, stderr:\n%s", out["bad_labels"], r.stderr)
	}
	if pc, _ := json.Marshal(out["per_class"]); strings.Contains(string(pc), "class500") {
		t.Errorf("class 500 was scored: %s", pc)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// A truncated JPEG (which libjpeg decodes with a mere warning) is counted
// and skipped by eval and calibration, and flagged by detect.
func TestCorruptJPEG(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	data := smallDataset(t, 3)
	truncatedJPEG(t, filepath.Join(data, "images", "zz-truncated.jpg"))
	t.Run("eval", func(t *testing.T) {
		r := yedge(t, nil, "eval", "--model", model, "--data", data, "--provider", "cpu", "--json")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatal(err)
		}
		if out["corrupt"] != 1.0 || out["images"] != 3.0 || !strings.Contains(r.stderr, "zz-truncated.jpg") {
			t.Errorf("corrupt %v images %v\n%s", out["corrupt"], out["images"], r.stderr)
		}
	})
	t.Run("calibration", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "q.onnx")
		r := yedge(t, nil, "quantize", "--model", model, "--calib", filepath.Join(data, "images"), "--out", out, "--target", "cpu")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stdout, "3 calibration images (1 corrupt and 0 unreadable images skipped)") || !strings.Contains(r.stderr, "zz-truncated.jpg") {
			t.Errorf("summary:\n%s\n%s", r.stdout, r.stderr)
		}
	})
	t.Run("detect", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "det.jsonl")
		r := yedge(t, nil, "detect", "--model", model, "--source", filepath.Join(data, "images"), "--out", out)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		lines := readLines(t, out)
		if len(lines) != 4 {
			t.Fatalf("%d records, want 4", len(lines))
		}
		for _, l := range lines {
			var rec sinks.Record
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Corrupt != strings.HasSuffix(rec.Image, "zz-truncated.jpg") {
				t.Errorf("record %s: corrupt=%v", rec.Image, rec.Corrupt)
			}
		}
		if !strings.Contains(r.stderr, "1 corrupt") {
			t.Errorf("summary does not count the corrupt frame:\n%s", r.stderr)
		}
	})
}

// A panic becomes one line and exit 1, without a stack trace.
func TestGuardRecoversPanic(t *testing.T) {
	var b strings.Builder
	code := guard(&b, func() int { panic("boom\nsecond line") })
	if code != exitFailure || b.String() != "yedge: internal error: boom second line (please report this)\n" {
		t.Errorf("exit %d, stderr %q", code, b.String())
	}
	if code := guard(&b, func() int { return 5 }); code != 5 {
		t.Errorf("exit %d, want 5", code)
	}
}

// A detect run that fails at the start (here: the source is missing) keeps
// an earlier --out file as it was, and leaves no empty new one.
func TestDetectFailedRunKeepsOutput(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	dir := t.TempDir()
	old := filepath.Join(dir, "old.jsonl")
	if err := os.WriteFile(old, []byte("{\"frame\":0}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh.jsonl")
	for _, out := range []string{old, fresh} {
		r := yedge(t, nil, "detect", "--model", model, "--source", filepath.Join(dir, "missing.avi"), "--out", out)
		if r.code != exitSource {
			t.Errorf("exit %d, want %d\n%s", r.code, exitSource, r.stderr)
		}
	}
	if b, _ := os.ReadFile(old); string(b) != "{\"frame\":0}\n" {
		t.Errorf("the earlier output was changed: %q", b)
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Error("an empty output file was left behind")
	}
}

// TestHostileFlagsServe: serve's numeric flags are the global ones; they
// are refused before the config is even read. config check takes them too
// (they override the file it checks).
func TestHostileFlagsServe(t *testing.T) {
	runHostile(t, []string{"serve", "--config", "/nonexistent/yedge.yaml"}, globalCases)
	runHostile(t, []string{"config", "check", "/nonexistent/yedge.yaml"}, globalCases)
}

// TestHostileConfigValues: out-of-range, NaN, wrong-type and fractional
// values of config keys are refused by serve and config check with exit 2,
// one line per problem naming the file, line, key, value and range, and
// no trace.
func TestHostileConfigValues(t *testing.T) {
	base := fmt.Sprintf(`model:
  fp32: %s
  int8: %s
streams:
  - name: file
    uri: %s
`, fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), fixtures.Path(t, "media", "vtest.avi"))
	for _, tc := range []struct{ extra, want string }{
		{"provider:\n  threads: -1\n", "provider.threads: -1 is out of range: want [0, 1024]"},
		{"provider:\n  threads: 99999999999999999999\n", "provider.threads: want an integer"},
		{"provider:\n  threads: 1.5\n", "provider.threads: want an integer, got number 1.5"},
		{"provider:\n  threads: abc\n", `provider.threads: want an integer, got string "abc"`},
		{"thresholds:\n  conf: .nan\n", "thresholds.conf: NaN is out of range: want [0, 1]"},
		{"thresholds:\n  iou: 1e309\n", `thresholds.iou: want a number, got string "1e309"`},
		{"thresholds:\n  iou: .inf\n", "thresholds.iou: +Inf is out of range"},
		{"shadow:\n  every_n: 0\n", "shadow.every_n: 0 is out of range: want [1, 1000000]"},
		{"shadow:\n  budget: 1\n", "shadow.budget: 1 is out of range: want [0, 1)"},
		{"model:\n  batch: 65\n", "model.batch: 65 is out of range"},
		{"model:\n  imgsz: 99968\n", `model.imgsz: imgsz "99968"`},
		{"model:\n  interp: cubic\n", `model.interp: interpolation "cubic": must be one of area, linear, auto`},
		{"http:\n  max_body_bytes: 0\n", "http.max_body_bytes: 0 is out of range"},
		{"shutdown_timeout: -1s\n", "shutdown_timeout: must not be negative"},
		{"shutdown_timeout: 2h\n", "shutdown_timeout: 2h0m0s is out of range: want (0s, 1h0m0s]"},
	} {
		text := base + tc.extra
		if strings.HasPrefix(tc.extra, "model:") {
			text = strings.Replace(base, "model:\n", tc.extra, 1)
		}
		path := filepath.Join(t.TempDir(), "yedge.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"config", "check", path}, {"serve", "--config", path}} {
			r := yedge(t, nil, args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%s %q: exit %d (want %d), stderr lacks %q:\n%s", args[0], tc.extra, r.code, exitUsage, tc.want, r.stderr)
			}
			for _, bad := range []string{"goroutine ", "panic:", "fatal error"} {
				if strings.Contains(r.stdout+r.stderr, bad) {
					t.Errorf("%s %q: output contains %q", args[0], tc.extra, bad)
				}
			}
		}
	}
}
