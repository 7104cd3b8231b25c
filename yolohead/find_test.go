package yolohead

import (
	"errors"
	"strings"
	"testing"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

var wantAnchors = [][][2]float32{
	{{10, 13}, {16, 30}, {33, 23}},
	{{30, 61}, {62, 45}, {59, 119}},
	{{116, 90}, {156, 198}, {373, 326}},
}

func load(t *testing.T, name string) *onnx.Model {
	t.Helper()
	m, err := onnx.Load(fixtures.Model(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFindFixtures(t *testing.T) {
	tests := []struct {
		model string
		grid  bool // constant grid (static export)
	}{
		{"yolov5n.onnx", true},
		{"yolov5n-dynamic.onnx", false},
		{"yolov5n-qdq-torch.onnx", true},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			h, err := Find(load(t, tc.model))
			if err != nil {
				t.Fatal(err)
			}
			if len(h.Levels) != 3 {
				t.Fatalf("%d levels, want 3", len(h.Levels))
			}
			for i, lv := range h.Levels {
				stride := float32(int(8) << i)
				if lv.NA != 3 || lv.NO != 85 || lv.Stride != stride || lv.GridOffset != -0.5 {
					t.Errorf("level %d: na %d no %d stride %v offset %v, want 3, 85, %v, -0.5", i, lv.NA, lv.NO, lv.Stride, lv.GridOffset, stride)
				}
				for a := range wantAnchors[i] {
					if lv.Anchors[a] != wantAnchors[i][a] {
						t.Errorf("level %d anchors %v, want %v", i, lv.Anchors, wantAnchors[i])
						break
					}
				}
				if n := 640 / (8 << i); tc.grid && (lv.NY != n || lv.NX != n) {
					t.Errorf("level %d grid %dx%d, want %dx%d", i, lv.NY, lv.NX, n, n)
				}
				if !strings.Contains(lv.Tensor, "Conv") {
					t.Errorf("level %d exposes %s, want the head Conv's output", i, lv.Tensor)
				}
			}
		})
	}
}

// Models that are not made by a Detect head are refused with a reason.
func TestFindRefuses(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(g *onnx.Graph)
		reason string
	}{
		{"output not a Concat", func(g *onnx.Graph) {
			out := g.G.Output[0].GetName()
			g.G.Node = append(g.G.Node, &onnxpb.NodeProto{OpType: "Identity", Input: []string{out}, Output: []string{out + "_id"}})
			g.G.Output[0].Name = out + "_id"
		}, "is not a Concat of levels"},
		{"irregular grid", func(g *onnx.Graph) {
			c := g.ConstTensor("/model.24/Constant_2_output_0")
			v, _ := onnx.FloatData(c)
			v[10] += 1
			*c = *onnx.NewFloatTensor(c.GetName(), c.GetDims(), v)
		}, "not a regular grid"},
		{"anchor grid not constant over cells", func(g *onnx.Graph) {
			c := g.ConstTensor("/model.24/Constant_6_output_0")
			v, _ := onnx.FloatData(c)
			v[100] = 7
			*c = *onnx.NewFloatTensor(c.GetName(), c.GetDims(), v)
		}, "anchor grid is not constant"},
		{"stride disagrees with the grid", func(g *onnx.Graph) {
			c := g.ConstTensor("/model.24/Constant_3_output_0")
			*c = *onnx.NewFloatTensor(c.GetName(), nil, []float32{16})
		}, "stride 16 disagrees"},
		{"no Sigmoid", func(g *onnx.Graph) {
			for _, n := range g.G.Node {
				if n.GetOpType() == "Sigmoid" {
					n.OpType = "Tanh"
				}
			}
		}, "is not a Sigmoid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := load(t, "yolov5n.onnx")
			tc.edit(m.Graph())
			_, err := Find(m)
			if !errors.Is(err, ErrNotDetect) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %v, want ErrNotDetect with %q", err, tc.reason)
			}
		})
	}
}

// The cut model's outputs are the level tensors, the decode's nodes and
// constants are gone, and the input model is unchanged.
func TestCut(t *testing.T) {
	m := load(t, "yolov5n.onnx")
	before, _ := m.Marshal()
	nodes := len(m.Proto.Graph.Node)
	h, err := Find(m)
	if err != nil {
		t.Fatal(err)
	}
	data, err := Cut(m, h)
	if err != nil {
		t.Fatal(err)
	}
	c, err := onnx.Parse(data, "cut")
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, o := range c.Proto.Graph.Output {
		outs = append(outs, o.GetName())
	}
	if len(outs) != 3 || outs[0] != h.Levels[0].Tensor || outs[2] != h.Levels[2].Tensor {
		t.Errorf("outputs %v, want the level tensors", outs)
	}
	g := c.Graph()
	for _, n := range c.Proto.Graph.Node {
		if op := n.GetOpType(); op == "Split" || op == "Pow" || op == "Transpose" {
			t.Errorf("decode node %s %s left in the cut graph", op, n.GetName())
		}
	}
	if g.ConstTensor("/model.24/Constant_6_output_0") != nil || len(c.Proto.Graph.Node) >= nodes {
		t.Error("the anchor grid or decode nodes survived the cut")
	}
	if again, _ := Cut(m, h); string(again) != string(data) {
		t.Error("cutting twice gives different bytes (the TensorRT engine cache is keyed by them)")
	}
	if after, _ := m.Marshal(); string(after) != string(before) {
		t.Error("Cut modified its input")
	}
}
