package onnx

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/yedge/yedge/onnx/onnxpb"
)

// Report summarises a model; see [Inspect]. It marshals to JSON with
// snake_case keys.
type Report struct {
	// Path is the file the model came from ([Model.Path]).
	Path string `json:"path"`
	// SHA256 is [Model.SHA256].
	SHA256 string `json:"sha256"`
	// IRVersion is the model's ir_version.
	IRVersion int64 `json:"ir_version"`
	// Opsets maps each imported operator-set domain to its version; the
	// default domain is reported as "ai.onnx".
	Opsets map[string]int64 `json:"opsets"`
	// Producer is producer_name followed by producer_version, if any.
	Producer string `json:"producer"`
	// Metadata is [Model.Metadata].
	Metadata map[string]string `json:"metadata"`
	// Inputs are the graph inputs that are not initializers.
	Inputs []ValueInfo `json:"inputs"`
	// Outputs are the graph outputs.
	Outputs []ValueInfo `json:"outputs"`
	// Nodes is the number of nodes in the main graph (subgraphs excluded).
	Nodes int `json:"nodes"`
	// OpCounts counts main-graph nodes by op type; ops outside the default
	// domain are keyed "domain:OpType".
	OpCounts map[string]int `json:"op_counts"`
	// Initializers is the number of initializers in the main graph.
	Initializers int `json:"initializers"`
	// Parameters is the total element count of those initializers.
	Parameters int64 `json:"parameters"`
	// ExternalTensors counts initializers and Constant values whose data is
	// stored outside the model file.
	ExternalTensors int `json:"external_tensors,omitempty"`
	// ExternalFiles lists, sorted, the distinct external data locations.
	ExternalFiles []string `json:"external_files,omitempty"`
	// Quant describes how (and whether) the model is quantized.
	Quant QuantSummary `json:"quantization"`
}

// ValueInfo describes a graph input or output.
type ValueInfo struct {
	// Name is the tensor name.
	Name string `json:"name"`
	// ElemType is the element type as named by [ElemTypeName] ("float32",
	// "uint8", ...), or "sequence", "map", "optional", "sparse_tensor" or
	// "unknown" for non-tensor or untyped values.
	ElemType string `json:"elem_type"`
	// Shape holds one entry per dimension: the size as a decimal number, the
	// symbolic dim_param name, or "?" when unknown. It is nil when the rank is
	// unknown and empty for a scalar.
	Shape []string `json:"shape"`
}

// QuantSummary describes the quantization found in a model's main graph.
type QuantSummary struct {
	// Precision is "int8-qoperator" when QOperator-format ops (QLinearConv,
	// ConvInteger, MatMulInteger, QGemm, ...) are present, else "int8-qdq"
	// when QuantizeLinear/DequantizeLinear nodes are, else "fp16" when
	// float16 initializer elements outnumber float32 ones, else "fp32".
	Precision string `json:"precision"`
	// QuantizeLinear and DequantizeLinear count those nodes.
	QuantizeLinear   int `json:"quantize_linear"`
	DequantizeLinear int `json:"dequantize_linear"`
	// PerTensor and PerChannel count Q/DQ nodes whose constant scale has one
	// element or more than one. Nodes with a computed scale are in neither.
	PerTensor  int `json:"per_tensor"`
	PerChannel int `json:"per_channel"`
	// Int8 and Uint8 count Q/DQ nodes by quantized element type: that of the
	// zero point, or when it is omitted uint8 for QuantizeLinear (the ONNX
	// default) and the type of the input for DequantizeLinear.
	Int8  int `json:"int8"`
	Uint8 int `json:"uint8"`
	// Symmetric counts int8 Q/DQ nodes whose zero point is all zeros (or
	// omitted).
	Symmetric int `json:"symmetric"`
	// WeightQuantized counts DequantizeLinear nodes whose input is a constant
	// (initializer or Constant), i.e. weights stored already quantized.
	WeightQuantized int `json:"weight_quantized"`
	// FakeQuantWeights counts QuantizeLinear nodes whose input is a constant
	// float tensor: float weights passed through a Q->DQ pair, as
	// pytorch-quantization exports them.
	FakeQuantWeights int `json:"fake_quant_weights"`
	// QuantizedOps counts, by op type, the nodes (other than Q/DQ) that read
	// the output of a DequantizeLinear.
	QuantizedOps map[string]int `json:"quantized_ops"`
}

