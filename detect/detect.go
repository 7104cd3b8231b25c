// Package detect runs a detector over one source: every frame of a file,
// or the latest of a live source, through the concurrent stages
// (pipeline.Feed and pipeline.Stages), one record per frame (the sinks
// schema the daemon writes too), and annotated frames saved on request.
// It is `yedge detect` without its flags.
package detect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/quant"
	"github.com/yedge/yedge/sinks"
	"github.com/yedge/yedge/source"
)

// Options are what Run runs.
type Options struct {
	// Detector is the model and its settings.
	Detector pipeline.Config
	// Source is the source to read; MaxFrames stops after that many
	// frames (0: until it ends).
	Source    source.Spec
	MaxFrames int64
	// Records receives one JSON line per frame, flushed after each, so
	// that a stop loses nothing written; nil writes none.
	Records io.Writer
	// Save is a folder for annotated JPEGs or a .mp4/.avi/.mkv file;
	// empty saves none.
	Save string
	// Opened, when set, is called once the model and the source are open,
	// before the first frame; an error stops the run (the command empties
	// its output file only then).
	Opened func() error
	Logger *slog.Logger
}

// Summary is what a run did, for its report.
type Summary struct {
	Source string
	// Model, Provider and the input size describe the detector.
	Model, Provider                     string
	Height, Width                       int
	Frames, Detections, Failed, Skipped int64
	Corrupt                             int64 // processed, flagged in their record
	Elapsed                             time.Duration
	Stats                               *pipeline.StageStats
}

// OutputError is a failure of an output the caller asked for: Output is
// the option at fault (OutputRecords, OutputSave), Path its file or
// folder. Usage marks an output that cannot be one (no such folder, an
// input it would overwrite).
type OutputError struct {
	Output, Path string
	Usage        bool
	Err          error
}

// The outputs an OutputError names.
const (
	OutputRecords = "records"
	OutputSave    = "save"
)

func (e *OutputError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %v", e.Output, e.Err)
	}
	return fmt.Sprintf("%s %q: %v", e.Output, e.Path, e.Err)
}
func (e *OutputError) Unwrap() error { return e.Err }

// Run loads the detector, opens the source and detects until the source
// ends, MaxFrames were processed or ctx is done (a clean stop: the summary
// of what was done and no error, unless nothing was). The outputs are
// checked before the model loads.
func Run(ctx context.Context, o Options) (*Summary, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	o.Detector.Logger = log
	sv, err := newSaver(o.Save, o.Source)
	if err != nil {
		return nil, err
	}
	defer sv.Close()
	det, err := pipeline.New(o.Detector)
	if err != nil {
		return nil, err
	}
	defer det.Close()
	src, err := source.Open(ctx, o.Source, log)
	if err != nil {
		return nil, &pipeline.SourceError{Err: err}
	}
	defer src.Close()
	if o.Opened != nil {
		if err := o.Opened(); err != nil {
			return nil, err
		}
	}
	r := &run{o: o, det: det, src: src, saver: sv, precision: Precision(o.Detector.Model), log: log,
		sum: &Summary{Source: src.Name(), Model: det.Path(), Provider: det.Provider(), Height: det.Height, Width: det.Width,
			Stats: pipeline.NewStageStats()}}
	if o.Records != nil {
		bw := bufio.NewWriter(o.Records)
		defer bw.Flush()
		r.records = sinks.NewWriter("detect", bw)
	}
	runErr := r.stages(ctx)
	r.sum.Skipped = src.Skipped()
	if err := sv.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil && r.sum.Frames == 0 {
		runErr = r.nothingDone(ctx)
	}
	return r.sum, runErr
}

// run is one Run's state.
type run struct {
	o         Options
	det       *pipeline.Detector
	src       source.Source
	saver     *saver
	records   *sinks.Writer
	precision string
	log       *slog.Logger
	sum       *Summary
}

