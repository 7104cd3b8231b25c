package quant

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// fuzzGraphSeeds returns serialized models for FuzzGraphEdit: the tiny
// Conv, a Conv -> MaxPool -> Concat -> Add -> Conv chain that exercises
// every TensorRT and CPU placement rule, and a model that is already Q/DQ.
func fuzzGraphSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	add := func(m *onnx.Model) {
		data, err := m.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, data)
	}
	add(tinyConv())

	chain := tinyConv()
	g := chain.Proto.Graph
	g.Node = append(g.Node,
		&onnxpb.NodeProto{OpType: "MaxPool", Name: "pool", Input: []string{"y"}, Output: []string{"p"},
			Attribute: []*onnxpb.AttributeProto{{Name: "kernel_shape", Type: onnxpb.AttributeProto_INTS, Ints: []int64{1, 1}}}},
		&onnxpb.NodeProto{OpType: "Concat", Name: "cat", Input: []string{"y", "p"}, Output: []string{"c"},
			Attribute: []*onnxpb.AttributeProto{attrInt("axis", 1)}},
		&onnxpb.NodeProto{OpType: "Sigmoid", Name: "sig", Input: []string{"c"}, Output: []string{"s"}},
		&onnxpb.NodeProto{OpType: "Mul", Name: "mul", Input: []string{"c", "s"}, Output: []string{"m"}},
		&onnxpb.NodeProto{OpType: "Add", Name: "add", Input: []string{"m", "c"}, Output: []string{"a"}},
		&onnxpb.NodeProto{OpType: "Conv", Name: "head", Input: []string{"a", "W2"}, Output: []string{"z"}},
	)
	g.Initializer = append(g.Initializer, onnx.NewFloatTensor("W2", []int64{1, 4, 1, 1}, []float32{1, -1, 0.5, 0}))
	g.Output = []*onnxpb.ValueInfoProto{floatVI("z", 1, 1, 2, 2)}
	add(chain)

	q, err := Place(tinyConv(), mustAnalyze(tb, tinyConv(), TargetTensorRT), map[string]Range{"x": {Amax: 1, Min: -1}})
	if err != nil {
		tb.Fatal(err)
	}
	add(q)
	return out
}

