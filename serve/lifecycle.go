package serve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yedge/yedge/agreement"
	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/modelstore"
	"github.com/yedge/yedge/postprocess"
)

// The model lifecycle. The daemon serves at once with what it has: the
// configured int8 model, else the FP32 model in the int8 slot while the
// int8 one is prepared in the background (Options.Prepare: quantization,
// owned by the command). Every new int8 model (prepared at start-up,
// reloaded, pushed with POST /models, rolled back to) is loaded and warmed
// up beside the serving one, then runs as a canary on the shadowed frames:
// it is promoted (swapped in between two frames, under procMu) only when
// its agreement with FP32 passes the canary plan, else rejected and kept
// in the store with the reason. The guard moves a stream to FP32 when the
// serving int8 model's rolling agreement stays low; only a canary that
// passes brings it back to int8.

// canaryIoU matches a canary detection to an FP32 one (same class).
const canaryIoU = 0.5

// guardMinFrames is the least number of shadowed frames in a stream's
// window before the guard judges it.
const guardMinFrames = 5

// errBusy refuses a new model while another is prepared or in canary.
var errBusy = errors.New("another int8 model is being prepared or runs as a canary")

// canaryRun is a model in canary.
type canaryRun struct {
	m       *model
	source  string
	started time.Time
	want    int
	// canary and serving are the canary's and the serving int8 model's
	// agreement with FP32 on the same frames.
	canary, serving agreement.Sum
	servingInt8     bool
}

// decision is the last canary decision, for /status.
type decision struct {
	At     time.Time `json:"at"`
	Model  string    `json:"model"`
	Source string    `json:"source"`
	// Result is promoted, rejected, failed (not loaded) or restored (the
	// store's promoted model at start-up, no canary again).
	Result           string   `json:"result"`
	Reason           string   `json:"reason,omitempty"`
	Frames           int      `json:"frames,omitempty"`
	Recall           float64  `json:"recall,omitempty"`
	Precision        float64  `json:"precision,omitempty"`
	ServingRecall    *float64 `json:"serving_recall,omitempty"`
	ServingPrecision *float64 `json:"serving_precision,omitempty"`
}

// lifecycle is the server's model lifecycle state.
type lifecycle struct {
	busy  atomic.Bool    // a model is prepared, built or in canary
	wg    sync.WaitGroup // preparations and builds in the background
	store *modelstore.Store
	// storeErr is why the store (state_dir set) could not be opened: shown
	// in /status, /readyz and pushes' answers.
	storeErr error

	mu           sync.Mutex
	phase        string
	calibDone    int
	calibTotal   int
	buildStart   time.Time
	buildSeconds float64
	candidate    string     // short hash of the model built or in canary
	canary       *canaryRun // also read by the loop, under procMu
	last         *decision
}

