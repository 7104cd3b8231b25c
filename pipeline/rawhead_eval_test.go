package pipeline_test

import (
	"context"
	"log/slog"
	"math"
	"path/filepath"
	"testing"

	"github.com/yedge/yedge/eval"
	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/pipeline/calib"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/quant"
)

// quantizeSmall quantizes the FP32 fixture for a target on 4 calibration
// images (parity does not depend on calibration quality) into dir.
func quantizeSmall(t *testing.T, target quant.Target, keepHead bool, dir string) string {
	t.Helper()
	m, err := onnx.Load(fixtures.Model(t, "yolov5n.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := calib.NewImageInputs(fixtures.Path(t, "datasets", "coco-calib128", "images"), 4, 640, 640)
	if err != nil {
		t.Fatal(err)
	}
	defer inputs.Close()
	log := slog.New(slog.DiscardHandler)
	o := quant.Options{Target: target, Method: quant.MSE, KeepHead: keepHead, Preprocess: inputs.Describe(), Logger: log}
	o.Calibrate.Runtime = onnxrt.Options{Provider: "cpu", Threads: 2, Quiet: true, Logger: log}
	o.Calibrate.Logger = log
	res, err := quant.Quantize(context.Background(), m, inputs, o)
	if err != nil {
		t.Fatalf("quantize for %s: %v", target, err)
	}
	out := filepath.Join(dir, string(target)+".onnx")
	if err := res.Model.Save(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// mAP50-95 on coco-val128 with the raw-head decode equals the full
// graph's within 0.001, for the FP32 models, a foreign Q/DQ model and the
// quantizer's own models for both targets.
func TestRawHeadEvalParity(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates 128 images twice per model")
	}
	if _, err := onnxrt.Init("", ""); err != nil {
		t.Fatalf("onnxruntime: %v", err)
	}
	ds, err := eval.LoadDataset(fixtures.Path(t, "datasets", "coco-val128"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name  string
		model func() string
	}{
		{"yolov5n", func() string { return fixtures.Model(t, "yolov5n.onnx") }},
		{"yolov5n-dynamic at 640", func() string { return fixtures.Model(t, "yolov5n-dynamic.onnx") }},
		{"yolov5n-qdq-torch", func() string { return fixtures.Model(t, "yolov5n-qdq-torch.onnx") }},
		{"quantized for cpu, head float", func() string { return quantizeSmall(t, quant.TargetCPU, true, dir) }},
		{"quantized for tensorrt, head int8", func() string { return quantizeSmall(t, quant.TargetTensorRT, false, dir) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			model := tc.model()
			var got [2]float64
			for k, full := range []bool{false, true} {
				d, err := pipeline.New(pipeline.Config{Model: model, FullGraph: full, Height: 640, Width: 640,
					Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]string{false: pipeline.DecodeRawHead, true: pipeline.DecodeGraph}[full]; d.Decode != want {
					t.Errorf("decode %s (%s), want %s", d.Decode, d.DecodeReason, want)
				}
				res, _, err := pipeline.Evaluate(context.Background(), d, ds, postprocess.EvalOptions(), nil, slog.New(slog.DiscardHandler))
				if cerr := d.Close(); cerr != nil {
					t.Error(cerr)
				}
				if err != nil {
					t.Fatal(err)
				}
				got[k] = res.MAP50_95
			}
			t.Logf("mAP50-95 raw head %.4f, full graph %.4f", got[0], got[1])
			if math.Abs(got[0]-got[1]) > 0.001 || got[1] < 0.3 {
				t.Errorf("mAP50-95 raw head %.4f, full graph %.4f: want equal within 0.001 (and a working model)", got[0], got[1])
			}
		})
	}
}
