package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gocv.io/x/gocv"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/quant"
	"github.com/yedge/yedge/sinks"
	"github.com/yedge/yedge/source"
)

type detectFlags struct {
	modelFlags
	interp    interpFlag
	source    string
	camera    int
	out       string
	save      string
	maxFrames int64
	reconnect bool
	loop      bool
}

func newDetectCmd(g *globalFlags) *cobra.Command {
	f := &detectFlags{}
	c := &cobra.Command{
		Use:   "detect --model MODEL (--source SRC | --camera N)",
		Short: "Run detection on a camera, video, stream, image or folder",
		Long: `Run detection and write one JSON line per frame (frame index, time, source
size, per-stage milliseconds, detections) to stdout or --out, optionally
saving annotated frames. A summary goes to stderr at the end.

Sources: --camera N (V4L2 index), or --source with a device path
(/dev/video0), a video file, an rtsp:// or http:// URL, a GStreamer
pipeline (e.g. "nvarguscamerasrc ! ... ! appsink"), an image or a folder
of images. Credentials in URLs are never printed.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runDetect(c.Context(), g, f, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	f.register(c, postprocess.DeployOptions())
	f.interp.register(c)
	fl := c.Flags()
	fl.StringVarP(&f.source, "source", "s", "", "source: device path, video file, URL, GStreamer pipeline, image or folder")
	fl.IntVar(&f.camera, "camera", -1, fmt.Sprintf("V4L2 camera index, in [0, %d] (-1: none, use --source)", maxCamera))
	fl.StringVarP(&f.out, "out", "o", "", "write JSON lines to FILE instead of stdout")
	fl.StringVar(&f.save, "save", "", "save annotated frames: a folder for JPEGs, or a .mp4/.avi/.mkv file")
	fl.Int64Var(&f.maxFrames, "max-frames", 0, "stop after N frames, N >= 0 (0: all frames, until the source ends)")
	fl.BoolVar(&f.reconnect, "reconnect", false, "reconnect live sources with backoff when they fail")
	fl.BoolVar(&f.loop, "loop", false, "restart video files at the end")
	return c
}

// maxCamera bounds --camera.
const maxCamera = 255

// validate checks detect's numeric flags and that no output is an input,
// before any work.
func (f *detectFlags) validate() error {
	if err := firstErr(
		f.modelFlags.validate(),
		second(f.interp.value()),
		intInRange("max-frames", f.maxFrames, 0, math.MaxInt64, "0: all frames"),
	); err != nil {
		return err
	}
	if f.camera != -1 {
		if err := intInRange("camera", int64(f.camera), 0, maxCamera, "-1: none"); err != nil {
			return err
		}
	}
	inputs := []string{f.model, f.names, f.source}
	if err := refuseOverwrite("out", f.out, append(inputs, f.save)...); err != nil {
		return err
	}
	return refuseOverwrite("save", f.save, inputs...)
}

func runDetect(ctx context.Context, g *globalFlags, f *detectFlags, stdout, stderr io.Writer) error {
	log, err := g.logger(stderr)
	if err != nil {
		return withCode(exitUsage, err)
	}
	if err := f.validate(); err != nil {
		return err
	}
	var spec source.Spec
	switch {
	case f.source != "" && f.camera >= 0:
		return withCode(exitUsage, errors.New("give either --source or --camera, not both"))
	case f.camera >= 0:
		spec = source.CameraSpec(f.camera)
	case f.source != "":
		spec, err = source.Parse(f.source)
		if err != nil {
			return withCode(exitSource, err)
		}
	default:
		return withCode(exitUsage, errors.New("no source: give --source or --camera"))
	}
	spec.Reconnect, spec.Loop = f.reconnect, f.loop
	cfg, err := f.detectorConfig(g, postprocess.DeployOptions())
	if err != nil {
		return err
	}
	if cfg.Interp, err = f.interp.value(); err != nil {
		return err
	}
	cfg.Logger = log
	// The outputs are created before any work: one that cannot be is an
	// error naming its path, not a warning after the run.
	saver, err := newSaver(f.save, spec)
	if err != nil {
		return err
	}
	defer saver.Close()
	// Output: stdout or a file, flushed after every frame so that a stop
	// loses nothing written so far. The file is opened now (so that one
	// that cannot be created fails before any work) but emptied only once
	// the model and the source are open: a run that fails at the start leaves an earlier
	// output as it was, and removes the empty file it created.
	out := stdout
	var outFile *os.File
	removeOut := false
	if f.out != "" {
		_, statErr := os.Stat(f.out)
		outFile, err = os.OpenFile(f.out, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("--out %q: cannot create the file: %w", f.out, unwrapPathError(err))
		}
		defer outFile.Close()
		removeOut = statErr != nil
		defer func() {
			if removeOut {
				os.Remove(f.out) // the empty file this failed run created
			}
		}()
		out = outFile
	}
	if err := g.initRuntime(log); err != nil {
		return err
	}
	det, err := pipeline.New(cfg)
	if err != nil {
		return modelCode(err)
	}
	defer det.Close()
	precision := modelPrecision(f.model)

	bw := bufio.NewWriter(out)
	defer bw.Flush()
	// The same record and encoder as the daemon's sinks.
	sink := sinks.NewWriter("detect", bw)

	src, err := source.Open(ctx, spec, log)
	if err != nil {
		return withCode(exitSource, err)
	}
	defer src.Close()
	if outFile != nil {
		// Only a regular file is emptied: /dev/null or a FIFO cannot be
		// truncated and need not be.
		if st, err := outFile.Stat(); err == nil && st.Mode().IsRegular() {
			if err := outFile.Truncate(0); err != nil {
				return fmt.Errorf("--out %q: %w", f.out, unwrapPathError(err))
			}
		}
		removeOut = false
	}

	// Capture and decode, preprocess, inference, and postprocess with the
	// outputs run as concurrent stages: files keep every frame in order, a
	// live source only its latest.
	var st runSummary
	stats := pipeline.NewStageStats()
	feed := pipeline.NewFeed(ctx, src, src.Live(), stats)
	defer feed.Close()
	jobs := feed.Jobs(det, f.maxFrames)
	start := time.Now()
	stages := pipeline.Stages{
		Stats: stats,
		Next: func(ctx context.Context) (*pipeline.Job, error) {
			j, err := jobs(ctx)
			if err != nil {
				if errors.Is(err, io.EOF) || ctx.Err() != nil {
					return nil, io.EOF
				}
				return nil, withCode(exitSource, err)
			}
			return j, nil
		},
		Deliver: func(j *pipeline.Job, _ int, dets []postprocess.Detection) error {
			fr := j.Tag.(*pipeline.FeedFrame)
			tm := j.Timing[0]
			img := fr.Img
			st.frames++
			st.dets += int64(len(dets))
			if fr.Frame.Corrupt {
				st.corrupt++
			}
			rec := sinks.NewRecord(sinks.Frame{Frame: fr.Frame, Stream: src.Name(), Width: img.Cols(), Height: img.Rows(), Read: fr.Read},
				precision, det.Names, dets, sinks.Stages(tm))
			if err := sink.Write(rec); err != nil {
				return fmt.Errorf("writing detections to %s: %w", outName(f.out), err)
			}
			if err := sink.Flush(); err != nil {
				return fmt.Errorf("writing detections to %s: %w", outName(f.out), err)
			}
			if saver.active() {
				postprocess.Draw(&img, dets, det.Names)
				if err := saver.Write(img, fr.Frame); err != nil {
					return err // an output the user asked for cannot be written
				}
			}
			return nil
		},
		Fail: func(j *pipeline.Job, _ int, stage string, err error) {
			st.failed++
			log.Warn("frame failed", "frame", j.Tag.(*pipeline.FeedFrame).Frame.Index, "stage", stage, "err", err)
		},
		Done: feed.Done,
	}
	var runErr error
	if err := stages.Run(ctx); err != nil && ctx.Err() == nil { // Ctrl-C is a clean stop
		runErr = err
	}
	st.elapsed = time.Since(start)
	st.skipped = src.Skipped()
	if err := saver.Close(); err != nil && runErr == nil {
		runErr = err
	}
	st.write(stderr, det, src.Name(), stats)
	if runErr == nil && st.frames == 0 {
		switch {
		case ctx.Err() != nil:
			runErr = ctx.Err() // interrupted before a result: 130
		case st.failed > 0:
			runErr = fmt.Errorf("source %s: detection failed on all %d frames", src.Name(), st.failed)
		default:
			// "Nothing happened" is not success: a source without a single
			// readable frame is a source error.
			runErr = withCode(exitSource, fmt.Errorf("source %s: no frame could be read (0 frames processed)", src.Name()))
		}
	}
	return runErr
}

// outName names detect's JSON-lines destination in errors.
func outName(out string) string {
	if out == "" {
		return "stdout"
	}
	return out
}

// modelPrecision is the record's precision: "int8" for a Q/DQ model, else
// "fp32" (also when the model cannot be read here; pipeline.New has
// already loaded it).
func modelPrecision(path string) string {
	m, err := onnx.Load(path)
	if err == nil && quant.IsQDQ(m) {
		return "int8"
	}
	return "fp32"
}

// runSummary counts the run's frames for the end-of-run report; the
// stage times are the stages' own (pipeline.StageStats).
type runSummary struct {
	frames, failed, skipped, dets int64
	corrupt                       int64 // frames flagged corrupt (processed, flagged in their record)
	elapsed                       time.Duration
}

func (s *runSummary) write(w io.Writer, d *pipeline.Detector, name string, stats *pipeline.StageStats) {
	fps := 0.0
	if s.elapsed > 0 {
		fps = float64(s.frames) / s.elapsed.Seconds()
	}
	fig, _ := stats.Figures()
	fmt.Fprintf(w, "\nsource %s: %d frames in %.1fs (%.1f fps), %d detections, %d failed, %d skipped, %d corrupt, %d dropped (live: replaced by a newer frame)\n",
		name, s.frames, s.elapsed.Seconds(), fps, s.dets, s.failed, s.skipped, s.corrupt, fig[pipeline.StageRead].Dropped)
	fmt.Fprintf(w, "model %s on %s, input %dx%d, stages run concurrently\n", d.Path(), d.Provider(), d.Height, d.Width)
	fmt.Fprintf(w, "%-12s %10s %10s %14s %6s\n", "stage", "mean ms", "p95 ms", "queue wait ms", "busy")
	for _, n := range []string{pipeline.StageRead, pipeline.StagePreprocess, pipeline.StageInfer, pipeline.StagePostprocess} {
		f := fig[n]
		fmt.Fprintf(w, "%-12s %10.2f %10.2f %14.2f %5.0f%%\n", n, f.MeanMs, f.P95Ms, f.WaitMedianMs, 100*f.Busy)
	}
	if f, ok := fig[pipeline.StageSink]; ok {
		fmt.Fprintf(w, "%-12s %10.2f %10s %14s %5.0f%%\n", "output", f.MeanMs, "", "", 100*f.Busy)
	}
}

// saver writes annotated frames to a folder of JPEGs or a video file. Every
// failure to write is an error naming the path: an output the user asked
// for is never silently missing.
type saver struct {
	dir     string
	path    string
	fps     float64
	writer  *gocv.VideoWriter
	created bool // path did not exist before: an empty one is ours to remove
	frames  int
}

var videoExt = map[string]string{".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}

// newSaver prepares the --save output and checks now that it can be
// created: a video file is opened for writing, a folder is created.
func newSaver(path string, spec source.Spec) (*saver, error) {
	s := &saver{}
	if path == "" {
		return s, nil
	}
	if _, ok := videoExt[strings.ToLower(filepath.Ext(path))]; ok {
		dir := filepath.Dir(path)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, withCode(exitUsage, fmt.Errorf("--save %q: folder %q does not exist", path, dir))
		}
		_, statErr := os.Stat(path)
		fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--save %q: cannot create the file: %w", path, unwrapPathError(err))
		}
		fd.Close()
		s.path, s.fps, s.created = path, 10, statErr != nil
		return s, nil
	}
	// A folder: it must not be the source folder (annotated frames would
	// replace the images).
	if spec.Kind == source.Folder {
		if err := refuseOverwrite("save", path, spec.URI); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("--save %q: cannot create the folder: %w", path, unwrapPathError(err))
	}
	s.dir = path
	return s, nil
}

// unwrapPathError drops the path from an *os.PathError (the caller names it).
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (s *saver) active() bool { return s.dir != "" || s.path != "" }

// Write saves one annotated frame.
func (s *saver) Write(img gocv.Mat, fr source.Frame) error {
	if s.dir != "" {
		name := fmt.Sprintf("frame_%06d.jpg", fr.Index)
		if fr.Name != "" {
			name = strings.TrimSuffix(filepath.Base(fr.Name), filepath.Ext(fr.Name)) + ".jpg"
		}
		p := filepath.Join(s.dir, name)
		if err := refuseOverwrite("save", p, fr.Name); err != nil {
			return err
		}
		if !gocv.IMWrite(p, img) {
			return fmt.Errorf("--save: cannot write %q", p)
		}
		s.frames++
		return nil
	}
	if s.writer == nil {
		w, err := gocv.VideoWriterFile(s.path, videoExt[strings.ToLower(filepath.Ext(s.path))], s.fps, img.Cols(), img.Rows(), true)
		if err != nil {
			return fmt.Errorf("--save %q: cannot open the video writer: %w", s.path, err)
		}
		s.writer = w
		if !w.IsOpened() {
			return fmt.Errorf("--save %q: OpenCV cannot open a video writer for this file (codec %s)", s.path, videoExt[strings.ToLower(filepath.Ext(s.path))])
		}
	}
	if err := s.writer.Write(img); err != nil {
		return fmt.Errorf("--save %q: %w", s.path, err)
	}
	s.frames++
	return nil
}

// Close finishes the video and checks that the file was really written
// (it exists and is not empty). Closing twice returns nil.
func (s *saver) Close() error {
	if s.path == "" {
		return nil
	}
	path := s.path
	s.path = ""
	if s.writer != nil {
		err := s.writer.Close()
		s.writer = nil
		if err != nil {
			return fmt.Errorf("--save %q: %w", path, err)
		}
	}
	st, err := os.Stat(path)
	switch {
	case s.frames == 0:
		if s.created && err == nil && st.Size() == 0 {
			os.Remove(path) // the empty file this run created
		}
		return nil
	case err != nil:
		return fmt.Errorf("--save %q: the video was not written: %w", path, unwrapPathError(err))
	case st.Size() == 0:
		return fmt.Errorf("--save %q: the video file is empty after %d frames", path, s.frames)
	}
	return nil
}
