package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
)

// baseYAML is a valid configuration over the placeholder files that
// testDir creates; {{dir}} is replaced by that folder.
const baseYAML = `listen: 127.0.0.1:0
model:
  fp32: {{dir}}/fp32.onnx
  int8: {{dir}}/int8.onnx
provider:
  name: cpu
streams:
  - name: a
    uri: {{dir}}/video.avi
  - name: b
    uri: rtsp://cam.local/stream
    fps: 5
shadow:
  every_n: 10
  budget: 0.2
sinks:
  - type: jsonl
    path: {{dir}}/out/det.jsonl
`

// testDir creates placeholder model, video and sink folder files.
func testDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"fp32.onnx", "int8.onnx", "video.avi"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeConfig writes text (with {{dir}} replaced) to dir/yedge.yaml.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "yedge.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "{{dir}}", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lineOf returns the 1-based line of the first line of text holding marker.
func lineOf(t *testing.T, text, marker string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("marker %q not in config", marker)
	return 0
}

func TestLoadValid(t *testing.T) {
	dir := testDir(t)
	c, err := Load(writeConfig(t, dir, baseYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Streams) != 2 || c.Model.Batch != 2 || c.Streams[1].FPS != 5 {
		t.Errorf("parsed %+v", c)
	}
}

func TestLoadProblems(t *testing.T) {
	tests := []struct {
		name string
		// edit turns baseYAML into the faulty configuration.
		edit func(string) string
		// want are substrings of the error; marker, when set, is text on
		// the line the error must name ("yedge.yaml:N:").
		want   []string
		marker string
	}{
		{
			name:   "unknown top-level key",
			edit:   func(s string) string { return strings.Replace(s, "shadow:", "strems: []\nshadow:", 1) },
			want:   []string{`unknown key "strems" at the top level`, `did you mean "streams"`},
			marker: "strems",
		},
		{
			name:   "unknown key in a stream",
			edit:   func(s string) string { return strings.Replace(s, "    fps: 5", "    fps: 5\n    nmae: x", 1) },
			want:   []string{`unknown key "nmae" in streams[1]`, `did you mean "name"`},
			marker: "nmae",
		},
		{
			name:   "unknown nested key far from any",
			edit:   func(s string) string { return strings.Replace(s, "  budget: 0.2", "  budget: 0.2\n  zzzzzzzz: 1", 1) },
			want:   []string{`unknown key "zzzzzzzz" in shadow`, "valid keys: enabled, every_n, budget, iou, window"},
			marker: "zzzzzzzz",
		},
		{
			name:   "sink on the store's index",
			edit:   func(s string) string { return s + "state_dir: {{dir}}/out\n" },
			want:   []string{"sinks[0].path:", "is inside state_dir", "the model store's folder"},
			marker: "path: {{dir}}/out/det.jsonl",
		},
		{
			name: "sink on a store model, spelled with ..",
			edit: func(s string) string {
				return strings.Replace(s, "path: {{dir}}/out/det.jsonl", "path: {{dir}}/out/../out/models/x.onnx", 1) + "state_dir: {{dir}}/out\n"
			},
			want: []string{"sinks[0].path:", "is inside state_dir"},
		},
		{
			name: "quantize cache inside state_dir",
			edit: func(s string) string {
				return strings.Replace(s, "  int8: {{dir}}/int8.onnx\n", "  quantize:\n    calib: {{dir}}/out\n    cache_dir: {{dir}}/out/cache\n", 1) + "state_dir: {{dir}}/out\n"
			},
			want: []string{"model.quantize.cache_dir:", "is inside state_dir"},
		},
		{
			name:   "key with no value",
			edit:   func(s string) string { return strings.Replace(s, "  every_n: 10", "  every_n:", 1) },
			want:   []string{"shadow.every_n: has no value: give one, or leave the key out for its default"},
			marker: "every_n:",
		},
		{
			name:   "stream key with no value",
			edit:   func(s string) string { return strings.Replace(s, "    fps: 5", "    fps:", 1) },
			want:   []string{"streams[1].fps: has no value"},
			marker: "fps:",
		},
		{
			name:   "bad interpolation",
			edit:   func(s string) string { return strings.Replace(s, "model:\n", "model:\n  interp: cubic\n", 1) },
			want:   []string{`model.interp: interpolation "cubic": must be one of area, linear, auto`},
			marker: "interp: cubic",
		},
		{
			name:   "empty interpolation",
			edit:   func(s string) string { return strings.Replace(s, "model:\n", "model:\n  interp: \"\"\n", 1) },
			want:   []string{`model.interp: interpolation "": must be one of area, linear, auto`},
			marker: "interp:",
		},
		{
			name:   "unknown URL scheme",
			edit:   func(s string) string { return strings.Replace(s, "rtsp://cam.local/stream", "ftp://x", 1) },
			want:   []string{"streams[1].uri:", `unsupported URL scheme "ftp"`},
			marker: "ftp://x",
		},
		{
			name:   "empty URI",
			edit:   func(s string) string { return strings.Replace(s, "rtsp://cam.local/stream", `""`, 1) },
			want:   []string{"streams[1].uri: required"},
			marker: `uri: ""`,
		},
		{
			name:   "missing video",
			edit:   func(s string) string { return strings.Replace(s, "video.avi", "nope.avi", 1) },
			want:   []string{"streams[0].uri:", "nope.avi", "no such file"},
			marker: "nope.avi",
		},
		{
			name:   "bad camera index",
			edit:   func(s string) string { return strings.Replace(s, "rtsp://cam.local/stream", "camera:x", 1) },
			want:   []string{"streams[1].uri:", "camera:N"},
			marker: "camera:x",
		},
		{
			name:   "missing model file",
			edit:   func(s string) string { return strings.Replace(s, "fp32.onnx", "nope.onnx", 1) },
			want:   []string{"model.fp32: file ", `nope.onnx" does not exist`},
			marker: "nope.onnx",
		},
		{
			name:   "negative fps",
			edit:   func(s string) string { return strings.Replace(s, "fps: 5", "fps: -5", 1) },
			want:   []string{"streams[1].fps: -5 is out of range"},
			marker: "fps: -5",
		},
		{
			name:   "duplicate stream names",
			edit:   func(s string) string { return strings.Replace(s, "name: b", "name: a", 1) },
			want:   []string{`streams[1].name: duplicate stream name "a" (also streams[0])`},
			marker: "rtsp://cam.local", // the line after "name: a" twice: checked below
		},
		{
			name:   "bad stream name",
			edit:   func(s string) string { return strings.Replace(s, "name: b", "name: b c", 1) },
			want:   []string{`streams[1].name: "b c": want up to 64 letters`},
			marker: "name: b c",
		},
		{
			name: "bad duration",
			edit: func(s string) string {
				return strings.Replace(s, "    fps: 5", "    fps: 5\n    read_timeout: 10 parsecs", 1)
			},
			want:   []string{"streams[1].read_timeout:", "want a duration", `"10 parsecs"`},
			marker: "parsecs",
		},
		{
			name:   "negative duration",
			edit:   func(s string) string { return s + "shutdown_timeout: -5s\n" },
			want:   []string{"shutdown_timeout: must not be negative, got -5s"},
			marker: "shutdown_timeout",
		},
		{
			name:   "wrong type",
			edit:   func(s string) string { return strings.Replace(s, "fps: 5", "fps: fast", 1) },
			want:   []string{`streams[1].fps: want a number, got string "fast"`},
			marker: "fps: fast",
		},
		{
			name:   "fraction for an integer",
			edit:   func(s string) string { return strings.Replace(s, "every_n: 10", "every_n: 2.5", 1) },
			want:   []string{"shadow.every_n: want an integer, got number 2.5"},
			marker: "every_n: 2.5",
		},
		{
			name:   "list where a mapping is wanted",
			edit:   func(s string) string { return strings.Replace(s, "provider:\n  name: cpu", "provider: [cpu]", 1) },
			want:   []string{"provider: want a mapping (keys name, threads, device_id, tensorrt), got a list"},
			marker: "provider: [cpu]",
		},
		{
			name:   "duplicate key",
			edit:   func(s string) string { return strings.Replace(s, "  budget: 0.2", "  budget: 0.2\n  every_n: 3", 1) },
			want:   []string{`shadow.every_n: duplicate key "every_n" (first at line `},
			marker: "every_n: 3",
		},
		{
			name:   "shadow.every_n below 1",
			edit:   func(s string) string { return strings.Replace(s, "every_n: 10", "every_n: 0", 1) },
			want:   []string{"shadow.every_n: 0 is out of range"},
			marker: "every_n: 0",
		},
		{
			name:   "budget of 1",
			edit:   func(s string) string { return strings.Replace(s, "budget: 0.2", "budget: 1", 1) },
			want:   []string{"shadow.budget: 1 is out of range: want [0, 1)", "1 is out of range"},
			marker: "budget: 1",
		},
		{
			name:   "negative budget",
			edit:   func(s string) string { return strings.Replace(s, "budget: 0.2", "budget: -0.1", 1) },
			want:   []string{"shadow.budget: -0.1 is out of range: want [0, 1)", "-0.1 is out of range"},
			marker: "budget: -0.1",
		},
		{
			name: "quantize without cache_dir",
			edit: func(s string) string {
				return strings.Replace(s, "  int8: {{dir}}/int8.onnx", "  quantize:\n    calib: {{dir}}/out\n    target: cpu", 1)
			},
			want:   []string{"model.quantize.cache_dir: required"},
			marker: "quantize:",
		},
		{
			name: "quantize with a bad target and method",
			edit: func(s string) string {
				return strings.Replace(s, "  int8: {{dir}}/int8.onnx", "  quantize:\n    calib: {{dir}}/out\n    cache_dir: {{dir}}/q\n    target: gpu\n    method: best", 1)
			},
			want:   []string{"model.quantize.target: unknown target \"gpu\"", "model.quantize.method: unknown calibration method \"best\""},
			marker: "target: gpu",
		},
		{
			name:   "int8 and quantize both empty",
			edit:   func(s string) string { return strings.Replace(s, "  int8: {{dir}}/int8.onnx\n", "", 1) },
			want:   []string{"model.int8 or model.quantize is required"},
			marker: "model:",
		},
		{
			name: "credentials never in errors",
			edit: func(s string) string {
				s = strings.Replace(s, "rtsp://cam.local/stream", "rtsp://admin:hunter2@10.0.0.1/x", 1)
				s = strings.Replace(s, "fps: 5", "fps: -1", 1)
				return strings.Replace(s, "{{dir}}/video.avi", "ftp://admin:hunter2@10.0.0.2/y", 1)
			},
			want:   []string{"streams[1].fps: -1 is out of range", "streams[0].uri:", "ftp://***@"},
			marker: "fps: -1",
		},
		{
			name: "every problem at once",
			edit: func(s string) string {
				return strings.Replace(strings.Replace(s, "fps: 5", "fps: -5", 1), "every_n: 10", "every_n: 0", 1)
			},
			want:   []string{"streams[1].fps: -5 is out of range", "shadow.every_n: 0 is out of range"},
			marker: "every_n: 0",
		},
		{
			name:   "sink folder missing",
			edit:   func(s string) string { return strings.Replace(s, "out/det.jsonl", "nodir/det.jsonl", 1) },
			want:   []string{"sinks[0].path: the folder", "nodir"},
			marker: "nodir",
		},
		{
			name:   "token file missing",
			edit:   func(s string) string { return s + "http:\n  token_file: {{dir}}/token\n" },
			want:   []string{"http.token_file: file ", `token" does not exist`},
			marker: "token_file",
		},
		{
			name:   "token file not a regular file",
			edit:   func(s string) string { return s + "http:\n  token_file: /dev/null\n" },
			want:   []string{`http.token_file: "/dev/null" is not a regular file`},
			marker: "token_file",
		},
		{
			name:   "body limit",
			edit:   func(s string) string { return s + "http:\n  max_body_bytes: 0\n" },
			want:   []string{"http.max_body_bytes: 0 is out of range"},
			marker: "max_body_bytes",
		},
		{
			name:   "no streams",
			edit:   func(s string) string { return s[:strings.Index(s, "streams:")] + "streams: []\n" },
			want:   []string{"streams: at least one stream is required"},
			marker: "streams: []",
		},
		{
			name:   "top level not a mapping",
			edit:   func(string) string { return "- a\n- b\n" },
			want:   []string{"the top level must be a mapping", "got a list"},
			marker: "- a",
		},
		{
			name:   "not YAML",
			edit:   func(string) string { return "model:\n  fp32: x\n   int8: [\n" },
			want:   []string{"invalid YAML"},
			marker: "",
		},
		{
			name:   "empty file",
			edit:   func(string) string { return "# nothing\n" },
			want:   []string{"empty configuration"},
			marker: "",
		},
		{
			name:   "two documents",
			edit:   func(s string) string { return s + "---\nlisten: x\n" },
			want:   []string{"several YAML documents"},
			marker: "---",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			text := tc.edit(baseYAML)
			path := writeConfig(t, dir, text)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("no error for\n%s", text)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if tc.marker != "" {
				line := lineOf(t, text, tc.marker)
				if tc.name == "duplicate stream names" {
					line = strings.Count(text[:strings.LastIndex(text, "name: a")], "\n") + 1
				}
				if want := fmt.Sprintf("yedge.yaml:%d: ", line); !strings.Contains(msg, want) {
					t.Errorf("error does not name line %d (%q):\n%s", line, want, msg)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("credentials leaked:\n%s", msg)
			}
			if ps := Problems(err); len(ps) == 0 {
				t.Errorf("no *Problem in %T", err)
			}
		})
	}
}

// Every problem is a *Problem with the file, line and key path.
func TestProblemFields(t *testing.T) {
	dir := testDir(t)
	text := strings.Replace(strings.Replace(baseYAML, "fps: 5", "fps: -5", 1), "every_n: 10", "every_n: 0", 1)
	_, err := Load(writeConfig(t, dir, text))
	ps := Problems(err)
	if len(ps) != 2 {
		t.Fatalf("%d problems, want 2: %v", len(ps), err)
	}
	if ps[0].Path != "streams[1].fps" || ps[0].Line != lineOf(t, text, "fps: -5") || !strings.HasSuffix(ps[0].File, "yedge.yaml") {
		t.Errorf("first problem %+v", ps[0])
	}
	if ps[1].Path != "shadow.every_n" || ps[1].Line <= ps[0].Line {
		t.Errorf("second problem %+v", ps[1])
	}
	var p *Problem
	if !errors.As(err, &p) {
		t.Error("errors.As finds no *Problem")
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`model: {fp32: m.onnx, int8: q.onnx, quantize: {cache_dir: c}}
streams:
  - {name: cam, uri: "rtsp://h/x"}
  - {name: file, uri: video.avi}
  - {name: pipe, uri: "videotestsrc ! appsink"}
  - {name: usb, uri: "camera:0"}
  - {name: file2, uri: clip.mp4, read_timeout: 3}
eval: {data: ds}
sinks: [{type: jsonl, path: d.jsonl}]
`), "")
	if err != nil {
		t.Fatal(err)
	}
	sp := func(a ...any) string { return strings.TrimSuffix(fmt.Sprintln(a...), "\n") }
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("listen", c.Listen, DefaultListen)
	check("log_level", c.LogLevel, "info")
	check("log_format", c.LogFormat, "text")
	check("shutdown_timeout", c.ShutdownTimeout, "10s")
	check("batch", c.Model.Batch, 5)
	check("interp", c.Model.Interp, "auto")
	q := c.Model.Quantize
	check("quantize", sp(q.Images, q.Target, q.Method, *q.KeepHead), "128 tensorrt mse true")
	check("provider", c.Provider.Name, "auto")
	check("trt fp16/int8", sp(*c.Provider.TensorRT.FP16, *c.Provider.TensorRT.INT8, c.Provider.TensorRT.DLACore == nil), "true true true")
	check("thresholds", c.Thresholds, Thresholds{0.25, 0.45, 300})
	for i, want := range []string{"10s", "0s", "10s", "10s", "3s"} {
		check(c.Streams[i].Name+" read_timeout", c.Streams[i].ReadTimeout, want)
	}
	r := c.Streams[0].Reconnect
	check("reconnect", sp(*r.Enabled, r.MinBackoff, r.MaxBackoff, r.MaxRetries), "true 500ms 30s 0")
	s := c.Shadow
	check("shadow", sp(*s.Enabled, s.EveryN, s.Budget, s.IoU, s.Window), "true 10 0 0.5 200")
	check("eval on_start", *c.Eval.OnStart, true)
	k := c.Sinks[0]
	check("sink", sp(k.MaxSizeMB, k.MaxFiles, k.FlushInterval), "100 5 1s")
	h := c.HTTP
	check("http", sp(h.MaxBodyBytes, h.ReadTimeout, h.WriteTimeout, *h.EnablePost, h.TokenFile, *h.UI), "4096 5s 30s true  true")

	// Nine streams: the default batch is capped at 8; eval off without data.
	var b strings.Builder
	b.WriteString("model: {fp32: m, int8: q}\nstreams:\n")
	for i := range 9 {
		fmt.Fprintf(&b, "  - {name: s%d, uri: 'rtsp://h/%d'}\n", i, i)
	}
	c, err = Parse([]byte(b.String()), "")
	if err != nil {
		t.Fatal(err)
	}
	check("batch of 9 streams", c.Model.Batch, 8)
	check("eval on_start without data", *c.Eval.OnStart, false)
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"500ms", 500 * time.Millisecond, ""},
		{"10s", 10 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"7", 7 * time.Second, ""},
		{"0", 0, ""},
		{"'12'", 12 * time.Second, ""},
		{"-1", 0, "negative"},
		{"-2s", 0, "negative"},
		{"1.5", 0, "want a duration"},
		{"soon", 0, "want a duration"},
		{"[1]", 0, "want a duration"},
		{"99999999999999", 0, "too long"},
	} {
		c, err := Parse([]byte("shutdown_timeout: "+tc.in+"\n"), "d.yaml")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "d.yaml:1: shutdown_timeout: ") {
				t.Errorf("%s: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || c.ShutdownTimeout.Std() != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.in, c, err, tc.want)
		}
	}
}

