package bench_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yedge/yedge/bench"
	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/source"
)

func options(t *testing.T, models ...string) bench.Options {
	t.Helper()
	if _, err := onnxrt.Init("", ""); err != nil {
		t.Fatalf("onnxruntime: %v", err)
	}
	o := bench.Options{Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}, FullGraph: []bool{false}, Frames: 2, Warmup: 1, Runs: 3}
	for _, m := range models {
		o.Models = append(o.Models, fixtures.Model(t, m))
	}
	return o
}

func spec(t *testing.T, uri string) *source.Spec {
	t.Helper()
	s, err := source.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

// TestRun times FP32 against int8 on noise and on video frames, and both
// decodes of one model: one result per model and decode, in order, and
// the speed-ups of a pair.
func TestRun(t *testing.T) {
	video := fixtures.Path(t, "media", "vtest.avi")
	tests := []struct {
		name    string
		models  []string
		full    []bool
		source  string
		results int
		from    string
	}{
		{"fp32 vs int8 on noise", []string{"yolov5n.onnx", "yolov5n-qdq-torch.onnx"}, []bool{false}, "", 2, "synthetic noise"},
		{"both decodes on video", []string{"yolov5n.onnx"}, []bool{false, true}, video, 2, "vtest.avi"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t, tc.models...)
			o.FullGraph = tc.full
			if tc.source != "" {
				o.Source = spec(t, tc.source)
			}
			rep, err := bench.Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) != tc.results || !strings.Contains(rep.Source, tc.from) || rep.Frames != 2 || rep.Runs != 3 {
				t.Fatalf("report %+v", rep)
			}
			for _, r := range rep.Results {
				if r.Infer.MedianMs <= 0 || r.EndToEnd.MedianMs < r.Infer.MedianMs {
					t.Errorf("result %+v", r)
				}
			}
			if rep.SpeedupInfer == nil || *rep.SpeedupInfer <= 0 {
				t.Errorf("speed-up of a pair: %v", rep.SpeedupInfer)
			}
			var out bytes.Buffer
			if err := rep.WriteTable(&out); err != nil || !strings.Contains(out.String(), "speed-up of") {
				t.Errorf("table (%v):\n%s", err, out.String())
			}
		})
	}
}

// TestRunPipeline times the concurrent stages on the video, looped.
func TestRunPipeline(t *testing.T) {
	o := options(t, "yolov5n.onnx")
	o.Source, o.Frames, o.Warmup = spec(t, fixtures.Path(t, "media", "vtest.avi")), 6, 2
	rep, err := bench.RunPipeline(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.PipelineFPS <= 0 || rep.Frames != 6 {
		t.Fatalf("report %+v", rep)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil || !strings.Contains(out.String(), "fps pipelined") {
		t.Errorf("table (%v):\n%s", err, out.String())
	}
}

// TestRunErrors: a source with no frame is a SourceError, a missing model
// a ModelError, and the pipeline without a source an error.
func TestRunErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.avi")
	if err := os.WriteFile(bad, bytes.Repeat([]byte("not a video "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	o := options(t, "yolov5n.onnx")
	o.Source = spec(t, bad)
	if _, err := bench.Run(context.Background(), o); !isType[*pipeline.SourceError](err) {
		t.Errorf("no frame: %v (%T)", err, err)
	}
	o = options(t)
	o.Models = []string{filepath.Join(t.TempDir(), "none.onnx")}
	if _, err := bench.Run(context.Background(), o); !isType[*pipeline.ModelError](err) {
		t.Errorf("no model: %v (%T)", err, err)
	}
	if _, err := bench.RunPipeline(context.Background(), options(t, "yolov5n.onnx")); err == nil {
		t.Error("the pipeline without a source: no error")
	}
}

func isType[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}
