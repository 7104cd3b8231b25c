package serve

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gocv.io/x/gocv"

	"github.com/yedge/yedge/agreement"
	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/sinks"
)

// work is one frame taken from a stream for inference.
type work struct {
	st   *stream
	img  gocv.Mat
	meta frameMeta
}

// item is a recycled frame buffer on its way through the stages; dets
// keeps the int8 detections of a frame handed to the shadow worker.
type item struct {
	work
	dets  []postprocess.Detection
	infer time.Duration
}

// jobTag is a recycled pipeline job with what the daemon attaches to it:
// the plan and models its frames were taken under, the model that runs
// them, and the frames.
type jobTag struct {
	job      pipeline.Job
	p        Plan
	mods     *models
	m        *model // mods.int8, or mods.fp32 for a guard fallback
	fallback bool   // frames of streams the guard moved to FP32
	items    []*item
	// shadowed marks the items handed to the shadow worker, which
	// releases them; only the postprocessing goroutine reads or writes it.
	shadowed []bool
}

// shadowWork is one sampled frame for the shadow worker, with what it
// needs of its job (which is recycled meanwhile).
type shadowWork struct {
	p        Plan
	mods     *models
	fallback bool
	it       *item
}

// frameLoop is the processing loop. It schedules frames: the latest frame
// of every stream, round robin, through the stages (pipeline.Stages), and
// sampled ones to the FP32 shadow. What is not scheduling it leaves to the
// owners it calls: the lifecycle (which model serves a stream, between two
// frames, a frame was shadowed), each stream's web view board, the sinks
// and the metrics. The composition root (Server) wires it.
type frameLoop struct {
	log     *slog.Logger
	m       *metrics.Metrics
	errs    *errorLog
	gate    *frameGate
	life    *lifecycle
	current func() (Plan, *models)
	streams func() []*stream
	sinks   func() *sinkSet
	// ping tells the service manager the loop is alive, every pingEvery
	// (0: never).
	ping      func()
	pingEvery time.Duration
	// wake is signalled by a stream that published a frame.
	wake chan struct{}

	shadowTime atomic.Int64 // nanoseconds spent in the shadow
	workTime   atomic.Int64 // nanoseconds spent processing
	lat        latencyPair
	busyNs     [len(loopStages)]atomic.Int64 // busy time by stage
	dropped    atomic.Int64                  // shadow samples dropped

	// The state of a run: the recycled frame buffers and the jobs taken
	// but not yet handed to the stages.
	ctx      context.Context
	mu       sync.Mutex
	free     []*item
	all      []*item
	jobs     []*jobTag // free jobs; only the preprocessing goroutine takes them
	pending  []*pipeline.Job
	lastPing time.Time
	rr       int
	shadow   chan shadowWork
	// wait are the queue-wait histograms by stage, looked up once rather
	// than on every frame.
	wait map[string]prometheus.Observer
}

// get returns a free frame buffer. The buffers in flight are bounded by
// the detectors' slots (pipeline.PipelineSlots each) and the one frame
// the shadow worker holds, so this allocates only while warming up.
func (l *frameLoop) get() *item {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.free); n > 0 {
		it := l.free[n-1]
		l.free = l.free[:n-1]
		return it
	}
	it := &item{work: work{img: gocv.NewMat()}}
	l.all = append(l.all, it)
	return it
}

// unget gives back a frame buffer that took no frame.
func (l *frameLoop) unget(it *item) {
	it.st = nil
	l.mu.Lock()
	l.free = append(l.free, it)
	l.mu.Unlock()
}

// put gives a frame buffer back and ends its part in the frames in
// flight.
func (l *frameLoop) put(it *item) {
	l.unget(it)
	l.gate.inflight.Done()
}

// newJob returns a recycled job of items on model m (mods.int8, or
// mods.fp32 for fallback) and its detector d.
func (l *frameLoop) newJob(p Plan, mods *models, m *model, d *pipeline.Detector, fallback bool, items []*item) *pipeline.Job {
	l.mu.Lock()
	var t *jobTag
	if n := len(l.jobs); n > 0 {
		t = l.jobs[n-1]
		l.jobs = l.jobs[:n-1]
	} else {
		t = &jobTag{}
		t.job.Tag = t
	}
	l.mu.Unlock()
	t.p, t.mods, t.m, t.fallback = p, mods, m, fallback
	t.items, t.shadowed, t.job.Frames = t.items[:0], t.shadowed[:0], t.job.Frames[:0]
	t.job.Det = d
	for _, it := range items {
		t.items = append(t.items, it)
		t.shadowed = append(t.shadowed, false)
		t.job.Frames = append(t.job.Frames, it.img)
	}
	return &t.job
}

