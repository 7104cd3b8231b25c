package detect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yedge/yedge/detect"
	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/sinks"
	"github.com/yedge/yedge/source"
)

func options(t *testing.T, model, uri string) detect.Options {
	t.Helper()
	if _, err := onnxrt.Init("", ""); err != nil {
		t.Fatalf("onnxruntime: %v", err)
	}
	spec, err := source.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	return detect.Options{Source: spec, Detector: pipeline.Config{Model: fixtures.Model(t, model),
		Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}, Post: postprocess.DeployOptions()}}
}

func records(t *testing.T, b *bytes.Buffer) []sinks.Record {
	t.Helper()
	var out []sinks.Record
	for line := range strings.Lines(b.String()) {
		var r sinks.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// TestRun runs the library behind `yedge detect` on the real model, a
// video and an image folder: one record per frame with where it came from,
// annotated frames saved, and the summary counting them.
func TestRun(t *testing.T) {
	video := fixtures.Path(t, "media", "vtest.avi")
	tests := []struct {
		name, model, source, save string
		max                       int64
		frames                    int
		check                     func(t *testing.T, r sinks.Record, save string)
	}{
		{"video, int8, saved as a video", "yolov5n-qdq-torch.onnx", video, "out.avi", 4, 4, func(t *testing.T, r sinks.Record, save string) {
			if r.PTSms <= 0 && r.Frame > 0 || r.Precision != "int8" || r.Width != 768 {
				t.Errorf("record %+v: want pts_ms, int8, width 768", r)
			}
		}},
		{"image folder, fp32, saved as JPEGs", "yolov5n.onnx", testdaemon.ImageFolder(t, 0, 3), "frames", 0, 3, func(t *testing.T, r sinks.Record, save string) {
			if r.Image == "" || r.Precision != "fp32" {
				t.Errorf("record %+v: want the image's name and fp32", r)
			}
			if _, err := os.Stat(filepath.Join(save, strings.TrimSuffix(filepath.Base(r.Image), filepath.Ext(r.Image))+".jpg")); err != nil {
				t.Errorf("annotated frame of %s: %v", r.Image, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t, tc.model, tc.source)
			var out bytes.Buffer
			o.Records, o.MaxFrames, o.Save = &out, tc.max, filepath.Join(t.TempDir(), tc.save)
			opened := 0
			o.Opened = func() error { opened++; return nil }
			sum, err := detect.Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			recs := records(t, &out)
			if opened != 1 || int(sum.Frames) != tc.frames || len(recs) != tc.frames || sum.Failed != 0 {
				t.Fatalf("opened %d, summary %+v, %d records; want %d frames", opened, sum, len(recs), tc.frames)
			}
			var dets int64
			for _, r := range recs {
				tc.check(t, r, o.Save)
				dets += int64(len(r.Detections))
			}
			if dets != sum.Detections || dets == 0 {
				t.Errorf("summary counts %d detections, records %d", sum.Detections, dets)
			}
			if st, err := os.Stat(o.Save); err != nil || !st.IsDir() && st.Size() == 0 {
				t.Errorf("saved output %s: %v", o.Save, err)
			}
			var rep bytes.Buffer
			sum.Write(&rep)
			if !strings.Contains(rep.String(), "stages run concurrently") {
				t.Errorf("report:\n%s", rep.String())
			}
		})
	}
}

// TestRunErrors: each failure is typed, names what is at fault, and
// happens before any frame (the outputs before the model loads).
func TestRunErrors(t *testing.T) {
	folder := testdaemon.ImageFolder(t, 0, 2)
	stop := errors.New("the caller's own")
	notVideo := filepath.Join(t.TempDir(), "bad.avi")
	if err := os.WriteFile(notVideo, bytes.Repeat([]byte("not a video "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		source string
		edit   func(o *detect.Options)
		check  func(err error) bool
	}{
		{"save into the source folder", folder, func(o *detect.Options) { o.Save = folder }, func(err error) bool {
			oe, ok := errors.AsType[*detect.OutputError](err)
			return ok && oe.Usage && oe.Output == detect.OutputSave && oe.Path == folder
		}},
		{"save video in no folder", folder, func(o *detect.Options) { o.Save = "/nonexistent/x.mp4" }, func(err error) bool {
			oe, ok := errors.AsType[*detect.OutputError](err)
			return ok && oe.Usage && strings.Contains(err.Error(), "/nonexistent")
		}},
		{"not a video", notVideo, func(*detect.Options) {}, func(err error) bool {
			_, ok := errors.AsType[*pipeline.SourceError](err)
			return ok && strings.Contains(err.Error(), "bad.avi")
		}},
		{"opened refuses", folder, func(o *detect.Options) { o.Opened = func() error { return stop } }, func(err error) bool {
			return errors.Is(err, stop)
		}},
		{"no model", folder, func(o *detect.Options) { o.Detector.Model = filepath.Join(t.TempDir(), "m.onnx") }, func(err error) bool {
			_, ok := errors.AsType[*pipeline.ModelError](err)
			return ok
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t, "yolov5n.onnx", tc.source)
			var out bytes.Buffer
			o.Records = &out
			tc.edit(&o)
			sum, err := detect.Run(context.Background(), o)
			if err == nil || !tc.check(err) {
				t.Fatalf("err %v (%T)", err, err)
			}
			if sum != nil || out.Len() != 0 {
				t.Errorf("summary %+v, %d bytes of records: want none", sum, out.Len())
			}
		})
	}
}
