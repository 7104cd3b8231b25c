package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/yedge/yedge/eval"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
)

type evalFlags struct {
	modelFlags
	data      string
	jsonOut   bool
	progress  bool
	ignoreBad bool
}

func newEvalCmd(g *globalFlags) *cobra.Command {
	f := &evalFlags{}
	c := &cobra.Command{
		Use:   "eval --model MODEL --data DIR",
		Short: "COCO-style evaluation (P, R, mAP50, mAP50-95) on a YOLO-format dataset",
		Long: `Evaluate a model on a YOLO-format dataset (DIR/images, DIR/labels, DIR/data.yaml)
with the Ultralytics YOLOv5 protocol: square letterbox at the model input size,
conf 0.001, class-aware NMS IoU 0.6, multi-label, 300 detections, AP with
101-point interpolation over IoU 0.50:0.05:0.95. --json prints the keys
map50, map50_95, precision, recall, images, labels, per_class, skipped
(unreadable images), corrupt (truncated images, skipped) and bad_labels.

A label whose class the model does not have is an error naming FILE:LINE;
with --ignore-bad-labels it is dropped, warned about and counted.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runEval(c.Context(), g, f, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	f.register(c, postprocess.EvalOptions())
	c.Flags().StringVar(&f.data, "data", "", "dataset folder (images/, labels/, data.yaml)")
	c.Flags().BoolVar(&f.jsonOut, "json", false, "print machine-readable JSON")
	c.Flags().BoolVar(&f.ignoreBad, "ignore-bad-labels", false, "drop (and count) labels whose class the model does not have, instead of failing")
	c.Flags().BoolVar(&f.progress, "progress", isTerminal(os.Stderr), "show a progress bar on stderr (default: when stderr is a terminal)")
	_ = c.MarkFlagRequired("data")
	return c
}

func runEval(ctx context.Context, g *globalFlags, f *evalFlags, stdout, stderr io.Writer) error {
	log, err := g.logger(stderr)
	if err != nil {
		return withCode(exitUsage, err)
	}
	post := postprocess.EvalOptions()
	cfg, err := f.detectorConfig(g, post)
	if err != nil {
		return err
	}
	cfg.Logger = log
	ds, err := eval.LoadDataset(f.data)
	if err != nil {
		return withCode(exitUsage, err)
	}
	if err := g.initRuntime(log); err != nil {
		return err
	}
	det, err := pipeline.New(cfg)
	if err != nil {
		return modelCode(err)
	}
	defer det.Close()
	var progress pipeline.Progress
	if f.progress {
		bar := progressbar.NewOptions(len(ds.Images), progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("eval"), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100e6))
		progress = func(done, total int) { _ = bar.Set(done) }
		defer func() { _ = bar.Finish() }()
	}
	res, st, err := pipeline.EvaluateWith(ctx, det, ds, pipeline.EvalOptions{Post: cfg.Post, IgnoreBadLabels: f.ignoreBad, Progress: progress, Logger: log})
	if err != nil {
		var be *eval.BadClassError
		if errors.As(err, &be) {
			return withCode(exitUsage, fmt.Errorf("%w (give --ignore-bad-labels to drop such labels)", err))
		}
		return err
	}
	if st.Skipped > 0 {
		log.Warn("unreadable images skipped", "count", st.Skipped)
	}
	if st.Corrupt > 0 {
		log.Warn("corrupt images skipped", "count", st.Corrupt)
	}
	if st.BadLabels > 0 {
		log.Warn("labels with a class the model does not have were ignored", "count", st.BadLabels)
	}
	if f.jsonOut {
		out := struct {
			eval.Result
			Model     string `json:"model"`
			Provider  string `json:"provider"`
			Input     [2]int `json:"input_hw"`
			Skipped   int    `json:"skipped"`
			Corrupt   int    `json:"corrupt"`
			BadLabels int    `json:"bad_labels"`
		}{res, f.model, det.Provider(), [2]int{det.Height, det.Width}, st.Skipped, st.Corrupt, st.BadLabels}
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(out)
	}
	fmt.Fprintf(stdout, "model %s (%s, input %dx%d) on %s\n", f.model, det.Provider(), det.Height, det.Width, f.data)
	if err := res.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "skipped: %d unreadable, %d corrupt images; %d labels ignored\n", st.Skipped, st.Corrupt, st.BadLabels)
	return nil
}
