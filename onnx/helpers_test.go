package onnx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/yedge/yedge/onnx/onnxpb"
)

// realModel returns the path of a shared test model, skipping the test when
// it is absent (failing instead when CI=true).
func realModel(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "models", name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("test model %s missing: %v", p, err)
		}
		t.Skipf("test model %s missing (%v); set up shared/models to run this test", p, err)
	}
	return p
}

// tensorVI builds a float/int tensor ValueInfoProto; dims < 0 become "N".
func tensorVI(name string, elem onnxpb.TensorProto_DataType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d < 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(elem), Shape: shape}}}}
}

// node builds a NodeProto.
func node(op, name string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: op, Name: name, Input: in, Output: out, Attribute: attrs}
}

// tensorAttr builds a TENSOR attribute.
func tensorAttr(name string, t *onnxpb.TensorProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_TENSOR, T: t}
}

// wrapModel puts g into a minimal valid ModelProto (opset 13).
func wrapModel(g *onnxpb.GraphProto) *onnxpb.ModelProto {
	return &onnxpb.ModelProto{
		IrVersion:    7,
		ProducerName: "yedge-test",
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: "", Version: 13}},
		Graph:        g,
		MetadataProps: []*onnxpb.StringStringEntryProto{
			{Key: "stride", Value: "32"},
		},
	}
}

// smallModel is x[N,4] * w[4] -> Relu -> y.
func smallModel() *onnxpb.ModelProto {
	return wrapModel(&onnxpb.GraphProto{
		Name: "small",
		Node: []*onnxpb.NodeProto{
			node("Mul", "mul", []string{"x", "w"}, []string{"xw"}),
			node("Relu", "relu", []string{"xw"}, []string{"y"}),
		},
		Initializer: []*onnxpb.TensorProto{NewFloatTensor("w", []int64{4}, []float32{1, 2, 3, 4})},
		Input:       []*onnxpb.ValueInfoProto{tensorVI("x", onnxpb.TensorProto_FLOAT, -1, 4)},
		Output:      []*onnxpb.ValueInfoProto{tensorVI("y", onnxpb.TensorProto_FLOAT, -1, 4)},
	})
}

// qdqModel is a small QDQ graph in the pytorch-quantization style: the
// activation goes through Q->DQ with Constant scale/zero point, the weight is
// fake-quantized per channel with the zero point behind an Identity, and a
// second, ONNX Runtime style branch dequantizes a stored uint8 weight with no
// zero point.
func qdqModel() *onnxpb.ModelProto {
	g := &onnxpb.GraphProto{
		Name: "qdq",
		Node: []*onnxpb.NodeProto{
			node("Constant", "c_scale", nil, []string{"a_scale"}, tensorAttr("value", NewFloatTensor("", nil, []float32{0.1}))),
			node("Constant", "c_zp", nil, []string{"a_zp"}, tensorAttr("value", NewInt8Tensor("", nil, []int8{0}))),
			node("QuantizeLinear", "qa", []string{"x", "a_scale", "a_zp"}, []string{"xq"}),
			node("DequantizeLinear", "dqa", []string{"xq", "a_scale", "a_zp"}, []string{"xdq"}),
			node("Identity", "id_zp", []string{"wzp_shared"}, []string{"wzp"}),
			node("QuantizeLinear", "qw", []string{"w", "w_scale", "wzp"}, []string{"wq"}),
			node("DequantizeLinear", "dqw", []string{"wq", "w_scale", "wzp"}, []string{"wdq"}),
			node("Conv", "conv", []string{"xdq", "wdq"}, []string{"c"}),
			node("DequantizeLinear", "dqu", []string{"u8w", "u_scale"}, []string{"udq"}),
			node("Add", "add", []string{"c", "udq"}, []string{"y"}),
		},
		Initializer: []*onnxpb.TensorProto{
			NewFloatTensor("w", []int64{2, 1, 1, 1}, []float32{0.5, -0.25}),
			NewFloatTensor("w_scale", []int64{2}, []float32{0.01, 0.02}),
			NewInt8Tensor("wzp_shared", []int64{2}, []int8{0, 0}),
			NewUint8Tensor("u8w", []int64{1}, []uint8{7}),
			NewFloatTensor("u_scale", nil, []float32{0.5}),
		},
		Input:  []*onnxpb.ValueInfoProto{tensorVI("x", onnxpb.TensorProto_FLOAT, 1, 1, 4, 4)},
		Output: []*onnxpb.ValueInfoProto{tensorVI("y", onnxpb.TensorProto_FLOAT, 1, 2, 4, 4)},
	}
	return wrapModel(g)
}
