package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/ptq"
	"github.com/yedge/yedge/quant"
)

type quantizeFlags struct {
	model       string
	out         string
	calib       string
	calibImages int
	cache       string
	trtTable    string
	target      string
	method      string
	percentile  float64
	exclude     string
	keepHead    bool
	imgsz       string
	progress    bool
	sensitivityFlags
}

func newQuantizeCmd(g *globalFlags) *cobra.Command {
	f := &quantizeFlags{}
	c := &cobra.Command{
		Use:   "quantize --model FP32.onnx --calib DIR --out INT8.onnx",
		Short: "Post-training int8 quantization with calibration (writes a Q/DQ ONNX model)",
		Long: `Quantize an FP32 YOLOv5 ONNX model to a Q/DQ int8 model.

The model runs over calibration images (the same letterbox as inference) with
the tensors to quantize as extra outputs; statistics (max and a 2048-bin
histogram of |x|, as pytorch-quantization collects) are cached with
--calib-cache so that another method, target or exclusion reuses them.

Targets:
  tensorrt  symmetric int8 Q/DQ at Conv inputs (per-channel weights), both
            inputs of residual Adds, shared scales across Concat and MaxPool
            (explicit quantization for TensorRT 8+). Default: MSE calibration,
            Detect-head Convs kept in float.
  cpu       uint8 activations / int8 per-channel weights laid out for
            onnxruntime's CPU fusions (QLinearConv, QLinearSigmoid, QLinearMul,
            QLinearAdd, QLinearConcat). Default: MSE calibration, Detect-head
            Convs kept in float.

The output is written atomically: an interrupted run leaves no partial file.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runQuantize(c.Context(), g, f, c, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	fl := c.Flags()
	fl.StringVarP(&f.model, "model", "m", "", "FP32 ONNX model")
	fl.StringVarP(&f.out, "out", "o", "", "output Q/DQ model")
	fl.StringVar(&f.calib, "calib", "", "folder of calibration images")
	fl.IntVar(&f.calibImages, "calib-images", 128, fmt.Sprintf("number of calibration images (the first, sorted by name), in [1, %d]", maxCalibImages))
	fl.StringVar(&f.cache, "calib-cache", "", "calibration cache JSON: reused when it matches the model, written otherwise")
	fl.StringVar(&f.trtTable, "trt-calib-table", "", "also write a TensorRT calibration table (implicit quantization)")
	fl.StringVar(&f.target, "target", "tensorrt", "Q/DQ layout: tensorrt|cpu")
	fl.StringVar(&f.method, "method", "", "activation calibrator: max|entropy|mse|percentile (default: mse)")
	fl.Float64Var(&f.percentile, "percentile", quant.DefaultPercentile, "percentile for --method percentile, in (0, 100]")
	fl.StringVar(&f.exclude, "exclude", "", "regular expression on node names to keep in float")
	fl.BoolVar(&f.keepHead, "keep-head", true, "keep the Detect-head Convs (the last Convs, feeding the box decode) in float")
	fl.StringVar(&f.imgsz, "imgsz", "", "calibration "+imgszUsage)
	fl.BoolVar(&f.progress, "progress", isTerminal(os.Stderr), "show a progress bar on stderr")
	f.register(c)
	_ = c.MarkFlagRequired("model")
	_ = c.MarkFlagRequired("out")
	return c
}

// maxCalibImages bounds --calib-images.
const maxCalibImages = 100000

// validate checks quantize's numeric flags and that no output is an input
// (nor another output), before any work.
func (f *quantizeFlags) validate() error {
	if f.model == "" || f.out == "" {
		return withCode(exitUsage, errors.New("--model and --out must not be empty"))
	}
	if _, _, err := parseImgszFlag(f.imgsz); err != nil {
		return err
	}
	if err := firstErr(
		intInRange("calib-images", int64(f.calibImages), 1, maxCalibImages, ""),
		floatInRange("percentile", f.percentile, 0, 100, true, false, ""),
		f.sensitivityFlags.validate(),
	); err != nil {
		return err
	}
	inputs := []string{f.model, f.calib, f.sensData}
	outs := []struct{ flag, path string }{{"out", f.out}, {"trt-calib-table", f.trtTable}, {"sensitivity-json", f.sensJSON}}
	for i, o := range outs {
		others := append([]string{f.cache}, inputs...)
		for _, p := range outs[:i] {
			others = append(others, p.path)
		}
		if err := refuseOverwrite(o.flag, o.path, others...); err != nil {
			return err
		}
	}
	// The calibration cache is read when it matches and written otherwise:
	// it must not be the model or the images.
	return refuseOverwrite("calib-cache", f.cache, inputs...)
}

func runQuantize(ctx context.Context, g *globalFlags, f *quantizeFlags, c *cobra.Command, stdout, stderr io.Writer) error {
	log, err := g.logger(stderr)
	if err != nil {
		return withCode(exitUsage, err)
	}
	r, err := f.recipe(c, log)
	if err != nil {
		return err
	}
	job, err := ptq.Open(r)
	if err != nil {
		return quantizeCode(err)
	}
	defer job.Close()
	if err := g.initRuntime(log); err != nil {
		return err
	}
	if f.progress && job.Images() > 0 {
		bar := progressbar.NewOptions(job.Images(), progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("calibrate"),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100e6))
		job.Options.Calibrate.Progress = func(done, total int) { _ = bar.Set(done) }
		defer func() { _ = bar.Finish() }()
	}
	job.Options.Calibrate.Runtime = g.runtimeOptions()
	job.Options.Calibrate.Runtime.Provider = "cpu"
	if f.sensitivity || f.autoExclude > 0 || f.maxDrop > 0 {
		names, err := runSensitivity(ctx, g, f, job.Model, job.Source(), job.Options, job.Height, job.Width, stdout, log)
		if err != nil {
			return err
		}
		job.Options.ExcludeNodes = names
	}
	res, err := job.Run(ctx)
	if err != nil {
		return err
	}
	// Checked again just before writing: the output could have been made a
	// link to the input since the start.
	if err := refuseOverwrite("out", f.out, f.model, f.calib, f.cache); err != nil {
		return err
	}
	if err := res.Model.Save(f.out); err != nil {
		return err
	}
	if f.trtTable != "" {
		if err := res.WriteTRTTable(f.trtTable); err != nil {
			return err
		}
	}
	writeQuantized(stdout, f.out, job, res)
	return nil
}

// recipe checks quantize's flags and maps them to the recipe; the
// per-target defaults are the recipe's, unless a flag is given.
func (f *quantizeFlags) recipe(c *cobra.Command, log *slog.Logger) (ptq.Recipe, error) {
	r := ptq.Recipe{Model: f.model, Calib: f.calib, Images: f.calibImages, Percentile: f.percentile, Cache: f.cache, Logger: log}
	if err := f.validate(); err != nil {
		return r, err
	}
	var err error
	if r.Target, err = quant.ParseTarget(f.target); err != nil {
		return r, withCode(exitUsage, err)
	}
	if f.method != "" {
		if r.Method, err = quant.ParseCalibMethod(f.method); err != nil {
			return r, withCode(exitUsage, err)
		}
	}
	if c.Flags().Changed("keep-head") {
		r.KeepHead = &f.keepHead
	}
	if f.exclude != "" {
		if r.Exclude, err = regexp.Compile(f.exclude); err != nil {
			return r, withCode(exitUsage, fmt.Errorf("--exclude: %w", err))
		}
	}
	if dir := filepath.Dir(f.out); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return r, withCode(exitUsage, fmt.Errorf("--out %q: folder %q does not exist", f.out, dir))
		}
	}
	r.Height, r.Width, err = parseImgszFlag(f.imgsz)
	return r, err
}

// quantizeCode maps the recipe's errors to exit codes: a calibration
// input at fault is a usage error.
func quantizeCode(err error) error {
	if errors.Is(err, ptq.ErrNoCalibration) {
		return withCode(exitUsage, errors.New("give --calib DIR (calibration images) or an existing --calib-cache"))
	}
	if _, ok := errors.AsType[*ptq.CalibError](err); ok {
		return withCode(exitUsage, err)
	}
	return modelCode(err)
}

// writeQuantized reports what was written.
func writeQuantized(w io.Writer, out string, job *ptq.Job, res *quant.Result) {
	r := onnx.Inspect(res.Model)
	skipped := ""
	if s := job.Skipped(); s != "" && !res.CacheHit {
		skipped = " (" + s + ")"
	}
	o := job.Options
	fmt.Fprintf(w, "wrote %s: target %s, calibrator %s, %d calibration images%s%s\n", out, o.Target, o.Method, res.Images, skipped, cacheNote(res.CacheHit))
	fmt.Fprintf(w, "  %s\n", res.Analysis.Summary())
	fmt.Fprintf(w, "  QuantizeLinear=%d DequantizeLinear=%d per-channel=%d\n", r.Quant.QuantizeLinear, r.Quant.DequantizeLinear, r.Quant.PerChannel)
}

func cacheNote(hit bool) string {
	if hit {
		return " (statistics from the calibration cache)"
	}
	return ""
}
