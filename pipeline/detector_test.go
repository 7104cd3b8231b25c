package pipeline

import (
	"context"
	"testing"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/fixtures"
	"github.com/yedge/yedge/postprocess"
	yrt "github.com/yedge/yedge/runtime"
)

func initORT(t testing.TB) {
	t.Helper()
	if _, err := yrt.Init("", ""); err != nil {
		t.Fatalf("onnxruntime: %v", err)
	}
}

func TestDetectorVideoFrame(t *testing.T) {
	initORT(t)
	model := fixtures.Model(t, "yolov5n.onnx")
	video := fixtures.Path(t, "media", "vtest.avi")
	d, err := New(Config{Model: model, Runtime: yrt.Options{Provider: "cpu", Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cap, err := gocv.VideoCaptureFile(video)
	if err != nil {
		t.Fatal(err)
	}
	defer cap.Close()
	img := gocv.NewMat()
	defer img.Close()
	if !cap.Read(&img) {
		t.Fatal("no frame")
	}
	dets, tm, err := d.Detect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	people := 0
	for _, x := range dets {
		if d.Names[x.Class] == "person" {
			people++
		}
		if x.Box.X1 < 0 || x.Box.Y1 < 0 || x.Box.X2 > 768 || x.Box.Y2 > 576 {
			t.Errorf("box outside image: %+v", x)
		}
	}
	t.Logf("%d detections, %d people, timing %+v", len(dets), people, tm)
	if people < 2 {
		t.Errorf("found %d people in the first vtest frame, want several", people)
	}
	_ = postprocess.DeployOptions
}
