package pipeline

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/source"
)

// FrameReader is what a Feed reads from; *source.Source is one.
type FrameReader interface {
	Read(ctx context.Context, dst *gocv.Mat) (source.Frame, error)
}

// FeedFrame is one frame read by a Feed: the image, what the source said
// of it, how long reading it took, and a Job to send it down the stages
// in (the Feed reuses both).
type FeedFrame struct {
	Img   gocv.Mat
	Frame source.Frame
	Read  time.Duration
	Job   Job
}

// feedBuffers is the number of frames a Feed recycles: enough for every
// pipelined slot, one being read and one waiting.
const feedBuffers = PipelineSlots + 3

// Feed reads a source on its own goroutine (capture and decode overlap
// with the other stages) into recycled images. A file source (Live
// false) keeps every frame, in order: the reader waits while every buffer
// is in use. A live source keeps only the latest frame: the reader never
// waits for the stages, and a frame not yet taken when a newer one
// arrives is dropped (counted in StageStats under StageRead). Frames
// taken with Next are given back with Release.
type Feed struct {
	src   FrameReader
	live  bool
	stats *StageStats

	free   chan *FeedFrame
	frames chan *FeedFrame // files: in order

	mu     sync.Mutex
	latest *FeedFrame    // live: the newest frame not yet taken
	ready  chan struct{} // live: signalled when latest is set
	err    error         // the reader's end (io.EOF or a failure)
	ended  chan struct{}

	all    []*FeedFrame
	cancel context.CancelFunc
	done   chan struct{}
}

// NewFeed starts reading src. stats may be nil.
func NewFeed(ctx context.Context, src FrameReader, live bool, stats *StageStats) *Feed {
	f := &Feed{src: src, live: live, stats: stats, free: make(chan *FeedFrame, feedBuffers),
		frames: make(chan *FeedFrame, 1), ready: make(chan struct{}, 1), ended: make(chan struct{}), done: make(chan struct{})}
	for range feedBuffers {
		fr := &FeedFrame{Img: gocv.NewMat()}
		fr.Job.Frames = []gocv.Mat{fr.Img}
		fr.Job.Tag = fr
		f.all = append(f.all, fr)
		f.free <- fr
	}
	ctx, f.cancel = context.WithCancel(ctx)
	go f.run(ctx)
	return f
}

// run is the reader.
func (f *Feed) run(ctx context.Context) {
	defer close(f.done)
	var err error
	for err == nil {
		var fr *FeedFrame
		fr, err = f.buffer(ctx)
		if err != nil {
			break
		}
		t0 := time.Now()
		fr.Frame, err = f.src.Read(ctx, &fr.Img)
		if err != nil {
			f.free <- fr
			break
		}
		fr.Read = time.Since(t0)
		fr.Job.Frames[0] = fr.Img // Read may have reallocated the Mat
		if f.stats != nil {
			f.stats.Observe(StageRead, fr.Read, 0)
		}
		err = f.publish(ctx, fr)
	}
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	close(f.ended)
}

// buffer returns a free buffer. A live reader that finds none takes back
// the frame waiting to be taken (dropping it) rather than wait.
func (f *Feed) buffer(ctx context.Context) (*FeedFrame, error) {
	select {
	case fr := <-f.free:
		return fr, nil
	default:
	}
	if f.live {
		if fr := f.takeLatest(); fr != nil {
			f.drop()
			return fr, nil
		}
	}
	select {
	case fr := <-f.free:
		return fr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// publish hands a read frame to the stages.
func (f *Feed) publish(ctx context.Context, fr *FeedFrame) error {
	if !f.live {
		select {
		case f.frames <- fr:
			return nil
		case <-ctx.Done():
			f.free <- fr
			return ctx.Err()
		}
	}
	f.mu.Lock()
	old := f.latest
	f.latest = fr
	f.mu.Unlock()
	if old != nil {
		f.drop()
		f.free <- old
	}
	select {
	case f.ready <- struct{}{}:
	default:
	}
	return nil
}

func (f *Feed) drop() {
	if f.stats != nil {
		f.stats.Drop(StageRead, 1)
	}
}

// Next returns the next frame: for a file the next in order, for a live
// source the newest. At the end of the source it returns the reader's
// error (io.EOF for a finished file).
func (f *Feed) Next(ctx context.Context) (*FeedFrame, error) {
	if !f.live {
		select {
		case fr := <-f.frames:
			return fr, nil
		case <-f.ended:
			// A frame published just before the end is still delivered.
			select {
			case fr := <-f.frames:
				return fr, nil
			default:
			}
			return nil, f.readErr()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for {
		if fr := f.takeLatest(); fr != nil {
			return fr, nil
		}
		select {
		case <-f.ready:
		case <-f.ended:
			if fr := f.takeLatest(); fr != nil {
				return fr, nil
			}
			return nil, f.readErr()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// takeLatest empties the live source's frame slot and returns what it
// held (nil if nothing).
func (f *Feed) takeLatest() *FeedFrame {
	f.mu.Lock()
	defer f.mu.Unlock()
	fr := f.latest
	f.latest = nil
	return fr
}

func (f *Feed) readErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Release gives a frame from Next back to the Feed.
func (f *Feed) Release(fr *FeedFrame) { f.free <- fr }

// Jobs returns a Stages.Next that hands d the feed's frames, at most limit
// of them (0: until the source ends). Errors are Next's.
func (f *Feed) Jobs(d *Detector, limit int64) func(context.Context) (*Job, error) {
	var taken int64
	return func(ctx context.Context) (*Job, error) {
		if limit > 0 && taken >= limit {
			return nil, io.EOF
		}
		fr, err := f.Next(ctx)
		if err != nil {
			return nil, err
		}
		taken++
		fr.Job.Det = d
		return &fr.Job, nil
	}
}

// Done gives back the frame of a job from Jobs: a Stages.Done.
func (f *Feed) Done(j *Job) { f.Release(j.Tag.(*FeedFrame)) }

// Close stops the reader, waits for it and frees the images. Every frame
// taken with Next must have been released.
func (f *Feed) Close() error {
	f.cancel()
	<-f.done
	var errs []error
	for _, fr := range f.all {
		errs = append(errs, fr.Img.Close())
	}
	f.all = nil
	return errors.Join(errs...)
}
