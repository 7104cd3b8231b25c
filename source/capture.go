package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"gocv.io/x/gocv"
)

// capture is one opened gocv.VideoCapture with the Mat that asynchronous
// reads decode into. Once handed to a reading goroutine that was abandoned
// (stall, cancellation) it belongs to that goroutine, which closes it.
type capture struct {
	vc     *gocv.VideoCapture
	buf    gocv.Mat
	hasBuf bool
}

func (c *capture) close() {
	c.vc.Close()
	if c.hasBuf {
		c.buf.Close()
	}
}

// captureSource reads cameras, devices, video files, streams and pipelines
// through gocv.VideoCapture.
type captureSource struct {
	base
	cur   *capture // nil when not open (after a failure, or abandoned)
	bo    *Backoff
	async bool  // read in a goroutine (live sources, or with ReadTimeout)
	fails int   // reconnect attempts since the last frame
	pos   int64 // frames read from the current video file
	eof   bool  // a video file without Loop reached its end
	err   error // sticky terminal error
	// bg is closed once the goroutine of an abandoned open or read has
	// returned and closed its capture; nil when none is pending. The next
	// open waits for it, so that a source never has more than one backend
	// call in flight: retries of a stalled source do not pile up
	// goroutines and threads.
	bg <-chan struct{}
}

var _ Source = (*captureSource)(nil)

// openCapture opens a capture source, retrying a live source with Reconnect.
func openCapture(ctx context.Context, spec Spec, name string, log *slog.Logger) (*captureSource, error) {
	s := &captureSource{
		base:  newBase(spec, name, log),
		bo:    NewBackoff(spec.MinBackoff, spec.MaxBackoff),
		async: spec.Kind.Live() || spec.ReadTimeout > 0,
	}
	if s.spec.Kind == Video {
		if err := checkVideoFile(s.name, s.spec.URI); err != nil {
			return nil, err
		}
	}
	c, err := s.open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("source %q: %w", s.name, ctx.Err())
		}
		if !s.spec.Kind.Live() || !s.spec.Reconnect {
			return nil, err
		}
		s.fail(err)
		s.log.Warn("source: open failed", "err", err)
		if err := s.reconnect(ctx, err); err != nil {
			if errors.Is(err, ctx.Err()) {
				return nil, fmt.Errorf("source %q: %w", s.name, err)
			}
			return nil, err
		}
	} else {
		s.cur = c
	}
	s.setSize(int(s.cur.vc.Get(gocv.VideoCaptureFrameWidth)), int(s.cur.vc.Get(gocv.VideoCaptureFrameHeight)))
	return s, nil
}

// minOpenTimeout is the shortest bound on opening a live source when
// Spec.ReadTimeout is set: opening probes the start of the stream, which a
// healthy camera may take a few seconds to deliver.
const minOpenTimeout = 5 * time.Second

// open opens a new capture, in a goroutine so that ctx (shutdown, a
// reload) interrupts the wait whatever the backend does; for a live source
// with ReadTimeout, a stall of the open itself (a server that sends its
// headers and then nothing) ends it too. A capture that opens after that
// is closed by the goroutine, and the next open waits for that goroutine
// first. A network stream that fails is diagnosed: refused, timed out,
// host not found, or reached but not a video.
func (s *captureSource) open(ctx context.Context) (*capture, error) {
	if err := s.waitBG(ctx); err != nil {
		return nil, err
	}
	type result struct {
		c   *capture
		err error
	}
	ch := make(chan result, 1)
	t0 := time.Now()
	go func() {
		c, err := s.openNow()
		ch <- result{c, err}
	}()
	var timeout <-chan time.Time
	limit := max(s.spec.ReadTimeout, minOpenTimeout)
	if s.spec.Kind.Live() && s.spec.ReadTimeout > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		timeout = t.C
	}
	abandon := func() {
		bg := make(chan struct{})
		s.bg = bg
		go func() {
			defer close(bg)
			if r := <-ch; r.c != nil {
				r.c.close()
			}
		}()
	}
	select {
	case r := <-ch:
		if r.err != nil && s.spec.Kind == Stream {
			return nil, s.streamError(ctx, r.err, time.Since(t0))
		}
		return r.c, r.err
	case <-timeout:
		abandon()
		if s.spec.Kind == Stream {
			if cause := diagnose(ctx, s.spec.URI); cause != nil {
				return nil, s.errorf("opening took longer than %v: %w: %w", limit, cause, ErrStalled)
			}
			return nil, s.errorf("opening took longer than %v: the server accepted the connection and sent no video: %w: %w", limit, ErrTimedOut, ErrStalled)
		}
		return nil, s.errorf("opening took longer than %v: %w", limit, ErrStalled)
	case <-ctx.Done():
		abandon()
		return nil, ctx.Err()
	}
}