// qoperatorOps are the QOperator-format ops whose presence means the model
// computes in integer arithmetic directly.
var qoperatorOps = map[string]bool{
	"QLinearConv": true, "QLinearMatMul": true, "ConvInteger": true, "MatMulInteger": true,
	"QGemm": true, "QLinearAdd": true, "QLinearMul": true, "QLinearSigmoid": true,
	"QLinearLeakyRelu": true, "QLinearConcat": true, "QLinearAveragePool": true,
	"QLinearGlobalAveragePool": true, "QLinearSoftmax": true, "QLinearReduceMean": true,
	"QAttention": true, "DynamicQuantizeMatMul": true,
}

// quantDomain reports whether domain may hold Q/DQ or QOperator ops.
func quantDomain(domain string) bool {
	return isDefaultDomain(domain) || domain == "com.microsoft"
}

func isQ(n *onnxpb.NodeProto) bool {
	return n.GetOpType() == "QuantizeLinear" && quantDomain(n.GetDomain())
}

func isDQ(n *onnxpb.NodeProto) bool {
	return n.GetOpType() == "DequantizeLinear" && quantDomain(n.GetDomain())
}

// opKey is the OpCounts key of n.
func opKey(n *onnxpb.NodeProto) string {
	if isDefaultDomain(n.GetDomain()) {
		return n.GetOpType()
	}
	return n.GetDomain() + ":" + n.GetOpType()
}

// Inspect summarises m. It never fails: parts of the model that are missing
// or malformed are reported as zero values.
func Inspect(m *Model) Report {
	mp := m.proto()
	r := Report{
		SHA256:    m.SHA256(),
		IRVersion: mp.GetIrVersion(),
		Opsets:    make(map[string]int64),
		Producer:  strings.TrimSpace(mp.GetProducerName() + " " + mp.GetProducerVersion()),
		Metadata:  m.Metadata(),
		OpCounts:  make(map[string]int),
		Inputs:    []ValueInfo{},
		Outputs:   []ValueInfo{},
	}
	if m != nil {
		r.Path = m.Path
	}
	for _, o := range mp.GetOpsetImport() {
		d := o.GetDomain()
		if d == domainDefault {
			d = domainONNX
		}
		r.Opsets[d] = o.GetVersion()
	}

	g := NewGraph(mp.GetGraph())
	for _, v := range g.G.GetInput() {
		if g.Initializer(v.GetName()) == nil {
			r.Inputs = append(r.Inputs, valueInfo(v))
		}
	}
	for _, v := range g.G.GetOutput() {
		r.Outputs = append(r.Outputs, valueInfo(v))
	}
	r.Nodes = len(g.G.GetNode())
	for _, n := range g.G.GetNode() {
		r.OpCounts[opKey(n)]++
	}

	external := make(map[string]bool)
	noteExternal := func(t *onnxpb.TensorProto) {
		if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			return
		}
		r.ExternalTensors++
		for _, e := range t.GetExternalData() {
			if e.GetKey() == "location" {
				external[e.GetValue()] = true
			}
		}
	}
	elems := make(map[onnxpb.TensorProto_DataType]int64)
	r.Initializers = len(g.G.GetInitializer())
	for _, t := range g.G.GetInitializer() {
		noteExternal(t)
		if n, err := NumElements(t); err == nil {
			r.Parameters = satAdd(r.Parameters, n)
			dt := onnxpb.TensorProto_DataType(t.GetDataType())
			elems[dt] = satAdd(elems[dt], n)
		}
	}
	for _, n := range g.G.GetNode() {
		if n.GetOpType() == "Constant" {
			for _, a := range n.GetAttribute() {
				noteExternal(a.GetT())
			}
		}
	}
	if len(external) > 0 {
		r.ExternalFiles = slices.Sorted(maps.Keys(external))
	}

	r.Quant = quantSummary(g, elems)
	return r
}

