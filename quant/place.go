package quant

import (
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// Range is the calibrated range of one activation tensor: Amax from the
// calibrator (on |x|) and the observed minimum (for asymmetric targets).
type Range struct {
	Amax float64 `json:"amax"`
	Min  float64 `json:"min"`
}

// ShareGroups returns ranges where every member of a group gets the
// group's widest range (largest amax, smallest min).
func ShareGroups(ranges map[string]Range, groups [][]string) map[string]Range {
	out := make(map[string]Range, len(ranges))
	for k, v := range ranges {
		out[k] = v
	}
	for _, g := range groups {
		var r Range
		first := true
		for _, t := range g {
			v, ok := ranges[t]
			if !ok {
				continue
			}
			if first {
				r, first = v, false
				continue
			}
			r.Amax = math.Max(r.Amax, v.Amax)
			r.Min = math.Min(r.Min, v.Min)
		}
		if first {
			continue
		}
		for _, t := range g {
			out[t] = r
		}
	}
	return out
}

// activationParams returns the QuantizeLinear parameters for a tensor.
func activationParams(t Target, r Range) QuantParams {
	if t == TargetCPU {
		lo := math.Max(r.Min, -r.Amax)
		return AsymmetricParams(float32(lo), float32(r.Amax), 8)
	}
	return SymmetricParams(float32(r.Amax), 8, false, true)
}

// placer builds the quantized graph.
type placer struct {
	g      *onnx.Graph
	target Target
	nodes  []*onnxpb.NodeProto
	inits  []*onnxpb.TensorProto
	qName  map[string]string      // tensor -> quantized tensor name
	params map[string]QuantParams // tensor -> activation params
	spName map[string][2]string   // tensor -> scale, zero point initializer names
}

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}
}

func (pl *placer) scalarParams(t string, p QuantParams) (string, string) {
	if s, ok := pl.spName[t]; ok {
		return s[0], s[1]
	}
	sName := pl.g.UniqueName(t + "_scale")
	zName := pl.g.UniqueName(t + "_zero_point")
	pl.inits = append(pl.inits, onnx.NewFloatTensor(sName, nil, []float32{p.Scale}))
	if p.Unsigned {
		pl.inits = append(pl.inits, onnx.NewUint8Tensor(zName, nil, []uint8{uint8(p.ZeroPoint)}))
	} else {
		pl.inits = append(pl.inits, onnx.NewInt8Tensor(zName, nil, []int8{int8(p.ZeroPoint)}))
	}
	pl.spName[t] = [2]string{sName, zName}
	return sName, zName
}

// quantize emits QuantizeLinear for activation t (once).
func (pl *placer) quantize(t string) {
	if _, ok := pl.qName[t]; ok {
		return
	}
	s, z := pl.scalarParams(t, pl.params[t])
	out := pl.g.UniqueName(t + "_quantized")
	pl.nodes = append(pl.nodes, &onnxpb.NodeProto{OpType: "QuantizeLinear", Name: pl.g.UniqueName(t + "_QuantizeLinear"),
		Input: []string{t, s, z}, Output: []string{out}})
	pl.qName[t] = out
}

// dequantize emits a DequantizeLinear of t dedicated to one consumer and
// returns its output name.
func (pl *placer) dequantize(t string) string {
	sp := pl.spName[t]
	out := pl.g.UniqueName(t + "_dequantized")
	pl.nodes = append(pl.nodes, &onnxpb.NodeProto{OpType: "DequantizeLinear", Name: pl.g.UniqueName(t + "_DequantizeLinear"),
		Input: []string{pl.qName[t], sp[0], sp[1]}, Output: []string{out}})
	return out
}