// stages runs capture and decode, preprocess, inference, and postprocess
// with the outputs as concurrent stages: files keep every frame in order,
// a live source only its latest.
func (r *run) stages(ctx context.Context) error {
	feed := pipeline.NewFeed(ctx, r.src, r.src.Live(), r.sum.Stats)
	defer feed.Close()
	jobs := feed.Jobs(r.det, r.o.MaxFrames)
	start := time.Now()
	defer func() { r.sum.Elapsed = time.Since(start) }()
	err := pipeline.Stages{
		Stats: r.sum.Stats,
		Next: func(ctx context.Context) (*pipeline.Job, error) {
			j, err := jobs(ctx)
			if err != nil {
				if errors.Is(err, io.EOF) || ctx.Err() != nil {
					return nil, io.EOF
				}
				return nil, &pipeline.SourceError{Err: err}
			}
			return j, nil
		},
		Deliver: func(j *pipeline.Job, _ int, dets []postprocess.Detection) error {
			return r.deliver(j.Tag.(*pipeline.FeedFrame), j.Timing[0], dets)
		},
		Fail: func(j *pipeline.Job, _ int, stage string, err error) {
			r.sum.Failed++
			r.log.Warn("frame failed", "frame", j.Tag.(*pipeline.FeedFrame).Frame.Index, "stage", stage, "err", err)
		},
		Done: feed.Done,
	}.Run(ctx)
	if ctx.Err() != nil {
		return nil // Ctrl-C is a clean stop
	}
	return err
}

// deliver writes one frame's record and its annotated image.
func (r *run) deliver(fr *pipeline.FeedFrame, tm pipeline.Timing, dets []postprocess.Detection) error {
	img := fr.Img
	r.sum.Frames++
	r.sum.Detections += int64(len(dets))
	if fr.Frame.Corrupt {
		r.sum.Corrupt++
	}
	if r.records != nil {
		rec := sinks.NewRecord(sinks.Frame{Frame: fr.Frame, Stream: r.src.Name(), Width: img.Cols(), Height: img.Rows(), Read: fr.Read},
			r.precision, r.det.Names, dets, sinks.Stages(tm))
		if err := r.records.Write(rec); err != nil {
			return &OutputError{Output: OutputRecords, Err: err}
		}
		if err := r.records.Flush(); err != nil {
			return &OutputError{Output: OutputRecords, Err: err}
		}
	}
	if r.saver.active() {
		postprocess.Draw(&img, dets, r.det.Names)
		return r.saver.Write(img, fr.Frame) // an output asked for cannot be written
	}
	return nil
}

// nothingDone is the error of a run that processed no frame: "nothing
// happened" is not success.
func (r *run) nothingDone(ctx context.Context) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err() // interrupted before a result
	case r.sum.Failed > 0:
		return fmt.Errorf("source %s: detection failed on all %d frames", r.src.Name(), r.sum.Failed)
	}
	return &pipeline.SourceError{Err: fmt.Errorf("source %s: no frame could be read (0 frames processed)", r.src.Name())}
}

// Precision is a record's precision for a model file: "int8" for a Q/DQ
// model, else "fp32" (also when the model cannot be read here; the
// detector has loaded it already).
func Precision(path string) string {
	m, err := onnx.Load(path)
	if err == nil && quant.IsQDQ(m) {
		return "int8"
	}
	return "fp32"
}

// Write writes the end-of-run report: frames, rates, counts, and the
// stages' times.
func (s *Summary) Write(w io.Writer) {
	fps := 0.0
	if s.Elapsed > 0 {
		fps = float64(s.Frames) / s.Elapsed.Seconds()
	}
	fig, _ := s.Stats.Figures()
	fmt.Fprintf(w, "\nsource %s: %d frames in %.1fs (%.1f fps), %d detections, %d failed, %d skipped, %d corrupt, %d dropped (live: replaced by a newer frame)\n",
		s.Source, s.Frames, s.Elapsed.Seconds(), fps, s.Detections, s.Failed, s.Skipped, s.Corrupt, fig[pipeline.StageRead].Dropped)
	fmt.Fprintf(w, "model %s on %s, input %dx%d, stages run concurrently\n", s.Model, s.Provider, s.Height, s.Width)
	fmt.Fprintf(w, "%-12s %10s %10s %14s %6s\n", "stage", "mean ms", "p95 ms", "queue wait ms", "busy")
	for _, n := range []string{pipeline.StageRead, pipeline.StagePreprocess, pipeline.StageInfer, pipeline.StagePostprocess} {
		f := fig[n]
		fmt.Fprintf(w, "%-12s %10.2f %10.2f %14.2f %5.0f%%\n", n, f.MeanMs, f.P95Ms, f.WaitMedianMs, 100*f.Busy)
	}
	if f, ok := fig[pipeline.StageSink]; ok {
		fmt.Fprintf(w, "%-12s %10.2f %10s %14s %5.0f%%\n", "output", f.MeanMs, "", "", 100*f.Busy)
	}
}
