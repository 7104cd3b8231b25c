package onnxrt

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yedge/yedge/internal/testkit/fixtures"
)

func TestFindLibraryOrder(t *testing.T) {
	dir := t.TempDir()
	flagLib := filepath.Join(dir, "flag.so")
	envLib := filepath.Join(dir, "env.so")
	cfgLib := filepath.Join(dir, "cfg.so")
	for _, p := range []string{flagLib, envLib, cfgLib} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, flag, env, cfg string
		want, origin         string
		wantErr              string
	}{
		{"flag wins", flagLib, envLib, cfgLib, flagLib, OriginExplicit, ""},
		{"env next", "", envLib, cfgLib, envLib, EnvLibrary, ""},
		{"config next", "", "", cfgLib, cfgLib, "config", ""},
		{"missing flag is an error", filepath.Join(dir, "nope.so"), envLib, "", "", "", "nope.so"},
		{"missing env is an error", "", filepath.Join(dir, "gone.so"), "", "", "", "gone.so"},
		{"directory is an error", dir, "", "", "", "", "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvLibrary, tc.env)
			c, err := FindLibrary(tc.flag, tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Path != tc.want || c.Origin != tc.origin {
				t.Errorf("got %+v, want %s from %s", c, tc.want, tc.origin)
			}
		})
	}
}

func TestFindLibraryNotFoundListsPlaces(t *testing.T) {
	t.Setenv(EnvLibrary, "")
	t.Setenv("LD_LIBRARY_PATH", "/nonexistent-yedge")
	t.Chdir(t.TempDir())
	_, err := FindLibrary("", "")
	var nf *LibraryNotFoundError
	if err == nil {
		t.Skip("a system onnxruntime is installed; cannot test the not-found path here")
	}
	if !errors.As(err, &nf) {
		t.Fatalf("err = %v, want LibraryNotFoundError", err)
	}
	if !strings.Contains(err.Error(), "/usr/local/lib/libonnxruntime.so") || !strings.Contains(err.Error(), "/nonexistent-yedge") {
		t.Errorf("error does not list the places tried: %v", err)
	}
}

func TestTensorRTProviderOptions(t *testing.T) {
	o := Options{DeviceID: 1, TensorRT: TensorRTOptions{FP16: true, INT8: true, CacheDir: "/var/cache/yedge", DLACore: 0, WorkspaceBytes: 1 << 30, ModelKey: "0123456789abcdef"}}
	m := TensorRTProviderOptions(o)
	want := map[string]string{
		"device_id": "1", "trt_fp16_enable": "1", "trt_int8_enable": "1",
		"trt_engine_cache_enable": "1", "trt_engine_cache_path": "/var/cache/yedge/engines/0123456789abcdef",
		"trt_timing_cache_enable": "1", "trt_timing_cache_path": "/var/cache/yedge/timing",
		"trt_dla_enable": "1", "trt_dla_core": "0", "trt_max_workspace_size": "1073741824",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	m = TensorRTProviderOptions(Options{TensorRT: DefaultTensorRTOptions("")})
	if _, ok := m["trt_engine_cache_path"]; ok {
		t.Error("no cache dir should set no cache path")
	}
	if _, ok := m["trt_dla_enable"]; ok {
		t.Error("DLA must be off by default")
	}
}

func initORT(t *testing.T) {
	t.Helper()
	if _, err := Init("", ""); err != nil {
		t.Fatalf("onnxruntime: %v", err)
	}
}

// The CI machine has no GPU and the official CPU build has neither the
// TensorRT nor the CUDA provider: auto must fall back to CPU, explicit GPU
// providers must fail clearly.
func TestProviderFallback(t *testing.T) {
	initORT(t)
	model := fixtures.Model(t, "yolov5n.onnx")
	cache := t.TempDir()
	tests := []struct {
		provider string
		want     string
		wantErr  bool
	}{
		{"auto", "cpu", false},
		{"", "cpu", false},
		{"cpu", "cpu", false},
		{"tensorrt", "", true},
		{"cuda", "", true},
	}
	for _, tc := range tests {
		t.Run("provider="+tc.provider, func(t *testing.T) {
			s, err := NewSession(model, Options{Provider: tc.provider, Threads: 1, TensorRT: DefaultTensorRTOptions(cache)})
			if tc.wantErr {
				if err == nil {
					closeOK(t, s)
					t.Skipf("%s is available on this machine", tc.provider)
				}
				if !errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), tc.provider) {
					t.Fatalf("err = %v, want ErrProviderUnavailable naming %s", err, tc.provider)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer closeOK(t, s)
			if s.Provider != tc.want {
				t.Errorf("provider = %s, want %s", s.Provider, tc.want)
			}
		})
	}
	if _, err := NewSession(model, Options{Provider: "npu"}); err == nil || !strings.Contains(err.Error(), "npu") {
		t.Errorf("unknown provider: err = %v", err)
	}
}

func TestSessionDiscoversIO(t *testing.T) {
	initORT(t)
	tests := []struct {
		model  string
		input  string
		output string
		shape  []int64
		outs   []int64
	}{
		{"yolov5n.onnx", "images", "output", []int64{1, 3, 640, 640}, []int64{1, 25200, 85}},
		{"yolov5n-dynamic.onnx", "images", "output", []int64{-1, 3, -1, -1}, nil},
		{"yolov5n-qdq-torch.onnx", "images", "output0", []int64{1, 3, 640, 640}, []int64{1, 25200, 85}},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			s, err := NewSession(fixtures.Model(t, tc.model), Options{Provider: "cpu", Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer closeOK(t, s)
			if s.Inputs[0].Name != tc.input || s.Outputs[0].Name != tc.output {
				t.Errorf("io = %v %v", s.Inputs, s.Outputs)
			}
			for i, d := range tc.shape {
				if s.Inputs[0].Shape[i] != d {
					t.Errorf("input shape %v, want %v", s.Inputs[0].Shape, tc.shape)
				}
			}
			shape := []int64{2, 3, 320, 416}
			if tc.shape[0] > 0 {
				shape = tc.shape
			}
			b, err := s.Bind(shape, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			got := b.OutputShape()
			if tc.outs != nil {
				for i := range tc.outs {
					if got[i] != tc.outs[i] {
						t.Errorf("output shape %v, want %v", got, tc.outs)
					}
				}
			} else if want := int64(3 * (10*13 + 20*26 + 40*52)); got[0] != 2 || got[1] != want {
				t.Errorf("dynamic output shape %v, want [2 %d 85]", got, want)
			}
		})
	}
}

func TestNewSessionBadModel(t *testing.T) {
	initORT(t)
	dir := t.TempDir()
	notOnnx := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(notOnnx, []byte("this is not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "missing.onnx"), notOnnx, dir} {
		_, err := NewSession(p, Options{Provider: "cpu"})
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want an error naming the file", p, err)
		}
	}
}

// closeOK closes c and fails the test if that fails.
func closeOK(tb testing.TB, c io.Closer) {
	tb.Helper()
	if err := c.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
}
