package serve

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/source"
)

// StreamSpec is what a stream reader needs from the configuration.
type StreamSpec struct {
	Name                   string
	Spec                   source.Spec // Reconnect is handled here, not in source
	FPS                    float64     // cap; 0 = none
	Reconnect              bool
	MinBackoff, MaxBackoff time.Duration
	MaxRetries             int
}

// frameMeta travels with a frame through the slot.
type frameMeta struct {
	index int64
	time  time.Time
	read  time.Duration
}

// stream reads one source in its own goroutine into a latest-frame slot:
// the reader of a live source (or of a video file played in real time)
// never blocks on the detector, and the detector never sees a stale frame —
// an unconsumed frame replaced by a newer one is counted as skipped. The
// reader of images (a folder, an image) instead waits until its frame is
// taken: decoding images only to drop them would take the CPU from
// inference.
type stream struct {
	spec StreamSpec
	log  *slog.Logger
	m    *metrics.Metrics

	mu      sync.Mutex
	slot    gocv.Mat // latest frame, owned by the slot
	meta    frameMeta
	fresh   bool
	lastErr string

	up         atomic.Bool
	frames     atomic.Int64
	skipped    atomic.Int64
	reconnects atomic.Int64
	failures   atomic.Int64

	notify chan<- struct{} // wakes the detector
	taken  chan struct{}   // signalled when take empties the slot
	cancel context.CancelFunc
	done   chan struct{}
}

func newStream(spec StreamSpec, m *metrics.Metrics, log *slog.Logger, notify chan<- struct{}) *stream {
	return &stream{spec: spec, m: m, log: log.With("stream", spec.Name), slot: gocv.NewMat(), notify: notify, taken: make(chan struct{}, 1), done: make(chan struct{})}
}

// start runs the reader until ctx is done or stop is called.
func (s *stream) start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.m.StreamUp.WithLabelValues(s.spec.Name).Set(0)
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

func (s *stream) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// run is the reader loop: open, read until failure, reconnect with
// exponential backoff and jitter (bounded by MaxRetries when set).
func (s *stream) run(ctx context.Context) {
	name := s.spec.Name
	bo := source.NewBackoff(s.spec.MinBackoff, s.spec.MaxBackoff)
	buf := gocv.NewMat()
	defer buf.Close()
	retries := 0
	var minGap time.Duration
	if s.spec.FPS > 0 {
		minGap = time.Duration(float64(time.Second) / s.spec.FPS)
	}
	for ctx.Err() == nil {
		src, err := source.Open(ctx, s.spec.Spec, s.log)
		if err == nil {
			s.log.Info("stream opened", "source", src.Name())
			var last time.Time
			// A video file stands in for a camera: play it in real time by
			// its timestamps instead of decoding as fast as possible.
			realtime := s.spec.Spec.Kind == source.Video
			var base time.Time
			var basePTS, prevPTS time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				fr, rerr := src.Read(ctx, &buf)
				if rerr != nil {
					err = rerr
					break
				}
				read := time.Since(t0)
				if realtime {
					// Timestamps going back (a looped video restarting at
					// 0) start a new time base.
					if base.IsZero() || fr.PTS < prevPTS {
						base, basePTS = time.Now(), fr.PTS
					} else if wait := time.Until(base.Add(fr.PTS - basePTS)); wait > 0 {
						select {
						case <-time.After(wait):
						case <-ctx.Done():
						}
					}
					prevPTS = fr.PTS
				}
				retries = 0
				bo.Reset()
				if !s.up.Swap(true) {
					s.m.StreamUp.WithLabelValues(name).Set(1)
				}
				s.m.FramesRead.WithLabelValues(name).Inc()
				s.frames.Add(1)
				if minGap > 0 {
					// Cap the rate: drop frames that come too soon (live) or
					// pace a file source to the cap.
					if wait := minGap - time.Since(last); wait > 0 {
						if s.spec.Spec.Kind.Live() {
							continue
						}
						select {
						case <-time.After(wait):
						case <-ctx.Done():
						}
					}
					last = time.Now()
				}
				s.publish(&buf, frameMeta{index: fr.Index, time: fr.Time, read: read})
				if paced := s.spec.Spec.Kind.Live() || realtime; !paced {
					s.waitTaken(ctx)
				}
			}
			src.Close()
		}
		if ctx.Err() != nil {
			break
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("source ended")
		}
		s.up.Store(false)
		s.m.StreamUp.WithLabelValues(name).Set(0)
		s.setErr(err)
		s.failures.Add(1)
		if !s.spec.Reconnect {
			s.log.Warn("stream stopped", "err", err)
			break
		}
		retries++
		if s.spec.MaxRetries > 0 && retries > s.spec.MaxRetries {
			s.log.Error("stream gave up after retries", "retries", s.spec.MaxRetries, "err", err)
			break
		}
		d := bo.Next()
		s.log.Warn("stream failed, reconnecting", "err", err, "in", d.Round(time.Millisecond), "attempt", retries)
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		if ctx.Err() == nil {
			s.reconnects.Add(1)
			s.m.Reconnects.WithLabelValues(name).Inc()
		}
	}
	s.up.Store(false)
	s.m.StreamUp.WithLabelValues(name).Set(0)
}

// publish swaps the new frame into the slot (no copy) and wakes the
// detector; an unconsumed frame there is dropped and counted.
func (s *stream) publish(buf *gocv.Mat, meta frameMeta) {
	s.mu.Lock()
	if s.fresh {
		s.skipped.Add(1)
		s.m.FramesSkipped.WithLabelValues(s.spec.Name).Inc()
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

// status is the stream's part of /status.
type streamStatus struct {
	Name       string `json:"name"`
	Source     string `json:"source"`
	Up         bool   `json:"up"`
	Frames     int64  `json:"frames_read"`
	Skipped    int64  `json:"frames_skipped"`
	Reconnects int64  `json:"reconnects"`
	LastError  string `json:"last_error,omitempty"`
}

func (s *stream) status() streamStatus {
	s.mu.Lock()
	last := s.lastErr
	s.mu.Unlock()
	return streamStatus{Name: s.spec.Name, Source: source.Redact(s.spec.Spec.URI), Up: s.up.Load(), Frames: s.frames.Load(),
		Skipped: s.skipped.Load(), Reconnects: s.reconnects.Load(), LastError: last}
}
