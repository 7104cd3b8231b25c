package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/postprocess"
)

// Stage names, as in StageStats and the daemon's metrics.
const (
	StageRead        = "read"        // capture and decode (the Feed's reader)
	StagePreprocess  = "preprocess"  // letterbox into a slot's input
	StageInfer       = "infer"       // the model run
	StagePostprocess = "postprocess" // decode, NMS, boxes back to source pixels
	StageSink        = "sink"        // the caller's Deliver: records, sinks, drawing
	StageShadow      = "shadow"      // the daemon's FP32 shadow worker
)

// Job is one batch of frames on its way through the stages: Det runs it,
// Frames (at most Det.Batch) are lent by the caller until Stages.Done, and
// Tag is the caller's own (its stream, the frames' metadata). The stages
// fill Timing.
type Job struct {
	Det    *Detector
	Frames []gocv.Mat
	Tag    any
	// Timing is each frame's stage times (Infer is the batch's).
	Timing []Timing

	slot   *Slot
	ok     []bool
	queued time.Time
}

// reset prepares the job's per-frame state for n frames.
func (j *Job) reset(n int) {
	j.Timing = j.Timing[:0]
	j.ok = j.ok[:0]
	for range n {
		j.Timing = append(j.Timing, Timing{})
		j.ok = append(j.ok, false)
	}
}

// Stages runs preprocess, inference and postprocess as three concurrent
// stages: while frame n is inferred, frame n+1 is preprocessed into
// another slot of the detector and frame n-1 decoded and delivered. Jobs
// leave in the order Next gave them. The hand-over to inference is
// unbuffered: the next job is taken from Next only once inference has
// started the previous one, so a live source's latest frame waits for at
// most one inference before its own (just in time, never queued behind
// others); decoding has a queue of one job.
type Stages struct {
	// Next returns the next job, waiting until there is one. io.EOF ends
	// the run cleanly once the jobs in flight are delivered; another
	// error ends it and is returned by Run. It is called on the
	// preprocessing goroutine.
	Next func(ctx context.Context) (*Job, error)
	// Deliver is called on the postprocessing goroutine for each frame
	// that went through every stage, in job order; dets are valid during
	// the call only. An error stops the run and is returned by Run.
	Deliver func(j *Job, i int, dets []postprocess.Detection) error
	// Fail, if set, is called for a frame lost at stage.
	Fail func(j *Job, i int, stage string, err error)
	// Done, if set, is called once a job is finished (delivered, failed
	// or abandoned): its frames are the caller's again.
	Done func(j *Job)
	// Stats, if set, receives every stage's busy time and queue wait.
	Stats *StageStats
}

// Run runs the stages until Next ends them, Deliver fails or ctx is done,
// and returns once every job taken from Next is done.
func (st Stages) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	toInfer := make(chan *Job) // unbuffered: see the type's doc
	toPost := make(chan *Job, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(toPost)
		for j := range toInfer {
			st.infer(ctx, j)
			j.queued = time.Now()
			toPost <- j
		}
	}()
	go func() {
		defer wg.Done()
		for j := range toPost {
			if err := st.post(ctx, j); err != nil {
				cancel(err)
			}
		}
	}()
	var nextErr error
	for {
		j, err := st.Next(ctx)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				nextErr = err
			}
			break
		}
		if err := st.preprocess(ctx, j); err != nil {
			st.abandon(j, StagePreprocess, err)
			continue
		}
		j.queued = time.Now()
		toInfer <- j
	}
	close(toInfer)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause // Deliver's error
	}
	return nextErr
}

// preprocess takes a slot of the job's detector and letterboxes the frames
// into it. A frame that fails is reported and skipped; an error is
// returned only when no slot could be had.
func (st Stages) preprocess(ctx context.Context, j *Job) error {
	if len(j.Frames) == 0 || len(j.Frames) > j.Det.Batch {
		return fmt.Errorf("job of %d frames for a batch of %d", len(j.Frames), j.Det.Batch)
	}
	j.reset(len(j.Frames))
	w0 := time.Now()
	s, err := j.Det.AcquireSlot(ctx)
	if err != nil {
		return err
	}
	j.slot = s
	wait := time.Since(w0)
	for i, img := range j.Frames {
		t0 := time.Now()
		_, err := s.Preprocess(img, i)
		d := time.Since(t0)
		j.Timing[i].Preprocess = d
		st.observe(StagePreprocess, d, wait)
		wait = 0
		if err != nil {
			st.fail(j, i, StagePreprocess, err)
			continue
		}
		j.ok[i] = true
	}
	return nil
}

// infer runs the job's slot.
func (st Stages) infer(ctx context.Context, j *Job) {
	wait := time.Since(j.queued)
	any := false
	for _, ok := range j.ok {
		any = any || ok
	}
	if !any {
		return
	}
	t0 := time.Now()
	err := j.slot.Infer(ctx)
	d := time.Since(t0)
	st.observe(StageInfer, d, wait)
	for i := range j.Timing {
		j.Timing[i].Infer = d
		if err != nil && j.ok[i] {
			j.ok[i] = false
			if ctx.Err() == nil { // stopping abandons the frame
				st.fail(j, i, StageInfer, err)
			}
		}
	}
}

// post decodes and delivers each frame of the job, then gives the slot
// back and the job to Done.
func (st Stages) post(ctx context.Context, j *Job) error {
	defer st.finish(j)
	wait := time.Since(j.queued)
	for i, ok := range j.ok {
		if !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil // stopping: the frame is abandoned, not failed
		}
		t0 := time.Now()
		dets := j.slot.Postprocess(i)
		d := time.Since(t0)
		j.Timing[i].Postprocess = d
		st.observe(StagePostprocess, d, wait)
		wait = 0
		t1 := time.Now()
		err := st.Deliver(j, i, dets)
		st.observe(StageSink, time.Since(t1), 0)
		if err != nil {
			return err
		}
	}
	return nil
}

// abandon ends a job that never reached inference.
func (st Stages) abandon(j *Job, stage string, err error) {
	if !errors.Is(err, context.Canceled) {
		for i := range j.Frames {
			st.fail(j, i, stage, err)
		}
	}
	st.finish(j)
}

// finish gives the job's slot back and the job to Done.
func (st Stages) finish(j *Job) {
	if j.slot != nil {
		j.Det.ReleaseSlot(j.slot)
		j.slot = nil
	}
	if st.Done != nil {
		st.Done(j)
	}
}

func (st Stages) fail(j *Job, i int, stage string, err error) {
	if st.Fail != nil {
		st.Fail(j, i, stage, err)
	}
}

func (st Stages) observe(stage string, busy, wait time.Duration) {
	if st.Stats != nil {
		st.Stats.Observe(stage, busy, wait)
	}
}
