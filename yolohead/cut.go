package yolohead

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// Cut returns a copy of m, serialised, whose graph outputs are h's level
// tensors instead of the decoded output, with the nodes, initializers and
// value infos nothing needs any more removed. m is not modified, and
// nothing is written to disk.
func Cut(m *onnx.Model, h *Head) ([]byte, error) {
	if h == nil || len(h.Levels) == 0 {
		return nil, fmt.Errorf("cut model %q: no Detect head", m.Path)
	}
	mp := proto.Clone(m.Proto).(*onnxpb.ModelProto)
	g := onnx.NewGraph(mp.Graph)
	var outs []*onnxpb.ValueInfoProto
	for i, lv := range h.Levels {
		if g.Producer(lv.Tensor) == nil {
			return nil, fmt.Errorf("cut model %q: level %d tensor %s has no producer", m.Path, i, lv.Tensor)
		}
		outs = append(outs, headOutput(lv, i))
	}
	mp.Graph.Output = outs
	live := liveTensors(g, h)
	var nodes []*onnxpb.NodeProto
	used := map[string]bool{}
	for _, n := range mp.Graph.GetNode() {
		if !producesAny(n, live) {
			continue
		}
		nodes = append(nodes, n)
		for _, in := range n.GetInput() {
			used[in] = true
		}
	}
	mp.Graph.Node = nodes
	var inits []*onnxpb.TensorProto
	for _, t := range mp.Graph.GetInitializer() {
		if used[t.GetName()] {
			inits = append(inits, t)
		}
	}
	mp.Graph.Initializer = inits
	var vis []*onnxpb.ValueInfoProto
	for _, v := range mp.Graph.GetValueInfo() {
		if live[v.GetName()] {
			vis = append(vis, v)
		}
	}
	mp.Graph.ValueInfo = vis
	data, err := (&onnx.Model{Proto: mp, Path: m.Path}).Marshal()
	if err != nil {
		return nil, fmt.Errorf("cut model %q: %w", m.Path, err)
	}
	return data, nil
}

// headOutput describes level i's tensor as a graph output: float
// [batch, na*no, ny, nx] with symbolic sizes where the graph does not fix
// them.
func headOutput(lv Level, i int) *onnxpb.ValueInfoProto {
	dim := func(v int, name string) *onnxpb.TensorShapeProto_Dimension {
		if v > 0 {
			return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}}
		}
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: name}}
	}
	shape := &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
		dim(0, "batch"), dim(lv.NA*lv.NO, ""), dim(lv.NY, fmt.Sprintf("ny%d", i)), dim(lv.NX, fmt.Sprintf("nx%d", i)),
	}}
	return &onnxpb.ValueInfoProto{Name: lv.Tensor, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxpb.TensorProto_FLOAT), Shape: shape}}}}
}

// liveTensors returns every tensor the level tensors depend on.
func liveTensors(g *onnx.Graph, h *Head) map[string]bool {
	live := map[string]bool{}
	var stack []string
	for _, lv := range h.Levels {
		stack = append(stack, lv.Tensor)
	}
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if t == "" || live[t] {
			continue
		}
		live[t] = true
		if n := g.Producer(t); n != nil {
			stack = append(stack, n.GetInput()...)
			for _, o := range n.GetOutput() {
				live[o] = true
			}
		}
	}
	return live
}

// producesAny reports whether n outputs a live tensor.
func producesAny(n *onnxpb.NodeProto, live map[string]bool) bool {
	for _, o := range n.GetOutput() {
		if live[o] {
			return true
		}
	}
	return false
}
