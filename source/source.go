package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"
)

// Errors that Read may return, wrapped with the (redacted) source name.
var (
	// ErrStalled means a read took longer than Spec.ReadTimeout.
	ErrStalled = errors.New("read stalled")
	// ErrStreamEnded means a live source stopped delivering frames and
	// Spec.Reconnect is off.
	ErrStreamEnded = errors.New("stream ended")
	// ErrClosed means the source was used after Close.
	ErrClosed = errors.New("source closed")
)

// Frame describes one frame delivered by [Source.Read].
type Frame struct {
	// Index is the 0-based count of frames delivered by the source.
	Index int64
	// Time is the wall-clock time at which the frame was read.
	Time time.Time
	// PTS is the position of the frame in a video file when known
	// (CAP_PROP_POS_MSEC; it starts again at 0 when a looped video restarts),
	// else the time since the source was opened.
	PTS time.Duration
	// Name is the file path for Image and Folder sources, else "".
	Name string
	// Corrupt is set for an Image or Folder frame whose file failed
	// CheckImage (truncated JPEG or PNG data) although the decoder returned
	// an image: the frame is delivered (and a warning logged), but its pixels
	// are partly missing.
	Corrupt bool
}

// Source delivers decoded BGR frames. Read and Close must not be called
// concurrently (cancel the context given to Read to interrupt it); Name,
// Kind, Size, Live, Skipped and Reconnects are safe to call at any time.
type Source interface {
	// Read decodes the next frame into dst, which the caller owns and reuses.
	// It returns io.EOF at the end of a finite source (a video without Loop,
	// an image, a folder). In a Folder an unreadable image is skipped with a
	// warning and counted by Skipped; if no image at all could be read, Read
	// returns an error instead of io.EOF. Live sources with Spec.Reconnect
	// reopen on failure (with backoff) and go on; without it they return
	// ErrStreamEnded, or ErrStalled for a read longer than Spec.ReadTimeout.
	// If ctx is cancelled, Read returns ctx.Err().
	Read(ctx context.Context, dst *gocv.Mat) (Frame, error)
	// Close releases the source; it is safe to call more than once.
	Close() error
	// Name is the source as the user gave it, redacted, for logs.
	Name() string
	// Kind is the kind of source.
	Kind() Kind
	// Size is the best known frame size, (0, 0) if unknown.
	Size() (w, h int)
	// Live reports whether the source is live (camera, device, stream,
	// pipeline) rather than a finite file.
	Live() bool
	// Skipped counts frames or images skipped as unreadable.
	Skipped() int64
	// Reconnects counts reconnect attempts, successful or not.
	Reconnects() int64
	// Up reports whether the source is delivering frames: true from a
	// frame read until a read fails (a live source then reconnects).
	Up() bool
	// LastError is the last failure seen (a failed read, open or
	// reconnect, redacted) and when; nil before any.
	LastError() (time.Time, error)
}

// Open opens the source described by spec. A Spec with Kind Unknown is
// classified from its URI with [Parse]. For a live source with
// spec.Reconnect, a failing open is retried with backoff (up to
// spec.MaxRetries, honouring ctx) before Open gives up. log receives
// warnings about reconnects and skipped images; nil means slog.Default().
func Open(ctx context.Context, spec Spec, log *slog.Logger) (Source, error) {
	if log == nil {
		log = slog.Default()
	}
	spec, err := normalize(spec)
	if err != nil {
		return nil, err
	}
	name := displayName(spec)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("source %q: %w", name, err)
	}
	log = log.With("source", name, "kind", spec.Kind.String())
	switch spec.Kind {
	case Image, Folder:
		return openFiles(spec, name, log)
	default:
		return openCapture(ctx, spec, name, log)
	}
}

// normalize classifies an Unknown spec, validates it and fills defaults.
func normalize(spec Spec) (Spec, error) {
	if spec.Kind == Unknown {
		if spec.URI == "" {
			return Spec{}, errors.New("source: empty source")
		}
		p, err := Parse(spec.URI)
		if err != nil {
			return Spec{}, err
		}
		spec.URI, spec.Camera, spec.Kind = p.URI, p.Camera, p.Kind
	}
	name := displayName(spec)
	switch {
	case spec.Kind < Camera || spec.Kind > Folder:
		return Spec{}, fmt.Errorf("source %q: invalid kind %v", name, spec.Kind)
	case spec.Kind == Camera && spec.Camera < 0:
		return Spec{}, fmt.Errorf("source %q: invalid camera index %d", name, spec.Camera)
	case spec.Kind != Camera && spec.URI == "":
		return Spec{}, fmt.Errorf("source: empty %v source", spec.Kind)
	case spec.MaxRetries < 0:
		return Spec{}, fmt.Errorf("source %q: negative MaxRetries %d", name, spec.MaxRetries)
	case spec.ReadTimeout < 0:
		return Spec{}, fmt.Errorf("source %q: negative ReadTimeout %v", name, spec.ReadTimeout)
	case spec.MinBackoff < 0 || spec.MaxBackoff < 0:
		return Spec{}, fmt.Errorf("source %q: negative backoff", name)
	}
	if spec.Kind != Camera {
		spec.Camera = -1
	}
	if spec.MinBackoff == 0 {
		spec.MinBackoff = DefaultMinBackoff
	}
	if spec.MaxBackoff == 0 {
		spec.MaxBackoff = DefaultMaxBackoff
	}
	if spec.MaxBackoff < spec.MinBackoff {
		spec.MaxBackoff = spec.MinBackoff
	}
	return spec, nil
}

