// Package testmodels derives test models from the shared YOLOv5n fixtures:
// static models at other input sizes and opsets (as a user would export
// with --imgsz and --opset), and broken models for error paths.
package testmodels

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// Static writes a copy of the dynamic model with a fixed 1x3xHxW input at
// the given opset (12 or 13) and returns its path.
func Static(tb testing.TB, dynamicPath string, h, w int, opset int64) string {
	tb.Helper()
	m, err := onnx.Load(dynamicPath)
	if err != nil {
		tb.Fatal(err)
	}
	g := m.Proto.Graph
	in := g.Input[0].GetType().GetTensorType().GetShape()
	for i, v := range []int64{1, 3, int64(h), int64(w)} {
		in.Dim[i].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}
	}
	for _, o := range g.Output {
		o.Type.GetTensorType().Shape = nil
	}
	g.ValueInfo = nil
	if opset == 12 {
		if err := toOpset12(m); err != nil {
			tb.Fatal(err)
		}
	}
	for _, op := range m.Proto.OpsetImport {
		if op.Domain == "" || op.Domain == "ai.onnx" {
			op.Version = opset
		}
	}
	p := filepath.Join(tb.TempDir(), fmt.Sprintf("yolov5n-%dx%d-op%d.onnx", h, w, opset))
	if err := m.Save(p); err != nil {
		tb.Fatal(err)
	}
	return p
}

// toOpset12 rewrites the opset-13 forms whose axes/split moved from an
// attribute to an input back into attributes.
func toOpset12(m *onnx.Model) error {
	g := m.Graph()
	emptyROI := ""
	for _, n := range m.Proto.Graph.Node {
		var attr string
		switch n.OpType {
		case "Resize":
			// Resize-11 requires the roi input that Resize-13 made optional.
			if len(n.Input) > 1 && n.Input[1] == "" {
				if emptyROI == "" {
					emptyROI = g.UniqueName("resize_roi")
					g.AddInitializer(onnx.NewFloatTensor(emptyROI, []int64{0}, nil))
				}
				n.Input[1] = emptyROI
			}
			continue
		case "Unsqueeze", "Squeeze", "ReduceSum":
			attr = "axes"
		case "Split":
			attr = "split"
		default:
			continue
		}
		if len(n.Input) < 2 || n.Input[1] == "" {
			continue
		}
		t := g.ConstTensor(n.Input[1])
		if t == nil {
			return fmt.Errorf("%s %s: %s is not constant", n.OpType, n.Name, attr)
		}
		vals := t.Int64Data
		if len(vals) == 0 && len(t.RawData) > 0 {
			for i := 0; i+8 <= len(t.RawData); i += 8 {
				var v int64
				for b := 7; b >= 0; b-- {
					v = v<<8 | int64(t.RawData[i+b])
				}
				vals = append(vals, v)
			}
		}
		n.Input = n.Input[:1]
		n.Attribute = append(n.Attribute, &onnxpb.AttributeProto{Name: attr, Type: onnxpb.AttributeProto_INTS, Ints: vals})
	}
	return nil
}

// WrongOutput writes a copy of a model whose only output is the first
// Conv's output (rank 4), which is not YOLOv5-shaped.
func WrongOutput(tb testing.TB, path string) string {
	tb.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	g := m.Proto.Graph
	var conv *onnxpb.NodeProto
	for _, n := range g.Node {
		if n.OpType == "Conv" {
			conv = n
			break
		}
	}
	g.Output = []*onnxpb.ValueInfoProto{{Name: conv.Output[0], Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxpb.TensorProto_FLOAT)}}}}}
	p := filepath.Join(tb.TempDir(), "wrong-output.onnx")
	if err := m.Save(p); err != nil {
		tb.Fatal(err)
	}
	return p
}

// SingleOp writes a valid ONNX model of another network: one float node
// of type op (Relu, Identity, ...) from input "x" to output "y", both of
// the given shape, and returns its path.
func SingleOp(tb testing.TB, op string, dims ...int64) string {
	tb.Helper()
	vi := func(name string) *onnxpb.ValueInfoProto {
		shape := &onnxpb.TensorShapeProto{}
		for _, d := range dims {
			shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxpb.TensorProto_FLOAT), Shape: shape}}}}
	}
	m := &onnx.Model{Proto: &onnxpb.ModelProto{IrVersion: 7, ProducerName: "yedge-test",
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: "", Version: 13}},
		Graph: &onnxpb.GraphProto{Name: op, Node: []*onnxpb.NodeProto{{OpType: op, Name: op, Input: []string{"x"}, Output: []string{"y"}}},
			Input: []*onnxpb.ValueInfoProto{vi("x")}, Output: []*onnxpb.ValueInfoProto{vi("y")}}}}
	p := filepath.Join(tb.TempDir(), op+".onnx")
	if err := m.Save(p); err != nil {
		tb.Fatal(err)
	}
	return p
}

// ScaledActivations writes a copy of a Q/DQ model whose activation
// QuantizeLinear/DequantizeLinear scales are multiplied by factor: the
// shapes are right and the model runs, but its detections are garbage (a
// broken calibration). The source is read into memory, never written.
func ScaledActivations(tb testing.TB, qdqPath string, factor float32) string {
	tb.Helper()
	m, err := onnx.Load(qdqPath)
	if err != nil {
		tb.Fatal(err)
	}
	g := m.Graph()
	done := map[string]bool{}
	for _, n := range m.Proto.Graph.Node {
		if (n.OpType != "QuantizeLinear" && n.OpType != "DequantizeLinear") || len(n.Input) < 2 {
			continue
		}
		// Weights are initializers (or constants) feeding a DQ; activations
		// are not.
		if g.Initializer(n.Input[0]) != nil || g.ConstTensor(n.Input[0]) != nil || done[n.Input[1]] {
			continue
		}
		t := g.Initializer(n.Input[1])
		if t == nil {
			continue
		}
		v, err := onnx.FloatData(t)
		if err != nil {
			tb.Fatal(err)
		}
		for i := range v {
			v[i] *= factor
		}
		t.RawData, t.FloatData = onnx.NewFloatTensor(t.Name, t.Dims, v).RawData, nil
		done[n.Input[1]] = true
	}
	if len(done) == 0 {
		tb.Fatalf("%s: no activation Q/DQ scale found", qdqPath)
	}
	p := filepath.Join(tb.TempDir(), "scaled-activations.onnx")
	if err := m.Save(p); err != nil {
		tb.Fatal(err)
	}
	return p
}
