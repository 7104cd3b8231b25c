package pipeline

import (
	"context"
	"math"
	"testing"

	"github.com/yedge/yedge/eval"
	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/postprocess"
)

// The reference figures of ../shared/README.md (Ultralytics val loop, square
// 640 letterbox) for coco-val128.
func TestEvalMatchesReference(t *testing.T) {
	if testing.Short() {
		t.Skip("eval over 128 images per model")
	}
	initORT(t)
	data := fixtures.Path(t, "datasets", "coco-val128")
	ds, err := eval.LoadDataset(data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model         string
		map50, map595 float64
	}{
		{"yolov5n.onnx", 0.521, 0.338},
		{"yolov5n-dynamic.onnx", 0.521, 0.338},
		{"yolov5n-qdq-torch.onnx", 0.523, 0.336},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			d, err := New(Config{Model: fixtures.Model(t, tc.model), Runtime: onnxrt.Options{Provider: "cpu"}})
			if err != nil {
				t.Fatal(err)
			}
			defer closeOK(t, d)
			res, st, err := Evaluate(context.Background(), d, ds, postprocess.EvalOptions(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: P %.3f R %.3f mAP50 %.4f mAP50-95 %.4f (images %d, labels %d, skipped %d)",
				tc.model, res.Precision, res.Recall, res.MAP50, res.MAP50_95, res.Images, res.Labels, st.Skipped)
			if res.Images != 128 || res.Labels != 898 {
				t.Errorf("images %d labels %d, want 128 and 898", res.Images, res.Labels)
			}
			if math.Abs(res.MAP50_95-tc.map595) > 0.005 {
				t.Errorf("mAP50-95 = %.4f, want %.3f ± 0.005", res.MAP50_95, tc.map595)
			}
			if tc.model != "yolov5n-qdq-torch.onnx" && math.Abs(res.MAP50-tc.map50) > 0.005 {
				t.Errorf("mAP50 = %.4f, want %.3f ± 0.005", res.MAP50, tc.map50)
			}
		})
	}
}