// guardState is a stream's guard.
type guardState struct {
	fallback atomic.Bool
	mu       sync.Mutex
	lowSince time.Time
	reason   string
	at       time.Time
	trans    map[string]int64
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// setPhase records the lifecycle phase.
func (s *Server) setPhase(phase string) {
	s.life.mu.Lock()
	s.life.phase = phase
	s.life.mu.Unlock()
	s.m.SetPhase(phase)
}

// fp32Serving reports whether the FP32 model fills the int8 slot.
func (m *models) fp32Serving() bool { return m.int8 == m.fp32 }

// servingOf says what serves a stream: precision and short hash.
func servingOf(st *stream, mods *models) (string, string) {
	if mods == nil {
		return "", ""
	}
	if mods.fp32Serving() || st.guard.fallback.Load() {
		return metrics.PrecisionFP32, short(mods.fp32.file.SHA256)
	}
	return metrics.PrecisionInt8, short(mods.int8.file.SHA256)
}

// prepareInBackground runs Options.Prepare (quantization at start-up) and
// offers its model as a canary, while FP32 serves.
func (s *Server) prepareInBackground(ctx context.Context) {
	if !s.life.busy.CompareAndSwap(false, true) {
		return
	}
	s.setPhase(metrics.PhaseCalibrating)
	s.log.Info("preparing the int8 model in the background; FP32 serves meanwhile")
	f, err := s.opts.Prepare(ctx, func(done, total int) {
		s.life.mu.Lock()
		s.life.calibDone, s.life.calibTotal = done, total
		s.life.mu.Unlock()
		s.m.CalibImages.WithLabelValues("done").Set(float64(done))
		s.m.CalibImages.WithLabelValues("total").Set(float64(total))
	})
	if err != nil {
		if ctx.Err() == nil {
			s.failCandidate("", "startup", fmt.Errorf("preparing the int8 model: %w", err))
		}
		s.life.busy.Store(false)
		s.setPhase(metrics.PhaseServing)
		return
	}
	s.candidate(ctx, f, "startup")
}

// offer loads f beside the serving models in the background and runs it
// as a canary; errBusy when another model is on its way.
func (s *Server) offer(f ModelFile, source string) error {
	if !s.life.busy.CompareAndSwap(false, true) {
		return errBusy
	}
	if err := s.start(f, source); err != nil {
		s.life.busy.Store(false)
		return err
	}
	return nil
}

// start prepares f as the next candidate in the background; the caller
// holds busy (offer, or a push that took it before reading its body) and
// keeps it when start fails.
func (s *Server) start(f ModelFile, source string) error {
	s.mu.Lock()
	ctx := s.runCtx
	if ctx == nil || ctx.Err() != nil {
		s.mu.Unlock()
		return errors.New("the server is not running")
	}
	s.life.wg.Add(1) // under mu, as evaluator.start: never during Run's Wait
	s.mu.Unlock()
	go func() {
		defer s.life.wg.Done()
		s.candidate(ctx, f, source)
	}()
	return nil
}

// candidate loads and warms up f (the caller holds busy), then installs it
// as the canary, or directly when it is the store's promoted model at
// start-up.
func (s *Server) candidate(ctx context.Context, f ModelFile, source string) {
	if st := s.life.store; st != nil && f.Path != st.Path(f.SHA256) {
		// Every model the daemon receives lives in the store, rejected
		// ones too (with the reason); a push is there already.
		if _, _, err := st.AddFile(f.Path, source, ""); err != nil {
			s.log.Warn("model store: model not recorded", "err", err)
		}
	}
	p, _ := s.current()
	m, err := s.build(ctx, p, f)
	if err != nil {
		if ctx.Err() == nil {
			if st := s.life.store; st != nil && source == "push" {
				// A pushed file that is no model for this daemon is not
				// kept: anyone with the token could fill the disk.
				if rerr := st.Remove(f.SHA256); rerr != nil {
					s.log.Warn("model store: a failed push not removed", "sha256", short(f.SHA256), "err", rerr)
				}
			} else {
				s.storeReject(f.SHA256, "not loaded: "+err.Error())
			}
			s.failCandidate(f.SHA256, source, err)
		}
		s.life.busy.Store(false)
		s.setPhase(metrics.PhaseServing)
		return
	}
	restored := false
	if source == "startup" && s.life.store != nil {
		if e, ok := s.life.store.Promoted(); ok && e.SHA256 == f.SHA256 {
			restored = true
		}
	}
	if ctx.Err() != nil {
		m.det.Close()
		return
	}
	s.installCanary(m, source, restored)
}

// build loads and warms up an int8 model with the running plan.
func (s *Server) build(ctx context.Context, p Plan, f ModelFile) (*model, error) {
	s.setPhase(metrics.PhaseBuilding)
	t0 := time.Now()
	s.life.mu.Lock()
	s.life.buildStart, s.life.candidate = t0, short(f.SHA256)
	s.life.mu.Unlock()
	// yedge_model_build_seconds grows while the session (a TensorRT engine:
	// minutes) is built.
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				s.m.ModelBuildSeconds.Set(time.Since(t0).Seconds())
			}
		}
	}()
	m, err := loadModel(ctx, p, metrics.PrecisionInt8, f, p.Models.Batch, true, s.log)
	close(stop)
	if err == nil {
		// A model for other classes would rename every class of the
		// records and metrics ("person" to "class0"): never a candidate.
		_, mods := s.current()
		if got, want := m.det.Layout.Classes, mods.int8.det.Layout.Classes; got != want {
			m.det.Close()
			m, err = nil, fmt.Errorf("model %q has %d classes, the serving model has %d: a model for other classes is not served", f.Path, got, want)
		}
	}
	el := time.Since(t0).Seconds()
	s.life.mu.Lock()
	s.life.buildSeconds, s.life.buildStart = el, time.Time{}
	s.life.mu.Unlock()
	s.m.ModelBuildSeconds.Set(el)
	if err == nil {
		s.log.Info("int8 model built and warmed up", "model", f.Path, "sha256", short(f.SHA256), "seconds", el)
	}
	return m, err
}