// weight quantizes a Conv weight per output channel (axis 0) and, for the
// CPU target, its bias as int32 with scale input_scale*weight_scale.
func (pl *placer) weight(n *onnxpb.NodeProto, inScale float32) error {
	w := pl.g.Initializer(n.Input[1])
	data, err := onnx.FloatData(w)
	if err != nil {
		return fmt.Errorf("node %s weight %s: %w", n.Name, w.Name, err)
	}
	if len(w.Dims) < 2 {
		return fmt.Errorf("node %s weight %s has shape %v", n.Name, w.Name, w.Dims)
	}
	const axis = 0
	amax := PerChannelAmax(data, w.Dims, axis)
	if len(amax) == 0 {
		return fmt.Errorf("node %s weight %s: shape %v has no channel to quantize", n.Name, w.Name, w.Dims)
	}
	ch := len(amax)
	scales := make([]float32, ch)
	zps := make([]int8, ch)
	ps := make([]QuantParams, ch)
	for c, a := range amax {
		if !(a > 0) {
			a = 1 // an all-zero channel: any scale represents it exactly
		}
		ps[c] = SymmetricParams(a, 8, false, true)
		scales[c] = ps[c].Scale
	}
	base := w.Name
	sName := pl.g.UniqueName(base + "_scale")
	zName := pl.g.UniqueName(base + "_zero_point")
	pl.inits = append(pl.inits, onnx.NewFloatTensor(sName, []int64{int64(ch)}, scales), onnx.NewInt8Tensor(zName, []int64{int64(ch)}, zps))
	dqOut := pl.g.UniqueName(base + "_dequantized")
	if pl.target == TargetTensorRT {
		// pytorch-quantization's export: float weight -> Q -> DQ, which
		// TensorRT folds into an int8 weight.
		qOut := pl.g.UniqueName(base + "_quantized")
		pl.nodes = append(pl.nodes,
			&onnxpb.NodeProto{OpType: "QuantizeLinear", Name: pl.g.UniqueName(base + "_QuantizeLinear"),
				Input: []string{base, sName, zName}, Output: []string{qOut}, Attribute: []*onnxpb.AttributeProto{attrInt("axis", int64(axis))}},
			&onnxpb.NodeProto{OpType: "DequantizeLinear", Name: pl.g.UniqueName(base + "_DequantizeLinear"),
				Input: []string{qOut, sName, zName}, Output: []string{dqOut}, Attribute: []*onnxpb.AttributeProto{attrInt("axis", int64(axis))}})
		n.Input[1] = dqOut
		return nil
	}
	// CPU: int8 weights stored quantized, DequantizeLinear only.
	per := len(data) / ch
	q := make([]int8, len(data))
	for i, v := range data {
		q[i] = int8(ps[i/per].Quantize(v))
	}
	wq := pl.g.UniqueName(base + "_quantized")
	pl.inits = append(pl.inits, onnx.NewInt8Tensor(wq, w.Dims, q))
	pl.nodes = append(pl.nodes, &onnxpb.NodeProto{OpType: "DequantizeLinear", Name: pl.g.UniqueName(base + "_DequantizeLinear"),
		Input: []string{wq, sName, zName}, Output: []string{dqOut}, Attribute: []*onnxpb.AttributeProto{attrInt("axis", int64(axis))}})
	n.Input[1] = dqOut
	if len(n.Input) > 2 && n.Input[2] != "" {
		b := pl.g.Initializer(n.Input[2])
		if b == nil {
			return nil
		}
		bd, err := onnx.FloatData(b)
		if err != nil || len(bd) != ch {
			return fmt.Errorf("node %s bias %s: %v", n.Name, b.Name, err)
		}
		bs := make([]float32, ch)
		bq := make([]int32, ch)
		for c := range bd {
			bs[c] = inScale * scales[c]
			v := math.RoundToEven(float64(bd[c]) / float64(bs[c]))
			bq[c] = int32(max(min(v, math.MaxInt32), math.MinInt32))
		}
		bsName := pl.g.UniqueName(b.Name + "_scale")
		bzName := pl.g.UniqueName(b.Name + "_zero_point")
		bqName := pl.g.UniqueName(b.Name + "_quantized")
		bOut := pl.g.UniqueName(b.Name + "_dequantized")
		pl.inits = append(pl.inits, onnx.NewFloatTensor(bsName, []int64{int64(ch)}, bs),
			int32Tensor(bzName, []int64{int64(ch)}, make([]int32, ch)), int32Tensor(bqName, []int64{int64(ch)}, bq))
		pl.nodes = append(pl.nodes, &onnxpb.NodeProto{OpType: "DequantizeLinear", Name: pl.g.UniqueName(b.Name + "_DequantizeLinear"),
			Input: []string{bqName, bsName, bzName}, Output: []string{bOut}, Attribute: []*onnxpb.AttributeProto{attrInt("axis", 0)}})
		n.Input[2] = bOut
	}
	return nil
}

