package quant

import (
	"context"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
	"github.com/yedge/yedge/onnxrt"
)

func floatVI(name string, dims ...int64) *onnxpb.ValueInfoProto {
	var shape []*onnxpb.TensorShapeProto_Dimension
	for _, d := range dims {
		shape = append(shape, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
		ElemType: int32(onnxpb.TensorProto_FLOAT), Shape: &onnxpb.TensorShapeProto{Dim: shape}}}}}
}

// tinyConv is x[1,1,2,2] -> Conv(W[2,1,1,1], B[2]) -> y[1,2,2,2]: a model
// small enough to quantize by hand.
func tinyConv() *onnx.Model {
	w := onnx.NewFloatTensor("W", []int64{2, 1, 1, 1}, []float32{0.5, -2})
	b := onnx.NewFloatTensor("B", []int64{2}, []float32{0.1, -0.3})
	g := &onnxpb.GraphProto{
		Name:        "tiny",
		Node:        []*onnxpb.NodeProto{{OpType: "Conv", Name: "conv", Input: []string{"x", "W", "B"}, Output: []string{"y"}}},
		Initializer: []*onnxpb.TensorProto{w, b},
		Input:       []*onnxpb.ValueInfoProto{floatVI("x", 1, 1, 2, 2)},
		Output:      []*onnxpb.ValueInfoProto{floatVI("y", 1, 2, 2, 2)},
	}
	return &onnx.Model{Path: "tiny.onnx", Proto: &onnxpb.ModelProto{IrVersion: 7, Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: "", Version: 13}}}}
}

