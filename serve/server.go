// Package serve is the yedge daemon. It runs a resolved [Plan]: one reader
// goroutine per stream into a latest-frame slot, one int8 session shared
// by every stream (batched across streams for dynamic-batch models), an
// FP32 shadow on a sample of frames with rolling int8-vs-FP32 agreement,
// periodic and on-demand evaluation of both precisions, detection sinks,
// Prometheus metrics read at scrape time, and the HTTP endpoints /healthz,
// /readyz, /status, /metrics and POST /eval, and a web view of every
// stream (package webview). [Server.Reload] applies a new
// plan as a diff, building everything new before it touches the running
// pipeline. The command wires configuration, signals and systemd
// notification to it; serve knows nothing of YAML or quantization.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/modelstore"
)

// Options are what the command passes to the daemon besides the plan.
type Options struct {
	Logger   *slog.Logger
	Version  string
	Revision string
	// Notify sends a systemd notification ("READY=1", "WATCHDOG=1",
	// "STOPPING=1", "RELOADING=1"); nil when not under systemd.
	Notify func(state string)
	// WatchdogEvery is how often the processing loop pings the watchdog
	// (half the systemd WatchdogSec); 0 disables.
	WatchdogEvery time.Duration
	// Prepare, when set and the plan has no int8 model, makes the int8
	// model in the background while FP32 serves (quantization at start-up:
	// the command owns it), reporting calibration progress; the model
	// then runs as a canary. It should run at a lower priority than
	// serving.
	Prepare func(ctx context.Context, progress func(done, total int)) (ModelFile, error)
	// LogLevel, when set, is the level of Logger's handler: a reload sets
	// it to the new plan's Process.LogLevel.
	LogLevel *slog.LevelVar
}

// Server is a running daemon: the composition root that wires its owners
// and applies reloads across them. The owners are the model lifecycle
// (lifecycle.go: models, canary, guard, store), the frame loop
// (process.go: scheduling frames through the stages, the shadow), the
// streams (stream.go: one reader each), the sinks, the evaluator, the
// HTTP API (http.go) and the web view (package webview, through
// viewStreams).
//
// The lock story, outermost first; a goroutine takes them only in this
// order:
//   - reloadMu serializes a reload with Run's start and stop of the
//     streams.
//   - gate.mu is the frame path's gate: the loop holds it while it takes
//     frames; whoever swaps models, sinks or streams holds it and drains
//     the frames in flight (gate.inflight) first.
//   - The leaf locks guard plain state and are held for no call into
//     another owner: Server.mu (plan, sinks, streams, reload status),
//     lifecycle.mu, and each stream's and board's own (a stream's guard
//     lock may take its counters' lock and the error log's).
type Server struct {
	opts Options
	log  *slog.Logger
	m    *metrics.Metrics
	errs *errorLog

	// reloadMu serializes Reload with Run's start and stop of the streams.
	reloadMu sync.Mutex
	// gate is the frame path's gate: a reload swaps models, sinks and
	// streams holding it, between two frames.
	gate frameGate
	// mu guards the state below, which a reload replaces.
	mu      sync.Mutex
	plan    Plan
	sinks   *sinkSet
	streams map[string]*stream
	runCtx  context.Context
	reload  *reloadStatus
	reloads map[string]int64 // by result: yedge_reload_total
	pending []string         // settings that take effect at the next restart
	// startPlan is the plan the daemon started with: the settings that
	// only a restart applies (RestartKeys) keep its values.
	startPlan Plan

	ready   atomic.Bool
	started time.Time

	// The owners: the model lifecycle, the frame loop and the evaluator.
	life     *lifecycle
	frames   *frameLoop
	evals    evaluator
	httpSrv  *http.Server
	listener net.Listener
	// viewCtx ends the web view's long-lived responses (MJPEG) when the
	// HTTP server shuts down, which would otherwise wait for them.
	viewCtx   context.Context
	stopViews context.CancelFunc
}

