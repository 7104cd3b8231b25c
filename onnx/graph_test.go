package onnx

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/yedge/yedge/onnx/onnxpb"
)

// names returns the node names of nodes.
func names(nodes []*onnxpb.NodeProto) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.GetName()
	}
	return out
}

// checkTopological fails unless every node input produced by a node is
// produced by an earlier one.
func checkTopological(t *testing.T, g *onnxpb.GraphProto) {
	t.Helper()
	seen := map[string]bool{}
	producedBy := map[string]bool{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			producedBy[o] = true
		}
	}
	for _, n := range g.Node {
		for _, in := range nodeInputs(n) {
			if producedBy[in] && !seen[in] {
				t.Fatalf("node %s reads %s before it is produced; order %v", n.Name, in, names(g.Node))
			}
		}
		for _, o := range n.Output {
			seen[o] = true
		}
	}
}

// diamondGraph: x -> a -> {b, c} -> d -> y, plus e reading x and d.
func diamondGraph() *onnxpb.GraphProto {
	return &onnxpb.GraphProto{
		Name: "diamond",
		Node: []*onnxpb.NodeProto{
			node("Relu", "a", []string{"x"}, []string{"ta"}),
			node("Neg", "b", []string{"ta"}, []string{"tb"}),
			node("Abs", "c", []string{"ta", "w"}, []string{"tc"}),
			node("Add", "d", []string{"tb", "tc"}, []string{"td"}),
			node("Mul", "e", []string{"x", "td"}, []string{"y"}),
			node("Identity", "f", []string{"w"}, []string{"tf"}),
		},
		Initializer: []*onnxpb.TensorProto{NewFloatTensor("w", nil, []float32{2})},
		Input:       []*onnxpb.ValueInfoProto{tensorVI("x", onnxpb.TensorProto_FLOAT, 1)},
		Output: []*onnxpb.ValueInfoProto{
			tensorVI("y", onnxpb.TensorProto_FLOAT, 1), tensorVI("tf", onnxpb.TensorProto_FLOAT),
		},
	}
}

