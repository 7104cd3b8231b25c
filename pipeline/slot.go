package pipeline

import (
	"context"
	"errors"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
)

// tensors is a slot's input and output memory and the run that fills the
// output from the input: an onnxruntime binding, or the null model's
// buffers.
type tensors interface {
	Input() []float32
	Outputs() [][]float32
	Run(ctx context.Context) error
	Close()
}

// Slot is one batch's worth of buffers: the letterbox scratch images, the
// input and output tensors, the transforms of the frames placed in it and
// the decoder's scratch. Different slots of one Detector may be used by
// different goroutines at the same time (onnxruntime runs concurrent
// calls of one session on different tensors); one slot is used by one
// goroutine at a time. Slots let the pipelined stages preprocess frame
// n+1 while frame n is inferred and frame n-1 decoded, without copying.
type Slot struct {
	d     *Detector
	t     tensors
	lbs   []*preprocess.Letterboxer
	xfs   []preprocess.Transform
	dec   *postprocess.Decoder
	dets  []postprocess.Detection
	views [][]float32 // raw head: one image's values per level
}

// newSlot allocates a slot for d's input size and batch.
func (d *Detector) newSlot(t tensors) *Slot {
	s := &Slot{d: d, t: t, xfs: make([]preprocess.Transform, d.Batch), dec: postprocess.NewDecoder(d.post)}
	for range d.Batch {
		lb := preprocess.New(d.Width, d.Height)
		lb.Interp = d.interp
		s.lbs = append(s.lbs, lb)
	}
	return s
}

// Detector returns the detector the slot belongs to.
func (s *Slot) Detector() *Detector { return s.d }

// Preprocess letterboxes img into batch position i of the slot's input
// and keeps the transform for Postprocess.
func (s *Slot) Preprocess(img gocv.Mat, i int) (preprocess.Transform, error) {
	plane := 3 * s.d.Width * s.d.Height
	t, err := s.lbs[i].Apply(img, s.t.Input()[i*plane:(i+1)*plane])
	if err != nil {
		return t, err
	}
	s.xfs[i] = t
	return t, nil
}

// Infer runs the model on the slot's input.
func (s *Slot) Infer(ctx context.Context) error { return s.t.Run(ctx) }

// Postprocess decodes batch position i of the slot's output and maps the
// boxes back to the source pixels of the frame preprocessed there. The
// returned slice is owned by the slot and valid until its next call.
func (s *Slot) Postprocess(i int) []postprocess.Detection {
	if r := s.d.raw; r != nil {
		if s.views == nil {
			s.views = make([][]float32, len(r.levels))
		}
		s.dets = r.decode(s.dec, s.t.Outputs(), s.views, i, s.dets[:0])
		return postprocess.MapBack(s.dets, s.xfs[i])
	}
	l := s.d.Layout
	rowLen := l.Rows * (5 + l.Classes)
	out := s.t.Outputs()[0][i*rowLen : (i+1)*rowLen]
	s.dets = s.dec.Decode(out, l.Classes, s.dets[:0])
	return postprocess.MapBack(s.dets, s.xfs[i])
}

// close releases the slot's buffers.
func (s *Slot) close() error {
	var errs []error
	for _, l := range s.lbs {
		errs = append(errs, l.Close())
	}
	s.lbs = nil
	if s.t != nil {
		s.t.Close()
		s.t = nil
	}
	return errors.Join(errs...)
}

// nullTensors are the null model's buffers: its output holds no object
// (every objectness 0) and its run does nothing.
type nullTensors struct {
	in   []float32
	outs [][]float32
}

func (n *nullTensors) Input() []float32              { return n.in }
func (n *nullTensors) Outputs() [][]float32          { return n.outs }
func (n *nullTensors) Run(ctx context.Context) error { return ctx.Err() }
func (n *nullTensors) Close()                        {}
