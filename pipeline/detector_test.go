package pipeline

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testmodels"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/postprocess"
)

func initORT(t testing.TB) {
	t.Helper()
	if _, err := onnxrt.Init("", ""); err != nil {
		t.Fatalf("onnxruntime: %v", err)
	}
}

// cpuDetector loads a fixture model on the CPU provider with 2 threads,
// closed at the end of the test.
func cpuDetector(t *testing.T, name string) *Detector {
	t.Helper()
	initORT(t)
	d, err := New(Config{Model: fixtures.Model(t, name), Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, d) })
	return d
}

func TestDetectorVideoFrame(t *testing.T) {
	video := fixtures.Path(t, "media", "vtest.avi")
	d := cpuDetector(t, "yolov5n.onnx")
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

// Static models exported at other sizes and opsets, and the dynamic model
// at sizes given by the user, run with the input size read from the model.
func TestDetectorInputSizes(t *testing.T) {
	initORT(t)
	dyn := fixtures.Model(t, "yolov5n-dynamic.onnx")
	video := fixtures.Path(t, "media", "vtest.avi")
	cap, err := gocv.VideoCaptureFile(video)
	if err != nil {
		t.Fatal(err)
	}
	defer cap.Close()
	img := gocv.NewMat()
	defer img.Close()
	cap.Read(&img)
	tests := []struct {
		name         string
		model        string
		reqH, reqW   int
		wantH, wantW int
		wantErr      bool
	}{
		{"static 416 opset 13", testmodels.Static(t, dyn, 416, 416, 13), 0, 0, 416, 416, false},
		{"static 320x640 opset 12", testmodels.Static(t, dyn, 320, 640, 12), 0, 0, 320, 640, false},
		{"static size conflicts with request", testmodels.Static(t, dyn, 416, 416, 13), 640, 640, 0, 0, true},
		{"dynamic default 640", dyn, 0, 0, 640, 640, false},
		{"dynamic 416", dyn, 416, 416, 416, 416, false},
		{"dynamic 320x640", dyn, 320, 640, 320, 640, false},
		{"dynamic not a stride multiple", dyn, 400, 400, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Config{Model: tc.model, Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}, Height: tc.reqH, Width: tc.reqW})
			if tc.wantErr {
				if err == nil {
					closeOK(t, d)
					t.Fatal("want an error")
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer closeOK(t, d)
			if d.Height != tc.wantH || d.Width != tc.wantW {
				t.Errorf("input %dx%d, want %dx%d", d.Height, d.Width, tc.wantH, tc.wantW)
			}
			dets, _, err := d.Detect(context.Background(), img)
			if err != nil {
				t.Fatal(err)
			}
			people := 0
			for _, x := range dets {
				if x.Class == 0 {
					people++
				}
			}
			if people < 2 {
				t.Errorf("%d people found, want several", people)
			}
		})
	}
}

func TestDetectorBadModels(t *testing.T) {
	initORT(t)
	good := fixtures.Model(t, "yolov5n.onnx")
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.onnx")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	notOnnx := filepath.Join(dir, "notes.onnx")
	if err := os.WriteFile(notOnnx, []byte("hello, I am not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, model, want string
	}{
		{"missing", filepath.Join(dir, "missing.onnx"), "no such file"},
		{"truncated", truncated, "truncated.onnx"},
		{"not onnx", notOnnx, "notes.onnx"},
		{"wrong output", testmodels.WrongOutput(t, good), "YOLOv5-shaped"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Config{Model: tc.model, Runtime: onnxrt.Options{Provider: "cpu", Threads: 1}})
			if err == nil {
				closeOK(t, d)
				t.Fatal("want an error")
			}
			var me *ModelError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want a ModelError mentioning %q", err, tc.want)
			}
		})
	}
}

// closeOK closes c and fails the test if that fails.
func closeOK(tb testing.TB, c io.Closer) {
	tb.Helper()
	if err := c.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
}