// installCanary starts the canary of a built model, between two frames;
// restored promotes it at once.
func (s *Server) installCanary(m *model, source string, restored bool) {
	s.procMu.Lock()
	defer s.procMu.Unlock()
	if restored {
		s.promote(m, source, &decision{At: time.Now(), Model: short(m.file.SHA256), Source: source, Result: "restored",
			Reason: "the model store's promoted model, made from the same FP32 model and options"})
		return
	}
	_, mods := s.current()
	p, _ := s.current()
	c := &canaryRun{m: m, source: source, started: time.Now(), want: max(1, p.Lifecycle.Canary.Frames), servingInt8: !mods.fp32Serving()}
	s.life.mu.Lock()
	s.life.canary = c
	s.life.mu.Unlock()
	s.m.CanaryFrames.Set(0)
	s.setPhase(metrics.PhaseCanary)
	s.log.Info("canary started", "model", m.file.Path, "sha256", short(m.file.SHA256), "source", source, "frames", c.want)
}

// storeReject records a rejection in the store (if the model is there).
func (s *Server) storeReject(sha, reason string) {
	if st := s.life.store; st != nil {
		if err := st.Reject(sha, reason); err != nil {
			s.log.Debug("model store: rejection not recorded", "err", err)
		}
	}
}

// failCandidate records a model that could not be prepared or loaded.
func (s *Server) failCandidate(sha, source string, err error) {
	s.m.Canaries.WithLabelValues("failed").Inc()
	s.errs.add(errReload, "model", err)
	s.log.Error("new int8 model not loaded; the serving model stays", "source", source, "err", err)
	s.life.mu.Lock()
	s.life.last = &decision{At: time.Now(), Model: short(sha), Source: source, Result: "failed", Reason: err.Error()}
	s.life.mu.Unlock()
}

// currentCanary returns the running canary (the loop holds procMu).
func (s *Server) currentCanary() *canaryRun {
	s.life.mu.Lock()
	defer s.life.mu.Unlock()
	return s.life.canary
}

// runCanary runs the canary on a shadowed frame: fp32 are the FP32
// detections, serving the serving int8 model's agreement with them (nil
// when FP32 serves the frame).
func (s *Server) runCanary(ctx context.Context, c *canaryRun, it work, fp32 []postprocess.Detection, serving *agreement.Frame) {
	dets, _, err := c.m.det.Detect(ctx, it.img)
	if err != nil {
		s.frameFailed(it.st, "canary", err)
		return
	}
	s.life.mu.Lock()
	c.canary.Add(agreement.Match(dets, fp32, canaryIoU))
	if serving != nil {
		c.serving.Add(*serving)
	}
	r, pr := c.canary.Rates()
	n := c.canary.Frames
	s.life.mu.Unlock()
	s.m.CanaryFrames.Set(float64(n))
	s.m.CanaryRecall.Set(r)
	s.m.CanaryPrecision.Set(pr)
}

// decideCanary promotes or rejects the canary once it has run on its
// frames; the loop calls it between frames, holding procMu.
func (s *Server) decideCanary(p Plan) {
	s.life.mu.Lock()
	c := s.life.canary
	if c == nil || c.canary.Frames < c.want {
		s.life.mu.Unlock()
		return
	}
	s.life.canary = nil
	s.life.mu.Unlock()
	s.drain() // the canary and the serving model may still run frames
	cp := p.Lifecycle.Canary
	r, pr := c.canary.Rates()
	d := &decision{At: time.Now(), Model: short(c.m.file.SHA256), Source: c.source, Frames: c.canary.Frames, Recall: r, Precision: pr}
	var why []string
	if r < cp.MinRecall {
		why = append(why, fmt.Sprintf("recall %.3f < canary.min_recall %.2f", r, cp.MinRecall))
	}
	if pr < cp.MinPrecision {
		why = append(why, fmt.Sprintf("precision %.3f < canary.min_precision %.2f", pr, cp.MinPrecision))
	}
	if c.servingInt8 && c.serving.Frames > 0 {
		sr, sp := c.serving.Rates()
		d.ServingRecall, d.ServingPrecision = &sr, &sp
		if r < sr-cp.Tolerance {
			why = append(why, fmt.Sprintf("recall %.3f worse than the serving model's %.3f by more than canary.tolerance %.2f", r, sr, cp.Tolerance))
		}
		if pr < sp-cp.Tolerance {
			why = append(why, fmt.Sprintf("precision %.3f worse than the serving model's %.3f by more than canary.tolerance %.2f", pr, sp, cp.Tolerance))
		}
	}
	if len(why) == 0 {
		d.Result = "promoted"
		s.m.Canaries.WithLabelValues("promoted").Inc()
		s.promote(c.m, c.source, d)
		return
	}
	d.Result, d.Reason = "rejected", strings.Join(why, "; ")
	s.m.Canaries.WithLabelValues("rejected").Inc()
	c.m.det.Close()
	s.releaseFP32(p)
	s.storeReject(c.m.file.SHA256, d.Reason)
	s.log.Warn("canary rejected; the serving model stays", "model", c.m.file.Path, "sha256", d.Model, "reason", d.Reason,
		"recall", r, "precision", pr, "frames", d.Frames)
	s.life.mu.Lock()
	s.life.last = d
	s.life.mu.Unlock()
	s.life.busy.Store(false)
	s.setPhase(metrics.PhaseServing)
}

