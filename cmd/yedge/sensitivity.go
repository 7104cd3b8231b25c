package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/yedge/yedge/eval"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/quant"
)

// sensitivityFlags are quantize's layer-wise sensitivity options.
type sensitivityFlags struct {
	sensitivity     bool
	sensJSON        string
	sensImages      int
	autoExclude     int
	maxDrop         float64
	sensData        string
	maxDropMaxSteps int
}

func (s *sensitivityFlags) register(c *cobra.Command) {
	f := c.Flags()
	f.BoolVar(&s.sensitivity, "sensitivity", false, "rank layers by the output error of quantizing each alone, and print the table")
	f.StringVar(&s.sensJSON, "sensitivity-json", "", "write the sensitivity ranking as JSON")
	f.IntVar(&s.sensImages, "sensitivity-images", 8, fmt.Sprintf("calibration images used per layer for sensitivity, in [1, %d]", maxCalibImages))
	f.IntVar(&s.autoExclude, "auto-exclude", 0, fmt.Sprintf("keep the K most sensitive layers in float, in [0, %d] (0: none)", maxLayers))
	f.Float64Var(&s.maxDrop, "max-drop", 0, "keep as few of the most sensitive layers in float as needed for the mAP50-95 drop on --sensitivity-data to be at most X, in [0, 1) (0: off)")
	f.StringVar(&s.sensData, "sensitivity-data", "", "labelled YOLO dataset for --max-drop (default: the folder above --calib when it has labels/)")
	f.IntVar(&s.maxDropMaxSteps, "max-drop-steps", 8, fmt.Sprintf("most layers --max-drop may move to float, in [0, %d]", maxLayers))
}

// maxLayers bounds the layer counts of --auto-exclude and --max-drop-steps.
const maxLayers = 10000

// validate checks the ranges of the sensitivity flags (usage errors).
func (s *sensitivityFlags) validate() error {
	if err := firstErr(
		intInRange("auto-exclude", int64(s.autoExclude), 0, maxLayers, "0: none"),
		floatInRange("max-drop", s.maxDrop, 0, 1, false, true, "0: off"),
		intInRange("sensitivity-images", int64(s.sensImages), 1, maxCalibImages, ""),
		intInRange("max-drop-steps", int64(s.maxDropMaxSteps), 0, maxLayers, ""),
	); err != nil {
		return err
	}
	if s.autoExclude > 0 && s.maxDrop > 0 {
		return withCode(exitUsage, errors.New("give --auto-exclude or --max-drop, not both"))
	}
	return nil
}

// runSensitivity ranks the layers and returns the node names to keep in
// float for --auto-exclude / --max-drop.
func runSensitivity(ctx context.Context, g *globalFlags, f *quantizeFlags, m *onnx.Model, src quant.InputSource, opts quant.Options, h, w int, stdout io.Writer, log *slog.Logger) ([]string, error) {
	cache, _, err := quant.Statistics(ctx, m, src, opts)
	if err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("sensitivity analysis needs --calib images")
	}
	log.Info("sensitivity analysis: quantizing one layer at a time", "images", f.sensImages)
	ranking, err := quant.Sensitivity(ctx, m, cache, src, quant.SensitivityOptions{Method: opts.Method, Pct: opts.Percentile,
		Inputs: f.sensImages, Runtime: opts.Calibrate.Runtime})
	if err != nil {
		return nil, err
	}
	if f.sensitivity {
		if err := quant.WriteSensitivityTable(stdout, ranking); err != nil {
			return nil, err
		}
	}
	if f.sensJSON != "" {
		b, _ := json.MarshalIndent(ranking, "", "  ")
		if err := onnx.WriteFileAtomic(f.sensJSON, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	switch {
	case f.autoExclude > 0:
		var names []string
		for _, l := range ranking[:min(f.autoExclude, len(ranking))] {
			names = append(names, l.Node)
		}
		log.Info("keeping the most sensitive layers in float", "layers", names)
		return names, nil
	case f.maxDrop > 0:
		return maxDropSearch(ctx, g, f, m, src, opts, ranking, log)
	}
	return nil, nil
}

// maxDropSearch moves the most sensitive layers to float one at a time until
// the mAP50-95 drop against the float model, on a labelled calibration
// dataset, is within --max-drop.
func maxDropSearch(ctx context.Context, g *globalFlags, f *quantizeFlags, m *onnx.Model, src quant.InputSource, opts quant.Options, ranking []quant.LayerSensitivity, log *slog.Logger) ([]string, error) {
	data := f.sensData
	if data == "" && f.calib != "" {
		data = filepath.Dir(filepath.Clean(f.calib))
	}
	if _, err := os.Stat(filepath.Join(data, "labels")); data == "" || err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("--max-drop needs a labelled dataset: give --sensitivity-data DIR (images/, labels/); %q has no labels/", data))
	}
	ds, err := eval.LoadDataset(data)
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	tmp, err := os.MkdirTemp("", "yedge-maxdrop")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	score := func(path string) (float64, error) {
		cfg := pipeline.Config{Model: path, Runtime: g.runtimeOptions(), Post: postprocess.EvalOptions(), Logger: slog.New(slog.DiscardHandler)}
		cfg.Runtime.Provider = "cpu"
		d, err := pipeline.New(cfg)
		if err != nil {
			return 0, err
		}
		defer d.Close()
		r, _, err := pipeline.Evaluate(ctx, d, ds, postprocess.EvalOptions(), nil, log)
		return r.MAP50_95, err
	}
	base, err := score(m.Path)
	if err != nil {
		return nil, err
	}
	var names []string
	for step := 0; ; step++ {
		o := opts
		o.ExcludeNodes = names
		o.Logger = slog.New(slog.DiscardHandler)
		res, err := quant.Quantize(ctx, m, src, o)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(tmp, fmt.Sprintf("step%d.onnx", step))
		if err := res.Model.Save(p); err != nil {
			return nil, err
		}
		got, err := score(p)
		if err != nil {
			return nil, err
		}
		log.Info("max-drop search", "float_layers", len(names), "map50_95", fmt.Sprintf("%.4f", got), "fp32", fmt.Sprintf("%.4f", base))
		if base-got <= f.maxDrop {
			return names, nil
		}
		if step >= f.maxDropMaxSteps || step >= len(ranking) {
			log.Warn("--max-drop not reached within the step limit; keeping the layers found", "drop", base-got, "layers", len(names))
			return names, nil
		}
		names = append(names, ranking[step].Node)
	}
}
