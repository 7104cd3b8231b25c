package quant

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// Target selects the Q/DQ layout for the runtime that will execute the
// model, because TensorRT and onnxruntime's CPU provider fuse different
// patterns.
type Target string

// Targets.
const (
	// TargetTensorRT: symmetric int8 (zero point 0) at the inputs of
	// weighted ops with per-channel weights, both inputs of residual Adds,
	// one shared scale across Concat inputs and output and across MaxPool
	// input and output (NVIDIA's YOLOv5/YOLOv7 QAT placement rules).
	TargetTensorRT Target = "tensorrt"
	// TargetCPU: uint8 asymmetric activations with int8 per-channel weights
	// and int32 bias, every Conv/Sigmoid/Mul/Add/Concat output quantized and
	// a dedicated DequantizeLinear per consumer, so that onnxruntime fuses
	// QLinearConv, QLinearSigmoid, QLinearMul, QLinearAdd, QLinearConcat.
	TargetCPU Target = "cpu"
)

// ParseTarget validates a target name.
func ParseTarget(s string) (Target, error) {
	switch Target(s) {
	case TargetTensorRT, TargetCPU:
		return Target(s), nil
	}
	return "", fmt.Errorf("unknown target %q (want tensorrt or cpu)", s)
}

// Analysis is the result of Analyze: which nodes are quantized and which
// activation tensors need calibration.
type Analysis struct {
	Target Target
	// Nodes whose inputs (and for CPU, outputs) are quantized, in graph order.
	Quantized []*onnxpb.NodeProto
	// Excluded nodes kept in float, with the reason.
	Excluded map[string]string
	// Tensors to calibrate, sorted.
	Tensors []string
	// Groups of tensors that must share one scale (TensorRT Concat and
	// MaxPool rules; MaxPool/Resize pass-through on CPU).
	Groups [][]string
	// Head lists the Detect-head Convs (Convs with no Conv downstream).
	Head []string
	// Warnings for the user (an exclude regex that matched nothing...).
	Warnings []string

	quantIn  map[*onnxpb.NodeProto][]int // input indexes to quantize (activations)
	quantOut map[string]bool             // CPU: tensors quantized at their producer
	weights  map[*onnxpb.NodeProto]bool  // nodes whose weight (and bias) are quantized
}

// AnalyzeOptions controls Analyze.
type AnalyzeOptions struct {
	Target Target
	// Exclude keeps nodes whose names match in float.
	Exclude *regexp.Regexp
	// ExcludeNodes keeps these node names in float (from sensitivity).
	ExcludeNodes []string
	// KeepHead keeps the Detect-head Convs in float.
	KeepHead bool
}

// weightedOps are ops with a weight input at index 1 quantized per channel.
var weightedOps = map[string]bool{"Conv": true}

// cpuOps are ops onnxruntime's CPU provider runs in int8 from a QDQ group.
var cpuOps = map[string]bool{"Conv": true, "Sigmoid": true, "Mul": true, "Add": true, "Concat": true, "MaxPool": true, "Resize": true}

// passThrough ops need equal input and output scales (their Q/DQ are
// dropped by onnxruntime and commuted by TensorRT).
var passThrough = map[string]bool{"MaxPool": true, "Resize": true}

// IsQDQ reports whether a model already has QuantizeLinear or
// DequantizeLinear nodes (or QOperator int8 ops).
func IsQDQ(m *onnx.Model) bool {
	for _, n := range m.Proto.GetGraph().GetNode() {
		switch n.OpType {
		case "QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul":
			return true
		}
	}
	return false
}

// wellFormed reports whether n has the first input and first output every
// quantized op reads and writes. Nodes without them (an invalid model that
// onnxruntime would refuse anyway) stay in float instead of panicking.
func wellFormed(n *onnxpb.NodeProto) bool {
	return len(n.Input) > 0 && n.Input[0] != "" && len(n.Output) > 0 && n.Output[0] != ""
}

