package pipeline

import (
	"context"
	"fmt"
	"log/slog"
)

// PipelineSlots is the number of slots a Detector lends to pipelined
// stages: one being filled by preprocessing, one being inferred and one
// being decoded.
const PipelineSlots = 3

// AcquireSlot returns a slot for the pipelined stages, making it on first
// use (at most PipelineSlots; the detector's own slot of Detect is apart;
// the first slot made takes the binding New made), and otherwise waiting
// until one is released or ctx is done.
func (d *Detector) AcquireSlot(ctx context.Context) (*Slot, error) {
	d.poolMu.Lock()
	if d.free == nil {
		d.free = make(chan *Slot, PipelineSlots)
	}
	select {
	case s := <-d.free:
		d.poolMu.Unlock()
		return s, nil
	default:
	}
	if len(d.all) < PipelineSlots {
		t, err := d.takeTensors()
		if err != nil {
			d.poolMu.Unlock()
			return nil, fmt.Errorf("model %q: %w", d.Path(), err)
		}
		s := d.newSlot(t)
		d.all = append(d.all, s)
		d.poolMu.Unlock()
		return s, nil
	}
	free := d.free
	d.poolMu.Unlock()
	select {
	case s := <-free:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ReleaseSlot gives a slot from AcquireSlot back.
func (d *Detector) ReleaseSlot(s *Slot) { d.free <- s }

// tensors makes one more input and output pair.
func (d *Detector) tensors() (tensors, error) {
	if d.null {
		return d.nullTensors(), nil
	}
	return d.bind()
}

// NullModel is the Config.Model of the built-in null model: a detector
// with YOLOv5's input and output shapes (80 classes) whose inference does
// nothing and finds nothing. It measures what the stages around inference
// allow (`yedge bench --pipeline --model null`).
const NullModel = "null"

// nullClasses is the null model's class count (COCO's).
const nullClasses = 80

// newNull makes the null model's detector.
func newNull(cfg Config, log *slog.Logger) (*Detector, error) {
	d := &Detector{Stride: 32, post: cfg.Post, interp: cfg.Interp, null: true, Batch: max(cfg.Batch, 1)}
	h, w, err := resolveSize([]int64{-1, 3, -1, -1}, cfg.Height, cfg.Width, d.Stride)
	if err != nil {
		return nil, &ModelError{fmt.Errorf("model %q: %w", NullModel, err)}
	}
	if err := CheckInputSize(d.Batch, h, w); err != nil {
		return nil, fmt.Errorf("model %q: %w", NullModel, err)
	}
	d.Height, d.Width = h, w
	rows := 0
	for _, s := range []int{8, 16, 32} {
		rows += 3 * (h / s) * (w / s)
	}
	d.Layout.Rows, d.Layout.Classes = rows, nullClasses
	d.main = d.newSlot(d.nullTensors())
	d.Names = make([]string, nullClasses)
	for i := range d.Names {
		d.Names[i] = fmt.Sprintf("class%d", i)
	}
	d.NamesSource = "none (null model)"
	log.Info("detector ready", "model", NullModel, "input", fmt.Sprintf("%dx%dx%d", d.Batch, d.Height, d.Width),
		"classes", nullClasses, "provider", "none")
	return d, nil
}

// nullTensors allocates the null model's buffers.
func (d *Detector) nullTensors() *nullTensors {
	return &nullTensors{
		in:   make([]float32, d.Batch*3*d.Height*d.Width),
		outs: [][]float32{make([]float32, d.Batch*d.Layout.Rows*(5+d.Layout.Classes))},
	}
}