// reloadStatus is the /status reload section.
type reloadStatus struct {
	At      time.Time `json:"at"`
	Result  string    `json:"result"`
	Error   string    `json:"error,omitempty"`
	Changed []string  `json:"changed,omitempty"`
}

// New loads and warms up both models of p, opens the sinks and binds the
// listen address. Streams start in Run. The onnxruntime library must be
// initialized (runtime.Init) first.
func New(ctx context.Context, p Plan, o Options) (*Server, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	m := metrics.New(o.Version, o.Revision)
	s := &Server{opts: o, log: log, m: m, errs: &errorLog{}, plan: p, streams: map[string]*stream{}, reloads: map[string]int64{},
		started: time.Now(), startPlan: p}
	s.evals.s = s
	s.life = &lifecycle{log: log, errs: s.errs, gate: &s.gate, prepare: o.Prepare, streams: s.streamList,
		plan: func() Plan { p, _ := s.current(); return p }}
	s.frames = &frameLoop{log: log, m: m, errs: s.errs, gate: &s.gate, life: s.life, current: s.current, streams: s.streamList,
		sinks: func() *sinkSet { s.mu.Lock(); defer s.mu.Unlock(); return s.sinks },
		ping:  func() { s.notify("WATCHDOG=1") }, pingEvery: o.WatchdogEvery, wake: make(chan struct{}, 1)}
	s.viewCtx, s.stopViews = context.WithCancel(context.Background())
	m.Watch(scrapeStats{s})
	if err := m.SetDevice(p.Device.ID, p.Device.Labels); err != nil {
		return nil, err
	}
	mods, err := loadModels(ctx, p, true, log)
	if err != nil {
		s.stopViews()
		return nil, err
	}
	s.life.setModels(mods, p.Runtime.Threads)
	s.life.setPhase(metrics.PhaseServing)
	s.life.openStore(p.Lifecycle.StateDir, modelstore.Limits{Keep: p.Lifecycle.Keep, MaxBytes: p.Lifecycle.MaxBytes})
	if s.sinks, err = openSinks(p.Sinks, s.errs, log); err != nil {
		mods.close()
		s.stopViews()
		return nil, err
	}
	ln, err := net.Listen("tcp", p.Listen)
	if err != nil {
		mods.close()
		s.sinks.close(log)
		s.stopViews()
		return nil, fmt.Errorf("listen %s: %w", p.Listen, err)
	}
	s.listener = ln
	s.httpSrv = s.newHTTPServer(p.HTTP)
	s.httpSrv.RegisterOnShutdown(s.stopViews)
	return s, nil
}

// Addr is the bound HTTP address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// newHTTPServer configures the HTTP server: every phase of a request is
// bounded, so that slow clients cannot hold connections.
func (s *Server) newHTTPServer(h HTTPPlan) *http.Server {
	return &http.Server{Handler: (&httpAPI{s}).routes(), ReadTimeout: h.ReadTimeout, ReadHeaderTimeout: h.ReadHeaderTimeout,
		WriteTimeout: h.WriteTimeout, IdleTimeout: h.IdleTimeout, MaxHeaderBytes: 16 << 10}
}

// HTTPTimeouts are the timeouts of the HTTP server.
type HTTPTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// HTTPTimeouts returns the timeouts the HTTP server runs with.
func (s *Server) HTTPTimeouts() HTTPTimeouts {
	h := s.httpSrv
	return HTTPTimeouts{ReadHeader: h.ReadHeaderTimeout, Read: h.ReadTimeout, Write: h.WriteTimeout, Idle: h.IdleTimeout}
}

// Metrics exposes the registry (for tests).
func (s *Server) Metrics() *metrics.Metrics { return s.m }

// current returns the running plan and models.
func (s *Server) current() (Plan, *models) {
	s.mu.Lock()
	p := s.plan
	s.mu.Unlock()
	return p, s.life.models()
}