// promote swaps m in as the serving int8 model (the caller holds procMu:
// between two frames), brings every stream the guard moved to FP32 back to
// int8, and records the promotion.
func (s *Server) promote(m *model, source string, d *decision) {
	s.drain()
	s.mu.Lock()
	old := s.models
	s.models = &models{int8: m, fp32: old.fp32}
	s.mu.Unlock()
	s.m.SetModelInfo(m.precision, m.file.Path, m.file.SHA256, m.det.Session.Provider)
	if !old.fp32Serving() {
		old.int8.det.Close()
	}
	for _, st := range s.streamList() {
		if st.guard.fallback.Swap(false) {
			st.count(st.guardTransitions(), metrics.PrecisionInt8, 1)
			s.log.Info("guard: stream back to int8 after a passing canary", "stream", st.plan.Name)
		}
		st.guard.mu.Lock()
		st.guard.lowSince = time.Time{}
		st.guard.mu.Unlock()
		st.agree.Reset()
	}
	if st := s.life.store; st != nil && d.Result != "restored" {
		if err := st.Promote(m.file.SHA256); err != nil {
			s.log.Warn("model store: promotion not recorded", "err", err)
		}
	}
	p, _ := s.current()
	s.releaseFP32(p)
	s.log.Info("int8 model promoted", "model", m.file.Path, "sha256", short(m.file.SHA256), "source", source, "result", d.Result,
		"recall", d.Recall, "precision", d.Precision, "frames", d.Frames)
	s.life.mu.Lock()
	s.life.last = d
	s.life.mu.Unlock()
	s.life.busy.Store(false)
	s.setPhase(metrics.PhaseServing)
}

// releaseFP32 closes the on-demand FP32 model while nothing needs it under
// plan p: the shadow off, no canary, no stream the guard moved to FP32 and
// FP32 not serving. The caller holds procMu and has drained the frames in
// flight (between two frames). The next user loads it again: the shadow
// worker on a canary's first frame, or a reload that turns the shadow on.
func (s *Server) releaseFP32(p Plan) {
	_, mods := s.current()
	if p.Shadow.Enabled || mods.fp32Serving() || s.currentCanary() != nil {
		return
	}
	for _, st := range s.streamList() {
		if st.guard.fallback.Load() {
			return
		}
	}
	if mods.fp32.release() {
		s.log.Info("FP32 model closed: the shadow is off and no canary or guard fallback needs it", "model", mods.fp32.file.Path)
	}
}

// guardTransitions returns the stream's transition counters (under cmu
// through count).
func (st *stream) guardTransitions() map[string]int64 {
	st.cmu.Lock()
	defer st.cmu.Unlock()
	if st.guard.trans == nil {
		st.guard.trans = map[string]int64{}
	}
	return st.guard.trans
}

// checkGuard moves a stream to FP32 when the serving int8 model's rolling
// agreement has stayed below the guard for Guard.For, over at least
// guardMinFrames shadowed frames.
func (s *Server) checkGuard(p Plan, st *stream) {
	g := p.Lifecycle.Guard
	if g.For <= 0 {
		return
	}
	f := st.agree.Figures()
	low := f.Frames >= min(guardMinFrames, max(p.Shadow.Window, 1)) && (f.Recall < g.MinRecall || f.Precision < g.MinPrecision)
	now := time.Now()
	st.guard.mu.Lock()
	defer st.guard.mu.Unlock()
	switch {
	case !low:
		st.guard.lowSince = time.Time{}
		return
	case st.guard.lowSince.IsZero():
		st.guard.lowSince = now
		return
	case now.Sub(st.guard.lowSince) < g.For:
		return
	}
	st.guard.reason = fmt.Sprintf("int8 agreement with FP32 low for %s: recall %.3f (guard.min_recall %.2f), precision %.3f (guard.min_precision %.2f) over %d shadowed frames",
		now.Sub(st.guard.lowSince).Round(time.Millisecond), f.Recall, g.MinRecall, f.Precision, g.MinPrecision, f.Frames)
	st.guard.at, st.guard.lowSince = now, time.Time{}
	st.guard.fallback.Store(true)
	st.count(st.guardTransitions(), metrics.PrecisionFP32, 1)
	st.agree.Reset()
	s.errs.add(errFrame, st.plan.Name+" guard", errors.New(st.guard.reason))
	s.log.Warn("guard: stream falls back to FP32; a passing canary brings it back to int8", "stream", st.plan.Name, "reason", st.guard.reason)
}