func int32Tensor(name string, dims []int64, data []int32) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: int32(onnxpb.TensorProto_INT32), Int32Data: data}
}

// Place returns a copy of m with QuantizeLinear/DequantizeLinear inserted
// according to the analysis and the calibrated ranges. Unused float weights
// are dropped.
func Place(m *onnx.Model, p *Analysis, ranges map[string]Range) (*onnx.Model, error) {
	for _, t := range p.Tensors {
		r, ok := ranges[t]
		if !ok {
			return nil, fmt.Errorf("no calibrated range for tensor %q", t)
		}
		if math.IsNaN(r.Amax) || math.IsInf(r.Amax, 0) || r.Amax < 0 {
			return nil, fmt.Errorf("tensor %q: bad amax %v", t, r.Amax)
		}
	}
	ranges = ShareGroups(ranges, p.Groups)
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Path: m.Path}
	// Map the analysis's nodes (of m) to the clone by position.
	idx := map[*onnxpb.NodeProto]int{}
	for i, n := range m.Proto.Graph.Node {
		idx[n] = i
	}
	cg := out.Proto.Graph
	quantIn := map[*onnxpb.NodeProto][]int{}
	weights := map[*onnxpb.NodeProto]bool{}
	for n, v := range p.quantIn {
		quantIn[cg.Node[idx[n]]] = v
	}
	for n := range p.weights {
		weights[cg.Node[idx[n]]] = true
	}
	pl := &placer{g: out.Graph(), target: p.Target, qName: map[string]string{}, params: map[string]QuantParams{}, spName: map[string][2]string{}}
	qTensors := map[string]bool{}
	for _, t := range p.Tensors {
		r := ranges[t]
		if !(r.Amax > 0) {
			r.Amax = 1e-6 // a constant-zero tensor; keep a valid scale
		}
		pl.params[t] = activationParams(p.Target, r)
	}
	for n, is := range quantIn {
		for _, i := range is {
			qTensors[n.Input[i]] = true
		}
	}
	if p.Target == TargetCPU {
		for t := range p.quantOut {
			qTensors[t] = true
		}
	}
	for _, in := range cg.Input {
		if qTensors[in.Name] {
			pl.quantize(in.Name)
		}
	}
	for _, n := range cg.Node {
		is := quantIn[n]
		orig0 := ""
		if len(n.Input) > 0 {
			orig0 = n.Input[0]
		}
		for i, in := range n.Input {
			if !qTensors[in] {
				continue
			}
			// CPU: every consumer reads through its own DQ so that the
			// producer's output feeds only the Q (required for fusion).
			if p.Target == TargetCPU || slices.Contains(is, i) {
				n.Input[i] = pl.dequantize(in)
			}
		}
		if weights[n] {
			var inScale float32 = 1
			if p, ok := pl.params[orig0]; ok {
				inScale = p.Scale
			}
			if err := pl.weight(n, inScale); err != nil {
				return nil, err
			}
		}
		pl.nodes = append(pl.nodes, n)
		for _, o := range n.Output {
			if qTensors[o] {
				pl.quantize(o)
			}
		}
	}
	cg.Node = pl.nodes
	cg.Initializer = append(cg.Initializer, pl.inits...)
	dropUnused(cg)
	// Shapes recorded for the float graph stay valid; Q/DQ outputs get
	// theirs from onnxruntime's inference.
	return out, nil
}

// dropUnused removes initializers no node or output references.
func dropUnused(g *onnxpb.GraphProto) {
	used := map[string]bool{}
	for _, n := range g.Node {
		for _, in := range n.Input {
			used[in] = true
		}
	}
	for _, o := range g.Output {
		used[o.Name] = true
	}
	keep := g.Initializer[:0]
	for _, t := range g.Initializer {
		if used[t.Name] {
			keep = append(keep, t)
		}
	}
	g.Initializer = keep
}