func TestTopoSort(t *testing.T) {
	t.Run("sorted graph unchanged", func(t *testing.T) {
		g := NewGraph(diamondGraph())
		before := names(g.G.Node)
		if err := g.TopoSort(); err != nil {
			t.Fatal(err)
		}
		if got := names(g.G.Node); !slices.Equal(got, before) {
			t.Errorf("TopoSort reordered a sorted graph: %v -> %v", before, got)
		}
	})

	tests := []struct {
		name  string
		order []string // shuffled input order
		want  []string
	}{
		{"reversed", []string{"f", "e", "d", "c", "b", "a"}, []string{"f", "a", "c", "b", "d", "e"}},
		{"stable ties", []string{"a", "c", "b", "d", "e", "f"}, []string{"a", "c", "b", "d", "e", "f"}},
		{"consumer first", []string{"d", "a", "f", "b", "c", "e"}, []string{"a", "f", "b", "c", "d", "e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gp := diamondGraph()
			byName := map[string]*onnxpb.NodeProto{}
			for _, n := range gp.Node {
				byName[n.Name] = n
			}
			gp.Node = gp.Node[:0]
			for _, n := range tt.order {
				gp.Node = append(gp.Node, byName[n])
			}
			g := NewGraph(gp)
			if err := g.TopoSort(); err != nil {
				t.Fatal(err)
			}
			checkTopological(t, g.G)
			if got := names(g.G.Node); !slices.Equal(got, tt.want) {
				t.Errorf("order = %v, want %v", got, tt.want)
			}
			// Indexes follow the new order.
			if got := names(g.Consumers("ta")); !slices.Equal(got, []string{"c", "b"}) && !slices.Equal(got, []string{"b", "c"}) {
				t.Errorf("Consumers(ta) = %v", got)
			}
			cs := g.Consumers("ta")
			for i := 1; i < len(cs); i++ {
				if slices.Index(g.G.Node, cs[i-1]) > slices.Index(g.G.Node, cs[i]) {
					t.Errorf("Consumers(ta) = %v not in node order %v", names(cs), names(g.G.Node))
				}
			}
		})
	}

	t.Run("random shuffles", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		// A longer chain with skip connections.
		gp := &onnxpb.GraphProto{Name: "chain"}
		prev := "x"
		for i := range 40 {
			out := "t" + string(rune('A'+i%26)) + strings.Repeat("'", i/26)
			in := []string{prev}
			if i >= 3 {
				in = append(in, gp.Node[i-3].Output[0])
			}
			gp.Node = append(gp.Node, node("Add", out, in, []string{out}))
			prev = out
		}
		sorted := names(gp.Node)
		for range 20 {
			r.Shuffle(len(gp.Node), func(i, j int) { gp.Node[i], gp.Node[j] = gp.Node[j], gp.Node[i] })
			g := NewGraph(gp)
			if err := g.TopoSort(); err != nil {
				t.Fatal(err)
			}
			checkTopological(t, g.G)
			// A chain has exactly one topological order.
			if got := names(g.G.Node); !slices.Equal(got, sorted) {
				t.Fatalf("order = %v, want %v", got, sorted)
			}
		}
	})

	t.Run("subgraph dependency", func(t *testing.T) {
		// The If node's then-branch reads outer tensor "late", produced by a
		// node listed after the If.
		then := &onnxpb.GraphProto{
			Name:   "then",
			Node:   []*onnxpb.NodeProto{node("Identity", "inner", []string{"late"}, []string{"o"})},
			Output: []*onnxpb.ValueInfoProto{tensorVI("o", onnxpb.TensorProto_FLOAT)},
		}
		els := &onnxpb.GraphProto{Name: "else", Output: []*onnxpb.ValueInfoProto{tensorVI("x", onnxpb.TensorProto_FLOAT)}}
		gp := &onnxpb.GraphProto{
			Name: "outer",
			Node: []*onnxpb.NodeProto{
				node("If", "if", []string{"cond"}, []string{"r"},
					&onnxpb.AttributeProto{Name: "then_branch", Type: onnxpb.AttributeProto_GRAPH, G: then},
					&onnxpb.AttributeProto{Name: "else_branch", Type: onnxpb.AttributeProto_GRAPH, G: els}),
				node("Neg", "late", []string{"x"}, []string{"late"}),
			},
			Input:  []*onnxpb.ValueInfoProto{tensorVI("cond", onnxpb.TensorProto_BOOL), tensorVI("x", onnxpb.TensorProto_FLOAT)},
			Output: []*onnxpb.ValueInfoProto{tensorVI("r", onnxpb.TensorProto_FLOAT)},
		}
		g := NewGraph(gp)
		if got := names(g.Consumers("late")); !slices.Equal(got, []string{"if"}) {
			t.Errorf("Consumers(late) = %v, want the If node", got)
		}
		if got := names(g.Consumers("x")); !slices.Equal(got, []string{"if", "late"}) {
			t.Errorf("Consumers(x) = %v, want [if late] (else branch returns outer x)", got)
		}
		if err := g.TopoSort(); err != nil {
			t.Fatal(err)
		}
		if got := names(g.G.Node); !slices.Equal(got, []string{"late", "if"}) {
			t.Errorf("order = %v, want [late if]", got)
		}
		// Renaming the outer reference rewrites the subgraph too.
		g.ReplaceInput(g.G.Node[1], "late", "x")
		if then.Node[0].Input[0] != "x" {
			t.Errorf("subgraph input = %q, want x", then.Node[0].Input[0])
		}
		if len(g.Consumers("late")) != 0 {
			t.Errorf("Consumers(late) after ReplaceInput = %v", names(g.Consumers("late")))
		}
	})

	cycles := []struct {
		name  string
		nodes []*onnxpb.NodeProto
	}{
		{"two nodes", []*onnxpb.NodeProto{
			node("Relu", "p", []string{"x", "q_out"}, []string{"p_out"}),
			node("Relu", "q", []string{"p_out"}, []string{"q_out"}),
		}},
		{"self loop", []*onnxpb.NodeProto{
			node("Relu", "ok", []string{"x"}, []string{"ok_out"}),
			node("Add", "self", []string{"ok_out", "self_out"}, []string{"self_out"}),
		}},
		{"three with tail", []*onnxpb.NodeProto{
			node("Relu", "c1", []string{"c3_out"}, []string{"c1_out"}),
			node("Relu", "c2", []string{"c1_out"}, []string{"c2_out"}),
			node("Relu", "c3", []string{"c2_out"}, []string{"c3_out"}),
			node("Relu", "tail", []string{"c3_out"}, []string{"y"}),
		}},
	}
	for _, tt := range cycles {
		t.Run("cycle "+tt.name, func(t *testing.T) {
			g := NewGraph(&onnxpb.GraphProto{Name: "cyclic", Node: slices.Clone(tt.nodes)})
			err := g.TopoSort()
			if err == nil {
				t.Fatalf("TopoSort succeeded on a cyclic graph: %v", names(g.G.Node))
			}
			if !strings.Contains(err.Error(), "cycle") || !strings.Contains(err.Error(), `"cyclic"`) {
				t.Errorf("error %q does not mention the cycle and graph", err)
			}
			if !slices.Equal(g.G.Node, tt.nodes) {
				t.Errorf("failed TopoSort changed the node order to %v", names(g.G.Node))
			}
		})
	}
}

