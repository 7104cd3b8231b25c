// Package ptq is yedge's one post-training quantization recipe: an FP32
// model file and a folder of calibration images (or a calibration cache)
// in, a Q/DQ int8 model out, with the per-target defaults. `yedge
// quantize` and the daemon's quantization at start-up both run it; quant
// does the analysis, calibration and placement, pipeline/calib reads the
// images as inference letterboxes them.
package ptq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/pipeline/calib"
	"github.com/yedge/yedge/quant"
)

// Recipe is what to quantize and how.
type Recipe struct {
	// Model is the FP32 model file.
	Model string
	// Calib is the folder of calibration images; Images the number used
	// (the first, by name). Without a folder, Cache must hold the
	// statistics.
	Calib  string
	Images int
	// Height and Width are the calibration input size; 0 takes the model's
	// (640 for a dynamic one).
	Height, Width int
	Target        quant.Target
	// Method is the activation calibrator; empty takes the target's
	// default (Defaults).
	Method     quant.CalibMethod
	Percentile float64
	// KeepHead keeps the Detect-head Convs in float; nil takes the
	// target's default.
	KeepHead *bool
	// Exclude keeps matching nodes in float.
	Exclude *regexp.Regexp
	// Cache is the calibration cache: read when it matches the model and
	// the preprocessing, written otherwise; empty uses none.
	Cache string
	// Runtime runs the calibration (always on the CPU provider).
	Runtime  onnxrt.Options
	Progress pipeline.Progress
	Logger   *slog.Logger
}

// Defaults are a target's defaults: the calibrator and whether the
// Detect head stays in float.
func Defaults(t quant.Target) (quant.CalibMethod, bool) {
	return quant.DefaultMethod(t), quant.DefaultKeepHead(t)
}

// ErrNoCalibration is a recipe with neither calibration images nor a
// calibration cache.
var ErrNoCalibration = errors.New("no calibration input: give a folder of calibration images or an existing calibration cache")

// CalibError is a problem with the calibration input (the images folder,
// or neither images nor a cache).
type CalibError struct{ Err error }

func (e *CalibError) Error() string { return e.Err.Error() }
func (e *CalibError) Unwrap() error { return e.Err }

// Job is an opened recipe: the model loaded, the images found, the
// options resolved. Options may be changed before Run (sensitivity
// analysis adds ExcludeNodes).
type Job struct {
	Model         *onnx.Model
	Height, Width int
	Options       quant.Options
	inputs        *calib.ImageInputs
}

// Open loads the model and opens the calibration images: every input
// error before any calibration. A model already quantized is refused.
func Open(r Recipe) (*Job, error) {
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	m, err := onnx.Load(r.Model)
	if err != nil {
		return nil, &pipeline.ModelError{Err: err}
	}
	if quant.IsQDQ(m) {
		return nil, &pipeline.ModelError{Err: fmt.Errorf("model %q is already quantized (Q/DQ): yedge does not quantize twice; run it as it is (see `yedge inspect`)", r.Model)}
	}
	h, w, err := pipeline.InputSize(m, r.Height, r.Width)
	if err != nil {
		return nil, &pipeline.ModelError{Err: err}
	}
	if err := pipeline.CheckInputSize(1, h, w); err != nil {
		return nil, &pipeline.ModelError{Err: fmt.Errorf("model %q: %w", r.Model, err)}
	}
	j := &Job{Model: m, Height: h, Width: w}
	if r.Calib != "" {
		if j.inputs, err = calib.NewImageInputs(r.Calib, r.Images, h, w); err != nil {
			return nil, &CalibError{err}
		}
	} else if r.Cache == "" {
		return nil, &CalibError{ErrNoCalibration}
	}
	method, keepHead := Defaults(r.Target)
	if r.Method != "" {
		method = r.Method
	}
	if r.KeepHead != nil {
		keepHead = *r.KeepHead
	}
	j.Options = quant.Options{Target: r.Target, Method: method, Percentile: r.Percentile, Exclude: r.Exclude, KeepHead: keepHead,
		CachePath: r.Cache, Preprocess: fmt.Sprintf("letterbox %dx%d", h, w), Logger: log}
	j.Options.Calibrate.Runtime = r.Runtime
	j.Options.Calibrate.Runtime.Provider = onnxrt.ProviderCPU
	j.Options.Calibrate.Logger = log
	j.Options.Calibrate.Progress = r.Progress
	return j, nil
}

// Source is the calibration input (nil with a cache only).
func (j *Job) Source() quant.InputSource {
	if j.inputs == nil {
		return nil
	}
	return j.inputs
}

// Images is the number of calibration images found (0 with a cache only).
func (j *Job) Images() int {
	if j.inputs == nil {
		return 0
	}
	return j.inputs.Len()
}

// Skipped describes the calibration images skipped (corrupt, unreadable),
// or "" when none were.
func (j *Job) Skipped() string {
	if j.inputs == nil || j.inputs.Corrupt()+j.inputs.Unreadable() == 0 {
		return ""
	}
	return fmt.Sprintf("%d corrupt and %d unreadable images skipped", j.inputs.Corrupt(), j.inputs.Unreadable())
}

// Run calibrates (or reads the cache) and quantizes. An interrupted run
// returns ctx's error.
func (j *Job) Run(ctx context.Context) (*quant.Result, error) {
	res, err := quant.Quantize(ctx, j.Model, j.Source(), j.Options)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return res, err
}

// Close releases the calibration images.
func (j *Job) Close() {
	if j.inputs != nil {
		j.inputs.Close()
	}
}
