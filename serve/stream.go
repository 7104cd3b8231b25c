package serve

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/agreement"
	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/source"
	"github.com/yedge/yedge/webview"
)

// frameMeta travels with a frame through the slot.
type frameMeta struct {
	src  source.Frame  // what the source said of the frame
	read time.Duration // how long reading it took
}

// stream is everything the daemon keeps for one source: its reader
// goroutine, the latest-frame slot, the shadow sampling counter, the
// agreement window and the counters that metrics read at scrape time.
// Removing a stream is one call, stop.
//
// The reader of a live source (or of a video file played in real time)
// never blocks on the detector, and the detector never sees a stale frame:
// an unconsumed frame replaced by a newer one is counted as skipped. The
// reader of images (a folder, an image) instead waits until its frame is
// taken: decoding images only to drop them would take the CPU from
// inference. Reconnecting and stall detection belong to package source
// (Spec.Reconnect, Spec.ReadTimeout); the stream only paces and publishes.
type stream struct {
	plan  StreamPlan
	log   *slog.Logger
	errs  *errorLog
	agree *agreement.Window
	board *webview.Board // the web view: images while watched, latency history
	guard guardState     // see lifecycle.go

	mu      sync.Mutex
	slot    gocv.Mat // latest frame, owned by the slot
	meta    frameMeta
	fresh   bool
	mon     source.Monitor // the source's connection state, also while opening
	ended   bool
	lastErr errEntry

	frames   atomic.Int64
	skipped  atomic.Int64
	shadowed atomic.Int64
	sampled  atomic.Int64 // inferred frames seen by the shadow sampler

	cmu        sync.Mutex
	inferred   map[string]int64
	failed     map[string]int64
	detections map[string]int64

	notify chan<- struct{} // wakes the detector
	taken  chan struct{}   // signalled when take empties the slot
	cancel context.CancelFunc
	done   chan struct{}
}

func newStream(p StreamPlan, window int, log *slog.Logger, errs *errorLog, notify chan<- struct{}) *stream {
	return &stream{plan: p, log: log.With("stream", p.Name), errs: errs, agree: agreement.NewWindow(window), board: webview.NewBoard(), slot: gocv.NewMat(),
		inferred: map[string]int64{}, failed: map[string]int64{}, detections: map[string]int64{},
		notify: notify, taken: make(chan struct{}, 1), done: make(chan struct{})}
}

// start runs the reader until ctx is done or stop is called.
func (s *stream) start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
}

// stop ends the reader and waits for it, then releases the slot.
func (s *stream) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	<-s.done
	s.mu.Lock()
	s.slot.Close()
	s.fresh = false
	s.mu.Unlock()
}

// fail records a stream error for /status and the error log.
func (s *stream) fail(err error) {
	s.mu.Lock()
	s.lastErr = errEntry{At: time.Now(), Error: err.Error()}
	s.mu.Unlock()
	s.sourceFailed(err)
}

// sourceFailed counts a failure the source recorded itself (an open or
// reconnect attempt, a read), also while it is still opening: a stream
// that never opens is in yedge_errors_total and last_errors too. Its
// /status entry comes from the source's Monitor.
func (s *stream) sourceFailed(err error) {
	s.board.AddError(errEntry{At: time.Now(), Class: errStream, Error: err.Error()})
	s.errs.add("stream", s.plan.Name, err)
}

// run opens the source and reads it until it ends or ctx is done. A live
// source with Reconnect reopens inside source; a source that gives up, or
// a finite one that ends, ends the stream (until a reload restarts it).
func (s *stream) run(ctx context.Context) {
	buf := gocv.NewMat()
	defer buf.Close()
	var minGap time.Duration
	if s.plan.FPS > 0 {
		minGap = time.Duration(float64(time.Second) / s.plan.FPS)
	}
	spec := s.plan.Source
	s.mon.OnFail = s.sourceFailed
	spec.Monitor = &s.mon
	src, err := source.Open(ctx, spec, s.log)
	if err != nil {
		if ctx.Err() == nil {
			s.fail(err)
			s.log.Error("stream not opened", "err", err)
		}
		s.end(nil)
		return
	}
	s.log.Info("stream opened", "source", src.Name())
	// A video file stands in for a camera: play it in real time by its
	// timestamps instead of decoding as fast as possible.
	realtime := s.plan.Source.Kind == source.Video
	live := s.plan.Source.Kind.Live()
	var last, base time.Time
	var basePTS, prevPTS time.Duration
	for ctx.Err() == nil {
		t0 := time.Now()
		fr, err := src.Read(ctx, &buf)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, source.ErrStalled) && !live {
				s.fail(err) // a stalled file: the next read reopens it
				continue
			}
			if errors.Is(err, io.EOF) {
				s.log.Info("stream ended")
				s.fail(errors.New("source ended"))
			} else {
				s.fail(err)
				s.log.Warn("stream stopped", "err", err)
			}
			break
		}
		read := time.Since(t0)
		if realtime {
			// Timestamps going back (a looped video restarting at 0)
			// start a new time base.
			if base.IsZero() || fr.PTS < prevPTS {
				base, basePTS = time.Now(), fr.PTS
			} else if !sleep(ctx, time.Until(base.Add(fr.PTS-basePTS))) {
				break
			}
			prevPTS = fr.PTS
		}
		s.frames.Add(1)
		if minGap > 0 {
			// Cap the rate: drop frames that come too soon (live) or pace
			// a file source to the cap.
			if wait := minGap - time.Since(last); wait > 0 {
				if live {
					continue
				}
				if !sleep(ctx, wait) {
					break
				}
			}
			last = time.Now()
		}
		s.publish(&buf, frameMeta{src: fr, read: read})
		if !live && !realtime {
			s.waitTaken(ctx)
		}
	}
	s.end(src)
}

