// Package pipeline wires the stages of yedge together for one model: a
// Detector runs preprocess -> runtime -> postprocess on frames and returns
// detections in source pixels with per-stage timings, and Stages runs
// those steps concurrently on a stream of jobs (with a Feed reading the
// source on its own goroutine) for detect, serve and bench --pipeline.
// Commands and the daemon build on it; it owns no sinks.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
)

// DefaultImageSize is used for models whose input size is dynamic when no
// size is given.
const DefaultImageSize = 640

// Config describes a Detector.
type Config struct {
	Model   string
	Runtime onnxrt.Options
	// Height and Width of the network input. Zero means: read from the
	// model, or DefaultImageSize for dynamic models. A static model given a
	// different size is an error.
	Height, Width int
	// Batch is the batch size for models with a dynamic batch (default 1).
	// Batch x Height x Width is bounded by MaxBatch, MaxImageSize and
	// MaxInputPixels: New refuses larger inputs with ErrInputTooLarge.
	Batch     int
	Post      postprocess.Options
	NamesFile string
	Logger    *slog.Logger
	// FullGraph runs the model's full graph, Detect decode included, and
	// decodes its output rows, instead of cutting the model before the
	// decode when the YOLOv5 Detect head is recognised (see yolohead).
	FullGraph bool
	// Interp is the letterbox interpolation. The zero value is the
	// reference protocol (INTER_AREA when shrinking), which evaluation and
	// calibration keep; detect and serve use preprocess.DeployInterp unless told.
	Interp preprocess.Interp
}

// ModelError marks problems with the model file itself (missing, not ONNX,
// wrong shape), as opposed to runtime or input failures.
type ModelError struct{ Err error }

func (e *ModelError) Error() string { return e.Err.Error() }
func (e *ModelError) Unwrap() error { return e.Err }

// SourceError marks a failure of the source a run reads: it could not be
// opened, or not a single frame could be read.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

// Timing is the time spent in each stage for one frame (or one batch).
type Timing struct {
	Preprocess, Infer, Postprocess time.Duration
}

// Detector runs one model on frames. Its own methods (Preprocess, Infer,
// Postprocess, Detect) share one slot and are not safe for concurrent
// use; the slots of AcquireSlot are independent of it and of each other,
// so pipelined stages and one Detect caller may run at the same time.
type Detector struct {
	Session     *onnxrt.Session
	Names       []string
	NamesSource string
	Layout      postprocess.Layout
	Width       int
	Height      int
	Stride      int
	Batch       int
	outIdx      int
	post        postprocess.Options
	interp      preprocess.Interp
	null        bool // the built-in null model: no session, no inference

	poolMu sync.Mutex
	// main is the slot of Preprocess, Infer, Postprocess and Detect, made
	// on their first use (ownSlot).
	main *Slot
	// spare is the binding New made to learn the output shapes, not yet
	// given to a slot: the first slot made, the detector's own or a
	// pipelined one, takes it, so that a detector used only through
	// pipelined slots (the daemon's int8 model) or only through Detect
	// (its FP32 shadow) holds no binding it does not use.
	spare tensors
	free  chan *Slot // pipelined stages' slots not in use
	all   []*Slot    // every pipelined slot made, for Close
	// Decode is DecodeRawHead or DecodeGraph; DecodeReason says why the
	// graph decode is in use.
	Decode       string
	DecodeReason string
	raw          *rawHead
}

// New loads the model and prepares buffers for its input size.
func New(cfg Config) (*Detector, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Runtime.Logger = log
	if cfg.Batch < 0 || cfg.Height < 0 || cfg.Width < 0 {
		return nil, fmt.Errorf("model %q: negative batch %d or input size %dx%d", cfg.Model, cfg.Batch, cfg.Height, cfg.Width)
	}
	if err := CheckInputSize(max(cfg.Batch, 1), cfg.Height, cfg.Width); err != nil {
		return nil, fmt.Errorf("model %q: %w", cfg.Model, err)
	}
	if cfg.Post.MaxDet == 0 {
		cfg.Post = postprocess.DeployOptions()
	}
	if err := cfg.Post.Validate(); err != nil {
		return nil, err
	}
	if cfg.Model == NullModel {
		return newNull(cfg, log)
	}
	s, raw, why, err := openSession(cfg, log)
	if err != nil {
		if errors.Is(err, onnxrt.ErrProviderUnavailable) {
			return nil, err
		}
		return nil, &ModelError{err}
	}
	d := &Detector{Session: s, Stride: 32, post: cfg.Post, interp: cfg.Interp, raw: raw, Decode: DecodeRawHead}
	if raw == nil {
		d.Decode, d.DecodeReason = DecodeGraph, why
	}
	if v, ok := s.Metadata["stride"]; ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			d.Stride = n
		}
	}
	if err := d.setup(cfg); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	d.Names, d.NamesSource, err = postprocess.ResolveNames(s.Metadata, cfg.NamesFile, d.Layout.Classes)
	if err != nil {
		return nil, errors.Join(err, d.Close())
	}
	log.Info("detector ready", "model", cfg.Model, "input", fmt.Sprintf("%dx%dx%d", d.Batch, d.Height, d.Width),
		"classes", d.Layout.Classes, "names", d.NamesSource, "provider", s.Provider, "decode", d.decodeLog())
	return d, nil
}

