package quant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
	"github.com/yedge/yedge/onnxrt"
)

// ErrSkipInput is returned (wrapped) by InputSource.Fill for an input that
// cannot be read; calibration skips it with a warning.
var ErrSkipInput = errors.New("input skipped")

// InputSource supplies preprocessed calibration inputs. The quantizer
// knows nothing of images; callers letterbox them with the same
// preprocessing as inference.
type InputSource interface {
	// Len is the number of inputs.
	Len() int
	// Shape is the model input shape fed ([1,3,H,W]).
	Shape() []int64
	// Fill writes input i into dst. An unreadable input returns an error
	// wrapping ErrSkipInput.
	Fill(ctx context.Context, i int, dst []float32) error
	// Name describes input i for messages.
	Name(i int) string
}

// CalibrateOptions controls Calibrate.
type CalibrateOptions struct {
	Runtime  onnxrt.Options
	Bins     int                   // histogram bins (default 2048, as pytorch-quantization)
	Progress func(done, total int) // called after each input
	Logger   *slog.Logger
}

// WithOutputs returns a serialized copy of m with the given tensors added
// as graph outputs, for collecting their values in onnxruntime.
func WithOutputs(m *onnx.Model, tensors []string) ([]byte, error) {
	c := proto.Clone(m.Proto).(*onnxpb.ModelProto)
	have := map[string]bool{}
	for _, o := range c.Graph.Output {
		have[o.Name] = true
	}
	for _, t := range tensors {
		if have[t] {
			continue
		}
		c.Graph.Output = append(c.Graph.Output, &onnxpb.ValueInfoProto{Name: t, Type: &onnxpb.TypeProto{
			Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxpb.TensorProto_FLOAT)}}}})
	}
	return (&onnx.Model{Proto: c}).Marshal()
}

// Calibrate runs the float model over every input and collects streaming
// statistics (min, max, histogram of |x|) for each tensor. Memory is
// bounded by the histograms, not by the number of inputs. It returns the
// statistics and the number of inputs used.
func Calibrate(ctx context.Context, m *onnx.Model, tensors []string, in InputSource, o CalibrateOptions) (_ map[string]*TensorStats, _ int, err error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.Bins <= 0 {
		o.Bins = 2048
	}
	if in.Len() == 0 {
		return nil, 0, errors.New("calibration: no inputs")
	}
	data, err := WithOutputs(m, tensors)
	if err != nil {
		return nil, 0, err
	}
	ro := o.Runtime
	ro.Quiet = true
	ro.Logger = log
	sess, err := onnxrt.NewSessionFromBytes(data, m.Path+" (calibration)", ro)
	if err != nil {
		return nil, 0, err
	}
	defer func() { err = errors.Join(err, sess.Close()) }()
	stats := make(map[string]*TensorStats, len(tensors))
	for _, t := range tensors {
		stats[t] = NewTensorStats(o.Bins)
	}
	shape := in.Shape()
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	buf := make([]float32, n)
	workers := max(1, goruntime.GOMAXPROCS(0))
	used := 0
	for i := 0; i < in.Len(); i++ {
		if err := in.Fill(ctx, i, buf); err != nil {
			if errors.Is(err, ErrSkipInput) {
				log.Warn("calibration input skipped", "input", in.Name(i), "err", err)
				if o.Progress != nil {
					o.Progress(i+1, in.Len())
				}
				continue
			}
			return nil, used, err
		}
		err := sess.RunFloat(ctx, shape, buf, func(outs []onnxrt.Output) error {
			// Histogramming dominates: spread tensors over the cores.
			jobs := make(chan onnxrt.Output)
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for out := range jobs {
						stats[out.Name].Collect(out.Data)
					}
				}()
			}
			for _, out := range outs {
				if _, ok := stats[out.Name]; ok {
					jobs <- out
				}
			}
			close(jobs)
			wg.Wait()
			return nil
		})
		if err != nil {
			return nil, used, fmt.Errorf("calibration input %s: %w", in.Name(i), err)
		}
		used++
		if o.Progress != nil {
			o.Progress(i+1, in.Len())
		}
	}
	if used == 0 {
		return nil, 0, fmt.Errorf("calibration: none of the %d inputs could be read", in.Len())
	}
	return stats, used, nil
}