// streamList returns the running streams sorted by name.
func (s *Server) streamList() []*stream {
	s.mu.Lock()
	list := make([]*stream, 0, len(s.streams))
	for _, st := range s.streams {
		list = append(list, st)
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b *stream) int {
		if a.plan.Name < b.plan.Name {
			return -1
		}
		if a.plan.Name > b.plan.Name {
			return 1
		}
		return 0
	})
	return list
}

// startStream starts one stream's reader under ctx.
func (s *Server) startStream(ctx context.Context, p StreamPlan, window int) {
	st := newStream(p, window, s.log, s.errs, s.frames.wake)
	s.mu.Lock()
	s.streams[p.Name] = st
	s.mu.Unlock()
	st.start(ctx)
}

// ReloadFailed records a reload refused before it reached the server (the
// configuration could not be read or built): it is logged, counted in
// yedge_reload_total{result="rejected"} and shown in /status.
func (s *Server) ReloadFailed(err error) {
	s.recordReload("rejected", err, nil)
}

func (s *Server) recordReload(result string, err error, changed []string) {
	st := &reloadStatus{At: time.Now(), Result: result, Changed: changed}
	if err != nil {
		st.Error = err.Error()
		s.errs.add(errReload, "", err)
		s.log.Error("reload rejected, keeping the running pipeline", "err", err)
	} else {
		s.log.Info("reload "+result, "changed", changed)
	}
	s.mu.Lock()
	s.reload = st
	s.reloads[result]++
	s.mu.Unlock()
}

// Reload applies next as a diff against the running plan ([Plan.Diff]):
// new models are loaded and warmed up and new sinks opened beside the
// running ones, and only once all of that succeeded are they swapped in,
// between two frames; removed and changed streams stop, new and changed
// ones start; the rest keeps running untouched. Whatever fails leaves the
// daemon exactly as it was. The result is logged, counted in
// yedge_reload_total{result} and shown in /status. A changed listen
// address or HTTP timeout takes effect at the next restart (the daemon
// says so in the log and in /status).
func (s *Server) Reload(ctx context.Context, next Plan) (Change, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cur, _ := s.current()
	s.mu.Lock()
	runCtx := s.runCtx
	s.mu.Unlock()
	// Once Run is stopping (its context done) it no longer stops streams.
	if runCtx == nil || runCtx.Err() != nil {
		return Change{}, errors.New("reload: the server is not running")
	}
	ch := cur.Diff(next)
	if ch.None() {
		s.recordReload("unchanged", nil, nil)
		return ch, nil
	}
	prep, err := s.prepareReload(ctx, next, ch)
	if err != nil {
		s.recordReload("rejected", err, nil)
		return ch, err
	}
	s.commitReload(runCtx, cur, next, ch, prep)
	s.warnEmptied(cur, next)
	s.recordReload("applied", nil, ch.describe())
	return ch, nil
}

// prepared is what a reload built beside the running daemon and has not
// put in use: the models to swap in, the new sinks, and the int8 model
// that runs as a canary (the lifecycle taken for it).
type prepared struct {
	mods   *models
	sinks  *sinkSet
	canary *model
}

// discard closes what a reload prepared and gives the lifecycle back: a
// later step failed, so nothing of it is used.
func (s *Server) discard(p *prepared) {
	p.mods.close()
	if p.sinks != nil {
		p.sinks.close(s.log)
	}
	if p.canary != nil {
		p.canary.det.Close()
		s.life.give() // the canary's reservation
	}
}