// end marks the stream as ended and closes its source.
func (s *stream) end(src source.Source) {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	if src != nil {
		src.Close()
	}
}

// sleep waits for d or until ctx is done; it reports whether ctx is live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// publish swaps the new frame into the slot (no copy) and wakes the
// detector; an unconsumed frame there is dropped and counted.
func (s *stream) publish(buf *gocv.Mat, meta frameMeta) {
	s.mu.Lock()
	if s.fresh {
		s.skipped.Add(1)
	}
	s.slot, *buf = *buf, s.slot
	s.meta = meta
	s.fresh = true
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take swaps the latest frame into work if there is a fresh one.
func (s *stream) take(work *gocv.Mat) (frameMeta, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fresh {
		return frameMeta{}, false
	}
	s.slot, *work = *work, s.slot
	s.fresh = false
	select {
	case s.taken <- struct{}{}:
	default:
	}
	return s.meta, true
}

// waitTaken waits until the frame in the slot was taken, or ctx is done.
func (s *stream) waitTaken(ctx context.Context) {
	for {
		s.mu.Lock()
		fresh := s.fresh
		s.mu.Unlock()
		if !fresh {
			return
		}
		select {
		case <-s.taken:
		case <-ctx.Done():
			return
		}
	}
}

// up reports whether the source is delivering frames.
func (s *stream) up() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended && s.mon.Up()
}

// count adds n to one of the stream's labelled counters.
func (s *stream) count(m map[string]int64, key string, n int64) {
	s.cmu.Lock()
	m[key] += n
	s.cmu.Unlock()
}

// shouldShadow samples every EveryN-th inferred frame of the stream.
func (s *stream) shouldShadow(everyN int) bool {
	n := s.sampled.Add(1) - 1
	return everyN <= 1 || n%int64(everyN) == 0
}

// streamStatus is the stream's part of /status.
type streamStatus struct {
	Name       string    `json:"name"`
	Source     string    `json:"source"`
	Up         bool      `json:"up"`
	Frames     int64     `json:"frames_read"`
	Skipped    int64     `json:"frames_skipped"`
	Reconnects int64     `json:"reconnects"`
	LastError  string    `json:"last_error,omitempty"`
	ErrorAt    time.Time `json:"last_error_at,omitzero"`
}

func (s *stream) status() streamStatus {
	st := streamStatus{Name: s.plan.Name, Source: source.Redact(s.plan.Source.URI), Up: s.up(), Frames: s.frames.Load(),
		Skipped: s.skipped.Load(), Reconnects: s.mon.Reconnects()}
	s.mu.Lock()
	if at, err := s.mon.LastError(); err != nil && at.After(s.lastErr.At) {
		st.LastError, st.ErrorAt = err.Error(), at
	}
	if st.LastError == "" && s.lastErr.Error != "" {
		st.LastError, st.ErrorAt = s.lastErr.Error, s.lastErr.At
	}
	s.mu.Unlock()
	return st
}

// stats returns the stream's figures for metrics.
func (s *stream) stats() metrics.StreamStats {
	st := s.status()
	out := metrics.StreamStats{Name: st.Name, Up: st.Up, FramesRead: st.Frames, FramesSkipped: st.Skipped,
		Reconnects: st.Reconnects, ShadowFrames: s.shadowed.Load()}
	s.cmu.Lock()
	out.Inferred, out.Failed, out.Detections = maps.Clone(s.inferred), maps.Clone(s.failed), maps.Clone(s.detections)
	s.cmu.Unlock()
	if f := s.agree.Figures(); f.Frames > 0 {
		out.Agreement = &metrics.Agreement{Precision: f.Precision, Recall: f.Recall, MeanIoU: f.MeanIoU, ScoreDiff: f.ScoreDiff, CountDiff: f.CountDiff}
	}
	return out
}