// displayName is the redacted name of a source for errors and logs.
func displayName(spec Spec) string {
	if spec.Kind == Camera {
		return "camera " + strconv.Itoa(spec.Camera)
	}
	return Redact(spec.URI)
}

// checkPath returns a "no such file or directory" error naming the source
// when path does not exist.
func checkPath(name, path string) error {
	_, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("source %q: %w", name, noSuchFile{})
	case err != nil:
		return fmt.Errorf("source %q: %w", name, redactPathError(err))
	}
	return nil
}

// newBase starts the shared state of a source opened now.
func newBase(spec Spec, name string, log *slog.Logger) base {
	mon := spec.Monitor
	if mon == nil {
		mon = &Monitor{}
	}
	return base{spec: spec, name: name, log: log, opened: time.Now(), mon: mon}
}

// base holds what every source shares.
type base struct {
	spec   Spec
	name   string // redacted
	log    *slog.Logger
	opened time.Time
	index  int64
	closed bool

	size    atomic.Uint64 // w<<32 | h
	skipped atomic.Int64
	mon     *Monitor
}

// Monitor holds a source's connection state: whether it delivers frames,
// its reconnect attempts and its last failure. Give one in Spec.Monitor to
// read them while Open is still connecting (a live source with Reconnect
// retries inside Open); its methods are safe for concurrent use.
type Monitor struct {
	// OnFail, if set before Open, is called with each failure as it is
	// recorded: every failed open and reconnect attempt and every failed
	// read, also while Open is still retrying. It runs on the source's
	// goroutine and must not block.
	OnFail func(error)

	up         atomic.Bool
	reconnects atomic.Int64
	lastErr    atomic.Pointer[failure]
}

// failure is an error and when it happened.
type failure struct {
	err error
	at  time.Time
}

// Up reports whether the source is delivering frames: true from a frame
// read until a read or open fails.
func (m *Monitor) Up() bool { return m.up.Load() }

// Reconnects counts reconnect attempts, successful or not.
func (m *Monitor) Reconnects() int64 { return m.reconnects.Load() }

// LastError is the last failure (redacted) and when; nil before any.
func (m *Monitor) LastError() (time.Time, error) {
	if f := m.lastErr.Load(); f != nil {
		return f.at, f.err
	}
	return time.Time{}, nil
}

// Up implements Source.
func (b *base) Up() bool { return b.mon.Up() }

// LastError implements Source.
func (b *base) LastError() (time.Time, error) { return b.mon.LastError() }

// fail records a failure: the source is down until the next frame.
func (b *base) fail(err error) {
	b.mon.up.Store(false)
	if err != nil {
		b.mon.lastErr.Store(&failure{err: err, at: time.Now()})
		if b.mon.OnFail != nil {
			b.mon.OnFail(err)
		}
	}
}

// Name implements Source.
func (b *base) Name() string { return b.name }

// Kind implements Source.
func (b *base) Kind() Kind { return b.spec.Kind }

// Live implements Source.
func (b *base) Live() bool { return b.spec.Kind.Live() }

// Skipped implements Source.
func (b *base) Skipped() int64 { return b.skipped.Load() }

// Reconnects implements Source.
func (b *base) Reconnects() int64 { return b.mon.Reconnects() }

// Size implements Source.
func (b *base) Size() (w, h int) {
	v := b.size.Load()
	return int(v >> 32), int(uint32(v))
}

func (b *base) setSize(w, h int) {
	if w > 0 && h > 0 {
		b.size.Store(uint64(w)<<32 | uint64(uint32(h)))
	}
}

// errorf returns an error prefixed with the source name.
func (b *base) errorf(format string, args ...any) error {
	return fmt.Errorf("source %q: "+format, append([]any{b.name}, args...)...)
}

// frame records a frame just decoded into dst and describes it.
func (b *base) frame(dst *gocv.Mat, pts time.Duration, name string) Frame {
	now := time.Now()
	if pts < 0 {
		pts = now.Sub(b.opened)
	}
	b.setSize(dst.Cols(), dst.Rows())
	b.mon.up.Store(true)
	f := Frame{Index: b.index, Time: now, PTS: pts, Name: name}
	b.index++
	return f
}
