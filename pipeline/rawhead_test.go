package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/postprocess"
)

// newDecodePair opens model twice, cut before its Detect head and as the
// full graph, and checks which decode each uses.
func newDecodePair(t *testing.T, model string, cfg Config) (raw, full *Detector) {
	t.Helper()
	cfg.Model = model
	cfg.Runtime = onnxrt.Options{Provider: "cpu", Threads: 2}
	raw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, raw) })
	cfg.FullGraph = true
	full, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, full) })
	if raw.Decode != DecodeRawHead || full.Decode != DecodeGraph {
		t.Fatalf("decodes %s (%s) and %s, want %s and %s", raw.Decode, raw.DecodeReason, full.Decode, DecodeRawHead, DecodeGraph)
	}
	if raw.Layout != full.Layout {
		t.Errorf("layouts %+v (raw head) and %+v (graph) differ", raw.Layout, full.Layout)
	}
	return raw, full
}

// The raw-head decode gives the full graph's detections on 30 vtest
// frames at deploy thresholds: one to one, same class, boxes within 0.01
// px and scores within 1e-4.
func TestRawHeadBoxesMatchGraph(t *testing.T) {
	initORT(t)
	video := fixtures.Path(t, "media", "vtest.avi")
	frames := 30
	if testing.Short() {
		frames = 3
	}
	for _, name := range []string{"yolov5n.onnx", "yolov5n-dynamic.onnx", "yolov5n-qdq-torch.onnx"} {
		t.Run(name, func(t *testing.T) {
			raw, full := newDecodePair(t, fixtures.Model(t, name), Config{})
			cap, err := gocv.VideoCaptureFile(video)
			if err != nil {
				t.Fatal(err)
			}
			defer cap.Close()
			img := gocv.NewMat()
			defer img.Close()
			total := 0
			for f := 0; f < frames && cap.Read(&img); f++ {
				a, _, err := raw.Detect(context.Background(), img)
				if err != nil {
					t.Fatal(err)
				}
				a = append([]postprocess.Detection(nil), a...)
				b, _, err := full.Detect(context.Background(), img)
				if err != nil {
					t.Fatal(err)
				}
				total += len(b)
				if msg := matchDetections(a, b, 0.01, 1e-4); msg != "" {
					t.Errorf("frame %d: %s", f, msg)
				}
			}
			t.Logf("%d frames, %d detections matched", frames, total)
			if total < frames {
				t.Errorf("only %d detections over %d frames", total, frames)
			}
		})
	}
}

// matchDetections pairs a and b one to one, best first, and describes the
// first difference ("" when they match).
func matchDetections(a, b []postprocess.Detection, px, score float64) string {
	if len(a) != len(b) {
		return fmt.Sprintf("raw head gives %d detections, the graph %d", len(a), len(b))
	}
	used := make([]bool, len(b))
	for _, x := range a {
		found := false
		for j, y := range b {
			if used[j] || x.Class != y.Class || math.Abs(float64(x.Score-y.Score)) > score {
				continue
			}
			if near(x.Box.X1, y.Box.X1, px) && near(x.Box.Y1, y.Box.Y1, px) && near(x.Box.X2, y.Box.X2, px) && near(x.Box.Y2, y.Box.Y2, px) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return fmt.Sprintf("raw-head detection %+v has no match in the graph's %+v", x, b)
		}
	}
	return ""
}

func near(a, b float32, tol float64) bool { return math.Abs(float64(a-b)) <= tol }

// A model whose output is not made by a Detect head keeps the graph decode
// and says why; FullGraph forces the graph decode on a model that matches.
func TestRawHeadFallback(t *testing.T) {
	initORT(t)
	src := fixtures.Model(t, "yolov5n.onnx")
	// The same model with the decode's stride multipliers replaced by a
	// computed tensor: the head no longer matches.
	m, err := onnx.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph()
	n := g.Producer(g.G.GetOutput()[0].GetName()) // output Concat
	n = g.Producer(n.GetInput()[0])               // level Reshape
	n = g.Producer(n.GetInput()[0])               // xy/wh/conf Concat
	sig := n.GetInput()[2]                        // confidences
	n.Input[2] = sig + "_neg"
	m.Proto.Graph.Node = append(m.Proto.Graph.Node, &onnxpb.NodeProto{OpType: "Neg", Input: []string{sig}, Output: []string{sig + "_neg"}, Name: "neg"})
	if err := g.TopoSort(); err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(t.TempDir(), "odd.onnx")
	if err := m.Save(odd); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, model string
		full        bool
		want, why   string
	}{
		{"matching model", src, false, DecodeRawHead, ""},
		{"full graph asked", src, true, DecodeGraph, "full graph requested"},
		{"not a Detect head", odd, false, DecodeGraph, "not a YOLOv5 Detect head: confidences"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Config{Model: tc.model, FullGraph: tc.full, Runtime: onnxrt.Options{Provider: "cpu", Threads: 1}})
			if err != nil {
				t.Fatal(err)
			}
			defer closeOK(t, d)
			if d.Decode != tc.want || !strings.HasPrefix(d.DecodeReason, tc.why) || (tc.why == "") != (d.DecodeReason == "") {
				t.Errorf("decode %s (%q), want %s (%q...)", d.Decode, d.DecodeReason, tc.want, tc.why)
			}
		})
	}
	// A missing model is still the session's error, not a silent fallback.
	_, err = New(Config{Model: filepath.Join(t.TempDir(), "none.onnx"), Runtime: onnxrt.Options{Provider: "cpu"}})
	var me *ModelError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing model: %v", err)
	}
}