// Analyze decides the Q/DQ placement for a float model.
func Analyze(m *onnx.Model, o AnalyzeOptions) (*Analysis, error) {
	if IsQDQ(m) {
		return nil, fmt.Errorf("model %q is already quantized (it has Q/DQ or int8 ops); yedge does not quantize twice — run it as it is", m.Path)
	}
	if m.Opset() < 13 {
		return nil, fmt.Errorf("model %q has opset %d; per-channel QuantizeLinear needs opset 13 or later (re-export with --opset 13)", m.Path, m.Opset())
	}
	g := m.Graph()
	nodes := m.Proto.Graph.Node
	p := &Analysis{Target: o.Target, Excluded: map[string]string{}, quantIn: map[*onnxpb.NodeProto][]int{},
		quantOut: map[string]bool{}, weights: map[*onnxpb.NodeProto]bool{}}

	// Downstream reachability of a Conv: region = nodes with a Conv at or
	// after them. The Detect head = Convs with no Conv downstream.
	convAfter := map[*onnxpb.NodeProto]bool{}
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		for _, out := range n.Output {
			for _, c := range g.Consumers(out) {
				if weightedOps[c.OpType] || convAfter[c] {
					convAfter[n] = true
				}
			}
		}
	}
	for _, n := range nodes {
		if weightedOps[n.OpType] && !convAfter[n] {
			p.Head = append(p.Head, n.Name)
		}
	}
	excluded := func(n *onnxpb.NodeProto) bool { _, ok := p.Excluded[n.Name]; return ok }
	if o.Exclude != nil {
		hit := false
		for _, n := range nodes {
			if o.Exclude.MatchString(n.Name) {
				p.Excluded[n.Name] = "exclude " + o.Exclude.String()
				hit = true
			}
		}
		if !hit {
			p.Warnings = append(p.Warnings, fmt.Sprintf("exclude %q matches no node name", o.Exclude.String()))
		}
	}
	for _, name := range o.ExcludeNodes {
		p.Excluded[name] = "sensitivity"
	}
	if o.KeepHead {
		for _, h := range p.Head {
			if _, ok := p.Excluded[h]; !ok {
				p.Excluded[h] = "Detect head"
			}
		}
	}
	isAct := func(name string) bool {
		return name != "" && g.ConstTensor(name) == nil && g.Initializer(name) == nil
	}
	calib := map[string]bool{}
	uf := newUnionFind()
	switch o.Target {
	case TargetTensorRT:
		for _, n := range nodes {
			if excluded(n) || !wellFormed(n) {
				continue
			}
			var idx []int
			switch {
			case weightedOps[n.OpType]:
				if len(n.Input) > 1 && g.Initializer(n.Input[1]) != nil {
					idx = []int{0}
					p.weights[n] = true
				}
			case n.OpType == "Add" && convAfter[n] && len(n.Input) == 2 && isAct(n.Input[0]) && isAct(n.Input[1]):
				idx = []int{0, 1}
			case n.OpType == "Concat" && convAfter[n]:
				for i, in := range n.Input {
					if isAct(in) {
						idx = append(idx, i)
						uf.union(n.Input[0], in)
					}
				}
				// The Concat output shares the scale wherever it is quantized.
				uf.union(n.Input[0], n.Output[0])
			case n.OpType == "MaxPool" && convAfter[n]:
				idx = []int{0}
				uf.union(n.Input[0], n.Output[0])
			}
			if len(idx) > 0 {
				p.quantIn[n] = idx
				p.Quantized = append(p.Quantized, n)
				for _, i := range idx {
					calib[n.Input[i]] = true
				}
			}
		}
		// A MaxPool output in a shared group is quantized where consumed;
		// calibrate every member so the group amax covers it.
		for _, n := range nodes {
			if n.OpType == "MaxPool" && p.quantIn[n] != nil {
				calib[n.Output[0]] = true
			}
		}
	case TargetCPU:
		for _, n := range nodes {
			if excluded(n) || !cpuOps[n.OpType] || !wellFormed(n) {
				continue
			}
			if !weightedOps[n.OpType] && !convAfter[n] {
				continue // the Detect decode stays in float
			}
			var idx []int
			for i, in := range n.Input {
				if weightedOps[n.OpType] && i > 0 {
					break
				}
				if n.OpType == "Resize" && i > 0 {
					break
				}
				if isAct(in) {
					idx = append(idx, i)
				}
			}
			if n.OpType == "Mul" || n.OpType == "Add" {
				if len(idx) != 2 {
					continue // a Mul/Add by a constant stays in float
				}
			}
			if len(idx) == 0 {
				continue
			}
			if weightedOps[n.OpType] {
				if len(n.Input) < 2 || g.Initializer(n.Input[1]) == nil {
					continue
				}
				p.weights[n] = true
			}
			p.quantIn[n] = idx
			p.Quantized = append(p.Quantized, n)
			// Graph outputs stay float: nothing would read the Q.
			if !g.IsGraphOutput(n.Output[0]) {
				p.quantOut[n.Output[0]] = true
				calib[n.Output[0]] = true
			}
			for _, i := range idx {
				calib[n.Input[i]] = true
			}
			if passThrough[n.OpType] {
				uf.union(n.Input[0], n.Output[0])
			}
		}
	default:
		return nil, fmt.Errorf("unknown target %q", o.Target)
	}
	if len(p.Quantized) == 0 {
		return nil, fmt.Errorf("model %q: nothing to quantize for target %s (no Conv outside the exclusions)", m.Path, o.Target)
	}
	for t := range calib {
		p.Tensors = append(p.Tensors, t)
	}
	slices.Sort(p.Tensors)
	p.Groups = uf.groups(p.Tensors)
	return p, nil
}

// Summary is a one-line description of the analysis.
func (p *Analysis) Summary() string {
	ops := map[string]int{}
	for _, n := range p.Quantized {
		ops[n.OpType]++
	}
	var parts []string
	for _, k := range slices.Sorted(mapsKeys(ops)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, ops[k]))
	}
	return fmt.Sprintf("target %s: quantize %s; %d tensors to calibrate; %d nodes kept in float",
		p.Target, strings.Join(parts, " "), len(p.Tensors), len(p.Excluded))
}

func mapsKeys[M ~map[K]V, K comparable, V any](m M) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// unionFind groups tensor names that must share one scale.
type unionFind struct{ parent map[string]string }

func newUnionFind() *unionFind { return &unionFind{parent: map[string]string{}} }

func (u *unionFind) find(a string) string {
	if _, ok := u.parent[a]; !ok {
		u.parent[a] = a
	}
	for u.parent[a] != a {
		u.parent[a] = u.parent[u.parent[a]]
		a = u.parent[a]
	}
	return a
}

func (u *unionFind) union(a, b string) {
	ra, rb := u.find(a), u.find(b)
	if ra != rb {
		if rb < ra {
			ra, rb = rb, ra
		}
		u.parent[rb] = ra
	}
}

// groups returns the groups with more than one member among names, each
// sorted, in a deterministic order.
func (u *unionFind) groups(names []string) [][]string {
	by := map[string][]string{}
	for _, n := range names {
		if _, ok := u.parent[n]; ok {
			r := u.find(n)
			by[r] = append(by[r], n)
		}
	}
	var out [][]string
	for _, r := range slices.Sorted(mapsKeys(by)) {
		if g := by[r]; len(g) > 1 {
			slices.Sort(g)
			out = append(out, g)
		}
	}
	return out
}
