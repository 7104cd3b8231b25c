package quant

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
	"github.com/yedge/yedge/onnxrt"
)

// LayerSensitivity is the output error caused by quantizing one layer
// alone (all others in float), measured on calibration inputs.
type LayerSensitivity struct {
	Rank  int     `json:"rank"`
	Node  string  `json:"node"`
	Op    string  `json:"op"`
	Error float64 `json:"error"`
}

// SensitivityOptions controls Sensitivity.
type SensitivityOptions struct {
	Method   CalibMethod
	Pct      float64
	Inputs   int // calibration inputs used per layer (default 8)
	Runtime  onnxrt.Options
	Progress func(done, total int)
}

// Sensitivity quantizes one weighted layer at a time (input activation and
// weights, with the calibrated ranges in cache) and measures how far the
// model output moves from the float output on the first inputs. Layers
// come back ranked, most sensitive first. The error is detection-aware for
// YOLOv5 outputs (see OutputError).
func Sensitivity(ctx context.Context, m *onnx.Model, cache *Cache, in InputSource, o SensitivityOptions) ([]LayerSensitivity, error) {
	full, err := Analyze(m, AnalyzeOptions{Target: TargetTensorRT})
	if err != nil {
		return nil, err
	}
	if o.Inputs <= 0 {
		o.Inputs = 8
	}
	n := min(o.Inputs, in.Len())
	shape := in.Shape()
	size := int64(1)
	for _, d := range shape {
		size *= d
	}
	// Inputs and float reference outputs.
	var inputs [][]float32
	for i := 0; i < in.Len() && len(inputs) < n; i++ {
		buf := make([]float32, size)
		if err := in.Fill(ctx, i, buf); err != nil {
			if errors.Is(err, ErrSkipInput) {
				continue
			}
			return nil, err
		}
		inputs = append(inputs, buf)
	}
	if len(inputs) == 0 {
		return nil, errors.New("sensitivity: no readable input")
	}
	ro := o.Runtime
	ro.Quiet = true
	ref, err := runAll(ctx, m, inputs, shape, ro)
	if err != nil {
		return nil, err
	}
	var layers []*onnxpb.NodeProto
	for _, node := range full.Quantized {
		if weightedOps[node.OpType] {
			layers = append(layers, node)
		}
	}
	out := make([]LayerSensitivity, 0, len(layers))
	for li, node := range layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := &Analysis{Target: TargetTensorRT, Quantized: []*onnxpb.NodeProto{node},
			quantIn: map[*onnxpb.NodeProto][]int{node: {0}}, weights: map[*onnxpb.NodeProto]bool{node: true},
			Tensors: []string{node.Input[0]}, Excluded: map[string]string{}}
		st := cache.Tensors[node.Input[0]]
		if st == nil {
			return nil, fmt.Errorf("sensitivity: no statistics for %s", node.Input[0])
		}
		a, err := st.ComputeAmax(o.Method, o.Pct)
		if err != nil {
			return nil, err
		}
		q, err := Place(m, p, map[string]Range{node.Input[0]: {Amax: a, Min: st.Min}})
		if err != nil {
			return nil, err
		}
		got, err := runAll(ctx, q, inputs, shape, ro)
		if err != nil {
			return nil, fmt.Errorf("sensitivity of %s: %w", node.Name, err)
		}
		e := 0.0
		for i := range got {
			e += OutputError(ref[i], got[i])
		}
		out = append(out, LayerSensitivity{Node: node.Name, Op: node.OpType, Error: e / float64(len(got))})
		if o.Progress != nil {
			o.Progress(li+1, len(layers))
		}
	}
	slices.SortStableFunc(out, func(a, b LayerSensitivity) int {
		switch {
		case a.Error > b.Error:
			return -1
		case a.Error < b.Error:
			return 1
		}
		return 0
	})
	for i := range out {
		out[i].Rank = i + 1
	}
	return out, nil
}

// runAll runs a model on every input and keeps its first output.
func runAll(ctx context.Context, m *onnx.Model, inputs [][]float32, shape []int64, ro onnxrt.Options) (_ [][]float32, err error) {
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	s, err := onnxrt.NewSessionFromBytes(data, m.Path, ro)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, s.Close()) }()
	res := make([][]float32, len(inputs))
	for i, in := range inputs {
		err := s.RunFloat(ctx, shape, in, func(outs []onnxrt.Output) error {
			res[i] = slices.Clone(outs[0].Data)
			if len(outs[0].Shape) == 3 {
				res[i] = append(res[i], float32(outs[0].Shape[2])) // remember the row length
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// OutputError compares a quantized YOLOv5 output with the float one (both
// flattened, with the row length appended). Each row is weighted by its
// objectness (the larger of the two), and contributes the objectness and
// mean class-score differences plus the box difference relative to the box
// size, so that low-confidence rows — most of the 25200 — do not drown the
// rows that become detections.
func OutputError(ref, got []float32) float64 {
	if len(ref) != len(got) || len(ref) < 2 {
		return math.Inf(1)
	}
	row := int(ref[len(ref)-1])
	ref, got = ref[:len(ref)-1], got[:len(got)-1]
	if row < 6 || len(ref)%row != 0 {
		var num, den float64
		for i := range ref {
			d := float64(got[i] - ref[i])
			num += d * d
			den += float64(ref[i]) * float64(ref[i])
		}
		return num / max(den, 1e-12)
	}
	var sum, wsum float64
	for r := 0; r+row <= len(ref); r += row {
		f, q := ref[r:r+row], got[r:r+row]
		w := float64(max(f[4], q[4]))
		if w < 1e-3 {
			continue
		}
		box := (math.Abs(float64(q[0]-f[0])) + math.Abs(float64(q[1]-f[1])) + math.Abs(float64(q[2]-f[2])) + math.Abs(float64(q[3]-f[3]))) /
			(math.Abs(float64(f[2])) + math.Abs(float64(f[3])) + 1)
		cls := 0.0
		for c := 5; c < row; c++ {
			cls += math.Abs(float64(q[c] - f[c]))
		}
		cls /= float64(row - 5)
		sum += w * (box + math.Abs(float64(q[4]-f[4])) + cls)
		wsum += w
	}
	if wsum == 0 {
		return 0
	}
	return sum / wsum
}

// WriteSensitivityTable prints the ranking.
func WriteSensitivityTable(w io.Writer, s []LayerSensitivity) error {
	if _, err := fmt.Fprintf(w, "%4s  %-40s %-6s %12s\n", "rank", "layer", "op", "output error"); err != nil {
		return err
	}
	for _, l := range s {
		if _, err := fmt.Fprintf(w, "%4d  %-40s %-6s %12.6f\n", l.Rank, l.Node, l.Op, l.Error); err != nil {
			return err
		}
	}
	return nil
}
