package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/yedge/yedge/bench"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/source"
)

// Ranges of bench's flags: --frames decoded frames are held in memory.
const (
	maxBenchFrames = 1000
	maxBenchRuns   = 1000000
)

// defaultPipelineFrames is --frames of bench --pipeline when not given.
const defaultPipelineFrames = 300

type benchFlags struct {
	models   []string
	list     []string
	source   string
	frames   int
	warmup   int
	runs     int
	imgsz    string
	interp   interpFlag
	jsonOut  bool
	progress bool
	pipeline bool
	// fullGraph and bothDecodes choose the decode of every model.
	fullGraph   bool
	bothDecodes bool
}

func newBenchCmd(g *globalFlags) *cobra.Command {
	f := &benchFlags{}
	c := &cobra.Command{
		Use:   "bench --model A.onnx [--model B.onnx ...]",
		Short: "Compare the speed of models (e.g. FP32 vs int8) on the same input",
		Long: `Time one or more models on the same frames, interleaved: after --warmup
untimed passes each, every run makes one pass per model on the next frame,
the model going first alternating from run to run (AB, BA, AB, ...), so that
machine drift affects all models alike. A pass is preprocess + infer +
postprocess; inference is also timed alone.

Frames: the first --frames frames of --source (a video, an image or a
folder of images), cycled; without --source, seeded random-noise frames of
768x576. Threads are onnxruntime's intra-op threads (global --threads).
Models run cut before their Detect decode (raw-head decode in Go) when the
head is recognised; --full-graph runs the full graphs, --both-decodes times
each model both ways in the same run.

The table gives median and p95 milliseconds per model; with two or more
models, "speed-up of B vs A" is median(A) / median(B) for each later model B
against the first model A (above 1: B is faster). --json prints the keys
threads, warmup, runs, frames, source, results (model, provider, threads,
input_hw, decode, infer, end_to_end with median_ms, p95_ms, mean_ms, min_ms, runs)
and, for exactly two models, speedup_infer and speedup_end_to_end.

--pipeline runs the real pipeline instead: --source is read on its own
goroutine (a video file loops), and capture, preprocess, inference and
postprocess run as concurrent stages, as in detect and serve, for
--frames frames after --warmup untimed ones, each model in turn. It
reports the pipelined throughput and, for each stage, its median time,
its median queue wait and its busy share (busy time over wall time: the
stage near 100% is the bottleneck). --model null is a built-in model with
YOLOv5's input and output shapes whose inference takes no time: its
throughput is the ceiling the CPU stages allow. --json prints
pipeline_fps, stages (stage -> median_ms, p95_ms, wait_median_ms, busy,
frames, dropped) and infer_median_ms of the first model, and results with
every model's.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if f.pipeline && !c.Flags().Changed("frames") {
				f.frames = defaultPipelineFrames
			}
			return runBench(c.Context(), g, f, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	fl := c.Flags()
	fl.StringArrayVarP(&f.models, "model", "m", nil, "YOLOv5 ONNX model to time (repeatable; the first is the baseline)")
	fl.StringSliceVar(&f.list, "models", nil, "comma-separated models to time, after those of --model")
	fl.StringVarP(&f.source, "source", "s", "", "input frames: a video, an image or a folder of images (default: seeded 768x576 noise)")
	fl.IntVar(&f.frames, "frames", 8, fmt.Sprintf("number of distinct frames to read and cycle through, in [1, %d]", maxBenchFrames))
	fl.IntVar(&f.warmup, "warmup", pipeline.DefaultBenchWarmup, fmt.Sprintf("untimed passes per model before timing, in [0, %d]", maxBenchRuns))
	fl.IntVar(&f.runs, "runs", pipeline.DefaultBenchRuns, fmt.Sprintf("timed passes per model, in [1, %d]", maxBenchRuns))
	fl.StringVar(&f.imgsz, "imgsz", "", imgszUsage)
	fl.BoolVar(&f.fullGraph, "full-graph", false, fullGraphUsage)
	fl.BoolVar(&f.bothDecodes, "both-decodes", false, "time every model twice in the same run: raw-head decode, then --full-graph")
	f.interp.register(c)
	fl.BoolVar(&f.jsonOut, "json", false, "print machine-readable JSON")
	fl.BoolVar(&f.pipeline, "pipeline", false, fmt.Sprintf("time the pipelined stages on --source for --frames frames (in [1, %d], default %d here); --model null gives the CPU stages' ceiling", maxBenchRuns, defaultPipelineFrames))
	fl.BoolVar(&f.progress, "progress", isTerminal(os.Stderr), "show a progress bar on stderr (default: when stderr is a terminal)")
	return c
}

func runBench(ctx context.Context, g *globalFlags, f *benchFlags, stdout, stderr io.Writer) error {
	log, err := g.logger(stderr)
	if err != nil {
		return withCode(exitUsage, err)
	}
	o, err := f.options(log)
	if err != nil {
		return err
	}
	if err := g.initRuntime(log); err != nil {
		return err
	}
	o.Runtime = g.runtimeOptions()
	var rep interface{ WriteTable(io.Writer) error }
	if f.pipeline {
		rep, err = bench.RunPipeline(ctx, o)
	} else {
		if f.progress {
			bar := progressbar.NewOptions(f.warmup+f.runs, progressbar.OptionSetWriter(stderr),
				progressbar.OptionSetDescription("bench"), progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100e6))
			o.Progress = func(done, total int) { _ = bar.Set(done) }
			defer func() { _ = bar.Finish() }()
		}
		rep, err = bench.Run(ctx, o)
	}
	if err != nil {
		return modelCode(err)
	}
	if f.jsonOut {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(rep)
	}
	return rep.WriteTable(stdout)
}

// options checks bench's flags and maps them to the bench's options (the
// runtime's come from the global flags).
func (f *benchFlags) options(log *slog.Logger) (bench.Options, error) {
	o := bench.Options{Models: append(append([]string{}, f.models...), f.list...), Frames: f.frames, Warmup: f.warmup,
		Runs: f.runs, FullGraph: []bool{f.fullGraph}, Logger: log}
	if f.bothDecodes {
		o.FullGraph = []bool{false, true}
	}
	if len(o.Models) == 0 {
		return o, withCode(exitUsage, errors.New("no model: give --model (repeatable) or --models A,B"))
	}
	maxFrames := maxBenchFrames
	if f.pipeline {
		maxFrames = maxBenchRuns // streamed, not held in memory
	}
	if err := firstErr(
		intInRange("frames", int64(f.frames), 1, int64(maxFrames), ""),
		intInRange("warmup", int64(f.warmup), 0, maxBenchRuns, ""),
		intInRange("runs", int64(f.runs), 1, maxBenchRuns, ""),
	); err != nil {
		return o, err
	}
	for _, m := range o.Models {
		if m == "" {
			return o, withCode(exitUsage, errors.New("--model: empty model path"))
		}
	}
	var err error
	if o.Height, o.Width, err = parseImgszFlag(f.imgsz); err != nil {
		return o, err
	}
	if o.Interp, err = f.interp.value(); err != nil {
		return o, err
	}
	if f.source != "" {
		spec, err := source.Parse(f.source)
		if err != nil {
			return o, withCode(exitSource, err)
		}
		o.Source = &spec
	}
	if f.pipeline && f.source == "" {
		return o, withCode(exitUsage, errors.New("--pipeline needs --source (a video file, which loops, or a live source)"))
	}
	return o, nil
}
