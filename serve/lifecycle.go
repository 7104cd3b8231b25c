package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

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

// lifecycle owns the models: the serving pair, the int8 model prepared in
// the background, the canary, the per-stream guard, the model store and
// the phase. Its API to the rest of the daemon is narrow: which models
// serve (models), a frame was shadowed (shadowed), between two frames
// (betweenFrames), offer a model (offer, take/start for a push), swap
// (setModels, at a reload's commit). It swaps models only between two
// frames, holding the frame gate and having drained it.
type lifecycle struct {
	log  *slog.Logger
	errs *errorLog
	gate *frameGate
	// plan returns the running plan; streams the running streams.
	plan    func() Plan
	streams func() []*stream
	// prepare is Options.Prepare.
	prepare func(ctx context.Context, progress func(done, total int)) (ModelFile, error)

	busy  atomic.Bool    // a model is prepared, built or in canary
	wg    sync.WaitGroup // preparations and builds in the background
	store *modelstore.Store
	// stateDir is the store's folder; openErr is why the store could not
	// be opened: shown in /status, /readyz and pushes' answers.
	stateDir string
	openErr  error

	mu sync.Mutex
	// mods are the serving models; the loop reads them under the gate.
	mods *models
	// ctx is the daemon's run context (nil before Run); closed is set
	// once Run waits for the background work, which then takes no more.
	ctx          context.Context
	closed       bool
	phase        string
	calibDone    int
	calibTotal   int
	buildStart   time.Time
	buildSeconds float64
	// decisions counts canary decisions by result; canaryFig is the
	// running (or last) canary's frames, recall and precision.
	decisions map[string]int64
	canaryFig struct {
		frames            int
		recall, precision float64
	}
	candidate string     // short hash of the model built or in canary
	canary    *canaryRun // also read by the loop, under procMu
	last      *decision
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
func (l *lifecycle) setPhase(phase string) {
	l.mu.Lock()
	l.phase = phase
	l.mu.Unlock()
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
func (l *lifecycle) prepareInBackground(ctx context.Context) {
	if !l.busy.CompareAndSwap(false, true) {
		return
	}
	l.setPhase(metrics.PhaseCalibrating)
	l.log.Info("preparing the int8 model in the background; FP32 serves meanwhile")
	f, err := l.prepare(ctx, func(done, total int) {
		l.mu.Lock()
		l.calibDone, l.calibTotal = done, total
		l.mu.Unlock()
	})
	if err != nil {
		if ctx.Err() == nil {
			l.failCandidate("", "startup", fmt.Errorf("preparing the int8 model: %w", err))
		}
		l.busy.Store(false)
		l.setPhase(metrics.PhaseServing)
		return
	}
	l.runCandidate(ctx, f, "startup")
}

// offer loads f beside the serving models in the background and runs it
// as a canary; errBusy when another model is on its way.
func (l *lifecycle) offer(f ModelFile, source string) error {
	if !l.busy.CompareAndSwap(false, true) {
		return errBusy
	}
	if err := l.start(f, source); err != nil {
		l.busy.Store(false)
		return err
	}
	return nil
}

// start prepares f as the next candidate in the background; the caller
// holds busy (offer, or a push that took it before reading its body) and
// keeps it when start fails.
func (l *lifecycle) start(f ModelFile, source string) error {
	ctx, ok := l.goBackground()
	if !ok {
		return errors.New("the server is not running")
	}
	go func() {
		defer l.wg.Done()
		l.runCandidate(ctx, f, source)
	}()
	return nil
}

// runCandidate loads and warms up f (the caller holds busy), then installs it
// as the canary, or directly when it is the store's promoted model at
// start-up.
func (l *lifecycle) runCandidate(ctx context.Context, f ModelFile, source string) {
	if st := l.store; st != nil && f.Path != st.Path(f.SHA256) {
		// Every model the daemon receives lives in the store, rejected
		// ones too (with the reason); a push is there already.
		if _, _, err := st.AddFile(f.Path, source, ""); err != nil {
			l.log.Warn("model store: model not recorded", "err", err)
		}
	}
	m, err := l.build(ctx, l.plan(), f)
	if err != nil {
		if ctx.Err() == nil {
			if st := l.store; st != nil && source == "push" {
				// A pushed file that is no model for this daemon is not
				// kept: anyone with the token could fill the disk.
				if rerr := st.Remove(f.SHA256); rerr != nil {
					l.log.Warn("model store: a failed push not removed", "sha256", short(f.SHA256), "err", rerr)
				}
			} else {
				l.storeReject(f.SHA256, "not loaded: "+err.Error())
			}
			l.failCandidate(f.SHA256, source, err)
		}
		l.busy.Store(false)
		l.setPhase(metrics.PhaseServing)
		return
	}
	restored := false
	if source == "startup" && l.store != nil {
		if e, ok := l.store.Promoted(); ok && e.SHA256 == f.SHA256 {
			restored = true
		}
	}
	if ctx.Err() != nil {
		m.det.Close()
		return
	}
	l.installCanary(m, source, restored)
}

// build loads and warms up an int8 model with the running plan.
func (l *lifecycle) build(ctx context.Context, p Plan, f ModelFile) (*model, error) {
	l.setPhase(metrics.PhaseBuilding)
	t0 := time.Now()
	l.mu.Lock()
	l.buildStart, l.candidate = t0, short(f.SHA256)
	l.mu.Unlock()
	// yedge_model_build_seconds grows while the session (a TensorRT engine:
	// minutes) is built: it is read from buildStart at scrape time.
	m, err := loadModel(ctx, p, metrics.PrecisionInt8, f, p.Models.Batch, true, l.log)
	if err == nil {
		// A model for other classes would rename every class of the
		// records and metrics ("person" to "class0"): never a candidate.
		if got, want := m.det.Layout.Classes, l.models().int8.det.Layout.Classes; got != want {
			m.det.Close()
			m, err = nil, fmt.Errorf("model %q has %d classes, the serving model has %d: a model for other classes is not served", f.Path, got, want)
		}
	}
	el := time.Since(t0).Seconds()
	l.mu.Lock()
	l.buildSeconds, l.buildStart = el, time.Time{}
	l.mu.Unlock()
	if err == nil {
		l.log.Info("int8 model built and warmed up", "model", f.Path, "sha256", short(f.SHA256), "seconds", el)
	}
	return m, err
}

// installCanary starts the canary of a built model, between two frames;
// restored promotes it at once.
func (l *lifecycle) installCanary(m *model, source string, restored bool) {
	l.gate.mu.Lock()
	defer l.gate.mu.Unlock()
	if restored {
		l.promote(m, source, &decision{At: time.Now(), Model: short(m.file.SHA256), Source: source, Result: "restored",
			Reason: "the model store's promoted model, made from the same FP32 model and options"})
		return
	}
	mods, p := l.models(), l.plan()
	c := &canaryRun{m: m, source: source, started: time.Now(), want: max(1, p.Lifecycle.Canary.Frames), servingInt8: !mods.fp32Serving()}
	l.mu.Lock()
	l.canary = c
	l.mu.Unlock()
	l.mu.Lock()
	l.canaryFig.frames, l.canaryFig.recall, l.canaryFig.precision = 0, 0, 0
	l.mu.Unlock()
	l.setPhase(metrics.PhaseCanary)
	l.log.Info("canary started", "model", m.file.Path, "sha256", short(m.file.SHA256), "source", source, "frames", c.want)
}

// storeReject records a rejection in the store (if the model is there).
func (l *lifecycle) storeReject(sha, reason string) {
	if st := l.store; st != nil {
		if err := st.Reject(sha, reason); err != nil {
			l.log.Debug("model store: rejection not recorded", "err", err)
		}
	}
}

// failCandidate records a model that could not be prepared or loaded.
func (l *lifecycle) failCandidate(sha, source string, err error) {
	l.decided("failed")
	l.errs.add(errReload, "model", err)
	l.log.Error("new int8 model not loaded; the serving model stays", "source", source, "err", err)
	l.mu.Lock()
	l.last = &decision{At: time.Now(), Model: short(sha), Source: source, Result: "failed", Reason: err.Error()}
	l.mu.Unlock()
}

// currentCanary returns the running canary (the loop holds procMu).
func (l *lifecycle) currentCanary() *canaryRun {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.canary
}

// runCanary runs the canary on a shadowed frame: fp32 are the FP32
// detections, serving the serving int8 model's agreement with them (nil
// when FP32 serves the frame).
func (l *lifecycle) runCanary(ctx context.Context, c *canaryRun, img gocv.Mat, fp32 []postprocess.Detection, serving *agreement.Frame) error {
	dets, _, err := c.m.det.Detect(ctx, img)
	if err != nil {
		return err
	}
	l.mu.Lock()
	c.canary.Add(agreement.Match(dets, fp32, canaryIoU))
	if serving != nil {
		c.serving.Add(*serving)
	}
	r, pr := c.canary.Rates()
	n := c.canary.Frames
	l.mu.Unlock()
	l.mu.Lock()
	l.canaryFig.frames, l.canaryFig.recall, l.canaryFig.precision = n, r, pr
	l.mu.Unlock()
	return nil
}

// betweenFrames is the frame loop's hook between two takes of frames
// (it holds the gate): the canary is promoted or rejected once it has run
// on its frames.
func (l *lifecycle) betweenFrames(p Plan) {
	l.mu.Lock()
	c := l.canary
	if c == nil || c.canary.Frames < c.want {
		l.mu.Unlock()
		return
	}
	l.canary = nil
	l.mu.Unlock()
	l.gate.drain() // the canary and the serving model may still run frames
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
		l.decided("promoted")
		l.promote(c.m, c.source, d)
		return
	}
	d.Result, d.Reason = "rejected", strings.Join(why, "; ")
	l.decided("rejected")
	c.m.det.Close()
	l.releaseFP32(p)
	l.storeReject(c.m.file.SHA256, d.Reason)
	l.log.Warn("canary rejected; the serving model stays", "model", c.m.file.Path, "sha256", d.Model, "reason", d.Reason,
		"recall", r, "precision", pr, "frames", d.Frames)
	l.mu.Lock()
	l.last = d
	l.mu.Unlock()
	l.busy.Store(false)
	l.setPhase(metrics.PhaseServing)
}

// promote swaps m in as the serving int8 model (the caller holds procMu:
// between two frames), brings every stream the guard moved to FP32 back to
// int8, and records the promotion.
func (l *lifecycle) promote(m *model, source string, d *decision) {
	l.gate.drain()
	l.mu.Lock()
	old := l.mods
	l.mods = &models{int8: m, fp32: old.fp32}
	l.mu.Unlock()
	if !old.fp32Serving() {
		old.int8.det.Close()
	}
	for _, st := range l.streams() {
		if st.guard.fallback.Swap(false) {
			st.count(st.guardTransitions(), metrics.PrecisionInt8, 1)
			l.log.Info("guard: stream back to int8 after a passing canary", "stream", st.plan.Name)
		}
		st.guard.mu.Lock()
		st.guard.lowSince = time.Time{}
		st.guard.mu.Unlock()
		st.agree.Reset()
	}
	if st := l.store; st != nil && d.Result != "restored" {
		if err := st.Promote(m.file.SHA256); err != nil {
			l.log.Warn("model store: promotion not recorded", "err", err)
		}
	}
	l.releaseFP32(l.plan())
	l.log.Info("int8 model promoted", "model", m.file.Path, "sha256", short(m.file.SHA256), "source", source, "result", d.Result,
		"recall", d.Recall, "precision", d.Precision, "frames", d.Frames)
	l.mu.Lock()
	l.last = d
	l.mu.Unlock()
	l.busy.Store(false)
	l.setPhase(metrics.PhaseServing)
}

// releaseFP32 closes the on-demand FP32 model while nothing needs it under
// plan p: the shadow off, no canary, no stream the guard moved to FP32 and
// FP32 not serving. The caller holds procMu and has drained the frames in
// flight (between two frames). The next user loads it again: the shadow
// worker on a canary's first frame, or a reload that turns the shadow on.
func (l *lifecycle) releaseFP32(p Plan) {
	mods := l.models()
	if p.Shadow.Enabled || mods.fp32Serving() || l.currentCanary() != nil {
		return
	}
	for _, st := range l.streams() {
		if st.guard.fallback.Load() {
			return
		}
	}
	if mods.fp32.release() {
		l.log.Info("FP32 model closed: the shadow is off and no canary or guard fallback needs it", "model", mods.fp32.file.Path)
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
// Guard.MinFrames shadowed frames (or the whole window, if smaller).
func (l *lifecycle) checkGuard(p Plan, st *stream) {
	g := p.Lifecycle.Guard
	if g.For <= 0 {
		return
	}
	f := st.agree.Figures()
	low := f.Frames >= min(max(g.MinFrames, 1), max(p.Shadow.Window, 1)) && (f.Recall < g.MinRecall || f.Precision < g.MinPrecision)
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
	l.errs.add(errFrame, st.plan.Name+" guard", errors.New(st.guard.reason))
	l.log.Warn("guard: stream falls back to FP32; a passing canary brings it back to int8", "stream", st.plan.Name, "reason", st.guard.reason)
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

func (l *lifecycle) lifecycleStatus(mods *models) lifecycleStatus {
	out := lifecycleStatus{Streams: map[string]streamServes{}}
	l.mu.Lock()
	out.Phase = l.phase
	if l.calibTotal > 0 {
		out.Calibration = &progress{Done: l.calibDone, Total: l.calibTotal}
	}
	if l.candidate != "" {
		b := &buildStatus{Model: l.candidate, Seconds: l.buildSeconds}
		if !l.buildStart.IsZero() {
			b.Seconds, b.Running = time.Since(l.buildStart).Seconds(), true
		}
		out.Build = b
	}
	if c := l.canary; c != nil {
		r, p := c.canary.Rates()
		cs := &canaryStatus{Model: short(c.m.file.SHA256), Source: c.source, Frames: c.canary.Frames, Want: c.want, Recall: r, Precision: p}
		if c.servingInt8 && c.serving.Frames > 0 {
			sr, sp := c.serving.Rates()
			cs.ServingRecall, cs.ServingPrecision = &sr, &sp
		}
		out.Canary = cs
	}
	out.Last = l.last
	l.mu.Unlock()
	for _, st := range l.streams() {
		prec, model := servingOf(st, mods)
		st.guard.mu.Lock()
		out.Streams[st.plan.Name] = streamServes{Precision: prec, Model: model, Fallback: st.guard.fallback.Load(), Reason: st.guard.reason, FallbackAt: st.guard.at}
		st.guard.mu.Unlock()
	}
	if st := l.store; st != nil {
		idx := st.Snapshot()
		ss := &storeStatus{Dir: st.Dir(), Models: idx.Models}
		if err := st.Check(); err != nil {
			ss.Error = err.Error()
		}
		if n := len(idx.History); n > 0 {
			ss.Promoted = idx.History[n-1]
		}
		out.Store = ss
	} else if err := l.storeErr(); err != nil {
		out.Store = &storeStatus{Dir: l.stateDir, Error: err.Error()}
	}
	return out
}

// storeErr is why state_dir's model store cannot be used: it did not open,
// or its index cannot be read now; nil when it works or no state_dir is
// set.
func (l *lifecycle) storeErr() error {
	if st := l.store; st != nil {
		return st.Check()
	}
	return l.openErr
}

// models returns the serving models.
func (l *lifecycle) models() *models {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mods
}

// setModels installs loaded models (at start, or a reload's commit, which
// holds the gate) and reports them.
func (l *lifecycle) setModels(m *models, threads int) {
	l.mu.Lock()
	l.mods = m
	l.mu.Unlock()
	for _, x := range []*model{m.int8, m.fp32} {
		if x == m.int8 && m.fp32Serving() {
			l.log.Info("FP32 serves until the int8 model is ready")
			continue
		}
		l.log.Info("model ready", "precision", x.precision, "model", x.file.Path, "provider", x.info.provider,
			"threads", threads, "batch", x.info.batch)
	}
}

// openStore opens the model store in dir; a store that cannot be opened
// is logged and kept as openErr (pushes are refused, detection runs).
func (l *lifecycle) openStore(dir string, lim modelstore.Limits) {
	l.stateDir = dir
	if dir == "" {
		return
	}
	st, err := modelstore.Open(dir, lim)
	if err != nil {
		l.openErr = err
		l.errs.add(errStore, "model store", err)
		l.log.Error("no model store: pushed models are refused", "err", err)
		return
	}
	l.store = st
	for _, r := range st.Repairs() {
		l.log.Warn("model store: "+r, "state_dir", dir)
	}
}

// run starts the lifecycle's background work under ctx (the daemon's
// run): the int8 model's preparation when FP32 serves in its slot.
func (l *lifecycle) run(ctx context.Context) {
	l.mu.Lock()
	l.ctx = ctx
	l.mu.Unlock()
	if l.prepare == nil || !l.models().fp32Serving() {
		return
	}
	if ctx, ok := l.goBackground(); ok {
		go func() {
			defer l.wg.Done()
			l.prepareInBackground(ctx)
		}()
	}
}

// goBackground counts one more background job (the caller runs it and
// calls wg.Done) and returns the context it runs under; false before the
// daemon runs and once it stops.
func (l *lifecycle) goBackground() (context.Context, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx == nil || l.ctx.Err() != nil || l.closed {
		return nil, false
	}
	l.wg.Add(1) // under mu: never during close's Wait
	return l.ctx, true
}

// close waits for the background work (a model in preparation or being
// built gives up with the run context), then closes a running canary's
// model between two frames. The serving models stay: the caller closes
// them after the last frame.
func (l *lifecycle) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.wg.Wait()
	l.gate.mu.Lock()
	if c := l.currentCanary(); c != nil {
		c.m.det.Close()
	}
	l.gate.mu.Unlock()
}

// take reserves the lifecycle for a new model (a push takes it before
// reading the body); false when another model is on its way.
func (l *lifecycle) take() bool { return l.busy.CompareAndSwap(false, true) }

// give hands back what take reserved when no model came of it.
func (l *lifecycle) give() {
	l.busy.Store(false)
	l.setPhase(metrics.PhaseServing)
}

// prepareCanary builds a reload's new int8 model beside the serving one,
// taking the lifecycle for its canary (give hands it back when the reload
// fails later).
func (l *lifecycle) prepareCanary(ctx context.Context, p Plan) (*model, error) {
	if !l.take() {
		return nil, errBusy
	}
	f := p.Models.Int8
	if st := l.store; st != nil {
		if _, _, err := st.AddFile(f.Path, "reload", ""); err != nil {
			l.log.Warn("model store: model not recorded", "err", err)
		}
	}
	m, err := l.build(ctx, p, f)
	if err != nil {
		l.storeReject(f.SHA256, "not loaded: "+err.Error())
		l.give()
		return nil, err
	}
	return m, nil
}

// fallsBack reports whether the guard moved st to FP32 while int8 serves
// (mods are the models its frames are taken under).
func (l *lifecycle) fallsBack(st *stream, mods *models) bool {
	return !mods.fp32Serving() && st.guard.fallback.Load()
}

// canaryRunning reports whether a canary runs (and so wants shadowed
// frames, also of streams FP32 serves).
func (l *lifecycle) canaryRunning() bool { return l.currentCanary() != nil }

// shadowed is the frame loop's hook for a shadowed frame of st: a running
// canary runs on img and is scored against the FP32 detections, beside the
// serving int8 model's (int8, when servedInt8: FP32 may have served the
// frame), and the guard judges the stream's rolling window. The error is
// the canary's.
func (l *lifecycle) shadowed(ctx context.Context, p Plan, st *stream, img gocv.Mat, servedInt8 bool, int8, fp32 []postprocess.Detection) error {
	if servedInt8 {
		defer l.checkGuard(p, st)
	}
	c := l.currentCanary()
	if c == nil {
		return nil
	}
	var serving *agreement.Frame
	if servedInt8 {
		// The serving model's agreement on the canary's frames, at the
		// canary's IoU.
		a := agreement.Match(int8, fp32, canaryIoU)
		serving = &a
	}
	return l.runCanary(ctx, c, img, fp32, serving)
}

// decided counts a canary decision.
func (l *lifecycle) decided(result string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.decisions == nil {
		l.decisions = map[string]int64{}
	}
	l.decisions[result]++
}

// stats fills the lifecycle's part of the daemon's figures, at scrape
// time.
func (l *lifecycle) stats(d *metrics.DaemonStats) {
	mods := l.models()
	for _, x := range []*model{mods.int8, mods.fp32} {
		if x == mods.int8 && mods.fp32Serving() {
			continue
		}
		d.Models = append(d.Models, metrics.ModelInfo{Precision: x.precision, Model: x.file.Path, SHA256: x.file.SHA256, Provider: x.info.provider})
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d.Phase, d.CalibDone, d.CalibTotal, d.BuildSeconds = l.phase, l.calibDone, l.calibTotal, l.buildSeconds
	if !l.buildStart.IsZero() {
		d.BuildSeconds = time.Since(l.buildStart).Seconds()
	}
	d.CanaryFrames, d.CanaryRecall, d.CanaryPrecision = l.canaryFig.frames, l.canaryFig.recall, l.canaryFig.precision
	d.Canaries = maps.Clone(l.decisions)
}