func initORT(t testing.TB) {
	t.Helper()
	if _, err := onnxrt.Init("", ""); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, m *onnx.Model, x []float32) []float32 {
	t.Helper()
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := onnxrt.NewSessionFromBytes(data, m.Path, onnxrt.Options{Provider: "cpu", Threads: 1, Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, s)
	var out []float32
	if err := s.RunFloat(context.Background(), []int64{1, 1, 2, 2}, x, func(o []onnxrt.Output) error {
		out = append(out, o[0].Data...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The tiny conv quantized by the quantizer gives exactly the hand-computed
// result: x fake-quantized with amax 1 (scale 1/127), per-channel weights
// with amax |w| (exact), bias kept (TensorRT) or int32 (CPU).
func TestTinyConvByHand(t *testing.T) {
	initORT(t)
	x := []float32{0.3, -0.77, 1.5, 0.004} // 1.5 clips to amax 1
	for _, target := range []Target{TargetTensorRT, TargetCPU} {
		t.Run(string(target), func(t *testing.T) {
			m := tinyConv()
			p, err := Analyze(m, AnalyzeOptions{Target: target})
			if err != nil {
				t.Fatal(err)
			}
			ranges := map[string]Range{}
			for _, ten := range p.Tensors {
				ranges[ten] = Range{Amax: 1, Min: -1}
			}
			q, err := Place(m, p, ranges)
			if err != nil {
				t.Fatal(err)
			}
			got := run(t, q, x)
			w := []float32{0.5, -2}
			b := []float32{0.1, -0.3}
			for c := 0; c < 2; c++ {
				for i, v := range x {
					var xq float32
					if target == TargetTensorRT {
						xq = float32(math.RoundToEven(float64(min(max(v, -1), 1)*127))) / 127
					} else {
						// uint8 asymmetric over [-1, 1]: scale 2/255, zp 128.
						p := AsymmetricParams(-1, 1, 8)
						xq = p.Dequantize(p.Quantize(v))
					}
					// The graph output stays float; the CPU bias is int32 at
					// scale x_scale*w_scale, exact for these values to 1e-5.
					want := xq*w[c] + b[c]
					if d := math.Abs(float64(got[c*4+i] - want)); d > 2e-5 {
						t.Errorf("y[%d,%d] = %v, want %v", c, i, got[c*4+i], want)
					}
				}
			}
			// The weights: per-channel scales amax/127 on axis 0.
			g := q.Graph()
			var found bool
			for _, n := range q.Proto.Graph.Node {
				if n.OpType == "DequantizeLinear" && strings.HasPrefix(n.Input[0], "W") {
					s, _ := onnx.FloatData(g.ConstTensor(n.Input[1]))
					if len(s) != 2 || s[0] != 0.5/127 || s[1] != 2.0/127 {
						t.Errorf("weight scales %v, want [0.5/127 2/127]", s)
					}
					found = true
				}
			}
			if !found {
				t.Error("no weight DequantizeLinear")
			}
		})
	}
}

func TestAnalyzeYOLOv5(t *testing.T) {
	m, err := onnx.Load(fixtures.Model(t, "yolov5n.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	count := func(p *Analysis) map[string]int {
		c := map[string]int{}
		for _, n := range p.Quantized {
			c[n.OpType]++
		}
		return c
	}
	trt, err := Analyze(m, AnalyzeOptions{Target: TargetTensorRT, KeepHead: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := count(trt); c["Conv"] != 57 || c["Add"] != 7 || c["Concat"] != 13 || c["MaxPool"] != 3 {
		t.Errorf("tensorrt plan %v, want Conv 57 Add 7 Concat 13 MaxPool 3", c)
	}
	if len(trt.Head) != 3 || !strings.Contains(trt.Head[0], "model.24") {
		t.Errorf("head %v", trt.Head)
	}
	// SPPF: the MaxPool chain and its Concat share one scale group.
	sppf := false
	for _, g := range trt.Groups {
		if len(g) >= 4 && strings.Contains(strings.Join(g, " "), "model.9/m/MaxPool") {
			sppf = true
		}
	}
	if !sppf {
		t.Errorf("no shared SPPF group in %v", trt.Groups)
	}
	cpu, err := Analyze(m, AnalyzeOptions{Target: TargetCPU})
	if err != nil {
		t.Fatal(err)
	}
	if c := count(cpu); c["Conv"] != 60 || c["Sigmoid"] != 57 || c["Mul"] != 57 || c["Add"] != 7 || c["Concat"] != 13 {
		t.Errorf("cpu plan %v", c)
	}
	excl, err := Analyze(m, AnalyzeOptions{Target: TargetTensorRT, Exclude: regexp.MustCompile(`^/model\.0/`)})
	if err != nil || count(excl)["Conv"] != 59 {
		t.Errorf("exclude model.0: %v %v", err, count(excl))
	}
	none, err := Analyze(m, AnalyzeOptions{Target: TargetTensorRT, Exclude: regexp.MustCompile(`no-such-node`)})
	if err != nil || len(none.Warnings) == 0 {
		t.Errorf("an exclude that matches nothing must warn: %v %v", err, none.Warnings)
	}
	qdq, err := onnx.Load(fixtures.Model(t, "yolov5n-qdq-torch.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Analyze(qdq, AnalyzeOptions{Target: TargetTensorRT}); err == nil || !strings.Contains(err.Error(), "already quantized") {
		t.Errorf("quantizing a Q/DQ model: err = %v", err)
	}
}

// fakeInputs feeds constant-pattern inputs (no images: the quant package
// knows nothing of them).
type fakeInputs struct{ n int }

func (f fakeInputs) Len() int          { return f.n }
func (f fakeInputs) Shape() []int64    { return []int64{1, 3, 640, 640} }
func (f fakeInputs) Name(i int) string { return "pattern" }
func (f fakeInputs) Fill(_ context.Context, i int, dst []float32) error {
	for k := range dst {
		dst[k] = float32((k*7+i*13)%255) / 255
	}
	return nil
}

// The CPU layout fuses: in onnxruntime's optimized graph every Conv became
// QLinearConv (and SiLU became QLinearSigmoid + QLinearMul).
func TestCPUFusion(t *testing.T) {
	initORT(t)
	m, err := onnx.Load(fixtures.Model(t, "yolov5n.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Quantize(context.Background(), m, fakeInputs{2}, Options{Target: TargetCPU, Method: MSE,
		Calibrate: CalibrateOptions{Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	qp := filepath.Join(dir, "q.onnx")
	if err := res.Model.Save(qp); err != nil {
		t.Fatal(err)
	}
	opt := filepath.Join(dir, "optimized.onnx")
	s, err := onnxrt.NewSession(qp, onnxrt.Options{Provider: "cpu", Threads: 1, OptimizedModelPath: opt, Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	closeOK(t, s)
	om, err := onnx.Load(opt)
	if err != nil {
		t.Fatal(err)
	}
	ops := onnx.Inspect(om).OpCounts
	t.Logf("optimized ops: %v", ops)
	qconv := ops["QLinearConv"] + ops["com.microsoft:QLinearConv"]
	if qconv != 60 || ops["Conv"] != 0 || ops["com.microsoft.nchwc:Conv"] != 0 {
		t.Errorf("QLinearConv %d (want 60), float Conv %d", qconv, ops["Conv"]+ops["com.microsoft.nchwc:Conv"])
	}
	if ops["com.microsoft:QLinearSigmoid"] != 57 || ops["com.microsoft:QLinearMul"] != 57 {
		t.Errorf("SiLU not fused: QLinearSigmoid %d QLinearMul %d", ops["com.microsoft:QLinearSigmoid"], ops["com.microsoft:QLinearMul"])
	}
	if r := CheckPlacement(res.Model); r.Layout != "cpu" || r.ConvsFusable != 60 || len(r.Issues) != 0 {
		t.Errorf("placement check: %+v", r)
	}
	// Determinism: the same inputs and options give the same bytes.
	again, err := Quantize(context.Background(), m, fakeInputs{2}, Options{Target: TargetCPU, Method: MSE,
		Calibrate: CalibrateOptions{Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := res.Model.Marshal()
	b, _ := again.Model.Marshal()
	if string(a) != string(b) {
		t.Error("two runs with the same inputs and options differ")
	}
}

func TestTensorRTPlacementCheck(t *testing.T) {
	initORT(t)
	m, err := onnx.Load(fixtures.Model(t, "yolov5n.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Quantize(context.Background(), m, fakeInputs{1}, Options{Target: TargetTensorRT, Method: Max, KeepHead: true,
		Calibrate: CalibrateOptions{Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	r := CheckPlacement(res.Model)
	if !r.TensorRTCompatible || r.ConvsQuantized != 57 || r.ResidualAddsQDQ != 7 || r.ConcatsShared != 13 || r.MaxPoolsShared != 3 || len(r.FloatConvs) != 3 {
		t.Errorf("placement %+v", r)
	}
	// The other toolchain's model quantizes Convs only: the check says so.
	qdq, _ := onnx.Load(fixtures.Model(t, "yolov5n-qdq-torch.onnx"))
	if r := CheckPlacement(qdq); r.TensorRTCompatible || r.ConvsQuantized != 60 || len(r.Issues) == 0 {
		t.Errorf("torch qdq placement %+v", r)
	}
}

// closeOK closes c and fails the test if that fails.
func closeOK(tb testing.TB, c io.Closer) {
	tb.Helper()
	if err := c.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
}
