package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"gocv.io/x/gocv"

	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/source"
)

// Ranges of bench's flags: --frames decoded frames are held in memory.
const (
	maxBenchFrames = 1000
	maxBenchRuns   = 1000000
)

// defaultPipelineFrames is --frames of bench --pipeline when not given.
const defaultPipelineFrames = 300

// Size and seed of the synthetic frames used when bench has no --source.
const (
	benchNoiseWidth  = 768
	benchNoiseHeight = 576
	benchNoiseSeed   = 0x9e3779b97f4a7c15
)

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

// benchReport is the JSON output of bench.
type benchReport struct {
	Threads         int                    `json:"threads"`
	Warmup          int                    `json:"warmup"`
	Runs            int                    `json:"runs"`
	Frames          int                    `json:"frames"`
	Source          string                 `json:"source"`
	Results         []pipeline.BenchResult `json:"results"`
	SpeedupInfer    *float64               `json:"speedup_infer,omitempty"`
	SpeedupEndToEnd *float64               `json:"speedup_end_to_end,omitempty"`
	frameW, frameH  int
	speedups        [][2]float64 // infer and end to end, of each later model vs the first
}

func runBench(ctx context.Context, g *globalFlags, f *benchFlags, stdout, stderr io.Writer) error {
	log, err := g.logger(stderr)
	if err != nil {
		return withCode(exitUsage, err)
	}
	models := append(append([]string{}, f.models...), f.list...)
	if len(models) == 0 {
		return withCode(exitUsage, errors.New("no model: give --model (repeatable) or --models A,B"))
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
		return err
	}
	for _, m := range models {
		if m == "" {
			return withCode(exitUsage, errors.New("--model: empty model path"))
		}
	}
	h, w, err := parseImgszFlag(f.imgsz)
	if err != nil {
		return err
	}
	interp, err := f.interp.value()
	if err != nil {
		return err
	}
	var spec source.Spec
	if f.source != "" {
		spec, err = source.Parse(f.source)
		if err != nil {
			return withCode(exitSource, err)
		}
	}
	if f.pipeline && f.source == "" {
		return withCode(exitUsage, errors.New("--pipeline needs --source (a video file, which loops, or a live source)"))
	}
	if err := g.initRuntime(log); err != nil {
		return err
	}
	var dets []*pipeline.Detector
	defer func() {
		for _, d := range dets {
			d.Close()
		}
	}()
	for _, m := range models {
		for _, full := range benchDecodes(f) {
			d, err := pipeline.New(pipeline.Config{Model: m, Runtime: g.runtimeOptions(), Height: h, Width: w,
				Post: postprocess.DeployOptions(), Logger: log, FullGraph: full, Interp: interp})
			if err != nil {
				return modelCode(err)
			}
			dets = append(dets, d)
		}
	}

	if f.pipeline {
		return benchPipeline(ctx, dets, spec, f, log, stdout)
	}
	rep := &benchReport{Warmup: f.warmup, Runs: f.runs, Source: "synthetic noise"}
	var frames []gocv.Mat
	defer func() {
		for i := range frames {
			frames[i].Close()
		}
	}()
	if f.source != "" {
		var name string
		frames, name, err = readBenchFrames(ctx, spec, f.frames, log)
		if err != nil {
			return err
		}
		rep.Source = name
	} else {
		frames = noiseFrames(f.frames, benchNoiseWidth, benchNoiseHeight, benchNoiseSeed)
	}
	rep.Frames = len(frames)
	rep.frameW, rep.frameH = frames[0].Cols(), frames[0].Rows()

	var progress pipeline.Progress
	if f.progress {
		bar := progressbar.NewOptions(f.warmup+f.runs, progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("bench"), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100e6))
		progress = func(done, total int) { _ = bar.Set(done) }
		defer func() { _ = bar.Finish() }()
	}
	warmup := f.warmup
	if warmup == 0 {
		warmup = -1 // pipeline.Bench reads 0 as the default
	}
	res, err := pipeline.Bench(ctx, dets, pipeline.BenchConfig{Warmup: warmup, Runs: f.runs, Frames: frames}, progress)
	if err != nil {
		return err
	}
	rep.Results = res
	rep.Threads = res[0].Threads
	for _, r := range res[1:] {
		rep.speedups = append(rep.speedups, [2]float64{
			ratio(res[0].Infer.MedianMs, r.Infer.MedianMs),
			ratio(res[0].EndToEnd.MedianMs, r.EndToEnd.MedianMs),
		})
	}
	if len(rep.speedups) == 1 {
		rep.SpeedupInfer, rep.SpeedupEndToEnd = &rep.speedups[0][0], &rep.speedups[0][1]
	}
	if f.jsonOut {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(rep)
	}
	return rep.writeTable(stdout)
}