func mustAnalyze(tb testing.TB, m *onnx.Model, t Target) *Analysis {
	tb.Helper()
	p, err := Analyze(m, AnalyzeOptions{Target: t})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// FuzzGraphEdit feeds arbitrary bytes through the graph editing and
// quantization path: whatever onnx.Parse accepts must survive TopoSort,
// UniqueName, Inspect, IsQDQ, CheckPlacement, Analyze and Place for both
// targets, and Place's output must marshal and parse again. Errors are
// fine; panics are not.
func FuzzGraphEdit(f *testing.F) {
	for _, s := range fuzzGraphSeeds(f) {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	// The real model: large (about 4 MB), so the fuzzer mostly mutates the
	// small seeds, but its bytes check the path on a YOLOv5 graph.
	if b, err := os.ReadFile(filepath.Join(fixtures.SharedDir(), "models", "yolov5n.onnx")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := onnx.Parse(data, "fuzz.onnx")
		if err != nil {
			return
		}
		g := onnx.NewGraph(m.Proto.GetGraph())
		_ = g.TopoSort()
		n1, n2 := g.UniqueName("x"), g.UniqueName("x")
		if n1 == n2 {
			t.Fatalf("UniqueName returned %q twice", n1)
		}
		_ = onnx.Inspect(m)
		_ = IsQDQ(m)
		_ = CheckPlacement(m)
		for _, target := range []Target{TargetTensorRT, TargetCPU} {
			plan, err := Analyze(m, AnalyzeOptions{Target: target})
			if err != nil {
				continue
			}
			ranges := map[string]Range{}
			for _, ten := range plan.Tensors {
				ranges[ten] = Range{Amax: 1, Min: -1}
			}
			q, err := Place(m, plan, ranges)
			if err != nil {
				continue
			}
			out, err := q.Marshal()
			if err != nil {
				t.Fatalf("%s: Marshal of the placed model: %v", target, err)
			}
			if _, err := onnx.Parse(out, "placed.onnx"); err != nil {
				t.Fatalf("%s: placed model does not parse: %v", target, err)
			}
		}
	})
}

// TestFuzzGraphSeedsReachPlace keeps the FuzzGraphEdit seeds useful: the
// two float seeds must get through Analyze and Place for both targets, and
// the Q/DQ seed must be refused by Analyze, so that the fuzzer starts from
// inputs that cover the whole path.
func TestFuzzGraphSeedsReachPlace(t *testing.T) {
	seeds := fuzzGraphSeeds(t)
	for i, s := range seeds {
		m, err := onnx.Parse(s, "seed.onnx")
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		for _, target := range []Target{TargetTensorRT, TargetCPU} {
			plan, err := Analyze(m, AnalyzeOptions{Target: target})
			if i == len(seeds)-1 {
				if err == nil {
					t.Errorf("seed %d (Q/DQ) %s: Analyze accepted it", i, target)
				}
				continue
			}
			if err != nil {
				t.Fatalf("seed %d %s: %v", i, target, err)
			}
			ranges := map[string]Range{}
			for _, ten := range plan.Tensors {
				ranges[ten] = Range{Amax: 1, Min: -1}
			}
			if _, err := Place(m, plan, ranges); err != nil {
				t.Fatalf("seed %d %s: %v", i, target, err)
			}
		}
	}
}

// TestMalformedGraphsDoNotPanic holds the FuzzGraphEdit crashers as
// readable cases: nodes without inputs or outputs and an empty weight must
// give errors or float nodes, never a panic, in Analyze, Place and
// CheckPlacement.
func TestMalformedGraphsDoNotPanic(t *testing.T) {
	conv := func(name string, in, out []string) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: "Conv", Name: name, Input: in, Output: out}
	}
	for _, tc := range []struct {
		name  string
		edit  func(g *onnxpb.GraphProto)
		place bool // Analyze should still succeed and Place run
	}{
		{"Conv without outputs (cpu)", func(g *onnxpb.GraphProto) {
			g.Node = append(g.Node, conv("c2", []string{"y", "W"}, nil))
		}, true},
		{"Conv without inputs", func(g *onnxpb.GraphProto) {
			g.Node = append(g.Node, conv("c2", nil, []string{"z"}))
		}, true},
		{"MaxPool without input before a Conv", func(g *onnxpb.GraphProto) {
			g.Node = append([]*onnxpb.NodeProto{{OpType: "MaxPool", Name: "mp", Output: []string{"p"}}}, g.Node...)
			g.Node = append(g.Node, conv("c2", []string{"p", "W"}, []string{"z"}))
		}, true},
		{"MaxPool and Concat without outputs", func(g *onnxpb.GraphProto) {
			g.Node = append(g.Node, &onnxpb.NodeProto{OpType: "MaxPool", Name: "mp", Input: []string{"y"}},
				&onnxpb.NodeProto{OpType: "Concat", Name: "cat", Input: []string{"y", "y"}})
		}, true},
		{"Concat without inputs before a Conv", func(g *onnxpb.GraphProto) {
			g.Node = append([]*onnxpb.NodeProto{{OpType: "Concat", Name: "cat", Output: []string{"c"}}}, g.Node...)
			g.Node = append(g.Node, conv("c2", []string{"c", "W"}, []string{"z"}))
		}, true},
		{"empty weight", func(g *onnxpb.GraphProto) {
			g.Initializer[0] = onnx.NewFloatTensor("W", []int64{0, 1, 1, 1}, nil)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyConv()
			tc.edit(m.Proto.Graph)
			_ = CheckPlacement(m)
			for _, target := range []Target{TargetTensorRT, TargetCPU} {
				plan, err := Analyze(m, AnalyzeOptions{Target: target})
				if err != nil {
					t.Fatalf("%s: Analyze: %v", target, err)
				}
				ranges := map[string]Range{}
				for _, ten := range plan.Tensors {
					ranges[ten] = Range{Amax: 1, Min: -1}
				}
				q, err := Place(m, plan, ranges)
				if tc.place && err != nil {
					t.Fatalf("%s: Place: %v", target, err)
				}
				if !tc.place && err == nil {
					t.Fatalf("%s: Place accepted an empty weight", target)
				}
				if q != nil {
					_ = CheckPlacement(q)
				}
			}
		})
	}
}