// loopStages are the stages whose busy time the loop counts
// (yedge_pipeline_busy_seconds_total).
var loopStages = [...]string{pipeline.StagePreprocess, pipeline.StageInfer, pipeline.StagePostprocess, pipeline.StageSink, pipeline.StageShadow}

// addBusy counts d of busy time of a stage.
func (l *frameLoop) addBusy(stage string, d time.Duration) {
	if i := slices.Index(loopStages[:], stage); i >= 0 {
		l.busyNs[i].Add(int64(d))
	}
}

// stats fills the frame loop's part of the daemon's figures, at scrape
// time.
func (l *frameLoop) stats(d *metrics.DaemonStats) {
	d.Busy = map[string]float64{}
	for i, st := range loopStages {
		if ns := l.busyNs[i].Load(); ns > 0 {
			d.Busy[st] = time.Duration(ns).Seconds()
		}
	}
	if n := l.dropped.Load(); n > 0 {
		d.Dropped = map[string]int64{pipeline.StageShadow: n}
	}
	d.LatencyRatio, _ = l.lat.ratio()
}

// waitHistograms looks the queue-wait histograms up once per stage.
func (l *frameLoop) waitHistograms() {
	l.wait = map[string]prometheus.Observer{}
	for _, st := range loopStages {
		l.wait[st] = l.m.PipelineWait.WithLabelValues(st)
	}
}

// run is the processing loop: the latest frame of every stream goes
// through preprocess, inference (batched when the model allows) and
// postprocess with the sinks as concurrent stages (pipeline.Stages), and
// sampled frames to the FP32 shadow on a worker of its own, which never
// delays int8: a sample that finds it busy is dropped. Frames in flight
// are finished when ctx ends.
func (l *frameLoop) run(ctx context.Context) error {
	l.ctx, l.shadow = ctx, make(chan shadowWork, 1)
	defer func() {
		for _, it := range l.all {
			it.img.Close()
		}
	}()
	l.waitHistograms()
	stats := pipeline.NewStageStats()
	stats.OnObserve = func(stage string, busy, wait time.Duration) {
		l.addBusy(stage, busy)
		l.wait[stage].Observe(wait.Seconds())
	}
	var shadowDone sync.WaitGroup
	shadowDone.Add(1)
	go func() {
		defer shadowDone.Done()
		for w := range l.shadow {
			t0 := time.Now()
			l.shadowFrame(w)
			l.addBusy(pipeline.StageShadow, time.Since(t0))
			l.put(w.it)
		}
	}()
	// The stages run on a context of their own, so that the frames in
	// flight at shutdown are finished: next ends them when ctx does.
	err := pipeline.Stages{
		Stats:   stats,
		Next:    l.next,
		Deliver: l.deliver,
		Fail: func(j *pipeline.Job, i int, stage string, err error) {
			l.frameFailed(j.Tag.(*jobTag).items[i].st, stage, err)
		},
		Done: l.done,
	}.Run(context.WithoutCancel(ctx))
	close(l.shadow)
	shadowDone.Wait()
	return err
}

