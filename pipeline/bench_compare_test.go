package pipeline

import (
	"context"
	"errors"
	"testing"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnxrt"
)

// benchFrame reads the first vtest frame.
func benchFrame(t *testing.T) gocv.Mat {
	t.Helper()
	cap, err := gocv.VideoCaptureFile(fixtures.Path(t, "media", "vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	defer cap.Close()
	img := gocv.NewMat()
	if !cap.Read(&img) || img.Empty() {
		img.Close()
		t.Fatal("cannot read a vtest frame")
	}
	return img
}

func benchDetectors(t *testing.T, names ...string) []*Detector {
	t.Helper()
	initORT(t)
	var dets []*Detector
	for _, n := range names {
		d, err := New(Config{Model: fixtures.Model(t, n), Runtime: onnxrt.Options{Provider: "cpu", Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeOK(t, d) })
		dets = append(dets, d)
	}
	return dets
}

func TestBenchCompare(t *testing.T) {
	dets := benchDetectors(t, "yolov5n.onnx", "yolov5n-qdq-torch.onnx")
	img := benchFrame(t)
	defer img.Close()
	var calls, last, total int
	res, err := Bench(context.Background(), dets, BenchConfig{Warmup: 1, Runs: 3, Frames: []gocv.Mat{img}},
		func(done, tot int) { calls, last, total = calls+1, done, tot })
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d results, want 2", len(res))
	}
	if calls != 4 || last != 4 || total != 4 {
		t.Errorf("progress: %d calls, last %d/%d; want 4 calls ending 4/4", calls, last, total)
	}
	for i, r := range res {
		if r.Model != dets[i].Session.Path() || r.Provider != "cpu" || r.Threads != 1 || r.Input != [2]int{640, 640} {
			t.Errorf("result %d: %+v", i, r)
		}
		for _, s := range []struct {
			name string
			s    BenchStats
		}{{"infer", r.Infer}, {"end to end", r.EndToEnd}} {
			if s.s.Runs != 3 || s.s.MedianMs <= 0 || s.s.P95Ms < s.s.MedianMs || s.s.MinMs <= 0 ||
				s.s.MinMs > s.s.MedianMs || s.s.MeanMs <= 0 {
				t.Errorf("%s %s: %+v", r.Model, s.name, s.s)
			}
		}
		if r.EndToEnd.MinMs < r.Infer.MinMs {
			t.Errorf("%s: end to end %+v faster than infer %+v", r.Model, r.EndToEnd, r.Infer)
		}
	}
}

func TestBenchCancelAndErrors(t *testing.T) {
	dets := benchDetectors(t, "yolov5n.onnx")
	img := benchFrame(t)
	defer img.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Bench(ctx, dets, BenchConfig{Runs: 2, Frames: []gocv.Mat{img}}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v", err)
	}
	if _, err := Bench(context.Background(), dets, BenchConfig{Runs: 1}, nil); err == nil {
		t.Error("no frames: no error")
	}
	if _, err := Bench(context.Background(), nil, BenchConfig{Runs: 1, Frames: []gocv.Mat{img}}, nil); err == nil {
		t.Error("no detectors: no error")
	}
	if _, err := Bench(context.Background(), dets, BenchConfig{Runs: -1, Frames: []gocv.Mat{img}}, nil); err == nil {
		t.Error("negative runs: no error")
	}
}
