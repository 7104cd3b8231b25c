package ptq_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/ptq"
	"github.com/yedge/yedge/quant"
)

func initORT(t *testing.T) {
	t.Helper()
	if _, err := onnxrt.Init("", ""); err != nil {
		t.Fatalf("onnxruntime: %v", err)
	}
}

// TestRecipe quantizes the real FP32 model with both layouts on a few
// calibration images: the target's defaults apply unless given, the
// result is a Q/DQ model, and the same recipe again (from the cache it
// wrote) gives the same bytes.
func TestRecipe(t *testing.T) {
	initORT(t)
	images := fixtures.Path(t, "datasets", "coco-calib128", "images")
	keep := false
	tests := []struct {
		name     string
		recipe   ptq.Recipe
		method   quant.CalibMethod
		keepHead bool
	}{
		{"tensorrt, defaults", ptq.Recipe{Target: quant.TargetTensorRT}, "", true},
		{"cpu, max, head quantized", ptq.Recipe{Target: quant.TargetCPU, Method: quant.Max, KeepHead: &keep}, quant.Max, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.recipe
			r.Model, r.Calib, r.Images = fixtures.Model(t, "yolov5n.onnx"), images, 3
			r.Cache = filepath.Join(t.TempDir(), "calib.json")
			r.Runtime = onnxrt.Options{Provider: "cuda", Threads: 2} // calibration always runs on the CPU
			want, wantHead := ptq.Defaults(r.Target)
			if tc.method != "" {
				want, wantHead = tc.method, tc.keepHead
			}
			var saved [2][]byte
			for i := range saved {
				job, err := ptq.Open(r)
				if err != nil {
					t.Fatal(err)
				}
				o := job.Options
				if o.Method != want || o.KeepHead != wantHead || o.Calibrate.Runtime.Provider != onnxrt.ProviderCPU || job.Images() != 3 {
					t.Fatalf("options %+v, %d images", o, job.Images())
				}
				res, err := job.Run(context.Background())
				job.Close()
				if err != nil {
					t.Fatal(err)
				}
				if !quant.IsQDQ(res.Model) || res.CacheHit != (i == 1) {
					t.Fatalf("run %d: Q/DQ %v, cache hit %v", i, quant.IsQDQ(res.Model), res.CacheHit)
				}
				out := filepath.Join(t.TempDir(), "int8.onnx")
				if err := res.Model.Save(out); err != nil {
					t.Fatal(err)
				}
				if saved[i], err = os.ReadFile(out); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(saved[0], saved[1]) {
				t.Error("the same recipe made different bytes from its own calibration cache")
			}
		})
	}
}

// TestRecipeErrors: every input is checked before any calibration, with
// a typed error naming what is at fault.
func TestRecipeErrors(t *testing.T) {
	fp32 := fixtures.Model(t, "yolov5n.onnx")
	images := fixtures.Path(t, "datasets", "coco-calib128", "images")
	tests := []struct {
		name  string
		r     ptq.Recipe
		check func(error) bool
	}{
		{"already quantized", ptq.Recipe{Model: fixtures.Model(t, "yolov5n-qdq-torch.onnx"), Calib: images, Images: 1}, isType[*pipeline.ModelError]},
		{"no such model", ptq.Recipe{Model: filepath.Join(t.TempDir(), "none.onnx"), Calib: images, Images: 1}, isType[*pipeline.ModelError]},
		{"no calibration input", ptq.Recipe{Model: fp32}, func(err error) bool { return errors.Is(err, ptq.ErrNoCalibration) }},
		{"no such images folder", ptq.Recipe{Model: fp32, Calib: filepath.Join(t.TempDir(), "none"), Images: 1}, isType[*ptq.CalibError]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job, err := ptq.Open(tc.r)
			if err == nil {
				job.Close()
			}
			if !tc.check(err) {
				t.Fatalf("err %v (%T)", err, err)
			}
		})
	}
}

func isType[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}