func TestGraphIndex(t *testing.T) {
	gp := diamondGraph()
	gp.Node = append(gp.Node, node("Mul", "sq", []string{"tb", "tb"}, []string{"tsq"}))
	gp.ValueInfo = []*onnxpb.ValueInfoProto{tensorVI("vi_only", onnxpb.TensorProto_FLOAT)}
	g := NewGraph(gp)

	if p := g.Producer("tc"); p == nil || p.Name != "c" {
		t.Errorf("Producer(tc) = %v", p)
	}
	for _, n := range []string{"x", "w", "nope", ""} {
		if p := g.Producer(n); p != nil {
			t.Errorf("Producer(%q) = %s, want nil", n, p.Name)
		}
	}
	consumers := []struct {
		tensor string
		want   []string
	}{
		{"ta", []string{"b", "c"}},
		{"tb", []string{"d", "sq"}}, // sq reads tb twice but is listed once
		{"x", []string{"a", "e"}},
		{"w", []string{"c", "f"}},
		{"y", nil},
		{"", nil},
	}
	for _, c := range consumers {
		if got := names(g.Consumers(c.tensor)); !slices.Equal(got, c.want) { // nil and empty are Equal
			t.Errorf("Consumers(%q) = %v, want %v", c.tensor, got, c.want)
		}
	}
	if g.Initializer("w") == nil || g.Initializer("x") != nil {
		t.Error("Initializer lookup wrong")
	}
	if !g.IsGraphOutput("y") || !g.IsGraphOutput("tf") || g.IsGraphOutput("td") {
		t.Error("IsGraphOutput wrong")
	}

	t.Run("ReplaceInput", func(t *testing.T) {
		e := g.Producer("y")
		g.ReplaceInput(e, "td", "tsq")
		if !slices.Equal(e.Input, []string{"x", "tsq"}) {
			t.Errorf("inputs = %v", e.Input)
		}
		if got := names(g.Consumers("td")); len(got) != 0 {
			t.Errorf("Consumers(td) = %v, want none", got)
		}
		if got := names(g.Consumers("tsq")); !slices.Equal(got, []string{"e"}) {
			t.Errorf("Consumers(tsq) = %v, want [e]", got)
		}
		// Replacing into a tensor that already has consumers keeps node order.
		g.ReplaceInput(g.Producer("tb"), "ta", "x")
		if got := names(g.Consumers("x")); !slices.Equal(got, []string{"a", "b", "e"}) {
			t.Errorf("Consumers(x) = %v, want [a b e]", got)
		}
		// A node reading the old name twice is rewritten everywhere.
		sq := g.Producer("tsq")
		g.ReplaceInput(sq, "tb", "tc")
		if !slices.Equal(sq.Input, []string{"tc", "tc"}) {
			t.Errorf("sq inputs = %v", sq.Input)
		}
		if got := names(g.Consumers("tb")); !slices.Equal(got, []string{"d"}) {
			t.Errorf("Consumers(tb) = %v, want [d]", got)
		}
		// Indexes agree with a full rebuild.
		fresh := NewGraph(g.G)
		for _, tn := range []string{"x", "ta", "tb", "tc", "td", "tsq", "w"} {
			if a, b := names(g.Consumers(tn)), names(fresh.Consumers(tn)); !slices.Equal(a, b) {
				t.Errorf("Consumers(%s) incremental %v != rebuilt %v", tn, a, b)
			}
		}
	})

	t.Run("ReplaceInput on a node outside the graph", func(t *testing.T) {
		stray := node("Relu", "stray", []string{"x", ""}, []string{"s"})
		g.ReplaceInput(stray, "x", "tc")
		if !slices.Equal(stray.Input, []string{"tc", ""}) {
			t.Errorf("inputs = %v", stray.Input)
		}
		if slices.Contains(g.Consumers("tc"), stray) {
			t.Error("a node outside the graph was indexed as a consumer")
		}
		g.ReplaceInput(nil, "x", "y") // must not panic
	})

	t.Run("UniqueName", func(t *testing.T) {
		for _, used := range []string{"x", "w", "ta", "y", "vi_only", "a", "tf"} {
			got := g.UniqueName(used)
			if got == used {
				t.Errorf("UniqueName(%q) returned a used name", used)
			}
			if got != used+"_1" {
				t.Errorf("UniqueName(%q) = %q, want %q", used, got, used+"_1")
			}
		}
		if got := g.UniqueName("x"); got != "x_2" {
			t.Errorf("second UniqueName(x) = %q, want x_2 (x_1 is reserved)", got)
		}
		if got := g.UniqueName("fresh"); got != "fresh" {
			t.Errorf("UniqueName(fresh) = %q", got)
		}
		if got := g.UniqueName("fresh"); got != "fresh_1" {
			t.Errorf("UniqueName(fresh) again = %q, want fresh_1", got)
		}
		if got := g.UniqueName(""); got == "" {
			t.Error("UniqueName(\"\") returned empty")
		}
	})

	t.Run("AddNode and AddInitializer", func(t *testing.T) {
		scale := g.UniqueName("x_scale")
		g.AddInitializer(NewFloatTensor(scale, nil, []float32{0.5}))
		q := node("QuantizeLinear", g.UniqueName("x_q"), []string{"x", scale}, []string{g.UniqueName("x_quantized")})
		g.AddNode(q)
		if g.Producer(q.Output[0]) != q || g.Initializer(scale) == nil {
			t.Error("added node/initializer not indexed")
		}
		if got := g.Consumers("x"); got[len(got)-1] != q {
			t.Errorf("Consumers(x) = %v, want the new node last", names(got))
		}
		if g.ConstTensor(scale) == nil {
			t.Error("ConstTensor of added initializer is nil")
		}
		if g.UniqueName(q.Output[0]) == q.Output[0] {
			t.Error("UniqueName returned the output name of an added node")
		}
	})
}

