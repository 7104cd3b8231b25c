package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gocv.io/x/gocv"

	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/source"
)

type detectFlags struct {
	modelFlags
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
	fl := c.Flags()
	fl.StringVarP(&f.source, "source", "s", "", "source: device path, video file, URL, GStreamer pipeline, image or folder")
	fl.IntVar(&f.camera, "camera", -1, "V4L2 camera index")
	fl.StringVarP(&f.out, "out", "o", "", "write JSON lines to FILE instead of stdout")
	fl.StringVar(&f.save, "save", "", "save annotated frames: a folder for JPEGs, or a .mp4/.avi/.mkv file")
	fl.Int64Var(&f.maxFrames, "max-frames", 0, "stop after N frames (0: until the source ends)")
	fl.BoolVar(&f.reconnect, "reconnect", false, "reconnect live sources with backoff when they fail")
	fl.BoolVar(&f.loop, "loop", false, "restart video files at the end")
	return c
}

// frameRecord is one JSON line of detect output.
type frameRecord struct {
	Frame      int64           `json:"frame"`
	Time       string          `json:"time"`
	PTSms      float64         `json:"pts_ms"`
	Image      string          `json:"image,omitempty"`
	Width      int             `json:"width"`
	Height     int             `json:"height"`
	Ms         stageMs         `json:"ms"`
	Detections []detectionJSON `json:"detections"`
}

type stageMs struct {
	Read        float64 `json:"read"`
	Preprocess  float64 `json:"preprocess"`
	Infer       float64 `json:"infer"`
	Postprocess float64 `json:"postprocess"`
}