// streamError names the cause of a network stream that did not open.
// took is how long the failed open took: FFmpeg gives up on a server that
// sends nothing after its socket timeout (ioTimeout).
func (s *captureSource) streamError(ctx context.Context, openErr error, took time.Duration) error {
	if ctx.Err() != nil {
		return openErr
	}
	if cause := diagnose(ctx, s.spec.URI); cause != nil {
		return s.errorf("cannot open stream: %w", cause)
	}
	if t := s.ioTimeout(); took >= t*9/10 {
		return s.errorf("cannot open stream: the server accepted the connection and sent no video within %v: %w", t, ErrTimedOut)
	}
	return s.errorf("cannot open stream: the server accepted the connection, but FFmpeg found no video in what it sent (a wrong path, missing credentials, or %w)", ErrNotVideo)
}

// waitBG waits until the goroutine of an abandoned open or read has
// returned, or ctx is done.
func (s *captureSource) waitBG(ctx context.Context) error {
	if s.bg == nil {
		return nil
	}
	select {
	case <-s.bg:
		s.bg = nil
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ioTimeout is the bound FFmpeg's own socket reads get for a network
// stream: ReadTimeout, or DefaultLiveReadTimeout without one.
func (s *captureSource) ioTimeout() time.Duration {
	if s.spec.ReadTimeout > 0 {
		return s.spec.ReadTimeout
	}
	return DefaultLiveReadTimeout
}

// openNow opens the capture with the backend for the kind. It reads only
// immutable fields of s, so it may run in its own goroutine. gocv's own
// errors are not wrapped: they hold the URI unredacted.
func (s *captureSource) openNow() (*capture, error) {
	var (
		vc   *gocv.VideoCapture
		err  error
		hint string
	)
	uri := s.spec.URI
	switch s.spec.Kind {
	case Camera:
		vc, err = gocv.VideoCaptureDeviceWithAPI(s.spec.Camera, gocv.VideoCaptureV4L2)
		if err != nil || !vc.IsOpened() {
			closeVC(vc)
			vc, err = gocv.VideoCaptureDevice(s.spec.Camera)
		}
		hint = " (is it connected and not in use?)"
	case Device:
		if err := checkPath(s.name, uri); err != nil {
			return nil, err
		}
		vc, err = gocv.VideoCaptureFileWithAPI(uri, gocv.VideoCaptureV4L2)
		hint = " (is it a V4L2 capture device, not in use, and readable?)"
	case Video:
		if err := checkVideoFile(s.name, uri); err != nil {
			return nil, err
		}
		vc, err = gocv.VideoCaptureFile(uri)
		if err != nil || vc == nil || !vc.IsOpened() {
			closeVC(vc)
			return nil, fmt.Errorf("source %q: cannot open video: %w (an unsupported or corrupt video file?)", s.name, ErrNotVideo)
		}
	case Stream:
		withFFmpegOptions(s.ioTimeout(), func() {
			vc, err = gocv.VideoCaptureFileWithAPI(uri, gocv.VideoCaptureFFmpeg)
		})
		hint = " with FFmpeg"
	case GStreamer:
		vc, err = gocv.VideoCaptureFileWithAPI(gstPipeline(uri), gocv.VideoCaptureGstreamer)
		hint = " with GStreamer (check it with gst-launch-1.0 and the plugins it needs)"
	default:
		return nil, fmt.Errorf("source %q: cannot capture a %v source", s.name, s.spec.Kind)
	}
	if err != nil || vc == nil || !vc.IsOpened() {
		closeVC(vc)
		return nil, fmt.Errorf("source %q: cannot open %v%s", s.name, s.spec.Kind, hint)
	}
	return &capture{vc: vc}, nil
}

func closeVC(vc *gocv.VideoCapture) {
	if vc != nil {
		vc.Close()
	}
}

// gstPipeline appends an appsink, which OpenCV needs, to a pipeline that
// has none.
func gstPipeline(p string) string {
	if strings.Contains(p, "appsink") {
		return p
	}
	return p + " ! videoconvert ! appsink"
}

// Read implements Source.
func (s *captureSource) Read(ctx context.Context, dst *gocv.Mat) (Frame, error) {
	switch {
	case dst == nil:
		return Frame{}, s.errorf("nil destination Mat")
	case s.closed:
		return Frame{}, s.errorf("%w", ErrClosed)
	case s.err != nil:
		return Frame{}, s.err
	case s.eof:
		return Frame{}, io.EOF
	}
	rewound := false
	for {
		if err := ctx.Err(); err != nil {
			return Frame{}, err
		}
		if s.cur == nil {
			if err := s.reopen(ctx); err != nil {
				return Frame{}, err
			}
		}
		ok, err := s.readOnce(ctx, dst)
		if ok {
			s.fails = 0
			s.bo.Reset()
			pts := s.pts()
			s.pos++
			return s.frame(dst, pts, ""), nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return Frame{}, ctxErr
		}
		if !s.spec.Kind.Live() {
			if err != nil { // stalled: the next Read reopens and resumes
				err = s.errorf("%w", err)
				s.fail(err)
				return Frame{}, err
			}
			s.closeCur()
			if !s.spec.Loop {
				s.eof = true
				return Frame{}, io.EOF
			}
			if rewound {
				s.err = s.errorf("video has no frames to loop over")
				return Frame{}, s.err
			}
			rewound = true
			s.pos = 0
			s.log.Debug("source: looping video")
			continue
		}
		cause := err
		if cause == nil {
			cause = ErrStreamEnded
		}
		s.closeCur()
		s.fail(s.errorf("%w", cause))
		if !s.spec.Reconnect {
			s.err = s.errorf("%w", cause)
			return Frame{}, s.err
		}
		s.log.Warn("source: read failed, reconnecting", "err", cause)
		if err := s.reconnect(ctx, cause); err != nil {
			return Frame{}, err
		}
	}
}

// readOnce reads one frame into dst. It reports false (and a nil error) when
// the capture gives no frame. With async reads it may also give ErrStalled
// or ctx.Err(); then the capture is abandoned to the reading goroutine,
// which closes it when the blocked read returns, and s.cur is nil.
func (s *captureSource) readOnce(ctx context.Context, dst *gocv.Mat) (bool, error) {
	c := s.cur
	if !s.async {
		return c.vc.Read(dst) && !dst.Empty(), nil
	}
	if !c.hasBuf {
		c.buf = gocv.NewMat()
		c.hasBuf = true
	}
	done := make(chan bool, 1)
	go func() { done <- c.vc.Read(&c.buf) }()
	var timeout <-chan time.Time
	if s.spec.ReadTimeout > 0 {
		t := time.NewTimer(s.spec.ReadTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case ok := <-done:
		if !ok || c.buf.Empty() {
			return false, nil
		}
		c.buf.CopyTo(dst)
		return true, nil
	case <-timeout:
		s.abandon(done)
		return false, ErrStalled
	case <-ctx.Done():
		s.abandon(done)
		return false, ctx.Err()
	}
}

// abandon hands the current capture to the goroutine blocked reading it.
// The goroutine closes it once the backend read returns (FFmpeg gives up
// on a dead connection after its own read timeout, 30s by default).
func (s *captureSource) abandon(done <-chan bool) {
	c := s.cur
	s.cur = nil
	bg := make(chan struct{})
	s.bg = bg
	go func() {
		defer close(bg)
		<-done
		c.close()
	}()
}

// closeCur closes the current capture, if any.
func (s *captureSource) closeCur() {
	if s.cur != nil {
		s.cur.close()
		s.cur = nil
	}
}

// pts is the position of the frame just read in a video file, or -1 (time
// since open) for other kinds or when the backend does not know it.
func (s *captureSource) pts() time.Duration {
	if s.spec.Kind != Video {
		return -1
	}
	ms := s.cur.vc.Get(gocv.VideoCapturePosMsec)
	if ms > 0 || (ms == 0 && s.pos == 0) {
		return time.Duration(ms * float64(time.Millisecond))
	}
	if fps := s.cur.vc.Get(gocv.VideoCaptureFPS); fps > 0 {
		return time.Duration(float64(s.pos) / fps * float64(time.Second))
	}
	return -1
}

// reopen opens the capture again after it was closed or abandoned: with
// backoff for a live source with Reconnect, else once (a video file resumes
// at the frame it had reached).
func (s *captureSource) reopen(ctx context.Context) error {
	if s.spec.Kind.Live() && s.spec.Reconnect {
		return s.reconnect(ctx, errors.New("capture was interrupted"))
	}
	c, err := s.open(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		s.err = err
		return err
	}
	if s.pos > 0 {
		c.vc.Set(gocv.VideoCapturePosFrames, float64(s.pos))
	}
	s.cur = c
	return nil
}

// reconnect reopens a live source with exponential backoff until it opens,
// ctx is done, or MaxRetries attempts have failed since the last frame.
func (s *captureSource) reconnect(ctx context.Context, cause error) error {
	for {
		if s.spec.MaxRetries > 0 && s.fails >= s.spec.MaxRetries {
			if strings.HasPrefix(cause.Error(), "source ") {
				s.err = fmt.Errorf("%w (gave up after %d reconnect attempts)", cause, s.fails)
			} else {
				s.err = s.errorf("%w (gave up after %d reconnect attempts)", cause, s.fails)
			}
			return s.err
		}
		d := s.bo.Next()
		s.log.Warn("source: reconnecting", "attempt", s.fails+1, "delay", d)
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
		s.fails++
		s.mon.reconnects.Add(1)
		c, err := s.open(ctx)
		if err == nil {
			s.cur = c
			s.setSize(int(c.vc.Get(gocv.VideoCaptureFrameWidth)), int(c.vc.Get(gocv.VideoCaptureFrameHeight)))
			s.log.Info("source: reconnected", "attempt", s.fails)
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		s.fail(err)
		s.log.Warn("source: reconnect failed", "attempt", s.fails, "err", err)
		cause = err
	}
}

// Close implements Source.
func (s *captureSource) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.closeCur()
	return nil
}
