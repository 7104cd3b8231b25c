// Package bench times models on the same input: interleaved passes on
// decoded frames (Run), or the real concurrent stages on a source
// (RunPipeline). It is `yedge bench` without its flags.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"text/tabwriter"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/source"
)

// Size and seed of the synthetic frames timed when there is no source.
const (
	NoiseWidth  = 768
	NoiseHeight = 576
	noiseSeed   = 0x9e3779b97f4a7c15
)

// Options are what a bench times.
type Options struct {
	// Models are timed in order; the first is the baseline of the
	// speed-ups. Each is timed once per entry of FullGraph (false: cut
	// before its Detect decode, the raw head decoded in Go).
	Models    []string
	FullGraph []bool
	Runtime   onnxrt.Options
	// Height and Width are the input size (0: the model's).
	Height, Width int
	Interp        preprocess.Interp
	// Source gives the frames; nil times seeded noise frames of
	// NoiseWidth x NoiseHeight.
	Source *source.Spec
	// Frames are the distinct frames cycled through (Run), or the frames
	// timed (RunPipeline); Warmup passes are not timed; Runs are the timed
	// passes per model (Run).
	Frames, Warmup, Runs int
	// Progress, when set, is told of Run's passes.
	Progress pipeline.Progress
	Logger   *slog.Logger
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// detectors loads every model with every decode, in order; the caller
// closes them.
func (o *Options) detectors() ([]*pipeline.Detector, error) {
	if len(o.Models) == 0 || len(o.FullGraph) == 0 {
		return nil, errors.New("bench: no model to time")
	}
	var dets []*pipeline.Detector
	for _, m := range o.Models {
		for _, full := range o.FullGraph {
			d, err := pipeline.New(pipeline.Config{Model: m, Runtime: o.Runtime, Height: o.Height, Width: o.Width,
				Post: postprocess.DeployOptions(), Logger: o.logger(), FullGraph: full, Interp: o.Interp})
			if err != nil {
				closeAll(dets)
				return nil, err
			}
			dets = append(dets, d)
		}
	}
	return dets, nil
}

func closeAll(dets []*pipeline.Detector) {
	for _, d := range dets {
		d.Close()
	}
}

// Report is the result of Run (its JSON is bench --json's).
type Report struct {
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

// Run times the models interleaved on the same frames: after the warm-up,
// every run makes one pass per model on the next frame, the model going
// first alternating from run to run, so that machine drift affects all
// models alike.
func Run(ctx context.Context, o Options) (*Report, error) {
	dets, err := o.detectors()
	if err != nil {
		return nil, err
	}
	defer closeAll(dets)
	rep := &Report{Warmup: o.Warmup, Runs: o.Runs, Source: "synthetic noise"}
	var frames []gocv.Mat
	defer func() {
		for i := range frames {
			frames[i].Close()
		}
	}()
	if o.Source != nil {
		if frames, rep.Source, err = readFrames(ctx, *o.Source, o.Frames, o.logger()); err != nil {
			return nil, err
		}
	} else {
		frames = noiseFrames(o.Frames, NoiseWidth, NoiseHeight, noiseSeed)
	}
	rep.Frames = len(frames)
	rep.frameW, rep.frameH = frames[0].Cols(), frames[0].Rows()
	warmup := o.Warmup
	if warmup == 0 {
		warmup = -1 // pipeline.Bench reads 0 as the default
	}
	res, err := pipeline.Bench(ctx, dets, pipeline.BenchConfig{Warmup: warmup, Runs: o.Runs, Frames: frames}, o.Progress)
	if err != nil {
		return nil, err
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
	return rep, nil
}

// ratio returns a/b, or 0 when b is not positive.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// readFrames reads up to n frames from spec and returns clones of them
// (which the caller closes) and the source name.
func readFrames(ctx context.Context, spec source.Spec, n int, log *slog.Logger) ([]gocv.Mat, string, error) {
	src, err := source.Open(ctx, spec, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		return nil, "", &pipeline.SourceError{Err: err}
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
			return nil, "", &pipeline.SourceError{Err: err}
		}
		frames = append(frames, img.Clone())
	}
	if len(frames) == 0 {
		return nil, "", &pipeline.SourceError{Err: fmt.Errorf("source %s: no frame could be read", src.Name())}
	}
	if len(frames) < n {
		log.Info("the source has fewer frames than asked for; cycling those", "source", src.Name(), "frames", len(frames), "asked", n)
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

// WriteTable prints the human-readable report.
func (r *Report) WriteTable(w io.Writer) error {
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