func (d *Detector) setup(cfg Config) error {
	s := d.Session
	if len(s.Inputs) != 1 {
		return &ModelError{fmt.Errorf("model %q has %d inputs %v; yedge needs one image input", cfg.Model, len(s.Inputs), s.Inputs)}
	}
	in := s.Inputs[0]
	if len(in.Shape) != 4 || (in.Shape[1] >= 0 && in.Shape[1] != 3) {
		return &ModelError{fmt.Errorf("model %q input %s is not an NCHW image with 3 channels", cfg.Model, in)}
	}
	d.outIdx = -1
	for i, o := range s.Outputs {
		if d.raw != nil {
			d.outIdx = i // the level outputs are checked at binding
			break
		}
		// The layout is checked on the real shape after binding; here a
		// dynamic last dimension is accepted provisionally.
		if o.Type == "float32" && len(o.Shape) == 3 && (o.Shape[2] < 0 || o.Shape[2] >= 6) {
			d.outIdx = i
			break
		}
	}
	if d.outIdx < 0 {
		return &ModelError{fmt.Errorf("model %q: no output is YOLOv5-shaped [batch, boxes, 5+classes] float32; outputs are %v", cfg.Model, s.Outputs)}
	}
	h, w, err := resolveSize(in.Shape, cfg.Height, cfg.Width, d.Stride)
	if err != nil {
		return &ModelError{fmt.Errorf("model %q: %w", cfg.Model, err)}
	}
	d.Height, d.Width = h, w
	d.Batch = 1
	if in.Shape[0] > 0 {
		d.Batch = int(in.Shape[0])
		if cfg.Batch > 0 && cfg.Batch != d.Batch {
			return &ModelError{fmt.Errorf("model %q has a fixed batch of %d; cannot use batch %d", cfg.Model, d.Batch, cfg.Batch)}
		}
	} else if cfg.Batch > 0 {
		d.Batch = cfg.Batch
	}
	if err := CheckInputSize(d.Batch, h, w); err != nil {
		if in.Shape[0] > 0 && in.Shape[2] > 0 && in.Shape[3] > 0 {
			return &ModelError{fmt.Errorf("model %q: %w", cfg.Model, err)}
		}
		return fmt.Errorf("model %q: %w", cfg.Model, err)
	}
	var bind *onnxrt.Binding
	if d.raw != nil {
		bind, d.Layout, err = d.raw.setup(s, cfg.Model, d.inputShape())
	} else {
		bind, err = d.bind()
	}
	if err != nil {
		return &ModelError{err}
	}
	if d.raw == nil {
		d.Layout, err = postprocess.ParseLayout(bind.OutputShape())
	}
	if err != nil {
		bind.Close()
		return &ModelError{fmt.Errorf("model %q: %w", cfg.Model, err)}
	}
	d.spare = bind
	return nil
}

// ownSlot returns the detector's own slot, making it on first use.
func (d *Detector) ownSlot() (*Slot, error) {
	d.poolMu.Lock()
	defer d.poolMu.Unlock()
	if d.main != nil {
		return d.main, nil
	}
	t, err := d.takeTensors()
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", d.Path(), err)
	}
	d.main = d.newSlot(t)
	return d.main, nil
}

// takeTensors returns the spare binding, or else makes one more; poolMu
// is held.
func (d *Detector) takeTensors() (tensors, error) {
	if t := d.spare; t != nil {
		d.spare = nil
		return t, nil
	}
	return d.tensors()
}

// inputShape is the bound input shape: batch, 3, height, width.
func (d *Detector) inputShape() []int64 {
	return []int64{int64(d.Batch), 3, int64(d.Height), int64(d.Width)}
}