// lifecycleStatus is the /status lifecycle section.
type lifecycleStatus struct {
	Phase       string                  `json:"phase"`
	Calibration *progress               `json:"calibration,omitempty"`
	Build       *buildStatus            `json:"build,omitempty"`
	Canary      *canaryStatus           `json:"canary,omitempty"`
	Last        *decision               `json:"last_decision,omitempty"`
	Streams     map[string]streamServes `json:"streams"`
	Store       *storeStatus            `json:"store,omitempty"`
}

type progress struct {
	Done  int `json:"done"`
	Total int `json:"total"`
}

type buildStatus struct {
	Model   string  `json:"model"`
	Seconds float64 `json:"seconds"`
	Running bool    `json:"running"`
}

type canaryStatus struct {
	Model            string   `json:"model"`
	Source           string   `json:"source"`
	Frames           int      `json:"frames"`
	Want             int      `json:"want"`
	Recall           float64  `json:"recall"`
	Precision        float64  `json:"precision"`
	ServingRecall    *float64 `json:"serving_recall,omitempty"`
	ServingPrecision *float64 `json:"serving_precision,omitempty"`
}

type streamServes struct {
	Precision  string    `json:"precision"`
	Model      string    `json:"model"`
	Fallback   bool      `json:"guard_fallback"`
	Reason     string    `json:"guard_reason,omitempty"`
	FallbackAt time.Time `json:"guard_at,omitzero"`
}

type storeStatus struct {
	Dir      string             `json:"dir"`
	Error    string             `json:"error,omitempty"`
	Promoted string             `json:"promoted,omitempty"`
	Models   []modelstore.Entry `json:"models"`
}

func (s *Server) lifecycleStatus(mods *models) lifecycleStatus {
	out := lifecycleStatus{Streams: map[string]streamServes{}}
	s.life.mu.Lock()
	out.Phase = s.life.phase
	if s.life.calibTotal > 0 {
		out.Calibration = &progress{Done: s.life.calibDone, Total: s.life.calibTotal}
	}
	if s.life.candidate != "" {
		b := &buildStatus{Model: s.life.candidate, Seconds: s.life.buildSeconds}
		if !s.life.buildStart.IsZero() {
			b.Seconds, b.Running = time.Since(s.life.buildStart).Seconds(), true
		}
		out.Build = b
	}
	if c := s.life.canary; c != nil {
		r, p := c.canary.Rates()
		cs := &canaryStatus{Model: short(c.m.file.SHA256), Source: c.source, Frames: c.canary.Frames, Want: c.want, Recall: r, Precision: p}
		if c.servingInt8 && c.serving.Frames > 0 {
			sr, sp := c.serving.Rates()
			cs.ServingRecall, cs.ServingPrecision = &sr, &sp
		}
		out.Canary = cs
	}
	out.Last = s.life.last
	s.life.mu.Unlock()
	for _, st := range s.streamList() {
		prec, model := servingOf(st, mods)
		st.guard.mu.Lock()
		out.Streams[st.plan.Name] = streamServes{Precision: prec, Model: model, Fallback: st.guard.fallback.Load(), Reason: st.guard.reason, FallbackAt: st.guard.at}
		st.guard.mu.Unlock()
	}
	if st := s.life.store; st != nil {
		idx := st.Snapshot()
		ss := &storeStatus{Dir: st.Dir(), Models: idx.Models}
		if err := st.Check(); err != nil {
			ss.Error = err.Error()
		}
		if n := len(idx.History); n > 0 {
			ss.Promoted = idx.History[n-1]
		}
		out.Store = ss
	} else if err := s.storeErr(); err != nil {
		out.Store = &storeStatus{Dir: s.startPlan.Lifecycle.StateDir, Error: err.Error()}
	}
	return out
}

// storeErr is why state_dir's model store cannot be used: it did not open,
// or its index cannot be read now; nil when it works or no state_dir is
// set.
func (s *Server) storeErr() error {
	if st := s.life.store; st != nil {
		return st.Check()
	}
	return s.life.storeErr
}