// satAdd adds non-negative int64s, saturating instead of overflowing.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// quantSummary analyses the Q/DQ and QOperator nodes of g. elems holds the
// initializer element counts by data type.
func quantSummary(g *Graph, elems map[onnxpb.TensorProto_DataType]int64) QuantSummary {
	q := QuantSummary{QuantizedOps: make(map[string]int)}
	types := valueTypes(g.G)
	qoperator := false
	quantized := make(map[*onnxpb.NodeProto]bool)
	for _, n := range g.G.GetNode() {
		if qoperatorOps[n.GetOpType()] && quantDomain(n.GetDomain()) {
			qoperator = true
		}
		q1, dq := isQ(n), isDQ(n)
		if !q1 && !dq {
			continue
		}
		in := n.GetInput()
		if q1 {
			q.QuantizeLinear++
		} else {
			q.DequantizeLinear++
		}
		if len(in) > 1 {
			if s := g.ConstTensor(in[1]); s != nil {
				if cnt, err := NumElements(s); err == nil && cnt > 1 {
					q.PerChannel++
				} else if err == nil {
					q.PerTensor++
				}
			}
		}
		var x string
		if len(in) > 0 {
			x = in[0]
		}
		xConst := g.ConstTensor(x)
		switch {
		case q1 && xConst != nil && isFloat(xConst.GetDataType()):
			q.FakeQuantWeights++
		case dq && xConst != nil:
			q.WeightQuantized++
		}
		var dt onnxpb.TensorProto_DataType
		if q1 {
			dt = qOutType(g, n, types)
		} else {
			dt = dqInType(g, n, types)
		}
		switch dt {
		case onnxpb.TensorProto_INT8:
			q.Int8++
			if zeroPointIsZero(g, n) {
				q.Symmetric++
			}
		case onnxpb.TensorProto_UINT8:
			q.Uint8++
		}
		if dq {
			for _, out := range n.GetOutput() {
				if out == "" {
					continue
				}
				for _, c := range g.Consumers(out) {
					if !isQ(c) && !isDQ(c) && !quantized[c] {
						quantized[c] = true
						q.QuantizedOps[opKey(c)]++
					}
				}
			}
		}
	}
	switch {
	case qoperator:
		q.Precision = "int8-qoperator"
	case q.QuantizeLinear+q.DequantizeLinear > 0:
		q.Precision = "int8-qdq"
	case elems[onnxpb.TensorProto_FLOAT16] > elems[onnxpb.TensorProto_FLOAT]:
		q.Precision = "fp16"
	default:
		q.Precision = "fp32"
	}
	return q
}

// isFloat reports whether dt is a floating-point tensor type.
func isFloat(dt int32) bool {
	switch onnxpb.TensorProto_DataType(dt) {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_BFLOAT16:
		return true
	}
	return false
}

// valueTypes maps every graph input, output and value_info name with a
// tensor type to its element type.
func valueTypes(g *onnxpb.GraphProto) map[string]onnxpb.TensorProto_DataType {
	types := make(map[string]onnxpb.TensorProto_DataType)
	for _, list := range [][]*onnxpb.ValueInfoProto{g.GetInput(), g.GetOutput(), g.GetValueInfo()} {
		for _, v := range list {
			if tt := v.GetType().GetTensorType(); tt != nil && tt.GetElemType() != 0 {
				types[v.GetName()] = onnxpb.TensorProto_DataType(tt.GetElemType())
			}
		}
	}
	return types
}

// tensorType returns the element type of name if it is a constant or has a
// declared type, else UNDEFINED.
func tensorType(g *Graph, name string, types map[string]onnxpb.TensorProto_DataType) onnxpb.TensorProto_DataType {
	if t := g.ConstTensor(name); t != nil {
		return onnxpb.TensorProto_DataType(t.GetDataType())
	}
	return types[name]
}

// qOutType returns the element type a QuantizeLinear node produces: the
// output_dtype attribute if set, else the zero point's type, else uint8.
func qOutType(g *Graph, n *onnxpb.NodeProto, types map[string]onnxpb.TensorProto_DataType) onnxpb.TensorProto_DataType {
	for _, a := range n.GetAttribute() {
		if a.GetName() == "output_dtype" && a.GetI() != 0 {
			return onnxpb.TensorProto_DataType(a.GetI())
		}
	}
	if in := n.GetInput(); len(in) > 2 && in[2] != "" {
		return tensorType(g, in[2], types)
	}
	return onnxpb.TensorProto_UINT8
}

// dqInType returns the element type a DequantizeLinear node consumes: the
// zero point's type, else its input's (following a producing
// QuantizeLinear), else uint8.
func dqInType(g *Graph, n *onnxpb.NodeProto, types map[string]onnxpb.TensorProto_DataType) onnxpb.TensorProto_DataType {
	in := n.GetInput()
	if len(in) > 2 && in[2] != "" {
		return tensorType(g, in[2], types)
	}
	if len(in) == 0 {
		return onnxpb.TensorProto_UINT8
	}
	if dt := tensorType(g, in[0], types); dt != onnxpb.TensorProto_UNDEFINED {
		return dt
	}
	if p := g.Producer(in[0]); p != nil && isQ(p) {
		return qOutType(g, p, types)
	}
	return onnxpb.TensorProto_UINT8
}

