package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/yolohead"
)

// Decode modes reported by Detector.Decode and logged at "detector ready".
const (
	// DecodeRawHead: the model is cut before its Detect decode and the raw
	// head tensors are decoded in Go (postprocess.Decoder.DecodeRaw).
	DecodeRawHead = "raw-head"
	// DecodeGraph: the full graph runs, decode included, and its output
	// rows are decoded by postprocess.Decoder.Decode.
	DecodeGraph = "graph"
)

// rawHead is the state of a Detector that runs the cut model; it is set
// up once and only read afterwards (slots decode concurrently).
type rawHead struct {
	head   *yolohead.Head
	outIdx []int                  // session output index per level
	levels []postprocess.RawLevel // with the bound grid sizes
}

// openSession opens cfg.Model cut before its Detect head when the head is
// recognised and cfg.FullGraph is not set, else the full graph. It returns
// the session, the raw-head state (nil for the full graph) and, for the
// full graph, the reason.
func openSession(cfg Config, log *slog.Logger) (*onnxrt.Session, *rawHead, string, error) {
	full := func(reason string) (*onnxrt.Session, *rawHead, string, error) {
		s, err := onnxrt.NewSession(cfg.Model, cfg.Runtime)
		return s, nil, reason, err
	}
	if cfg.FullGraph {
		return full("full graph requested")
	}
	m, err := onnx.Load(cfg.Model)
	if err != nil {
		return full(err.Error())
	}
	h, err := yolohead.Find(m)
	if err != nil {
		return full(err.Error())
	}
	data, err := yolohead.Cut(m, h)
	if err != nil {
		return full(err.Error())
	}
	s, err := onnxrt.NewSessionFromBytes(data, cfg.Model, cfg.Runtime)
	if err != nil {
		if errors.Is(err, onnxrt.ErrProviderUnavailable) {
			return nil, nil, "", err
		}
		log.Warn("the model cut before its Detect head does not load; running the full graph", "model", cfg.Model, "err", err)
		return full("cut model does not load: " + err.Error())
	}
	r := &rawHead{head: h}
	for _, lv := range h.Levels {
		i := slices.IndexFunc(s.Outputs, func(o onnxrt.TensorInfo) bool { return o.Name == lv.Tensor })
		if i < 0 {
			return nil, nil, "", errors.Join(fmt.Errorf("model %q: cut model lacks output %s", cfg.Model, lv.Tensor), s.Close())
		}
		r.outIdx = append(r.outIdx, i)
	}
	return s, r, "", nil
}

// setup binds the level outputs at inputShape, checks their shapes
// against the head ([batch, na*no, ny, nx]) and records the levels.
func (r *rawHead) setup(s *onnxrt.Session, model string, inputShape []int64) (*onnxrt.Binding, postprocess.Layout, error) {
	b, err := s.BindOutputs(inputShape, r.outIdx)
	if err != nil {
		return nil, postprocess.Layout{}, err
	}
	r.levels = r.levels[:0]
	rows := 0
	for k, sh := range b.OutputShapes() {
		lv := r.head.Levels[k]
		if len(sh) != 4 || sh[0] != inputShape[0] || sh[1] != int64(lv.NA*lv.NO) || (lv.NY > 0 && (sh[2] != int64(lv.NY) || sh[3] != int64(lv.NX))) {
			b.Close()
			return nil, postprocess.Layout{}, fmt.Errorf("model %q: head tensor %s has shape %v, want [%d, %d, ny, nx]", model, lv.Tensor, sh, inputShape[0], lv.NA*lv.NO)
		}
		r.levels = append(r.levels, postprocess.RawLevel{NA: lv.NA, NO: lv.NO, NY: int(sh[2]), NX: int(sh[3]),
			Anchors: lv.Anchors, Stride: lv.Stride, GridOffset: lv.GridOffset})
		rows += lv.NA * int(sh[2]*sh[3])
	}
	return b, postprocess.Layout{Rows: rows, Classes: r.head.Levels[0].NO - 5}, nil
}

// decode decodes batch position i of a slot's outputs into dst; views is
// the slot's scratch, one slice per level.
func (r *rawHead) decode(dec *postprocess.Decoder, outs, views [][]float32, i int, dst []postprocess.Detection) []postprocess.Detection {
	for k, lv := range r.levels {
		n := lv.Len()
		views[k] = outs[k][i*n : (i+1)*n]
	}
	return dec.DecodeRaw(r.levels, views, dst)
}

// decodeLog renders the decode in use for the "detector ready" log:
// raw-head, or graph with the reason.
func (d *Detector) decodeLog() string {
	if d.DecodeReason == "" {
		return d.Decode
	}
	return d.Decode + " (" + d.DecodeReason + ")"
}
