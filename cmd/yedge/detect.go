package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/spf13/cobra"

	"github.com/yedge/yedge/detect"
	"github.com/yedge/yedge/postprocess"
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
	spec, err := f.spec()
	if err != nil {
		return err
	}
	cfg, err := f.detectorConfig(g, postprocess.DeployOptions())
	if err != nil {
		return err
	}
	if cfg.Interp, err = f.interp.value(); err != nil {
		return err
	}
	out, err := openOut(f.out, stdout)
	if err != nil {
		return err
	}
	defer out.close()
	if err := g.initRuntime(log); err != nil {
		return err
	}
	sum, err := detect.Run(ctx, detect.Options{Detector: cfg, Source: spec, MaxFrames: f.maxFrames, Records: out.w,
		Save: f.save, Opened: out.keep, Logger: log})
	if sum != nil {
		sum.Write(stderr)
	}
	return detectCode(err, f.out)
}

// spec is the source of --source or --camera, with --reconnect and --loop.
func (f *detectFlags) spec() (source.Spec, error) {
	var spec source.Spec
	var err error
	switch {
	case f.source != "" && f.camera >= 0:
		return spec, withCode(exitUsage, errors.New("give either --source or --camera, not both"))
	case f.camera >= 0:
		spec = source.CameraSpec(f.camera)
	case f.source != "":
		if spec, err = source.Parse(f.source); err != nil {
			return spec, withCode(exitSource, err)
		}
	default:
		return spec, withCode(exitUsage, errors.New("no source: give --source or --camera"))
	}
	spec.Reconnect, spec.Loop = f.reconnect, f.loop
	return spec, nil
}

// detectCode names detect's outputs by their flags (out is --out) and
// maps its errors to exit codes.
func detectCode(err error, out string) error {
	if oe, ok := errors.AsType[*detect.OutputError](err); ok {
		msg := fmt.Errorf("--save %q: %w", oe.Path, oe.Err)
		if oe.Output == detect.OutputRecords {
			if out == "" {
				out = "stdout"
			}
			msg = fmt.Errorf("writing detections to %s: %w", out, oe.Err)
		}
		if oe.Usage {
			return withCode(exitUsage, msg)
		}
		return msg
	}
	return modelCode(err)
}

// outFile is detect's JSON-lines destination: stdout or --out. The file
// is opened before any work (one that cannot be created fails first) but
// emptied only once the model and the source are open (keep): a run that
// fails at the start leaves an earlier output as it was, and removes the
// empty file it created.
type outFile struct {
	w       io.Writer
	path    string
	f       *os.File
	created bool
	kept    bool
}

func openOut(path string, stdout io.Writer) (*outFile, error) {
	o := &outFile{w: stdout, path: path}
	if path == "" {
		return o, nil
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--out %q: cannot create the file: %w", path, unwrapPathError(err))
	}
	o.f, o.w, o.created = f, f, statErr != nil
	return o, nil
}

// keep empties a regular --out file for this run's records (/dev/null
// or a FIFO cannot be truncated and need not be).
func (o *outFile) keep() error {
	if o.f == nil {
		return nil
	}
	if st, err := o.f.Stat(); err == nil && st.Mode().IsRegular() {
		if err := o.f.Truncate(0); err != nil {
			return fmt.Errorf("--out %q: %w", o.path, unwrapPathError(err))
		}
	}
	o.kept = true
	return nil
}

// close closes the file, and removes it when this run created it and
// never kept it.
func (o *outFile) close() {
	if o.f == nil {
		return
	}
	o.f.Close()
	if o.created && !o.kept {
		os.Remove(o.path) // the empty file this failed run created
	}
}

// unwrapPathError drops the path from an *os.PathError (the caller names it).
func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}
