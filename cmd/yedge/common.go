package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/yedge/yedge/config"
	"github.com/yedge/yedge/internal/fsx"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
)

// intInRange returns a usage error naming flag when v is outside [lo, hi];
// note explains special values (e.g. "0: all frames").
func intInRange(flag string, v, lo, hi int64, note string) error {
	if v >= lo && v <= hi {
		return nil
	}
	r := fmt.Sprintf("in [%d, %d]", lo, hi)
	if hi == math.MaxInt64 {
		r = fmt.Sprintf(">= %d", lo)
	}
	return withCode(exitUsage, fmt.Errorf("--%s %d: must be %s%s", flag, v, r, noteText(note)))
}

// keyInRange checks a flag that sets the same value as a configuration
// key against that key's declared range (config.RangeOf): one
// declaration for both.
func keyInRange(flag, key string, v float64, integer bool) error {
	r, ok := config.RangeOf(key)
	if !ok {
		panic("cmd: no declared range for " + key)
	}
	if integer {
		return intInRange(flag, int64(v), int64(r.Min), int64(r.Max), r.Note)
	}
	return floatInRange(flag, v, r.Min, r.Max, r.MinOpen, r.MaxOpen, r.Note)
}

// floatInRange returns a usage error naming flag when v is NaN, infinite or
// outside the range from lo to hi (open at an end when loOpen/hiOpen).
func floatInRange(flag string, v, lo, hi float64, loOpen, hiOpen bool, note string) error {
	ok := !math.IsNaN(v) && !math.IsInf(v, 0) &&
		(v > lo || (!loOpen && v == lo)) && (v < hi || (!hiOpen && v == hi))
	if ok {
		return nil
	}
	return withCode(exitUsage, fmt.Errorf("--%s %v: must be a number %s%s", flag, v, rangeText(lo, hi, loOpen, hiOpen), noteText(note)))
}

// rangeText writes an interval: [lo, hi], (lo, hi], ...
func rangeText(lo, hi float64, loOpen, hiOpen bool) string {
	l, r := "[", "]"
	if loOpen {
		l = "("
	}
	if hiOpen {
		r = ")"
	}
	return fmt.Sprintf("in %s%v, %v%s", l, lo, hi, r)
}

func noteText(note string) string {
	if note == "" {
		return ""
	}
	return " (" + note + ")"
}

// second returns the error of a (value, error) pair.
func second[T any](_ T, err error) error { return err }

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// parseImgszFlag parses an --imgsz value with pipeline.ParseSize (the one
// parser, shared with the daemon) and adds the flag name.
func parseImgszFlag(s string) (h, w int, err error) {
	h, w, err = pipeline.ParseSize(s)
	if err != nil {
		return 0, 0, withCode(exitUsage, fmt.Errorf("--%w", err))
	}
	return h, w, nil
}

// imgszUsage documents --imgsz and its range.
var imgszUsage = fmt.Sprintf("input size for dynamic models: N or HEIGHTxWIDTH, each a multiple of %d in [%d, %d] (default: from the model, else %d)",
	pipeline.SizeMultiple, pipeline.MinImageSize, pipeline.MaxImageSize, pipeline.DefaultImageSize)

// refuseOverwrite is fsx.RefuseOverwrite with the flag name of the output:
// no command writes over a file the user gave as input.
func refuseOverwrite(flag, out string, inputs ...string) error {
	if err := fsx.RefuseOverwrite(out, inputs...); err != nil {
		return withCode(exitUsage, fmt.Errorf("--%s: %w", flag, err))
	}
	return nil
}

// fullGraphUsage documents --full-graph (detect, eval, bench).
const fullGraphUsage = "run the model's full graph, Detect decode included, instead of cutting it before the decode and decoding the raw head in Go"

// interpFlag is --interp, the letterbox interpolation of the commands that
// run a model for its detections or its speed (detect, bench); eval and
// quantize keep the reference protocol.
type interpFlag struct{ name string }

func (f *interpFlag) register(c *cobra.Command) {
	c.Flags().StringVar(&f.name, "interp", preprocess.DeployInterp.String(),
		"letterbox interpolation: auto (INTER_LINEAR for frames shrunk at most 2x, INTER_AREA beyond), area (the eval protocol: INTER_AREA when shrinking) or linear (INTER_LINEAR always, as Ultralytics detect.py)")
}

// value returns the parsed flag, or a usage error naming it.
func (f *interpFlag) value() (preprocess.Interp, error) {
	i, err := preprocess.ParseInterp(f.name)
	if err != nil {
		return 0, withCode(exitUsage, fmt.Errorf("--interp: %w", err))
	}
	return i, nil
}

// modelFlags are the flags of commands that run a model.
type modelFlags struct {
	model  string
	imgsz  string
	names  string
	conf   float64
	iou    float64
	maxDet int
	batch  int
	// fullGraph runs the full graph instead of the raw-head decode.
	fullGraph bool
}

func (m *modelFlags) register(c *cobra.Command, post postprocess.Options) {
	f := c.Flags()
	f.StringVarP(&m.model, "model", "m", "", "YOLOv5 ONNX model (FP32 or Q/DQ int8)")
	f.StringVar(&m.imgsz, "imgsz", "", imgszUsage)
	f.StringVar(&m.names, "names", "", "class names file (YAML with names: or one per line); default: model metadata, else COCO-80")
	f.Float64Var(&m.conf, "conf", f32(post.Conf), "confidence threshold (obj x cls), in [0, 1]")
	f.Float64Var(&m.iou, "iou", f32(post.IoU), "NMS IoU threshold, in (0, 1]")
	f.IntVar(&m.maxDet, "max-det", post.MaxDet, fmt.Sprintf("maximum detections per image, in [1, %d]", postprocess.MaxDetections))
	f.BoolVar(&m.fullGraph, "full-graph", false, fullGraphUsage)
	_ = c.MarkFlagRequired("model")
}

// f32 widens a float32 default to the float64 with the same shortest
// decimal form (0.45, not 0.44999998807907104).
func f32(v float32) float64 {
	x, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
	return x
}

// validate checks the numeric flags' ranges (before any work).
func (m *modelFlags) validate() error {
	if m.model == "" {
		return withCode(exitUsage, errors.New("--model: empty model path"))
	}
	if _, _, err := parseImgszFlag(m.imgsz); err != nil {
		return err
	}
	return firstErr(
		keyInRange("conf", "thresholds.conf", m.conf, false),
		keyInRange("iou", "thresholds.iou", m.iou, false),
		keyInRange("max-det", "thresholds.max_det", float64(m.maxDet), true),
	)
}

// detectorConfig builds the pipeline configuration from flags.
func (m *modelFlags) detectorConfig(g *globalFlags, post postprocess.Options) (pipeline.Config, error) {
	if err := m.validate(); err != nil {
		return pipeline.Config{}, err
	}
	h, w, err := parseImgszFlag(m.imgsz)
	if err != nil {
		return pipeline.Config{}, err
	}
	post.Conf, post.IoU, post.MaxDet = float32(m.conf), float32(m.iou), m.maxDet
	if err := post.Validate(); err != nil {
		return pipeline.Config{}, withCode(exitUsage, err)
	}
	return pipeline.Config{Model: m.model, Runtime: g.runtimeOptions(), Height: h, Width: w,
		Batch: m.batch, Post: post, NamesFile: m.names, FullGraph: m.fullGraph}, nil
}
