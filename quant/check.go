package quant

import (
	"fmt"
	"io"
	"math"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// PlacementReport checks a Q/DQ model against the TensorRT explicit
// quantization placement rules (NVIDIA's YOLOv5/YOLOv7 QAT rules): every
// Conv fed by a per-tensor DequantizeLinear and a per-channel (axis 0)
// weight, both inputs of residual Adds quantized, one scale across each
// Concat's inputs, the same scale before and after MaxPool, symmetric
// int8 (zero point 0).
type PlacementReport struct {
	Convs              int      `json:"convs"`
	ConvsQuantized     int      `json:"convs_quantized"`
	WeightsPerChannel  int      `json:"weights_per_channel"`
	ResidualAdds       int      `json:"residual_adds"`
	ResidualAddsQDQ    int      `json:"residual_adds_quantized"`
	Concats            int      `json:"concats_quantized"`
	ConcatsShared      int      `json:"concats_shared_scale"`
	MaxPools           int      `json:"maxpools_quantized"`
	MaxPoolsShared     int      `json:"maxpools_shared_scale"`
	NonSymmetric       int      `json:"non_symmetric_qdq"`
	Issues             []string `json:"issues,omitempty"`
	FloatConvs         []string `json:"float_convs,omitempty"`
	TensorRTCompatible bool     `json:"tensorrt_rules_ok"`
	// Layout is "tensorrt" (symmetric int8) or "cpu" (uint8 activations).
	Layout string `json:"layout"`
	// ConvsFusable counts Convs laid out for onnxruntime's QLinearConv
	// fusion (DQ input and weight, output consumed only by a Q).
	ConvsFusable int `json:"convs_fusable_cpu"`
}

// first returns names[0], or "" (which no node produces or consumes) for a
// node without inputs or outputs, so that malformed graphs do not panic.
func first(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// dqOf returns the DequantizeLinear producing name, or nil.
func dqOf(g *onnx.Graph, name string) *onnxpb.NodeProto {
	if p := g.Producer(name); p != nil && p.OpType == "DequantizeLinear" {
		return p
	}
	return nil
}

func scaleOf(g *onnx.Graph, n *onnxpb.NodeProto) []float32 {
	if len(n.Input) < 2 {
		return nil
	}
	t := g.ConstTensor(n.Input[1])
	if t == nil {
		return nil
	}
	v, err := onnx.FloatData(t)
	if err != nil {
		return nil
	}
	return v
}

func zeroIsZero(g *onnx.Graph, n *onnxpb.NodeProto) bool {
	if len(n.Input) < 3 || n.Input[2] == "" {
		return false // default uint8 zero point 0, but asymmetric type
	}
	t := g.ConstTensor(n.Input[2])
	if t == nil {
		return false
	}
	if t.DataType == int32(onnxpb.TensorProto_UINT8) {
		return false
	}
	if v, err := onnx.Int8Data(t); err == nil {
		for _, x := range v {
			if x != 0 {
				return false
			}
		}
		return true
	}
	return false
}

func sameScale(a, b []float32) bool {
	if len(a) != 1 || len(b) != 1 {
		return false
	}
	return math.Abs(float64(a[0]-b[0])) <= 1e-6*math.Abs(float64(a[0]))
}

// CheckPlacement checks a Q/DQ model against the rules of its layout:
// the TensorRT rules for symmetric int8 models, onnxruntime's CPU fusion
// layout for models with uint8 activations.
func CheckPlacement(m *onnx.Model) PlacementReport {
	r := checkTensorRT(m)
	g := m.Graph()
	r.Layout = "tensorrt"
	uint8s := 0
	for _, n := range m.Proto.GetGraph().GetNode() {
		if n.OpType == "QuantizeLinear" && len(n.Input) > 2 {
			if t := g.ConstTensor(n.Input[2]); t != nil && t.DataType == int32(onnxpb.TensorProto_UINT8) {
				uint8s++
			}
		}
	}
	if uint8s == 0 {
		return r
	}
	// CPU layout: judge by the fusion rules instead.
	r.Layout = "cpu"
	r.TensorRTCompatible = false
	r.Issues = nil
	for _, n := range m.Proto.GetGraph().GetNode() {
		if n.OpType != "Conv" || len(n.Input) < 2 || dqOf(g, n.Input[0]) == nil || dqOf(g, n.Input[1]) == nil {
			continue
		}
		cons := g.Consumers(first(n.Output))
		ok := len(cons) == 1 && cons[0].OpType == "QuantizeLinear"
		if ok {
			r.ConvsFusable++
		} else {
			r.Issues = append(r.Issues, fmt.Sprintf("Conv %s: output not consumed by a single QuantizeLinear (no QLinearConv fusion)", n.Name))
		}
	}
	return r
}

func checkTensorRT(m *onnx.Model) PlacementReport {
	var r PlacementReport
	g := m.Graph()
	isAct := func(name string) bool { return g.Initializer(name) == nil && g.ConstTensor(name) == nil }
	for _, n := range m.Proto.GetGraph().GetNode() {
		switch n.OpType {
		case "QuantizeLinear", "DequantizeLinear":
			if !zeroIsZero(g, n) {
				r.NonSymmetric++
			}
		case "Conv":
			r.Convs++
			in, w := dqOf(g, first(n.Input)), (*onnxpb.NodeProto)(nil)
			if len(n.Input) > 1 {
				w = dqOf(g, n.Input[1])
			}
			switch {
			case in == nil && w == nil:
				r.FloatConvs = append(r.FloatConvs, n.Name)
			case in == nil || w == nil:
				r.Issues = append(r.Issues, fmt.Sprintf("Conv %s: only one of input and weight is quantized", n.Name))
			default:
				r.ConvsQuantized++
				if s := scaleOf(g, in); len(s) != 1 {
					r.Issues = append(r.Issues, fmt.Sprintf("Conv %s: input scale is not per-tensor", n.Name))
				}
				if s := scaleOf(g, w); len(s) > 1 {
					r.WeightsPerChannel++
				}
			}
		case "Add":
			if len(n.Input) == 2 && isAct(n.Input[0]) && isAct(n.Input[1]) {
				a, b := dqOf(g, n.Input[0]), dqOf(g, n.Input[1])
				if a == nil && b == nil {
					// An Add in float decode maths or a model without
					// residual quantization: only counted if a neighbour
					// is quantized.
					if feedsQuantized(g, n) {
						r.ResidualAdds++
						r.Issues = append(r.Issues, fmt.Sprintf("residual Add %s: inputs not quantized", n.Name))
					}
					continue
				}
				r.ResidualAdds++
				if a != nil && b != nil {
					r.ResidualAddsQDQ++
				} else {
					r.Issues = append(r.Issues, fmt.Sprintf("residual Add %s: only one input quantized", n.Name))
				}
			}
		case "Concat":
			var scales [][]float32
			quantized := 0
			for _, in := range n.Input {
				if d := dqOf(g, in); d != nil {
					quantized++
					scales = append(scales, scaleOf(g, d))
				}
			}
			if quantized == 0 {
				continue
			}
			r.Concats++
			ok := quantized == len(n.Input)
			for _, s := range scales[1:] {
				ok = ok && sameScale(scales[0], s)
			}
			if ok {
				r.ConcatsShared++
			} else {
				r.Issues = append(r.Issues, fmt.Sprintf("Concat %s: inputs do not share one scale", n.Name))
			}
		case "MaxPool":
			in := dqOf(g, first(n.Input))
			if in == nil {
				continue
			}
			r.MaxPools++
			shared := true
			for _, c := range g.Consumers(first(n.Output)) {
				if c.OpType == "QuantizeLinear" && !sameScale(scaleOf(g, in), scaleOf(g, c)) {
					shared = false
				}
			}
			if shared {
				r.MaxPoolsShared++
			} else {
				r.Issues = append(r.Issues, fmt.Sprintf("MaxPool %s: output scale differs from input scale", n.Name))
			}
		}
	}
	if r.NonSymmetric > 0 {
		r.Issues = append(r.Issues, fmt.Sprintf("%d Q/DQ nodes are not symmetric int8 (TensorRT needs zero point 0)", r.NonSymmetric))
	}
	r.TensorRTCompatible = len(r.Issues) == 0 && r.ConvsQuantized > 0
	return r
}

// feedsQuantized reports whether any input of n comes from a node whose
// own inputs are dequantized (n sits inside the quantized region).
func feedsQuantized(g *onnx.Graph, n *onnxpb.NodeProto) bool {
	for _, in := range n.Input {
		p := g.Producer(in)
		if p == nil {
			continue
		}
		if p.OpType == "Conv" && dqOf(g, first(p.Input)) != nil {
			return true
		}
		if p.OpType == "Mul" || p.OpType == "Sigmoid" {
			for _, pin := range p.Input {
				if pp := g.Producer(pin); pp != nil && pp.OpType == "Conv" && dqOf(g, first(pp.Input)) != nil {
					return true
				}
			}
		}
	}
	return false
}

// WriteText prints the report.
func (r PlacementReport) WriteText(w io.Writer) error {
	if r.Layout == "cpu" {
		verdict := "onnxruntime CPU layout (uint8 activations, int8 per-channel weights); not a TensorRT layout"
		if _, err := fmt.Fprintf(w, "placement:    %s\n  Conv %d/%d ready for QLinearConv fusion, %d deviations\n", verdict, r.ConvsFusable, r.Convs, len(r.Issues)); err != nil {
			return err
		}
		for i, s := range r.Issues {
			if i == 8 {
				break
			}
			if _, err := fmt.Fprintf(w, "  - %s\n", s); err != nil {
				return err
			}
		}
		return nil
	}
	verdict := "follows the TensorRT Q/DQ placement rules"
	if !r.TensorRTCompatible {
		verdict = fmt.Sprintf("%d deviations from the TensorRT Q/DQ placement rules", len(r.Issues))
	}
	_, err := fmt.Fprintf(w, "placement:    %s\n  Conv %d/%d quantized (%d per-channel weights), residual Add %d/%d, Concat shared scale %d/%d, MaxPool shared scale %d/%d, float Convs %d\n",
		verdict, r.ConvsQuantized, r.Convs, r.WeightsPerChannel, r.ResidualAddsQDQ, r.ResidualAdds, r.ConcatsShared, r.Concats, r.MaxPoolsShared, r.MaxPools, len(r.FloatConvs))
	if err != nil {
		return err
	}
	for i, s := range r.Issues {
		if i == 8 {
			_, err = fmt.Fprintf(w, "  ... %d more\n", len(r.Issues)-i)
			return err
		}
		if _, err := fmt.Fprintf(w, "  - %s\n", s); err != nil {
			return err
		}
	}
	return nil
}