// Relative paths are resolved against the config file's folder.
func TestRelativePaths(t *testing.T) {
	dir := testDir(t)
	sub := filepath.Join(dir, "etc")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("{{dir}}/", "../").Replace(baseYAML)
	path := filepath.Join(sub, "yedge.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model.FP32 != filepath.Join(dir, "fp32.onnx") || c.Streams[0].URI != filepath.Join(dir, "video.avi") ||
		c.Sinks[0].Path != filepath.Join(dir, "out", "det.jsonl") || c.Streams[1].URI != "rtsp://cam.local/stream" {
		t.Errorf("paths not resolved: %s %s %s %s", c.Model.FP32, c.Streams[0].URI, c.Sinks[0].Path, c.Streams[1].URI)
	}
	if c.Path != path {
		t.Errorf("Path = %q", c.Path)
	}
}

func TestSearch(t *testing.T) {
	dir := t.TempDir()
	etc, local := filepath.Join(dir, "etc.yaml"), filepath.Join(dir, "local.yaml")
	old := searchPaths
	searchPaths = []string{etc, local}
	defer func() { searchPaths = old }()

	_, err := Search("")
	if err == nil || !strings.Contains(err.Error(), etc) || !strings.Contains(err.Error(), local) || !strings.Contains(err.Error(), "--config") {
		t.Errorf("nothing found: err %v", err)
	}
	if err := os.WriteFile(local, []byte("listen: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := Search(""); p != local || err != nil {
		t.Errorf("only local: %q %v", p, err)
	}
	if err := os.WriteFile(etc, []byte("listen: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := Search(""); p != etc || err != nil {
		t.Errorf("both: %q %v, want the /etc one first", p, err)
	}
	explicit := filepath.Join(dir, "mine.yaml")
	if _, err := Search(explicit); err == nil || !strings.Contains(err.Error(), "mine.yaml") {
		t.Errorf("missing explicit: %v", err)
	}
	if err := os.WriteFile(explicit, []byte("listen: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := Search(explicit); p != explicit || err != nil {
		t.Errorf("explicit: %q %v", p, err)
	}
	if _, err := Search(dir); err == nil {
		t.Error("a folder is accepted")
	}
	if len(old) != 2 || old[0] != "/etc/yedge/yedge.yaml" || old[1] != "configs/yedge.yaml" {
		t.Errorf("search paths %v", old)
	}
}

func TestExamples(t *testing.T) {
	for _, name := range []string{"yedge.yaml", "jetson.yaml"} {
		data, err := os.ReadFile(shippedConfig(name))
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(data, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(c.Streams) == 0 || c.Model.FP32 == "" {
			t.Errorf("%s: %+v", name, c)
		}
		lines := strings.Split(string(data), "\n")
		for i, l := range lines {
			s := strings.TrimSpace(l)
			if s == "" || strings.HasPrefix(s, "#") || !strings.Contains(s, ":") {
				continue
			}
			if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
				if name == "yedge.yaml" {
					t.Errorf("%s:%d: key without a comment: %s", name, i+1, s)
				}
			}
		}
	}
	c, _ := Parse(mustRead(t, shippedConfig("jetson.yaml")), "jetson.yaml")
	if c.Model.Quantize == nil || c.Model.Quantize.Target != "tensorrt" || c.Provider.Name != "tensorrt" ||
		c.Provider.TensorRT.CacheDir != "/var/cache/yedge/tensorrt" || !strings.Contains(c.Streams[0].URI, "nvarguscamerasrc sensor-id=0 ! ") {
		t.Errorf("jetson.yaml: %+v", c)
	}
	if c.Streams[0].ReadTimeout.Std() != 5*time.Second {
		t.Errorf("jetson read_timeout %v", c.Streams[0].ReadTimeout)
	}
}

// shippedConfig is the path of a configuration file in the repository's
// configs folder (the examples and the development configuration).
func shippedConfig(name string) string { return filepath.Join("..", "configs", name) }

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The development configuration validates on the shared fixtures.
func TestDevConfig(t *testing.T) {
	fixtures.Path(t, "models", "yolov5n.onnx")
	fixtures.Path(t, "media", "vtest.avi")
	fixtures.Path(t, "datasets", "coco-val128")
	c, err := Load(shippedConfig(filepath.Join("testdata", "dev.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Streams) != 2 || !c.Streams[0].Loop || c.Eval.Data == "" || len(c.Sinks) != 2 {
		t.Errorf("%+v", c)
	}
}

func TestTokenFile(t *testing.T) {
	dir := testDir(t)
	token := filepath.Join(dir, "token")
	for _, tc := range []struct{ content, want string }{
		{"  \n", `is empty`},
		{"s3cret\n", ""},
	} {
		if err := os.WriteFile(token, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(writeConfig(t, dir, baseYAML+"http:\n  token_file: {{dir}}/token\n"))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.content, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "http.token_file: ") || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: err %v, want %q", tc.content, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Error("token printed")
		}
	}
}

// TestRangesInReadme keeps README's table of key ranges in step with the
// one the validator checks.
func TestRangesInReadme(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Ranges() {
		row := fmt.Sprintf("| `%s` | %s |", r.Key, r)
		if !strings.Contains(string(readme), row) {
			t.Errorf("README lacks the row %s", row)
		}
	}
}

// TestEveryRangeIsChecked: a value just outside each range is refused with
// a message naming the key, the value and the range.
func TestEveryRangeIsChecked(t *testing.T) {
	for _, r := range Ranges() {
		if r.Key == "streams[].reconnect.max_backoff" {
			continue // also checked against min_backoff: see TestLoadProblems
		}
		key := strings.ReplaceAll(r.Key, "[]", "[0]")
		bad := r.Max + 1
		if r.Duration {
			bad = r.Max * 2
		}
		cfg := minimalConfig(t)
		if !setNumber(t, cfg, key, bad) {
			t.Errorf("%s: not settable", key)
			continue
		}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), key+": ") || !strings.Contains(err.Error(), "is out of range: want "+r.String()) {
			t.Errorf("%s = %v: error %v", key, bad, err)
		}
	}
}

// minimalConfig loads baseYAML with a quantize section (so that every
// numeric key exists) over the placeholder files.
func minimalConfig(t *testing.T) *Config {
	t.Helper()
	dir := testDir(t)
	text := strings.Replace(baseYAML, "  int8: {{dir}}/int8.onnx", "  quantize:\n    calib: {{dir}}/out\n    cache_dir: {{dir}}/q", 1)
	cfg, err := Load(writeConfig(t, dir, text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// setNumber sets the numeric field at a key path ("streams[0].fps") by its
// yaml tag; durations take seconds.
func setNumber(t *testing.T, cfg *Config, path string, x float64) bool {
	t.Helper()
	v := reflect.ValueOf(cfg).Elem()
	for _, part := range strings.Split(path, ".") {
		name, idx, hasIdx := strings.Cut(part, "[")
		f, ok := fieldByTag(v.Type(), name)
		if !ok {
			return false
		}
		v = v.FieldByIndex(f.Index)
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		if hasIdx {
			i, _ := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			if i >= v.Len() {
				return false
			}
			v = v.Index(i)
		}
	}
	switch {
	case v.Type() == durationType:
		v.SetInt(int64(x * float64(time.Second)))
	case v.CanInt():
		v.SetInt(int64(x))
	case v.CanFloat():
		v.SetFloat(x)
	default:
		return false
	}
	return true
}

// TestSinkNeverOverwritesAnInput: a jsonl sink whose file is a model, the
// token or a stream file (by any spelling or a hard link) is refused.
func TestSinkNeverOverwritesAnInput(t *testing.T) {
	dir := testDir(t)
	link := filepath.Join(dir, "hard.onnx")
	if err := os.Link(filepath.Join(dir, "fp32.onnx"), link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"{{dir}}/fp32.onnx", "{{dir}}/out/../int8.onnx", link, "{{dir}}/video.avi"} {
		text := strings.Replace(baseYAML, "path: {{dir}}/out/det.jsonl", "path: "+path, 1)
		_, err := Load(writeConfig(t, dir, text))
		if err == nil || !strings.Contains(err.Error(), "an input the sink would overwrite") {
			t.Errorf("sink %s: %v", path, err)
		}
	}
}