func TestConstTensor(t *testing.T) {
	gp := &onnxpb.GraphProto{
		Node: []*onnxpb.NodeProto{
			node("Constant", "c_value", nil, []string{"cv"}, tensorAttr("value", NewInt8Tensor("inner", nil, []int8{-3}))),
			node("Constant", "c_float", nil, []string{"cf"}, &onnxpb.AttributeProto{Name: "value_float", Type: onnxpb.AttributeProto_FLOAT, F: 0.25}),
			node("Constant", "c_floats", nil, []string{"cfs"}, &onnxpb.AttributeProto{Name: "value_floats", Type: onnxpb.AttributeProto_FLOATS, Floats: []float32{1, 2}}),
			node("Constant", "c_ints", nil, []string{"cis"}, &onnxpb.AttributeProto{Name: "value_ints", Type: onnxpb.AttributeProto_INTS, Ints: []int64{4, 5, 6}}),
			node("Identity", "id1", []string{"init"}, []string{"id1_out"}),
			node("Identity", "id2", []string{"id1_out"}, []string{"id2_out"}),
			node("Identity", "id3", []string{"cf"}, []string{"id3_out"}),
			node("Relu", "relu", []string{"x"}, []string{"computed"}),
			node("Identity", "id4", []string{"computed"}, []string{"id4_out"}),
			node("Constant", "c_str", nil, []string{"cstr"}, &onnxpb.AttributeProto{Name: "value_string", Type: onnxpb.AttributeProto_STRING, S: []byte("s")}),
			// An Identity cycle must not hang ConstTensor.
			node("Identity", "loop1", []string{"loop2_out"}, []string{"loop1_out"}),
			node("Identity", "loop2", []string{"loop1_out"}, []string{"loop2_out"}),
		},
		Initializer: []*onnxpb.TensorProto{NewUint8Tensor("init", []int64{2}, []uint8{9, 8})},
	}
	g := NewGraph(gp)
	tests := []struct {
		name   string
		dtype  onnxpb.TensorProto_DataType
		values string
	}{
		{"cv", onnxpb.TensorProto_INT8, "[-3]"},
		{"cf", onnxpb.TensorProto_FLOAT, "[0.25]"},
		{"cfs", onnxpb.TensorProto_FLOAT, "[1 2]"},
		{"cis", onnxpb.TensorProto_INT64, "[4 5 6]"},
		{"init", onnxpb.TensorProto_UINT8, "[9 8]"},
		{"id2_out", onnxpb.TensorProto_UINT8, "[9 8]"},
		{"id3_out", onnxpb.TensorProto_FLOAT, "[0.25]"},
	}
	for _, tt := range tests {
		ct := g.ConstTensor(tt.name)
		if ct == nil {
			t.Errorf("ConstTensor(%q) = nil", tt.name)
			continue
		}
		if onnxpb.TensorProto_DataType(ct.DataType) != tt.dtype {
			t.Errorf("ConstTensor(%q) type %s, want %s", tt.name, ElemTypeName(ct.DataType), ElemTypeName(int32(tt.dtype)))
		}
		var got string
		switch tt.dtype {
		case onnxpb.TensorProto_FLOAT:
			v, err := FloatData(ct)
			if err != nil {
				t.Fatal(err)
			}
			got = fmtSlice(v)
		case onnxpb.TensorProto_INT8:
			v, err := Int8Data(ct)
			if err != nil {
				t.Fatal(err)
			}
			got = fmtSlice(v)
		case onnxpb.TensorProto_UINT8:
			v, err := Uint8Data(ct)
			if err != nil {
				t.Fatal(err)
			}
			got = fmtSlice(v)
		case onnxpb.TensorProto_INT64:
			got = fmtSlice(ct.Int64Data)
			if n, _ := NumElements(ct); n != int64(len(ct.Int64Data)) {
				t.Errorf("ConstTensor(%q) dims %v disagree with data", tt.name, ct.Dims)
			}
		}
		if got != tt.values {
			t.Errorf("ConstTensor(%q) values %s, want %s", tt.name, got, tt.values)
		}
	}
	for _, name := range []string{"x", "computed", "id4_out", "cstr", "loop1_out", "missing"} {
		if ct := g.ConstTensor(name); ct != nil {
			t.Errorf("ConstTensor(%q) = %v, want nil", name, ct)
		}
	}
}
