package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/source"
)

// PipelineReport is the result of RunPipeline (its JSON is bench
// --pipeline --json's): the first model's figures at the top, every
// model's in Results.
type PipelineReport struct {
	Source  string `json:"source"`
	Frames  int    `json:"frames"`
	Warmup  int    `json:"warmup"`
	Threads int    `json:"threads"`
	pipeline.PipelineResult
	Results []pipeline.PipelineResult `json:"results"`
}

// RunPipeline times the real pipeline, each model in turn: the source is
// read on its own goroutine (a video file loops), and capture,
// preprocess, inference and postprocess run as concurrent stages, as in
// detect and serve, for Frames frames after Warmup untimed ones.
func RunPipeline(ctx context.Context, o Options) (*PipelineReport, error) {
	if o.Source == nil {
		return nil, errors.New("bench: the pipeline needs a source")
	}
	dets, err := o.detectors()
	if err != nil {
		return nil, err
	}
	defer closeAll(dets)
	spec := *o.Source
	spec.Loop = true // a file long enough for any number of frames
	name := ""
	open := func(ctx context.Context) (pipeline.FrameReader, func() error, error) {
		src, err := source.Open(ctx, spec, o.logger())
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, &pipeline.SourceError{Err: err}
		}
		name = src.Name()
		return src, src.Close, nil
	}
	rep := &PipelineReport{Frames: o.Frames, Warmup: o.Warmup}
	for _, d := range dets {
		r, err := pipeline.BenchPipeline(ctx, d, open, spec.Kind.Live(), o.Warmup, o.Frames)
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, r)
	}
	rep.Source = name
	rep.PipelineResult = rep.Results[0]
	rep.Threads = rep.Results[0].Threads
	return rep, nil
}

// WriteTable prints the human-readable report: each model's pipelined
// throughput and its stages.
func (rep *PipelineReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "bench --pipeline: %d frames after %d warm-up from %s, stages concurrent\n", rep.Frames, rep.Warmup, rep.Source)
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\nmodel %s (%s, %d threads, input %dx%d): %.1f fps pipelined, inference median %.2f ms\n",
			r.Model, r.Provider, r.Threads, r.Input[0], r.Input[1], r.PipelineFPS, r.InferMedianMs)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
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
