package pipeline

import (
	"context"
	"testing"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnxrt"
)

// BenchmarkStages times each stage alone on a 768x576 vtest frame with the
// FP32 yolov5n at 2 threads, so that the preprocess+postprocess share of
// inference can be read off one run:
//
//	go test -run '^$' -bench Stages -benchtime 100x ./pipeline
func BenchmarkStages(b *testing.B) {
	initORT(b)
	d, err := New(Config{Model: fixtures.Model(b, "yolov5n.onnx"), Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}})
	if err != nil {
		b.Fatal(err)
	}
	defer closeOK(b, d)
	cap, err := gocv.VideoCaptureFile(fixtures.Path(b, "media", "vtest.avi"))
	if err != nil {
		b.Fatal(err)
	}
	defer cap.Close()
	img := gocv.NewMat()
	defer img.Close()
	cap.Read(&img)
	ctx := context.Background()
	xf, err := d.Preprocess(img, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Infer(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("preprocess", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := d.Preprocess(img, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("infer", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := d.Infer(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("postprocess", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			d.Postprocess(0, xf)
		}
	})
}
