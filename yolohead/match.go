package yolohead

import (
	"encoding/binary"
	"slices"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// isOp reports whether n is a standard-domain node of the given type.
func isOp(n *onnxpb.NodeProto, op string) bool {
	return n != nil && n.GetOpType() == op && (n.GetDomain() == "" || n.GetDomain() == "ai.onnx") &&
		len(n.GetInput()) > 0 && len(n.GetOutput()) > 0
}

// attrInts returns the ints of n's attribute name.
func attrInts(n *onnxpb.NodeProto, name string) []int64 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a.GetInts()
		}
	}
	return nil
}

// axisIs reports whether n's axis attribute is pos, or pos-rank.
func axisIs(n *onnxpb.NodeProto, pos, rank int64) bool {
	for _, a := range n.GetAttribute() {
		if a.GetName() == "axis" {
			return a.GetI() == pos || a.GetI() == pos-rank
		}
	}
	return pos == 0 // ONNX's default axis
}

// splitSizes returns a Split's sizes from its second input (opset 13+) or
// its split attribute.
func splitSizes(g *onnx.Graph, n *onnxpb.NodeProto) ([]int64, error) {
	if len(n.GetInput()) > 1 && n.GetInput()[1] != "" {
		v := int64s(g.ConstTensor(n.GetInput()[1]))
		if len(v) != 3 {
			return nil, notDetect("Split sizes %s are not a constant of 3", n.GetInput()[1])
		}
		return v, nil
	}
	if s := attrInts(n, "split"); len(s) == 3 {
		return s, nil
	}
	return nil, notDetect("Split has no constant sizes")
}

// floats returns a float constant's values, nil when t is not one.
func floats(g *onnx.Graph, t string) []float32 {
	c := g.ConstTensor(t)
	if c == nil {
		return nil
	}
	v, err := onnx.FloatData(c)
	if err != nil {
		return nil
	}
	return v
}

// scalar returns the value of a float constant with one element.
func scalar(g *onnx.Graph, t string) (float32, error) {
	v := floats(g, t)
	if len(v) != 1 {
		return 0, notDetect("%s is not a float scalar constant", t)
	}
	return v[0], nil
}

// constThroughExpand returns the float constant at t, looking through an
// Expand (the dynamic export broadcasts anchor_grid at run time).
func constThroughExpand(g *onnx.Graph, t string) *onnxpb.TensorProto {
	if c := g.ConstTensor(t); c != nil {
		return c
	}
	if n := g.Producer(t); isOp(n, "Expand") {
		return g.ConstTensor(n.GetInput()[0])
	}
	return nil
}

// mulByConst matches t = Mul(x, c) or Mul(c, x) with c a float constant
// (possibly Expanded) and returns c's values and x's producer.
func mulByConst(g *onnx.Graph, t string) ([]float32, *onnxpb.NodeProto, error) {
	n := g.Producer(t)
	if !isOp(n, "Mul") || len(n.GetInput()) != 2 {
		return nil, nil, notDetect("%s is not a Mul", t)
	}
	for k := 0; k < 2; k++ {
		c := constThroughExpand(g, n.GetInput()[k])
		if c == nil {
			continue
		}
		v, err := onnx.FloatData(c)
		if err != nil || len(v) == 0 {
			continue
		}
		return v, g.Producer(n.GetInput()[1-k]), nil
	}
	return nil, nil, notDetect("%s is not a Mul by a constant", t)
}

// mulsInput reports whether mul multiplies x by the scalar constant k.
func mulsInput(g *onnx.Graph, mul *onnxpb.NodeProto, x string, k float32) bool {
	in := mul.GetInput()
	if len(in) != 2 {
		return false
	}
	i := slices.Index(in, x)
	if i < 0 {
		return false
	}
	c, err := scalar(g, in[1-i])
	return err == nil && c == k
}

// int64s returns an INT64 constant's values (int64_data or raw_data), nil
// when c is not one.
func int64s(c *onnxpb.TensorProto) []int64 {
	if c == nil || c.GetDataType() != int32(onnxpb.TensorProto_INT64) {
		return nil
	}
	if raw := c.GetRawData(); len(raw) > 0 {
		if len(raw)%8 != 0 {
			return nil
		}
		v := make([]int64, len(raw)/8)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		return v
	}
	return c.GetInt64Data()
}