// ratio returns a/b, or 0 when b is not positive.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// readBenchFrames reads up to n frames from spec and returns clones of them
// (which the caller closes) and the source name.
func readBenchFrames(ctx context.Context, spec source.Spec, n int, log *slog.Logger) ([]gocv.Mat, string, error) {
	src, err := source.Open(ctx, spec, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "", withCode(exitSource, err)
	}
	defer src.Close()
	img := gocv.NewMat()
	defer img.Close()
	var frames []gocv.Mat
	for len(frames) < n {
		_, err := src.Read(ctx, &img)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			for i := range frames {
				frames[i].Close()
			}
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			return nil, "", withCode(exitSource, err)
		}
		frames = append(frames, img.Clone())
	}
	if len(frames) == 0 {
		return nil, "", withCode(exitSource, fmt.Errorf("source %s: no frame could be read", src.Name()))
	}
	if len(frames) < n {
		log.Info("source has fewer frames than --frames; cycling those", "source", src.Name(), "frames", len(frames))
	}
	return frames, src.Name(), nil
}

// noiseFrames returns n BGR frames of uniform random noise, the same for
// the same seed.
func noiseFrames(n, w, h int, seed uint64) []gocv.Mat {
	rng := rand.New(rand.NewPCG(seed, 1))
	frames := make([]gocv.Mat, n)
	for i := range frames {
		frames[i] = gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
		b, err := frames[i].DataPtrUint8()
		if err != nil {
			panic(err) // a new continuous 8-bit Mat always has a data pointer
		}
		for j := 0; j < len(b); j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && j+k < len(b); k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
	}
	return frames
}

// benchDecodes lists the FullGraph settings each model is timed with.
func benchDecodes(f *benchFlags) []bool {
	if f.bothDecodes {
		return []bool{false, true}
	}
	return []bool{f.fullGraph}
}

// writeTable prints the human-readable report.
func (r *benchReport) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "bench: %d runs per model after %d warm-up, interleaved; %d frame(s) of %dx%d from %s\n",
		r.Runs, r.Warmup, r.Frames, r.frameW, r.frameH, r.Source)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "model\tdecode\tprovider\tthreads\tinput\tinfer median ms\tinfer p95 ms\tend-to-end median ms\tend-to-end p95 ms")
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%dx%d\t%.2f\t%.2f\t%.2f\t%.2f\n", x.Model, x.Decode, x.Provider, x.Threads,
			x.Input[0], x.Input[1], x.Infer.MedianMs, x.Infer.P95Ms, x.EndToEnd.MedianMs, x.EndToEnd.P95Ms)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i, s := range r.speedups {
		a, b := r.Results[0].Model+" ("+r.Results[0].Decode+")", r.Results[i+1].Model+" ("+r.Results[i+1].Decode+")"
		fmt.Fprintf(w, "speed-up of %s vs %s (inference):  %.2fx\n", b, a, s[0])
		fmt.Fprintf(w, "speed-up of %s vs %s (end to end): %.2fx\n", b, a, s[1])
	}
	if len(r.speedups) > 0 {
		fmt.Fprintln(w, "(speed-up of B vs A = median(A) / median(B); above 1: B is faster)")
	}
	return nil
}

// pipelineReport is the JSON output of bench --pipeline: the first
// model's figures at the top, every model's in Results.
type pipelineReport struct {
	Source  string `json:"source"`
	Frames  int    `json:"frames"`
	Warmup  int    `json:"warmup"`
	Threads int    `json:"threads"`
	pipeline.PipelineResult
	Results []pipeline.PipelineResult `json:"results"`
}

// benchPipeline runs bench --pipeline.
func benchPipeline(ctx context.Context, dets []*pipeline.Detector, spec source.Spec, f *benchFlags, log *slog.Logger, stdout io.Writer) error {
	spec.Loop = true // a file long enough for any --frames
	name := ""
	open := func(ctx context.Context) (pipeline.FrameReader, func() error, error) {
		src, err := source.Open(ctx, spec, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, withCode(exitSource, err)
		}
		name = src.Name()
		return src, src.Close, nil
	}
	live := spec.Kind.Live()
	rep := &pipelineReport{Frames: f.frames, Warmup: f.warmup}
	for _, d := range dets {
		r, err := pipeline.BenchPipeline(ctx, d, open, live, f.warmup, f.frames)
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, r)
	}
	rep.Source = name
	rep.PipelineResult = rep.Results[0]
	rep.Threads = rep.Results[0].Threads
	if f.jsonOut {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(rep)
	}
	fmt.Fprintf(stdout, "bench --pipeline: %d frames after %d warm-up from %s, stages concurrent\n", rep.Frames, rep.Warmup, rep.Source)
	for _, r := range rep.Results {
		fmt.Fprintf(stdout, "\nmodel %s (%s, %d threads, input %dx%d): %.1f fps pipelined, inference median %.2f ms\n",
			r.Model, r.Provider, r.Threads, r.Input[0], r.Input[1], r.PipelineFPS, r.InferMedianMs)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "stage\tmedian ms\tp95 ms\tqueue wait ms\tbusy\tdropped")
		for _, n := range r.Order {
			x := r.Stages[n]
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.0f%%\t%d\n", n, x.MedianMs, x.P95Ms, x.WaitMedianMs, 100*x.Busy, x.Dropped)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