// bind allocates one input tensor and the output tensors for the model:
// the decoded rows, or the raw head's levels.
func (d *Detector) bind() (*onnxrt.Binding, error) {
	if d.raw != nil {
		return d.Session.BindOutputs(d.inputShape(), d.raw.outIdx)
	}
	return d.Session.Bind(d.inputShape(), d.outIdx)
}

// resolveSize picks the input height and width from the model shape and the
// requested size.
func resolveSize(shape []int64, reqH, reqW, stride int) (int, int, error) {
	mh, mw := int(shape[2]), int(shape[3])
	pick := func(model, req int, what string) (int, error) {
		if model > 0 {
			if req > 0 && req != model {
				return 0, fmt.Errorf("input %s is fixed at %d by the model; cannot use %d", what, model, req)
			}
			return model, nil
		}
		if req == 0 {
			req = DefaultImageSize
		}
		if req < stride || req%stride != 0 {
			return 0, fmt.Errorf("input %s %d must be a positive multiple of the stride %d", what, req, stride)
		}
		return req, nil
	}
	h, err := pick(mh, reqH, "height")
	if err != nil {
		return 0, 0, err
	}
	w, err := pick(mw, reqW, "width")
	if err != nil {
		return 0, 0, err
	}
	return h, w, nil
}

// Close releases the session and every slot's buffers. No slot may be in
// use.
func (d *Detector) Close() error {
	var errs []error
	d.poolMu.Lock()
	slots := append(d.all, d.main)
	spare := d.spare
	d.all, d.main, d.spare = nil, nil, nil
	d.poolMu.Unlock()
	for _, sl := range slots {
		if sl != nil {
			errs = append(errs, sl.close())
		}
	}
	if spare != nil {
		spare.Close()
	}
	if d.Session != nil {
		errs = append(errs, d.Session.Close())
	}
	return errors.Join(errs...)
}

// Preprocess letterboxes img into batch position i of the detector's own
// slot.
func (d *Detector) Preprocess(img gocv.Mat, i int) (preprocess.Transform, error) {
	s, err := d.ownSlot()
	if err != nil {
		return preprocess.Transform{}, err
	}
	return s.Preprocess(img, i)
}

// Infer runs the model on the detector's own slot.
func (d *Detector) Infer(ctx context.Context) error {
	s, err := d.ownSlot()
	if err != nil {
		return err
	}
	return s.Infer(ctx)
}

// Postprocess decodes batch position i of the detector's own slot. The
// transform t is the one Preprocess returned for it. The returned slice
// is owned by the Detector and valid until the next call; it is empty
// when the slot cannot be made.
func (d *Detector) Postprocess(i int, t preprocess.Transform) []postprocess.Detection {
	s, err := d.ownSlot()
	if err != nil {
		return nil
	}
	s.xfs[i] = t
	return s.Postprocess(i)
}

// Detect runs all stages on one image. The returned slice is owned by the
// Detector and valid until the next call.
func (d *Detector) Detect(ctx context.Context, img gocv.Mat) ([]postprocess.Detection, Timing, error) {
	var tm Timing
	t0 := time.Now()
	xf, err := d.Preprocess(img, 0)
	if err != nil {
		return nil, tm, err
	}
	t1 := time.Now()
	if err := d.Infer(ctx); err != nil {
		return nil, tm, err
	}
	t2 := time.Now()
	dets := d.Postprocess(0, xf)
	t3 := time.Now()
	tm = Timing{Preprocess: t1.Sub(t0), Infer: t2.Sub(t1), Postprocess: t3.Sub(t2)}
	return dets, tm, nil
}

// SetPostprocess changes the decoding options of the detector's own slot
// (Detect, Postprocess) and of the pipelined slots made from now on.
func (d *Detector) SetPostprocess(o postprocess.Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	d.poolMu.Lock()
	defer d.poolMu.Unlock()
	d.post = o
	if d.main != nil {
		d.main.dec = postprocess.NewDecoder(o)
	}
	return nil
}

// Path returns the model's path ("null" for the null model).
func (d *Detector) Path() string {
	if d.Session == nil {
		return NullModel
	}
	return d.Session.Path()
}

// Provider returns the execution provider in use ("none" for the null
// model).
func (d *Detector) Provider() string {
	if d.Session == nil {
		return "none"
	}
	return d.Session.Provider
}

// Threads returns onnxruntime's intra-op thread count (0 for the null
// model).
func (d *Detector) Threads() int {
	if d.Session == nil {
		return 0
	}
	return d.Session.Threads
}
