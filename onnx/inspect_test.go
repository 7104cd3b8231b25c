package onnx

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/yedge/yedge/onnx/onnxpb"
)

func TestInspectRealModels(t *testing.T) {
	tests := []struct {
		file     string
		input    ValueInfo
		outName  string
		outShape []string // nil: only check that dims are symbolic where noted
		meta     []string
		prec     string
		check    func(t *testing.T, r Report)
	}{
		{
			file:     "yolov5n.onnx",
			input:    ValueInfo{Name: "images", ElemType: "float32", Shape: []string{"1", "3", "640", "640"}},
			outName:  "output",
			outShape: []string{"1", "25200", "85"},
			meta:     []string{"stride", "names"},
			prec:     "fp32",
			check: func(t *testing.T, r Report) {
				if r.Quant.QuantizeLinear+r.Quant.DequantizeLinear != 0 || len(r.Quant.QuantizedOps) != 0 {
					t.Errorf("fp32 model has quantization stats %+v", r.Quant)
				}
				if r.OpCounts["Conv"] != 60 {
					t.Errorf("Conv count = %d, want 60 (YOLOv5n)", r.OpCounts["Conv"])
				}
			},
		},
		{
			file:  "yolov5n-dynamic.onnx",
			input: ValueInfo{Name: "images", ElemType: "float32"},
			meta:  []string{"stride", "names"},
			prec:  "fp32",
			check: func(t *testing.T, r Report) {
				shape := r.Inputs[0].Shape
				if len(shape) != 4 || shape[1] != "3" {
					t.Fatalf("input shape %v, want [?,3,?,?]", shape)
				}
				for _, i := range []int{0, 2, 3} {
					if isNumber(shape[i]) || shape[i] == "?" {
						t.Errorf("input dim %d = %q, want a dim_param name", i, shape[i])
					}
				}
				if out := r.Outputs[0].Shape; len(out) != 3 || out[0] != shape[0] {
					t.Errorf("output shape %v, want rank 3 with the input's batch dim %q", r.Outputs[0].Shape, shape[0])
				}
			},
		},
		{
			file:  "yolov5n-qdq-torch.onnx",
			input: ValueInfo{Name: "images", ElemType: "float32", Shape: []string{"1", "3", "640", "640"}},
			prec:  "int8-qdq",
			check: func(t *testing.T, r Report) {
				q := r.Quant
				if q.PerChannel == 0 || q.PerTensor == 0 || q.QuantizedOps["Conv"] == 0 {
					t.Errorf("per-channel %d, per-tensor %d, quantized Conv %d: want all > 0", q.PerChannel, q.PerTensor, q.QuantizedOps["Conv"])
				}
				if q.QuantizeLinear == 0 || q.QuantizeLinear != q.DequantizeLinear {
					t.Errorf("Q=%d DQ=%d, want equal non-zero counts (fake-quant pairs)", q.QuantizeLinear, q.DequantizeLinear)
				}
				total := q.QuantizeLinear + q.DequantizeLinear
				if q.PerChannel+q.PerTensor != total {
					t.Errorf("per-channel+per-tensor = %d, want every Q/DQ (%d) resolved; scales hidden behind Constant/Identity?", q.PerChannel+q.PerTensor, total)
				}
				if q.Int8 != total || q.Uint8 != 0 || q.Symmetric != total {
					t.Errorf("int8=%d uint8=%d symmetric=%d, want int8=symmetric=%d", q.Int8, q.Uint8, q.Symmetric, total)
				}
				if q.FakeQuantWeights != r.OpCounts["Conv"] || q.WeightQuantized != 0 {
					t.Errorf("fake-quant weights %d (want one per Conv: %d), weight-quantized %d (want 0)",
						q.FakeQuantWeights, r.OpCounts["Conv"], q.WeightQuantized)
				}
				if q.QuantizedOps["Conv"] != r.OpCounts["Conv"] {
					t.Errorf("quantized Conv %d, want all %d", q.QuantizedOps["Conv"], r.OpCounts["Conv"])
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			p := realModel(t, tt.file)
			m, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			r := Inspect(m)
			var text bytes.Buffer
			if err := r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			t.Logf("Inspect(%s):\n%s", tt.file, text.String())

			if r.Path != p || len(r.SHA256) != 64 {
				t.Errorf("path %q sha %q", r.Path, r.SHA256)
			}
			if m.Opset() != 13 || r.Opsets["ai.onnx"] != 13 {
				t.Errorf("opset = %d / %v, want 13", m.Opset(), r.Opsets)
			}
			if len(r.Inputs) != 1 {
				t.Fatalf("inputs = %+v, want 1", r.Inputs)
			}
			in := r.Inputs[0]
			if in.Name != tt.input.Name || in.ElemType != tt.input.ElemType ||
				(tt.input.Shape != nil && !slices.Equal(in.Shape, tt.input.Shape)) {
				t.Errorf("input = %+v, want %+v", in, tt.input)
			}
			if len(r.Outputs) != 1 || r.Outputs[0].ElemType != "float32" {
				t.Fatalf("outputs = %+v", r.Outputs)
			}
			if tt.outName != "" && r.Outputs[0].Name != tt.outName {
				t.Errorf("output name %q, want %q", r.Outputs[0].Name, tt.outName)
			}
			if tt.outShape != nil && !slices.Equal(r.Outputs[0].Shape, tt.outShape) {
				t.Errorf("output shape %v, want %v", r.Outputs[0].Shape, tt.outShape)
			}
			for _, k := range tt.meta {
				if _, ok := r.Metadata[k]; !ok {
					t.Errorf("metadata lacks %q: keys %v", k, slices.Sorted(maps.Keys(r.Metadata)))
				}
			}
			if r.Quant.Precision != tt.prec {
				t.Errorf("precision %q, want %q", r.Quant.Precision, tt.prec)
			}
			sum := 0
			for _, c := range r.OpCounts {
				sum += c
			}
			if sum != r.Nodes || r.Nodes == 0 {
				t.Errorf("op counts sum to %d, nodes = %d", sum, r.Nodes)
			}
			if r.Initializers == 0 || r.Parameters < 1_000_000 {
				t.Errorf("initializers %d, parameters %d: YOLOv5n has ~1.9M", r.Initializers, r.Parameters)
			}
			if _, err := json.Marshal(r); err != nil {
				t.Errorf("report does not marshal to JSON: %v", err)
			}
			tt.check(t, r)

			// Exported graphs are already in topological order: TopoSort
			// must keep it, and the indexes must agree with the node list.
			g := m.Graph()
			before := slices.Clone(g.G.Node)
			if err := g.TopoSort(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(before, g.G.Node) {
				t.Error("TopoSort reordered an already sorted exported graph")
			}
			for _, n := range g.G.Node {
				for _, o := range n.Output {
					if g.Producer(o) != n {
						t.Fatalf("Producer(%s) is not %s", o, n.Name)
					}
				}
				for _, in := range n.Input {
					if in != "" && !slices.Contains(g.Consumers(in), n) {
						t.Fatalf("Consumers(%s) lacks %s", in, n.Name)
					}
				}
			}

			// Save round trip through a temp dir.
			out := filepath.Join(t.TempDir(), "copy.onnx")
			want, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Save(out); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("saved file differs from Marshal")
			}
			back, err := Load(out)
			if err != nil {
				t.Fatal(err)
			}
			if r2 := Inspect(back); r2.Nodes != r.Nodes || r2.Parameters != r.Parameters || r2.Quant.Precision != r.Quant.Precision {
				t.Error("reloaded copy inspects differently")
			}
		})
	}
}

// isNumber reports whether s is a decimal dimension.
func isNumber(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func TestInspectSynthetic(t *testing.T) {
	qdq := qdqModel()
	qop := smallModel()
	qop.Graph.Node = append(qop.Graph.Node, node("QLinearConv", "qc", []string{"a", "b"}, []string{"c"}),
		node("QuantizeLinear", "q", []string{"y", "s"}, []string{"yq"}))
	fp16 := smallModel()
	fp16.Graph.Initializer = append(fp16.Graph.Initializer,
		&onnxpb.TensorProto{Name: "h", DataType: int32(onnxpb.TensorProto_FLOAT16), Dims: []int64{8}, RawData: make([]byte, 16)})
	ext := smallModel()
	ext.Graph.Initializer = append(ext.Graph.Initializer, &onnxpb.TensorProto{
		Name: "big", DataType: 1, Dims: []int64{3}, DataLocation: onnxpb.TensorProto_EXTERNAL,
		ExternalData: []*onnxpb.StringStringEntryProto{{Key: "location", Value: "weights.bin"}, {Key: "offset", Value: "0"}},
	})
	// Old-IR style: initializers also listed as graph inputs.
	ext.Graph.Input = append(ext.Graph.Input, tensorVI("w", onnxpb.TensorProto_FLOAT, 4))

	tests := []struct {
		name  string
		mp    *onnxpb.ModelProto
		check func(t *testing.T, r Report)
	}{
		{"qdq", qdq, func(t *testing.T, r Report) {
			want := QuantSummary{
				Precision: "int8-qdq", QuantizeLinear: 2, DequantizeLinear: 3,
				PerTensor: 3, PerChannel: 2, Int8: 4, Uint8: 1, Symmetric: 4,
				WeightQuantized: 1, FakeQuantWeights: 1,
				QuantizedOps: map[string]int{"Conv": 1, "Add": 1},
			}
			if got := r.Quant; !reflect.DeepEqual(got, want) {
				t.Errorf("Quant = %+v\nwant    %+v", got, want)
			}
		}},
		{"qoperator", qop, func(t *testing.T, r Report) {
			if r.Quant.Precision != "int8-qoperator" || r.Quant.QuantizeLinear != 1 || r.Quant.Uint8 != 1 {
				t.Errorf("Quant = %+v", r.Quant)
			}
		}},
		{"fp16", fp16, func(t *testing.T, r Report) {
			if r.Quant.Precision != "fp16" || r.Parameters != 12 {
				t.Errorf("precision %q parameters %d", r.Quant.Precision, r.Parameters)
			}
		}},
		{"external", ext, func(t *testing.T, r Report) {
			if r.ExternalTensors != 1 || !slices.Equal(r.ExternalFiles, []string{"weights.bin"}) {
				t.Errorf("external = %d %v", r.ExternalTensors, r.ExternalFiles)
			}
			if len(r.Inputs) != 1 || r.Inputs[0].Name != "x" {
				t.Errorf("inputs = %+v, want only x (initializer inputs hidden)", r.Inputs)
			}
			if !slices.Equal(r.Inputs[0].Shape, []string{"N", "4"}) {
				t.Errorf("input shape = %v", r.Inputs[0].Shape)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := (&Model{Proto: tt.mp}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(data, tt.name+".onnx")
			if err != nil {
				t.Fatal(err)
			}
			r := Inspect(m)
			var buf bytes.Buffer
			if err := r.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), tt.name+".onnx") || !strings.Contains(buf.String(), r.Quant.Precision) {
				t.Errorf("text report lacks path or precision:\n%s", buf.String())
			}
			tt.check(t, r)
		})
	}

	// Inspect tolerates empty and nil models.
	for _, m := range []*Model{nil, {}, {Proto: &onnxpb.ModelProto{}}} {
		r := Inspect(m)
		if r.Quant.Precision != "fp32" {
			t.Errorf("empty model precision %q", r.Quant.Precision)
		}
		if err := r.WriteText(&bytes.Buffer{}); err != nil {
			t.Error(err)
		}
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestWriteTextError(t *testing.T) {
	if err := Inspect(&Model{Proto: smallModel()}).WriteText(failWriter{}); err == nil {
		t.Error("WriteText ignored a write error")
	}
}
