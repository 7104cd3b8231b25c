// Package pipeline wires the stages of yedge together for one model: a
// Detector runs preprocess -> runtime -> postprocess on frames and returns
// detections in source pixels with per-stage timings. Commands (detect,
// eval, bench) and the daemon build on it; it owns no sources or sinks.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
	yrt "github.com/yedge/yedge/runtime"
)

// DefaultImageSize is used for models whose input size is dynamic when no
// size is given.
const DefaultImageSize = 640

// Config describes a Detector.
type Config struct {
	Model   string
	Runtime yrt.Options
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
	// Interp is the letterbox interpolation. The zero value is the
	// reference protocol (INTER_AREA when shrinking), which evaluation and
	// calibration keep; detect and serve may choose preprocess.InterpLinear.
	Interp preprocess.Interp
}

// ModelError marks problems with the model file itself (missing, not ONNX,
// wrong shape), as opposed to runtime or input failures.
type ModelError struct{ Err error }

func (e *ModelError) Error() string { return e.Err.Error() }
func (e *ModelError) Unwrap() error { return e.Err }

// Timing is the time spent in each stage for one frame (or one batch).
type Timing struct {
	Preprocess, Infer, Postprocess time.Duration
}

// Detector runs one model on frames. It is not safe for concurrent use.
type Detector struct {
	Session     *yrt.Session
	Names       []string
	NamesSource string
	Layout      postprocess.Layout
	Width       int
	Height      int
	Stride      int
	Batch       int
	outIdx      int
	bind        *yrt.Binding
	lbs         []*preprocess.Letterboxer
	dec         *postprocess.Decoder
	dets        []postprocess.Detection
	xfs         []preprocess.Transform
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
	s, err := yrt.NewSession(cfg.Model, cfg.Runtime)
	if err != nil {
		if errors.Is(err, yrt.ErrProviderUnavailable) {
			return nil, err
		}
		return nil, &ModelError{err}
	}
	d := &Detector{Session: s, Stride: 32, dec: postprocess.NewDecoder(cfg.Post)}
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
		"classes", d.Layout.Classes, "names", d.NamesSource, "provider", s.Provider)
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
	d.bind, err = s.Bind([]int64{int64(d.Batch), 3, int64(h), int64(w)}, d.outIdx)
	if err != nil {
		return &ModelError{err}
	}
	d.Layout, err = postprocess.ParseLayout(d.bind.OutputShape())
	if err != nil {
		return &ModelError{fmt.Errorf("model %q: %w", cfg.Model, err)}
	}
	for i := 0; i < d.Batch; i++ {
		lb := preprocess.New(w, h)
		lb.Interp = cfg.Interp
		d.lbs = append(d.lbs, lb)
	}
	d.xfs = make([]preprocess.Transform, d.Batch)
	return nil
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

// Close releases the session and buffers.
func (d *Detector) Close() error {
	var errs []error
	for _, l := range d.lbs {
		errs = append(errs, l.Close())
	}
	d.lbs = nil
	if d.bind != nil {
		d.bind.Close()
		d.bind = nil
	}
	return errors.Join(append(errs, d.Session.Close())...)
}

// Preprocess letterboxes img into batch slot i of the input buffer.
func (d *Detector) Preprocess(img gocv.Mat, i int) (preprocess.Transform, error) {
	plane := 3 * d.Width * d.Height
	t, err := d.lbs[i].Apply(img, d.bind.Input()[i*plane:(i+1)*plane])
	if err != nil {
		return t, err
	}
	d.xfs[i] = t
	return t, nil
}

// Infer runs the model on the input buffer.
func (d *Detector) Infer(ctx context.Context) error { return d.bind.Run(ctx) }

// Postprocess decodes batch slot i and maps boxes back with t. The returned
// slice is owned by the Detector and valid until the next call.
func (d *Detector) Postprocess(i int, t preprocess.Transform) []postprocess.Detection {
	rowLen := d.Layout.Rows * (5 + d.Layout.Classes)
	out := d.bind.Output()[i*rowLen : (i+1)*rowLen]
	d.dets = d.dec.Decode(out, d.Layout.Classes, d.dets[:0])
	return postprocess.MapBack(d.dets, t)
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

// SetPostprocess changes the decoding options.
func (d *Detector) SetPostprocess(o postprocess.Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	d.dec = postprocess.NewDecoder(o)
	return nil
}