// prepareReload builds what ch needs beside the running daemon: the models
// (the serving int8 model stays until a canary promotes another), a new
// int8 model loaded and warmed up for its canary, and the new sinks. On
// failure it has discarded all of it.
func (s *Server) prepareReload(ctx context.Context, next Plan, ch Change) (*prepared, error) {
	p := &prepared{}
	fail := func(err error) (*prepared, error) {
		s.discard(p)
		return nil, err
	}
	var err error
	if ch.Models {
		load := next
		if _, cm := s.current(); load.Models.Int8.Path == "" || ch.Int8 {
			load.Models.Int8 = cm.int8.file
			if cm.fp32Serving() {
				load.Models.Int8 = ModelFile{} // FP32 serves in the int8 slot
			}
		}
		if p.mods, err = loadModels(ctx, load, true, s.log); err != nil {
			return fail(err)
		}
	}
	if ch.Int8 && next.Models.Int8.Path != "" {
		if p.canary, err = s.life.prepareCanary(ctx, next); err != nil {
			return fail(err)
		}
	}
	if ch.Sinks {
		if p.sinks, err = openSinks(next.Sinks, s.errs, s.log); err != nil {
			return fail(err)
		}
	}
	return p, nil
}

// commitReload puts what prepareReload built in use, between two frames
// (the frames in flight finish first): the models, sinks and settings
// swap at once; then the canary starts, removed and changed streams stop,
// new and changed ones start, and what was replaced is closed.
func (s *Server) commitReload(runCtx context.Context, cur, next Plan, ch Change, p *prepared) {
	s.gate.mu.Lock()
	s.gate.drain()
	oldMods := s.life.models()
	s.mu.Lock()
	oldSinks := s.sinks
	if p.sinks != nil {
		s.sinks = p.sinks
	}
	var stopping []*stream
	for _, name := range slices.Concat(ch.Removed, ch.Restarted) {
		if st := s.streams[name]; st != nil {
			stopping = append(stopping, st)
			delete(s.streams, name)
		}
	}
	s.plan = next
	if !reflect.DeepEqual(cur.Device, next.Device) {
		// Labels were validated by the builder; a failure keeps the old series.
		if err := s.m.SetDevice(next.Device.ID, next.Device.Labels); err != nil {
			s.log.Warn("device labels not applied", "err", err)
		}
	}
	s.pending = RestartKeys(s.startPlan, next)
	pending := s.pending
	if s.opts.LogLevel != nil {
		s.opts.LogLevel.Set(next.Process.LogLevel)
	}
	s.mu.Unlock()
	if p.mods != nil {
		s.life.setModels(p.mods, next.Runtime.Threads)
	}
	for _, name := range ch.Removed {
		s.m.ForgetStream(name)
	}
	s.life.releaseFP32(next)
	s.gate.mu.Unlock()

	if p.canary != nil {
		s.life.installCanary(p.canary, "reload", false)
	}
	for _, st := range stopping {
		st.stop()
	}
	byName := map[string]StreamPlan{}
	for _, sp := range next.Streams {
		byName[sp.Name] = sp
	}
	for _, name := range slices.Concat(ch.Added, ch.Restarted) {
		s.startStream(runCtx, byName[name], next.Shadow.Window)
	}
	if p.mods != nil {
		oldMods.close()
	}
	if p.sinks != nil {
		oldSinks.close(s.log)
	}
	if ch.Restart && len(pending) > 0 {
		s.log.Warn("these settings take effect at the next restart", "keys", pending, "listening", s.Addr())
	}
}

// warnEmptied warns, naming what goes, when a reload removes every sink
// or every stream: a config cut short (an editor saving in place, a
// half-copied file) is valid YAML that does exactly that.
func (s *Server) warnEmptied(cur, next Plan) {
	if len(cur.Sinks) > 0 && len(next.Sinks) == 0 {
		var gone []string
		for _, k := range cur.Sinks {
			gone = append(gone, strings.TrimSpace(k.Type+" "+k.Path))
		}
		s.log.Warn("reload removed every sink: detections are no longer written anywhere", "removed", gone)
	}
	if len(cur.Streams) > 0 && len(next.Streams) == 0 {
		var gone []string
		for _, st := range cur.Streams {
			gone = append(gone, st.Name)
		}
		s.log.Warn("reload removed every stream: nothing is detected until a stream is added", "removed", gone)
	}
}

