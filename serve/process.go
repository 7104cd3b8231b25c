package serve

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/sinks"
)

func (s *Server) observe(stream, precision string, read, pre, infer, post time.Duration) {
	h := s.m.StageSeconds
	if read > 0 {
		h.WithLabelValues(stream, precision, "read").Observe(read.Seconds())
	}
	h.WithLabelValues(stream, precision, "preprocess").Observe(pre.Seconds())
	h.WithLabelValues(stream, precision, "infer").Observe(infer.Seconds())
	h.WithLabelValues(stream, precision, "postprocess").Observe(post.Seconds())
}

func (s *Server) frameFailed(stream, stage string, err error) {
	s.m.FramesFailed.WithLabelValues(stream, stage).Inc()
	s.errs.add("stream " + stream + " " + stage + ": " + err.Error())
	s.log.Warn("frame failed", "stream", stream, "stage", stage, "err", err)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (s *Server) writeSinks(stream, precision string, it work, dets []postprocess.Detection, pre, infer, post time.Duration) {
	if len(s.sink) == 0 {
		return
	}
	names := s.int8.det.Names
	r := &sinks.Record{Stream: stream, Frame: it.meta.index, Time: it.meta.time, Precision: precision,
		Width: it.img.Cols(), Height: it.img.Rows(),
		Ms:         map[string]float64{"read": ms(it.meta.read), "preprocess": ms(pre), "infer": ms(infer), "postprocess": ms(post)},
		Detections: make([]sinks.Detection, 0, len(dets))}
	for _, d := range dets {
		r.Detections = append(r.Detections, sinks.Detection{Class: d.Class, Name: postprocess.Name(names, d.Class), Score: d.Score,
			Box: [4]float32{d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2}})
	}
	if err := s.sink.Write(r); err != nil {
		// JSONL errors arrive through OnError; this is the stdout path.
		s.m.SinkErrors.WithLabelValues("write").Inc()
	}
}

// syncSinkMetrics copies the JSONL sinks' counters into the metrics.
func (s *Server) syncSinkMetrics() {
	for _, j := range s.jsonl {
		st := j.Stats()
		name := j.Name()
		if d := st.Written - s.sinkSeen[name]; d > 0 {
			s.m.SinkWritten.WithLabelValues(name).Add(float64(d))
			s.sinkSeen[name] = st.Written
		}
	}
}

// shouldShadow applies the shadow policy: every Nth inferred frame of each
// stream, and with a budget, only while the FP32 share of compute time is
// below it.
func (s *Server) shouldShadow(stream string) bool {
	sh := s.cfg.Shadow
	if sh.Enabled != nil && !*sh.Enabled {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.shadowN[stream]
	s.shadowN[stream] = n + 1
	if sh.EveryN > 0 && n%int64(sh.EveryN) != 0 {
		return false
	}
	if sh.Budget > 0 && s.workTime > 0 && float64(s.shadowTime)/float64(s.workTime) > sh.Budget {
		return false
	}
	return true
}

func (s *Server) maybeShadow(ctx context.Context, it work, int8Dets []postprocess.Detection, int8Infer time.Duration) {
	name := it.st.spec.Name
	if !s.shouldShadow(name) {
		return
	}
	t0 := time.Now()
	f := s.fp32.det
	xf, err := f.Preprocess(it.img, 0)
	if err != nil {
		s.frameFailed(name, "shadow", err)
		return
	}
	pre := time.Since(t0)
	i0 := time.Now()
	if err := f.Infer(ctx); err != nil {
		s.frameFailed(name, "shadow", err)
		return
	}
	infer := time.Since(i0)
	p0 := time.Now()
	fp32Dets := f.Postprocess(0, xf)
	post := time.Since(p0)
	s.observe(name, "fp32", 0, pre, infer, post)
	s.m.FramesInferred.WithLabelValues(name, "fp32").Inc()
	s.m.ShadowFrames.WithLabelValues(name).Inc()
	iou := float32(s.cfg.Shadow.IoU)
	if iou <= 0 {
		iou = 0.5
	}
	a := Match(int8Dets, fp32Dets, iou)
	s.mu.Lock()
	ag := s.agree[name]
	s.shadowTime += time.Since(t0)
	s.mu.Unlock()
	if ag == nil {
		return
	}
	ag.Add(a)
	fig := ag.Figures()
	s.m.AgreementPrecision.WithLabelValues(name).Set(fig.Precision)
	s.m.AgreementRecall.WithLabelValues(name).Set(fig.Recall)
	s.m.AgreementIoU.WithLabelValues(name).Set(fig.MeanIoU)
	s.m.AgreementScoreDiff.WithLabelValues(name).Set(fig.ScoreDiff)
	s.m.AgreementCountDiff.WithLabelValues(name).Set(fig.CountDiff)
	s.lat.add(int8Infer, infer)
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

// errRing keeps the last errors for /status.
type errRing struct {
	mu   sync.Mutex
	list []errEntry
}

type errEntry struct {
	At    time.Time `json:"at"`
	Error string    `json:"error"`
}

func (r *errRing) add(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, errEntry{time.Now(), msg})
	if len(r.list) > 20 {
		r.list = r.list[len(r.list)-20:]
	}
}

func (r *errRing) snapshot() []errEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}
