package pipeline

import (
	"context"
	"os"
	"testing"

	"github.com/yedge/yedge/eval"
	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
)

// TestEvalInterp measures the mAP of each letterbox interpolation on
// coco-val128, departing from the reference protocol (which keeps area)
// to choose the default of detect and serve. It only logs the figures and
// runs when YEDGE_EVAL_INTERP is set (12 evaluations, a few minutes):
//
//	YEDGE_EVAL_INTERP=1 go test -count=1 -v -run TestEvalInterp ./pipeline
//
// At 640 most COCO images (640 on the long side) are not resized at all,
// so the two agree on them; the smaller input sizes shrink every image, as
// a 1080p camera frame is shrunk into 640.
func TestEvalInterp(t *testing.T) {
	if os.Getenv("YEDGE_EVAL_INTERP") == "" {
		t.Skip("set YEDGE_EVAL_INTERP=1 to measure the mAP of each interpolation")
	}
	initORT(t)
	ds, err := eval.LoadDataset(fixtures.Path(t, "datasets", "coco-val128"))
	if err != nil {
		t.Fatal(err)
	}
	for _, model := range []string{"yolov5n-dynamic.onnx", "yolov5n-qdq-torch.onnx"} {
		for _, size := range []int{640, 512, 416, 320, 224} {
			if model == "yolov5n-qdq-torch.onnx" && size != 640 {
				continue // a static 640x640 model
			}
			for _, interp := range []preprocess.Interp{preprocess.InterpReference, preprocess.InterpLinear} {
				d, err := New(Config{Model: fixtures.Model(t, model), Runtime: onnxrt.Options{Provider: "cpu"},
					Height: size, Width: size, Interp: interp})
				if err != nil {
					t.Fatal(err)
				}
				res, _, err := Evaluate(context.Background(), d, ds, postprocess.EvalOptions(), nil, nil)
				closeOK(t, d)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %d %-6v: P %.3f R %.3f mAP50 %.4f mAP50-95 %.4f", model, size, interp,
					res.Precision, res.Recall, res.MAP50, res.MAP50_95)
			}
		}
	}
}
