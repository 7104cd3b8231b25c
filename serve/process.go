package serve

import (
	"context"
	"slices"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/sinks"
)

// work is one frame taken from a stream for inference.
type work struct {
	st   *stream
	img  gocv.Mat
	meta frameMeta
}

// loop is the processing loop: it takes the latest frame of every stream,
// runs int8 on them (batched when the model allows), the FP32 shadow on a
// sample, writes the sinks, and pings the watchdog.
func (s *Server) loop(ctx context.Context) error {
	var pool []gocv.Mat
	defer func() {
		for i := range pool {
			pool[i].Close()
		}
	}()
	var lastPing time.Time
	var items []work
	rr := 0
	for {
		if s.opts.WatchdogEvery > 0 && time.Since(lastPing) >= s.opts.WatchdogEvery {
			s.notify("WATCHDOG=1")
			lastPing = time.Now()
		}
		if ctx.Err() != nil {
			return nil
		}
		s.procMu.Lock()
		p, mods := s.current()
		batch := max(1, mods.int8.det.Batch)
		for len(pool) < batch {
			pool = append(pool, gocv.NewMat())
		}
		list := s.streamList()
		items = items[:0]
		for k := 0; k < len(list) && len(items) < batch; k++ {
			st := list[(rr+k)%len(list)]
			if meta, ok := st.take(&pool[len(items)]); ok {
				items = append(items, work{st: st, img: pool[len(items)], meta: meta})
			}
		}
		rr++
		if len(items) == 0 {
			s.procMu.Unlock()
			select {
			case <-s.wake:
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		s.process(ctx, p, mods, items)
		s.decideCanary(p)
		s.procMu.Unlock()
	}
}

// frameFailed counts a frame lost in a stage.
func (s *Server) frameFailed(st *stream, stage string, err error) {
	st.count(st.failed, stage, 1)
	st.view.addError(errEntry{At: time.Now(), Class: errFrame, Where: stage, Error: err.Error()})
	s.errs.add(errFrame, st.plan.Name+" "+stage, err)
	s.log.Warn("frame failed", "stream", st.plan.Name, "stage", stage, "err", err)
}

// process runs one batch of frames through int8 and, when sampled, FP32.
func (s *Server) process(ctx context.Context, p Plan, mods *models, items []work) {
	t0 := time.Now()
	if !mods.fp32Serving() {
		// Streams the guard moved to FP32 are served by the FP32 model.
		rest := items[:0:0]
		for _, it := range items {
			if it.st.guard.fallback.Load() {
				s.processFallback(ctx, p, mods, it)
			} else {
				rest = append(rest, it)
			}
		}
		if items = rest; len(items) == 0 {
			s.workTime.Add(int64(time.Since(t0)))
			return
		}
	}
	d := mods.int8.det
	precision := mods.int8.precision
	ok := make([]bool, len(items))
	pre := make([]time.Duration, len(items))
	transforms := make([]preprocess.Transform, len(items))
	for i, it := range items {
		p0 := time.Now()
		xf, err := d.Preprocess(it.img, i)
		if err != nil {
			s.frameFailed(it.st, metrics.StagePreprocess, err)
			continue
		}
		transforms[i], ok[i], pre[i] = xf, true, time.Since(p0)
	}
	i0 := time.Now()
	if err := d.Infer(ctx); err != nil {
		for _, it := range items {
			s.frameFailed(it.st, metrics.StageInfer, err)
		}
		return
	}
	infer := time.Since(i0)
	for i, it := range items {
		if !ok[i] {
			continue
		}
		p0 := time.Now()
		dets := d.Postprocess(i, transforms[i])
		tm := pipeline.Timing{Preprocess: pre[i], Infer: infer, Postprocess: time.Since(p0)}
		s.deliver(it, precision, d.Names, dets, tm)
		s.maybeShadow(ctx, p, mods, it, dets, infer)
	}
	s.workTime.Add(int64(time.Since(t0)))
}

// processFallback serves one frame of a stream the guard moved to FP32;
// a running canary still sees it when sampled.
func (s *Server) processFallback(ctx context.Context, p Plan, mods *models, it work) {
	d := mods.fp32.det
	dets, tm, err := d.Detect(ctx, it.img)
	if err != nil {
		s.frameFailed(it.st, metrics.StageInfer, err)
		return
	}
	s.deliver(it, metrics.PrecisionFP32, d.Names, dets, tm)
	if c := s.currentCanary(); c != nil && s.shouldShadow(p.Shadow, it.st, true) {
		s.runCanary(ctx, c, it, dets, nil)
	}
}

// deliver hands one served frame's detections to everything downstream:
// stage metrics, counters, the web view and the sinks. The int8 path and a
// stream the guard moved to FP32 share it.
func (s *Server) deliver(it work, precision string, names []string, dets []postprocess.Detection, tm pipeline.Timing) {
	s.observe(it.st, precision, it.meta.read, tm)
	now := time.Now()
	it.st.view.record(now, it.meta.read, tm)
	if it.st.view.wantLive(now) {
		s.drawLive(it, dets, names)
	}
	it.st.count(it.st.inferred, precision, 1)
	for _, x := range dets {
		it.st.count(it.st.detections, postprocess.Name(names, x.Class), 1)
	}
	s.writeSinks(it, precision, names, dets, tm)
}

// observe records a frame's stage times.
func (s *Server) observe(st *stream, precision string, read time.Duration, tm pipeline.Timing) {
	if read > 0 {
		s.m.ObserveStage(st.plan.Name, precision, metrics.StageRead, read)
	}
	s.m.ObserveStage(st.plan.Name, precision, metrics.StagePreprocess, tm.Preprocess)
	s.m.ObserveStage(st.plan.Name, precision, metrics.StageInfer, tm.Infer)
	s.m.ObserveStage(st.plan.Name, precision, metrics.StagePostprocess, tm.Postprocess)
}

// writeSinks writes one frame's record (the schema of sinks.Record, as
// `yedge detect --out` writes it).
func (s *Server) writeSinks(it work, precision string, names []string, dets []postprocess.Detection, tm pipeline.Timing) {
	s.mu.Lock()
	k := s.sinks
	s.mu.Unlock()
	if k.empty() {
		return
	}
	r := sinks.NewRecord(it.st.plan.Name, it.meta.index, it.meta.time, precision, it.img.Cols(), it.img.Rows(), names, dets)
	r.Ms = map[string]float64{"read": ms(it.meta.read), "preprocess": ms(tm.Preprocess), "infer": ms(tm.Infer), "postprocess": ms(tm.Postprocess)}
	k.write(r)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// shouldShadow applies the shadow policy: every EveryN-th inferred frame of
// each stream, and with a budget, only while the FP32 share of compute time
// is below it.
func (s *Server) shouldShadow(sh ShadowPlan, st *stream, canary bool) bool {
	if canary {
		// A canary runs on every EveryN-th frame, shadow or not.
		return st.shouldShadow(sh.EveryN)
	}
	if !sh.Enabled || !st.shouldShadow(sh.EveryN) {
		return false
	}
	work := s.workTime.Load()
	return sh.Budget <= 0 || work <= 0 || float64(s.shadowTime.Load())/float64(work) <= sh.Budget
}

// maybeShadow runs the FP32 model on a sampled frame through the same
// Detector path as int8, and adds the frame's agreement to the stream's
// rolling window; a running canary runs on the frame too, and the guard
// judges the window. While FP32 serves, the shadow trivially agrees and
// only the canary runs.
func (s *Server) maybeShadow(ctx context.Context, p Plan, mods *models, it work, int8Dets []postprocess.Detection, int8Infer time.Duration) {
	c := s.currentCanary()
	if !s.shouldShadow(p.Shadow, it.st, c != nil) {
		return
	}
	if mods.fp32Serving() {
		if c != nil {
			s.runCanary(ctx, c, it, int8Dets, nil)
		}
		return
	}
	t0 := time.Now()
	fp32Dets, tm, err := mods.fp32.det.Detect(ctx, it.img)
	if err != nil {
		s.frameFailed(it.st, "shadow", err)
		return
	}
	s.observe(it.st, metrics.PrecisionFP32, 0, tm)
	it.st.count(it.st.inferred, metrics.PrecisionFP32, 1)
	it.st.shadowed.Add(1)
	fa, pairs := MatchPairs(int8Dets, fp32Dets, p.Shadow.IoU)
	it.st.agree.Add(fa)
	now := time.Now()
	it.st.view.recordFP32(now, tm.Infer)
	if it.st.view.watching(now) {
		s.drawCompare(it, mods.fp32.det.Names, int8Dets, fp32Dets, fa, pairs)
	}
	if c != nil {
		// The serving model's agreement on the canary's frames, at the
		// canary's IoU.
		sa := Match(int8Dets, fp32Dets, canaryIoU)
		s.runCanary(ctx, c, it, fp32Dets, &sa)
	}
	s.checkGuard(p, it.st)
	s.shadowTime.Add(int64(time.Since(t0)))
	s.lat.add(int8Infer, tm.Infer)
	if r, ok := s.lat.ratio(); ok {
		s.m.LatencyRatio.Set(r)
	}
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
