package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/pipeline/calib"
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

// modelInputSize reads H and W of the model's first input; dynamic dims
// take the requested size or 640.
func modelInputSize(m *onnx.Model, imgsz string) (int, int, error) {
	rh, rw, err := parseImgszFlag(imgsz)
	if err != nil {
		return 0, 0, err
	}
	h, w, err := pipeline.InputSize(m, rh, rw)
	if err != nil {
		return 0, 0, withCode(exitModel, err)
	}
	if err := pipeline.CheckInputSize(1, h, w); err != nil {
		return 0, 0, withCode(exitModel, fmt.Errorf("model %q: %w", m.Path, err))
	}
	return h, w, nil
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
	if err := f.validate(); err != nil {
		return err
	}
	target, err := quant.ParseTarget(f.target)
	if err != nil {
		return withCode(exitUsage, err)
	}
	method := quant.DefaultMethod(target)
	if f.method != "" {
		if method, err = quant.ParseCalibMethod(f.method); err != nil {
			return withCode(exitUsage, err)
		}
	}
	keepHead := quant.DefaultKeepHead(target)
	if c.Flags().Changed("keep-head") {
		keepHead = f.keepHead
	}
	var exclude *regexp.Regexp
	if f.exclude != "" {
		if exclude, err = regexp.Compile(f.exclude); err != nil {
			return withCode(exitUsage, fmt.Errorf("--exclude: %w", err))
		}
	}
	if dir := filepath.Dir(f.out); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return withCode(exitUsage, fmt.Errorf("--out %q: folder %q does not exist", f.out, dir))
		}
	}
	m, err := onnx.Load(f.model)
	if err != nil {
		return withCode(exitModel, err)
	}
	if quant.IsQDQ(m) {
		return withCode(exitModel, fmt.Errorf("model %q is already quantized (Q/DQ): yedge does not quantize twice; run it as it is (see `yedge inspect`)", f.model))
	}
	h, w, err := modelInputSize(m, f.imgsz)
	if err != nil {
		return err
	}
	var inputs *calib.ImageInputs
	if f.calib != "" {
		if inputs, err = calib.NewImageInputs(f.calib, f.calibImages, h, w); err != nil {
			return withCode(exitUsage, err)
		}
		defer inputs.Close()
	} else if f.cache == "" {
		return withCode(exitUsage, errors.New("give --calib DIR (calibration images) or an existing --calib-cache"))
	}
	if err := g.initRuntime(log); err != nil {
		return err
	}
	opts := quant.Options{Target: target, Method: method, Percentile: f.percentile, Exclude: exclude, KeepHead: keepHead,
		CachePath: f.cache, Preprocess: fmt.Sprintf("letterbox %dx%d", h, w), Logger: log}
	opts.Calibrate.Runtime = g.runtimeOptions()
	opts.Calibrate.Runtime.Provider = "cpu"
	opts.Calibrate.Logger = log
	var src quant.InputSource
	if inputs != nil {
		src = inputs
		if f.progress {
			bar := progressbar.NewOptions(inputs.Len(), progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("calibrate"),
				progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100e6))
			opts.Calibrate.Progress = func(done, total int) { _ = bar.Set(done) }
			defer func() { _ = bar.Finish() }()
		}
	}
	if f.sensitivity || f.autoExclude > 0 || f.maxDrop > 0 {
		names, err := runSensitivity(ctx, g, f, m, src, opts, h, w, stdout, log)
		if err != nil {
			return err
		}
		opts.ExcludeNodes = names
	}
	res, err := quant.Quantize(ctx, m, src, opts)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
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
	r := onnx.Inspect(res.Model)
	skipped := ""
	if inputs != nil && !res.CacheHit && inputs.Corrupt()+inputs.Unreadable() > 0 {
		skipped = fmt.Sprintf(" (%d corrupt and %d unreadable images skipped)", inputs.Corrupt(), inputs.Unreadable())
	}
	fmt.Fprintf(stdout, "wrote %s: target %s, calibrator %s, %d calibration images%s%s\n", f.out, target, method, res.Images, skipped, cacheNote(res.CacheHit))
	fmt.Fprintf(stdout, "  %s\n", res.Analysis.Summary())
	fmt.Fprintf(stdout, "  QuantizeLinear=%d DequantizeLinear=%d per-channel=%d\n", r.Quant.QuantizeLinear, r.Quant.DequantizeLinear, r.Quant.PerChannel)
	return nil
}

func cacheNote(hit bool) string {
	if hit {
		return " (statistics from the calibration cache)"
	}
	return ""
}
