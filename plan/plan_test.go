package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/yedge/yedge/config"
	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testmodels"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/source"
)

func build(t *testing.T, yaml string, o Overrides) *Daemon {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), filepath.Join(t.TempDir(), "yedge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := Build(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func configText(t *testing.T, extra string) string {
	return fmt.Sprintf(`model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 2
streams:
  - name: cam
    uri: camera:3
  - name: file
    uri: %s
`, fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), fixtures.Path(t, "media", "vtest.avi")) + extra
}

func TestFlagsOverrideFile(t *testing.T) {
	one, cuda, cache, no := 1, "cuda", "/var/cache/x", false
	for _, tc := range []struct {
		name     string
		o        Overrides
		provider string
		threads  int
		cache    string
		fp16     bool
	}{
		{"file", Overrides{}, "cpu", 2, onnxrt.DefaultTensorRTCacheDir(), true},
		{"threads flag", Overrides{Threads: &one}, "cpu", 1, onnxrt.DefaultTensorRTCacheDir(), true},
		{"provider flag", Overrides{Provider: &cuda}, "cuda", 2, onnxrt.DefaultTensorRTCacheDir(), true},
		{"trt flags", Overrides{TRTCache: &cache, TRTFP16: &no}, "cpu", 2, cache, false},
	} {
		d := build(t, configText(t, ""), tc.o)
		r := d.Serve.Runtime
		if r.Provider != tc.provider || r.Threads != tc.threads || r.TensorRT.CacheDir != tc.cache || r.TensorRT.FP16 != tc.fp16 || !r.NoSpin {
			t.Errorf("%s: runtime %+v, want provider %s threads %d cache %s fp16 %v", tc.name, r, tc.provider, tc.threads, tc.cache, tc.fp16)
		}
	}
}

func TestBuildResolvesEverything(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := build(t, configText(t, "http:\n  token_file: "+token+"\n  read_timeout: 2s\n"), Overrides{})
	p := d.Serve
	if p.Models.FP32.SHA256 == "" || p.Models.Int8.SHA256 == "" || p.Models.FP32.SHA256 == p.Models.Int8.SHA256 {
		t.Errorf("model hashes %q %q", p.Models.FP32.SHA256, p.Models.Int8.SHA256)
	}
	if p.Models.Batch != 1 {
		t.Errorf("batch %d, want 1 (the int8 model's batch is fixed)", p.Models.Batch)
	}
	cam := p.Streams[0].Source
	if cam.Kind != source.Camera || cam.Camera != 3 || !cam.Reconnect || cam.ReadTimeout != source.DefaultLiveReadTimeout {
		t.Errorf("camera:3 → %+v", cam)
	}
	if f := p.Streams[1].Source; f.Kind != source.Video || f.ReadTimeout != 0 {
		t.Errorf("video stream → %+v", f)
	}
	if p.HTTP.Token != "s3cret" || p.HTTP.ReadHeaderTimeout != 2*time.Second || !p.HTTP.EnablePost || !p.HTTP.UI {
		t.Errorf("http %+v", p.HTTP)
	}
	if !p.Shadow.Enabled || p.Shadow.EveryN != 10 || p.Shadow.IoU != 0.5 || p.Post.Conf != 0.25 {
		t.Errorf("shadow %+v post %+v", p.Shadow, p.Post)
	}
}

// TestBatchFollowsTheModel: the default batch (one per stream) applies to
// a dynamic-batch model; a static one runs its own batch, so that adding a
// stream is not a model change on reload.
func TestBatchFollowsTheModel(t *testing.T) {
	for _, tc := range []struct {
		int8 string
		want int
	}{
		{fixtures.Model(t, "yolov5n-qdq-torch.onnx"), 1},
		{fixtures.Model(t, "yolov5n-dynamic.onnx"), 2},
	} {
		yaml := fmt.Sprintf(`model:
  fp32: %s
  int8: %s
streams:
  - name: a
    uri: camera:0
  - name: b
    uri: camera:1
`, fixtures.Model(t, "yolov5n.onnx"), tc.int8)
		if got := build(t, yaml, Overrides{}).Serve.Models.Batch; got != tc.want {
			t.Errorf("%s: batch %d, want %d", filepath.Base(tc.int8), got, tc.want)
		}
	}
}

// TestInterpReachesServe: model.interp becomes serve's ModelsPlan.Interp,
// auto (preprocess.DeployInterp) when left out.
func TestInterpReachesServe(t *testing.T) {
	for _, tc := range []struct {
		line string
		want preprocess.Interp
	}{
		{"", preprocess.InterpAuto},
		{"  interp: linear\n", preprocess.InterpLinear},
		{"  interp: area\n", preprocess.InterpReference},
	} {
		yaml := fmt.Sprintf("model:\n  fp32: %s\n  int8: %s\n%sstreams:\n  - name: a\n    uri: camera:0\n",
			fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), tc.line)
		if got := build(t, yaml, Overrides{}).Serve.Models.Interp; got != tc.want {
			t.Errorf("%q: interp %v, want %v", tc.line, got, tc.want)
		}
	}
}

// TestQuantizeSizeFromModel: with imgsz empty, start-up quantization
// calibrates at the model's own static size, as `yedge quantize` does
// (and as the detector will run), not at 640.
func TestQuantizeSizeFromModel(t *testing.T) {
	static := testmodels.Static(t, fixtures.Model(t, "yolov5n-dynamic.onnx"), 320, 416, 13)
	for _, tc := range []struct {
		model, imgsz string
		h, w         int
	}{
		{static, "", 320, 416},
		{fixtures.Model(t, "yolov5n-dynamic.onnx"), "", 640, 640},
		{fixtures.Model(t, "yolov5n-dynamic.onnx"), "imgsz: 384x640\n  ", 384, 640},
	} {
		yaml := fmt.Sprintf(`model:
  fp32: %s
  %squantize:
    calib: %s
    cache_dir: %s
streams:
  - name: file
    uri: %s
`, tc.model, tc.imgsz, fixtures.Path(t, "datasets", "coco-calib128", "images"), t.TempDir(), fixtures.Path(t, "media", "vtest.avi"))
		d := build(t, yaml, Overrides{})
		if q := d.Quantize; q == nil || q.Height != tc.h || q.Width != tc.w || q.Method != "mse" || !q.KeepHead {
			t.Errorf("%s %q: quantize %+v, want %dx%d mse keep-head", filepath.Base(tc.model), tc.imgsz, q, tc.h, tc.w)
		}
		if d.Serve.Models.Int8.Path != "" {
			t.Errorf("int8 path %q before Prepare", d.Serve.Models.Int8.Path)
		}
	}
}

// model.full_graph flows into the serve plan (default: the raw-head decode).
func TestFullGraphKey(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want bool
	}{
		{"", false},
		{"  full_graph: true\n", true},
		{"  full_graph: false\n", false},
	} {
		yaml := fmt.Sprintf("model:\n  fp32: %s\n  int8: %s\n%sstreams:\n  - name: a\n    uri: camera:0\n",
			fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), tc.yaml)
		if got := build(t, yaml, Overrides{}).Serve.Models.FullGraph; got != tc.want {
			t.Errorf("%q: FullGraph %v, want %v", tc.yaml, got, tc.want)
		}
	}
}