// describe lists what a change touches, for /status and the log.
func (c Change) describe() []string {
	var out []string
	add := func(what string, names []string) {
		for _, n := range names {
			out = append(out, what+" "+n)
		}
	}
	add("stream added", c.Added)
	add("stream removed", c.Removed)
	add("stream restarted", c.Restarted)
	for _, x := range []struct {
		on   bool
		what string
	}{{c.Models, "models"}, {c.Int8, "int8 model (canary)"}, {c.Sinks, "sinks"}, {c.Settings, "settings"}, {c.Restart, "settings at the next restart"}} {
		if x.on {
			out = append(out, x.what)
		}
	}
	return out
}

// Run serves until ctx is done, then stops the readers, finishes the frames
// in flight, flushes the sinks and shuts the HTTP server down within the
// plan's shutdown timeout.
func (s *Server) Run(ctx context.Context) error {
	readerCtx, stopReaders := context.WithCancel(context.Background())
	defer stopReaders()
	defer s.stopViews()
	s.reloadMu.Lock() // a reload waits until the configured streams run
	s.mu.Lock()
	s.runCtx = readerCtx
	p := s.plan
	s.mu.Unlock()
	httpErr := make(chan error, 1)
	go func() { httpErr <- s.httpSrv.Serve(s.listener) }()
	for _, sp := range p.Streams {
		s.startStream(readerCtx, sp, p.Shadow.Window)
	}
	s.reloadMu.Unlock()
	s.ready.Store(true)
	s.notify("READY=1")
	s.log.Info("serving", "listen", s.Addr(), "streams", len(p.Streams), "provider", p.Runtime.Provider, "threads", p.Runtime.Threads)
	if p.Eval.Data != "" && p.Eval.OnStart {
		s.evals.start()
	}
	s.life.run(readerCtx)
	err := s.frames.run(ctx)
	// Shutdown: readers first, then the sinks and HTTP.
	s.notify("STOPPING=1")
	s.ready.Store(false)
	stopReaders()
	// A reload in progress finishes first (later ones are refused: the
	// readers' context is done), so that every stream it started is
	// stopped here. Evaluations are refused from here on too.
	s.reloadMu.Lock()
	for _, st := range s.streamList() {
		st.stop()
	}
	s.reloadMu.Unlock()
	s.evals.wait()
	s.life.close()
	s.mu.Lock()
	sinks, shutdown := s.sinks, s.plan.ShutdownTimeout
	s.mu.Unlock()
	mods := s.life.models()
	sinks.close(s.log)
	sctx, cancel := context.WithTimeout(context.Background(), max(shutdown, time.Second))
	defer cancel()
	if herr := s.httpSrv.Shutdown(sctx); herr != nil {
		s.log.Warn("http shutdown", "err", herr)
	}
	if herr := <-httpErr; herr != nil && !errors.Is(herr, http.ErrServerClosed) && err == nil {
		err = herr
	}
	mods.close()
	s.log.Info("stopped")
	return err
}

// frameGate is the frame path's gate. The loop holds mu from taking the
// frames of the streams until they are handed to the stages, and counts
// each frame in inflight until it is finished (delivered, and shadowed
// when sampled). Whoever swaps or closes models, sinks or streams holds mu
// and drains first, so that no frame is processed half with the old and
// half with the new.
type frameGate struct {
	mu       sync.Mutex
	inflight sync.WaitGroup
}

// drain waits until every frame in flight is finished; the caller holds
// mu, so that no new frame is taken meanwhile.
func (g *frameGate) drain() { g.inflight.Wait() }

func (s *Server) notify(state string) {
	if s.opts.Notify != nil {
		s.opts.Notify(state)
	}
}