type detectionJSON struct {
	Class int        `json:"class"`
	Name  string     `json:"name"`
	Score float32    `json:"score"`
	Box   [4]float32 `json:"box"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func runDetect(ctx context.Context, g *globalFlags, f *detectFlags, stdout, stderr io.Writer) error {
	log, err := g.logger(stderr)
	if err != nil {
		return withCode(exitUsage, err)
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
	cfg.Logger = log
	if err := g.initRuntime(log); err != nil {
		return err
	}
	det, err := pipeline.New(cfg)
	if err != nil {
		return modelCode(err)
	}
	defer det.Close()

	// Output: stdout or a file, flushed after every frame so that a stop
	// loses nothing written so far.
	out := stdout
	if f.out != "" {
		file, err := os.Create(f.out)
		if err != nil {
			return withCode(exitFailure, fmt.Errorf("--out: %w", err))
		}
		defer file.Close()
		out = file
	}
	bw := bufio.NewWriter(out)
	defer bw.Flush()
	enc := json.NewEncoder(bw)

	src, err := source.Open(ctx, spec, log)
	if err != nil {
		return withCode(exitSource, err)
	}
	defer src.Close()
	saver, err := newSaver(f.save, src)
	if err != nil {
		return withCode(exitUsage, err)
	}
	defer saver.Close()

	var st runSummary
	img := gocv.NewMat()
	defer img.Close()
	start := time.Now()
	var runErr error
	for f.maxFrames == 0 || st.frames < f.maxFrames {
		t0 := time.Now()
		fr, err := src.Read(ctx, &img)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			if ctx.Err() != nil {
				break // Ctrl-C: a clean stop
			}
			runErr = withCode(exitSource, err)
			break
		}
		read := time.Since(t0)
		dets, tm, err := det.Detect(ctx, img)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			st.failed++
			log.Warn("frame failed", "frame", fr.Index, "err", err)
			continue
		}
		st.add(read, tm, len(dets))
		rec := frameRecord{Frame: fr.Index, Time: fr.Time.UTC().Format(time.RFC3339Nano), PTSms: ms(fr.PTS),
			Image: fr.Name, Width: img.Cols(), Height: img.Rows(),
			Ms:         stageMs{ms(read), ms(tm.Preprocess), ms(tm.Infer), ms(tm.Postprocess)},
			Detections: make([]detectionJSON, 0, len(dets))}
		for _, d := range dets {
			rec.Detections = append(rec.Detections, detectionJSON{Class: d.Class, Name: postprocess.Name(det.Names, d.Class),
				Score: round4(d.Score), Box: [4]float32{round2(d.Box.X1), round2(d.Box.Y1), round2(d.Box.X2), round2(d.Box.Y2)}})
		}
		if err := enc.Encode(rec); err != nil {
			return fmt.Errorf("writing detections: %w", err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("writing detections: %w", err)
		}
		if saver.active() {
			postprocess.Draw(&img, dets, det.Names)
			if err := saver.Write(img, fr); err != nil {
				log.Warn("saving frame failed", "frame", fr.Index, "err", err)
			}
		}
	}
	st.elapsed = time.Since(start)
	st.skipped = src.Skipped()
	st.write(stderr, det, src.Name())
	if runErr == nil && st.frames == 0 && st.skipped > 0 {
		runErr = withCode(exitSource, fmt.Errorf("source %s: no frame could be read", src.Name()))
	}
	return runErr
}

func round2(v float32) float32 { return float32(int64(v*100+0.5)) / 100 }
func round4(v float32) float32 { return float32(int64(v*10000+0.5)) / 10000 }

// runSummary accumulates per-stage timings for the end-of-run report.
type runSummary struct {
	frames, failed, skipped, dets int64
	elapsed                       time.Duration
	read, pre, infer, post        pipeline.LatencyStats
}

func (s *runSummary) add(read time.Duration, t pipeline.Timing, n int) {
	s.frames++
	s.dets += int64(n)
	s.read.Add(read)
	s.pre.Add(t.Preprocess)
	s.infer.Add(t.Infer)
	s.post.Add(t.Postprocess)
}

func (s *runSummary) write(w io.Writer, d *pipeline.Detector, name string) {
	fps := 0.0
	if s.elapsed > 0 {
		fps = float64(s.frames) / s.elapsed.Seconds()
	}
	fmt.Fprintf(w, "\nsource %s: %d frames in %.1fs (%.1f fps), %d detections, %d failed, %d skipped\n",
		name, s.frames, s.elapsed.Seconds(), fps, s.dets, s.failed, s.skipped)
	fmt.Fprintf(w, "model %s on %s, input %dx%d\n", d.Session.Path(), d.Session.Provider, d.Height, d.Width)
	fmt.Fprintf(w, "%-12s %10s %10s\n", "stage", "mean ms", "p95 ms")
	for _, r := range []struct {
		n string
		s *pipeline.LatencyStats
	}{{"read", &s.read}, {"preprocess", &s.pre}, {"infer", &s.infer}, {"postprocess", &s.post}} {
		fmt.Fprintf(w, "%-12s %10.2f %10.2f\n", r.n, ms(r.s.Mean()), ms(r.s.Percentile(95)))
	}
}

// saver writes annotated frames to a folder of JPEGs or a video file.
type saver struct {
	dir    string
	path   string
	fps    float64
	writer *gocv.VideoWriter
}

var videoExt = map[string]string{".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}

func newSaver(path string, src source.Source) (*saver, error) {
	s := &saver{}
	if path == "" {
		return s, nil
	}
	if _, ok := videoExt[strings.ToLower(filepath.Ext(path))]; ok {
		if dir := filepath.Dir(path); dir != "" {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return nil, fmt.Errorf("--save %q: folder %q does not exist", path, dir)
			}
		}
		s.path, s.fps = path, 10
		return s, nil
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("--save: %w", err)
	}
	s.dir = path
	return s, nil
}

func (s *saver) active() bool { return s.dir != "" || s.path != "" }

func (s *saver) Write(img gocv.Mat, fr source.Frame) error {
	if s.dir != "" {
		name := fmt.Sprintf("frame_%06d.jpg", fr.Index)
		if fr.Name != "" {
			name = strings.TrimSuffix(filepath.Base(fr.Name), filepath.Ext(fr.Name)) + ".jpg"
		}
		if !gocv.IMWrite(filepath.Join(s.dir, name), img) {
			return fmt.Errorf("writing %s failed", filepath.Join(s.dir, name))
		}
		return nil
	}
	if s.writer == nil {
		w, err := gocv.VideoWriterFile(s.path, videoExt[strings.ToLower(filepath.Ext(s.path))], s.fps, img.Cols(), img.Rows(), true)
		if err != nil {
			return fmt.Errorf("opening %s: %w", s.path, err)
		}
		s.writer = w
	}
	return s.writer.Write(img)
}

func (s *saver) Close() error {
	if s.writer != nil {
		return s.writer.Close()
	}
	return nil
}