// next takes the latest frame of each stream, round robin, up to the int8
// model's batch, and returns them as jobs: one on the int8 model, and
// those of streams the guard moved to FP32 on the FP32 model. Between two
// takes it lets the canary be decided. It returns io.EOF once ctx ends.
func (l *frameLoop) next(context.Context) (*pipeline.Job, error) {
	for {
		if len(l.pending) > 0 {
			j := l.pending[0]
			l.pending = l.pending[1:]
			return j, nil
		}
		if l.pingEvery > 0 && time.Since(l.lastPing) >= l.pingEvery {
			l.ping()
			l.lastPing = time.Now()
		}
		if l.ctx.Err() != nil {
			return nil, io.EOF
		}
		l.gate.mu.Lock()
		p, _ := l.current()
		l.life.betweenFrames(p)
		p, mods := l.current()
		batch := max(1, mods.int8.det.Batch)
		list := l.streams()
		var main, fb []*item
		for k := 0; k < len(list) && len(main)+len(fb) < batch; k++ {
			st := list[(l.rr+k)%len(list)]
			it := l.get()
			meta, ok := st.take(&it.img)
			if !ok {
				l.unget(it)
				continue
			}
			it.st, it.meta = st, meta
			l.gate.inflight.Add(1)
			if l.life.fallsBack(st, mods) {
				fb = append(fb, it)
			} else {
				main = append(main, it)
			}
		}
		l.rr++
		l.gate.mu.Unlock()
		if len(main)+len(fb) == 0 {
			select {
			case <-l.wake:
			case <-l.ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if len(main) > 0 {
			l.pending = append(l.pending, l.newJob(p, mods, mods.int8, mods.int8.det, false, main))
		}
		if len(fb) == 0 {
			continue
		}
		// The FP32 model is loaded while a stream falls back to it; it
		// loads here only after a reload that changed the models.
		fd, err := mods.fp32.detector(l.ctx)
		if err != nil {
			for _, it := range fb {
				l.frameFailed(it.st, pipeline.StageInfer, err)
				l.put(it)
			}
			continue
		}
		for fpBatch := max(1, fd.Batch); len(fb) > 0; {
			k := min(fpBatch, len(fb))
			l.pending = append(l.pending, l.newJob(p, mods, mods.fp32, fd, true, fb[:k]))
			fb = fb[k:]
		}
	}
}

// deliver hands one decoded frame downstream and offers it to the shadow.
func (l *frameLoop) deliver(j *pipeline.Job, i int, dets []postprocess.Detection) error {
	tag := j.Tag.(*jobTag)
	it := tag.items[i]
	tm := j.Timing[i]
	l.serveFrame(it.work, tag.m.precision, j.Det.Names, dets, tm)
	l.workTime.Add(int64(tm.Preprocess + tm.Postprocess + tm.Infer/time.Duration(len(tag.items))))
	canary := l.life.canaryRunning()
	if tag.fallback && !canary {
		return nil // FP32 served the frame: only a canary has use for it
	}
	if !l.shouldShadow(tag.p.Shadow, it.st, canary) {
		return nil
	}
	it.dets = append(it.dets[:0], dets...)
	it.infer = tm.Infer
	select {
	case l.shadow <- shadowWork{p: tag.p, mods: tag.mods, fallback: tag.fallback, it: it}:
		tag.shadowed[i] = true // from here on the shadow worker owns it
	default:
		l.dropped.Add(1) // yedge_pipeline_dropped_total{stage="shadow"}
	}
	return nil
}

// done gives back the job's frames not held by the shadow worker, and
// the job.
func (l *frameLoop) done(j *pipeline.Job) {
	tag := j.Tag.(*jobTag)
	for i, it := range tag.items {
		if !tag.shadowed[i] {
			l.put(it)
		}
	}
	tag.mods, tag.m = nil, nil // let a swapped-out model go
	l.mu.Lock()
	l.jobs = append(l.jobs, tag)
	l.mu.Unlock()
}

// frameFailed counts a frame lost in a stage.
func (l *frameLoop) frameFailed(st *stream, stage string, err error) {
	st.count(st.failed, stage, 1)
	st.board.AddError(errEntry{At: time.Now(), Class: errFrame, Where: stage, Error: err.Error()})
	l.errs.add(errFrame, st.plan.Name+" "+stage, err)
	l.log.Warn("frame failed", "stream", st.plan.Name, "stage", stage, "err", err)
}

// serveFrame hands one served frame's detections to everything downstream:
// stage metrics, counters, the web view and the sinks. The int8 path and a
// stream the guard moved to FP32 share it.
func (l *frameLoop) serveFrame(it work, precision string, names []string, dets []postprocess.Detection, tm pipeline.Timing) {
	l.observe(it.st, precision, it.meta.read, tm)
	now := time.Now()
	it.st.board.Record(now, it.meta.read, tm)
	if it.st.board.WantLive(now) {
		if err := it.st.board.DrawLive(it.img, it.meta.src.Index, dets, names); err != nil {
			l.log.Warn("web view", "stream", it.st.plan.Name, "err", err)
		}
	}
	it.st.count(it.st.inferred, precision, 1)
	for _, x := range dets {
		it.st.count(it.st.detections, postprocess.Name(names, x.Class), 1)
	}
	l.writeSinks(it, precision, names, dets, tm)
}

// observe records a frame's stage times.
func (l *frameLoop) observe(st *stream, precision string, read time.Duration, tm pipeline.Timing) {
	if read > 0 {
		l.m.ObserveStage(st.plan.Name, precision, metrics.StageRead, read)
	}
	l.m.ObserveStage(st.plan.Name, precision, metrics.StagePreprocess, tm.Preprocess)
	l.m.ObserveStage(st.plan.Name, precision, metrics.StageInfer, tm.Infer)
	l.m.ObserveStage(st.plan.Name, precision, metrics.StagePostprocess, tm.Postprocess)
}

// writeSinks writes one frame's record (the schema of sinks.Record, as
// `yedge detect --out` writes it).
func (l *frameLoop) writeSinks(it work, precision string, names []string, dets []postprocess.Detection, tm pipeline.Timing) {
	k := l.sinks()
	if k.empty() {
		return
	}
	f := sinks.Frame{Frame: it.meta.src, Stream: it.st.plan.Name, Width: it.img.Cols(), Height: it.img.Rows(), Read: it.meta.read}
	k.write(sinks.NewRecord(f, precision, names, dets, sinks.Stages(tm)))
}

// shouldShadow applies the shadow policy: every EveryN-th inferred frame of
// each stream, and with a budget, only while the FP32 share of compute time
// is below it.
func (l *frameLoop) shouldShadow(sh ShadowPlan, st *stream, canary bool) bool {
	if canary {
		// A canary runs on every EveryN-th frame, shadow or not.
		return st.shouldShadow(sh.EveryN)
	}
	if !sh.Enabled || !st.shouldShadow(sh.EveryN) {
		return false
	}
	work := l.workTime.Load()
	return sh.Budget <= 0 || work <= 0 || float64(l.shadowTime.Load())/float64(work) <= sh.Budget
}

// shadowHook, when set (by tests), runs at the start of every shadowed
// frame: a slow FP32 model on demand.
var shadowHook func()

// shadowFrame runs, on the shadow worker, the FP32 model on a sampled
// frame through the same Detector path as int8 and adds the frame's
// agreement to the stream's rolling window; a running canary runs on the
// frame too, and the guard judges the window. While FP32 serves the frame
// (everywhere, or for a stream the guard moved), only the canary runs.
func (l *frameLoop) shadowFrame(w shadowWork) {
	if shadowHook != nil {
		shadowHook()
	}
	ctx := context.Background() // the frame is finished even at shutdown
	p, mods, it := w.p, w.mods, w.it
	if w.fallback || mods.fp32Serving() {
		// FP32 served the frame: its detections are the reference.
		if err := l.life.shadowed(ctx, p, it.st, it.img, false, nil, it.dets); err != nil {
			l.frameFailed(it.st, "canary", err)
		}
		return
	}
	fd, err := mods.fp32.detector(ctx) // loads a closed on-demand FP32 model
	if err != nil {
		l.frameFailed(it.st, "shadow", err)
		return
	}
	t0 := time.Now()
	fp32Dets, tm, err := fd.Detect(ctx, it.img)
	if err != nil {
		l.frameFailed(it.st, "shadow", err)
		return
	}
	l.observe(it.st, metrics.PrecisionFP32, 0, tm)
	it.st.count(it.st.inferred, metrics.PrecisionFP32, 1)
	it.st.shadowed.Add(1)
	int8Dets := it.dets
	fa, pairs := agreement.MatchPairs(int8Dets, fp32Dets, p.Shadow.IoU)
	it.st.agree.Add(fa)
	now := time.Now()
	it.st.board.RecordFP32(now, tm.Infer)
	if it.st.board.Watching(now) {
		if err := it.st.board.DrawCompare(it.img, it.meta.src.Index, fd.Names, int8Dets, fp32Dets, fa, pairs); err != nil {
			l.log.Warn("web view", "stream", it.st.plan.Name, "err", err)
		}
	}
	if err := l.life.shadowed(ctx, p, it.st, it.img, true, int8Dets, fp32Dets); err != nil {
		l.frameFailed(it.st, "canary", err)
	}
	l.shadowTime.Add(int64(time.Since(t0)))
	l.lat.add(it.infer, tm.Infer)
}

// latencyPair keeps the last inference latencies of both precisions on
// shadowed frames, for the int8/FP32 ratio of medians.
type latencyPair struct {
	mu         sync.Mutex
	int8, fp32 []time.Duration
	next       int
}

const latencyWindow = 101

func (l *latencyPair) add(i8, f32 time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.int8) < latencyWindow {
		l.int8 = append(l.int8, i8)
		l.fp32 = append(l.fp32, f32)
		return
	}
	l.int8[l.next], l.fp32[l.next] = i8, f32
	l.next = (l.next + 1) % latencyWindow
}

func median(d []time.Duration) time.Duration {
	c := slices.Clone(d)
	slices.Sort(c)
	return c[len(c)/2]
}

func (l *latencyPair) ratio() (float64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.int8) == 0 {
		return 0, false
	}
	f := median(l.fp32)
	if f <= 0 {
		return 0, false
	}
	return float64(median(l.int8)) / float64(f), true
}