// zeroPointIsZero reports whether the Q/DQ node n has an omitted zero point
// or a constant int8 one that is all zeros.
func zeroPointIsZero(g *Graph, n *onnxpb.NodeProto) bool {
	in := n.GetInput()
	if len(in) < 3 || in[2] == "" {
		return true
	}
	zp := g.ConstTensor(in[2])
	if zp == nil {
		return false
	}
	vals, err := Int8Data(zp)
	if err != nil {
		return false
	}
	for _, v := range vals {
		if v != 0 {
			return false
		}
	}
	return true
}

// valueInfo converts a ValueInfoProto for the report.
func valueInfo(v *onnxpb.ValueInfoProto) ValueInfo {
	vi := ValueInfo{Name: v.GetName(), ElemType: "unknown"}
	t := v.GetType()
	switch {
	case t.GetTensorType() != nil:
		tt := t.GetTensorType()
		vi.ElemType = ElemTypeName(tt.GetElemType())
		if tt.GetShape() != nil {
			vi.Shape = make([]string, 0, len(tt.GetShape().GetDim()))
			for _, d := range tt.GetShape().GetDim() {
				vi.Shape = append(vi.Shape, dimString(d))
			}
		}
	case t.GetSequenceType() != nil:
		vi.ElemType = "sequence"
	case t.GetMapType() != nil:
		vi.ElemType = "map"
	case t.GetOptionalType() != nil:
		vi.ElemType = "optional"
	case t.GetSparseTensorType() != nil:
		vi.ElemType = "sparse_tensor"
	}
	return vi
}

// dimString renders one dimension: its size, its symbolic name, or "?".
func dimString(d *onnxpb.TensorShapeProto_Dimension) string {
	switch v := d.GetValue().(type) {
	case *onnxpb.TensorShapeProto_Dimension_DimValue:
		return strconv.FormatInt(v.DimValue, 10)
	case *onnxpb.TensorShapeProto_Dimension_DimParam:
		if v.DimParam != "" {
			return v.DimParam
		}
	}
	return "?"
}

// errWriter remembers the first write error so WriteText can check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// WriteText writes r to w as a readable multi-line summary.
func (r Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("model:        %s\n", r.Path)
	ew.printf("sha256:       %s\n", r.SHA256)
	ew.printf("ir_version:   %d\n", r.IRVersion)
	var opsets []string
	for _, d := range slices.Sorted(maps.Keys(r.Opsets)) {
		opsets = append(opsets, fmt.Sprintf("%s=%d", d, r.Opsets[d]))
	}
	ew.printf("opsets:       %s\n", strings.Join(opsets, ", "))
	if r.Producer != "" {
		ew.printf("producer:     %s\n", r.Producer)
	}
	if len(r.Metadata) > 0 {
		ew.printf("metadata:\n")
		for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
			ew.printf("  %s: %s\n", k, shorten(r.Metadata[k], 100))
		}
	}
	for _, sec := range []struct {
		title string
		vs    []ValueInfo
	}{{"inputs", r.Inputs}, {"outputs", r.Outputs}} {
		ew.printf("%s:\n", sec.title)
		for _, v := range sec.vs {
			shape := "[unknown rank]"
			if v.Shape != nil {
				shape = "[" + strings.Join(v.Shape, ",") + "]"
			}
			ew.printf("  %s %s%s\n", v.Name, v.ElemType, shape)
		}
	}
	ew.printf("nodes:        %d\n", r.Nodes)
	ew.printf("  ops:        %s\n", countList(r.OpCounts))
	ew.printf("initializers: %d (%d parameters)\n", r.Initializers, r.Parameters)
	if r.ExternalTensors > 0 {
		ew.printf("external:     %d tensors in %s\n", r.ExternalTensors, strings.Join(r.ExternalFiles, ", "))
	}
	q := r.Quant
	ew.printf("quantization: %s\n", q.Precision)
	if q.QuantizeLinear+q.DequantizeLinear > 0 {
		ew.printf("  QuantizeLinear=%d DequantizeLinear=%d\n", q.QuantizeLinear, q.DequantizeLinear)
		ew.printf("  per-tensor=%d per-channel=%d\n", q.PerTensor, q.PerChannel)
		ew.printf("  int8=%d uint8=%d symmetric=%d\n", q.Int8, q.Uint8, q.Symmetric)
		ew.printf("  weight-quantized DQ=%d fake-quant weight Q=%d\n", q.WeightQuantized, q.FakeQuantWeights)
		ew.printf("  quantized ops: %s\n", countList(q.QuantizedOps))
	}
	return ew.err
}

// countList formats counts as "Op=N, ..." by descending count, then name.
func countList(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// shorten truncates s to at most n runes, marking the cut with "...".
func shorten(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}
