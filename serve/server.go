// Package serve is the yedge daemon: one reader goroutine per stream into
// a latest-frame slot, one int8 session shared by every stream (batched
// across streams for dynamic-batch models), an FP32 shadow on a sample of
// frames with rolling int8-vs-FP32 agreement, periodic and on-demand
// evaluation of both precisions, detection sinks, Prometheus metrics and
// the HTTP endpoints /healthz, /readyz, /status, /metrics and POST /eval.
// The command wires signals and systemd notification to it.
package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/configs"
	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
	yrt "github.com/yedge/yedge/runtime"
	"github.com/yedge/yedge/sinks"
	"github.com/yedge/yedge/source"
)

// Options are what the command passes to the daemon besides the config.
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
}

// model is one loaded precision.
type model struct {
	precision string
	path      string
	sha256    string
	det       *pipeline.Detector
}

// Server is a running daemon.
type Server struct {
	cfg  *configs.Config
	opts Options
	log  *slog.Logger
	m    *metrics.Metrics

	int8, fp32 *model
	post       postprocess.Options
	detCfg     pipeline.Config // template for eval detectors

	// reloadMu serializes ReloadStreams with Run's start and stop of the
	// streams; cfg.Streams is written holding it and mu.
	reloadMu sync.Mutex
	// procMu is held by the loop from taking frames to the end of their
	// processing, so that a removed stream's metrics are forgotten after
	// its last frame has updated them, not resurrected by it.
	procMu   sync.Mutex
	mu       sync.Mutex
	streams  map[string]*stream
	agree    map[string]*Agreement
	shadowN  map[string]int64
	wake     chan struct{}
	runCtx   context.Context
	sink     sinks.Multi
	jsonl    []*sinks.JSONL
	sinkSeen map[string]int64

	ready      atomic.Bool
	started    time.Time
	errs       errRing
	lat        latencyPair
	shadowTime time.Duration
	workTime   time.Duration

	evalMu      sync.Mutex
	evalRunning atomic.Bool
	evalRes     map[string]evalStatus
	evalWG      sync.WaitGroup
	token       []byte
	httpSrv     *http.Server
	listener    net.Listener
}

type evalStatus struct {
	MAP50    float64   `json:"map50"`
	MAP50_95 float64   `json:"map50_95"`
	P        float64   `json:"precision"`
	R        float64   `json:"recall"`
	Images   int       `json:"images"`
	At       time.Time `json:"at"`
	Error    string    `json:"error,omitempty"`
}

// New loads both models (quantizing the int8 one at start-up when the
// config asks, reusing an earlier result), warms them up, opens the sinks
// and binds the listen address. Streams start in Run.
func New(ctx context.Context, cfg *configs.Config, o Options) (*Server, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, opts: o, log: log, m: metrics.New(o.Version, o.Revision),
		streams: map[string]*stream{}, agree: map[string]*Agreement{}, shadowN: map[string]int64{},
		wake: make(chan struct{}, 1), evalRes: map[string]evalStatus{}, sinkSeen: map[string]int64{}, started: time.Now()}
	if err := s.m.SetDevice(cfg.Device.ID, cfg.Device.Labels); err != nil {
		return nil, err
	}
	if _, err := yrt.Init(cfg.ONNXRuntime.Library, ""); err != nil {
		return nil, err
	}
	s.post = postprocess.Options{Conf: float32(cfg.Thresholds.Conf), IoU: float32(cfg.Thresholds.IoU), MaxDet: cfg.Thresholds.MaxDet, MaxNMS: 30000}
	h, w, err := parseSize(cfg.Model.ImgSize)
	if err != nil {
		return nil, err
	}
	rt := yrt.Options{Provider: cfg.Provider.Name, DeviceID: cfg.Provider.DeviceID, Threads: cfg.Provider.Threads, Logger: log, NoSpin: true}
	rt.TensorRT = yrt.DefaultTensorRTOptions(trtCacheDir(cfg.Provider.TensorRT.CacheDir))
	if v := cfg.Provider.TensorRT.FP16; v != nil {
		rt.TensorRT.FP16 = *v
	}
	if v := cfg.Provider.TensorRT.INT8; v != nil {
		rt.TensorRT.INT8 = *v
	}
	if v := cfg.Provider.TensorRT.DLACore; v != nil {
		rt.TensorRT.DLACore = *v
	}
	rt.TensorRT.WorkspaceBytes = int64(cfg.Provider.TensorRT.WorkspaceMB) << 20
	s.detCfg = pipeline.Config{Runtime: rt, Height: h, Width: w, Post: s.post, NamesFile: cfg.Model.Names, Logger: log}

	int8Path := cfg.Model.INT8
	if int8Path == "" && cfg.Model.Quantize != nil {
		q := cfg.Model.Quantize
		qh, qw := h, w
		if qh == 0 {
			qh, qw = pipeline.DefaultImageSize, pipeline.DefaultImageSize
		}
		keep := true
		if q.KeepHead != nil {
			keep = *q.KeepHead
		}
		int8Path, err = EnsureInt8(ctx, cfg.Model.FP32, QuantizeSpec{Calib: q.Calib, Images: q.Images, Target: q.Target, Method: q.Method,
			KeepHead: keep, Exclude: q.Exclude, CacheDir: q.CacheDir, Height: qh, Width: qw}, s.detCfg, log)
		if err != nil {
			return nil, fmt.Errorf("quantizing at start-up: %w", err)
		}
	}
	batch := cfg.Model.Batch
	if s.int8, err = s.load("int8", int8Path, batch); err != nil {
		return nil, err
	}
	if s.fp32, err = s.load("fp32", cfg.Model.FP32, 1); err != nil {
		s.int8.det.Close()
		return nil, err
	}
	if err := s.openSinks(); err != nil {
		s.closeModels()
		return nil, err
	}
	if cfg.HTTP.TokenFile != "" {
		b, err := os.ReadFile(cfg.HTTP.TokenFile)
		if err != nil {
			s.closeAll()
			return nil, fmt.Errorf("http.token_file: %w", err)
		}
		s.token = []byte(strings.TrimSpace(string(b)))
		if len(s.token) == 0 {
			s.closeAll()
			return nil, fmt.Errorf("http.token_file %q is empty", cfg.HTTP.TokenFile)
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.closeAll()
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	s.listener = ln
	s.httpSrv = s.newHTTPServer()
	return s, nil
}

// Addr is the bound HTTP address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// newHTTPServer configures the HTTP server: every phase of a request is
// bounded, so that slow clients cannot hold connections.
func (s *Server) newHTTPServer() *http.Server {
	read := time.Duration(s.cfg.HTTP.ReadTimeout)
	// Headers get at most 5s, and never more than http.read_timeout (a
	// ReadHeaderTimeout replaces ReadTimeout for the headers).
	header := 5 * time.Second
	if read > 0 {
		header = min(header, read)
	}
	return &http.Server{Handler: s.routes(), ReadTimeout: read, ReadHeaderTimeout: header,
		WriteTimeout: time.Duration(s.cfg.HTTP.WriteTimeout), IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}
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

// trtCacheDir picks the TensorRT engine/timing cache folder: the
// configured one, else systemd's CacheDirectory ($CACHE_DIRECTORY), else
// the user cache folder.
func trtCacheDir(configured string) string {
	if configured != "" {
		return configured
	}
	if d := os.Getenv("CACHE_DIRECTORY"); d != "" {
		return filepath.Join(strings.Split(d, ":")[0], "tensorrt")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "yedge", "tensorrt")
	}
	return filepath.Join(os.TempDir(), "yedge-tensorrt")
}

// CheckModels verifies that the model files of cfg are complete ONNX
// models (a file being replaced is refused while half-written), so that a
// reload can keep the running pipeline when they are not.
func CheckModels(cfg *configs.Config) error {
	for _, p := range []string{cfg.Model.FP32, cfg.Model.INT8} {
		if p == "" {
			continue
		}
		before, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("model %q: %w", p, err)
		}
		if _, err := onnx.Load(p); err != nil {
			return err
		}
		// A file still growing (written in place rather than renamed) may
		// parse while incomplete: require it to be unchanged for a moment.
		time.Sleep(200 * time.Millisecond)
		after, err := os.Stat(p)
		if err != nil || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
			return fmt.Errorf("model %q is still being written; keeping the running models", p)
		}
	}
	return nil
}

// ModelsChanged reports whether the model files named by cfg differ (by
// SHA-256) from the ones this server loaded, so that SIGHUP after a model
// is replaced in place reloads it even when the config is unchanged.
func (s *Server) ModelsChanged(cfg *configs.Config) bool {
	check := func(path string, m *model) bool {
		if path == "" || m == nil {
			return false
		}
		if path != m.path {
			return true
		}
		om, err := onnx.Load(path)
		return err == nil && om.SHA256() != m.sha256
	}
	return check(cfg.Model.FP32, s.fp32) || (cfg.Model.INT8 != "" && check(cfg.Model.INT8, s.int8))
}

func parseSize(v string) (int, int, error) {
	if v == "" {
		return 0, 0, nil
	}
	parts := strings.Split(strings.ToLower(v), "x")
	h, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, fmt.Errorf("model.imgsz %q: %w", v, err)
	}
	w := h
	if len(parts) == 2 {
		if w, err = strconv.Atoi(parts[1]); err != nil {
			return 0, 0, fmt.Errorf("model.imgsz %q: %w", v, err)
		}
	}
	return h, w, nil
}

func (s *Server) load(precision, path string, batch int) (*model, error) {
	c := s.detCfg
	c.Model = path
	c.Batch = batch
	d, err := pipeline.New(c)
	if err != nil && batch > 1 {
		// A static-batch model: fall back to one frame at a time.
		c.Batch = 0
		d, err = pipeline.New(c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s model: %w", precision, err)
	}
	sha := ""
	if om, err := onnx.Load(path); err == nil {
		sha = om.SHA256()
	}
	// Warm up: providers build engines and caches on the first runs.
	for i := 0; i < 3; i++ {
		if err := d.Infer(context.Background()); err != nil {
			d.Close()
			return nil, fmt.Errorf("%s model warm-up: %w", precision, err)
		}
	}
	s.m.SetModelInfo(precision, path, sha, d.Session.Provider)
	s.log.Info("model ready", "precision", precision, "model", path, "provider", d.Session.Provider, "batch", d.Batch)
	return &model{precision: precision, path: path, sha256: sha, det: d}, nil
}

func (s *Server) openSinks() error {
	for _, c := range s.cfg.Sinks {
		switch c.Type {
		case "stdout":
			s.sink = append(s.sink, sinks.NewWriter("stdout", os.Stdout))
		case "jsonl":
			name := "jsonl:" + c.Path
			j, err := sinks.NewJSONL(sinks.JSONLOptions{Path: c.Path, MaxBytes: int64(c.MaxSizeMB) << 20, MaxFiles: c.MaxFiles,
				FlushInterval: time.Duration(c.FlushInterval), OnError: func(err error) {
					s.m.SinkErrors.WithLabelValues(name).Inc()
					s.errs.add("sink " + name + ": " + err.Error())
					s.log.Warn("sink write failed", "sink", name, "err", err)
				}})
			if err != nil {
				for _, k := range s.sink {
					k.Close()
				}
				return err
			}
			s.jsonl = append(s.jsonl, j)
			s.sink = append(s.sink, j)
		default:
			return fmt.Errorf("unknown sink type %q", c.Type)
		}
	}
	return nil
}

func (s *Server) closeModels() {
	if s.int8 != nil {
		s.int8.det.Close()
	}
	if s.fp32 != nil {
		s.fp32.det.Close()
	}
}

func (s *Server) closeAll() {
	s.closeModels()
	s.sink.Close()
}

// streamSpec converts a configured stream.
func streamSpec(c configs.StreamConfig) (StreamSpec, error) {
	var spec source.Spec
	if n, ok := strings.CutPrefix(c.URI, "camera:"); ok {
		i, err := strconv.Atoi(n)
		if err != nil {
			return StreamSpec{}, fmt.Errorf("stream %s: bad camera index %q", c.Name, n)
		}
		spec = source.CameraSpec(i)
	} else {
		var err error
		if spec, err = source.Parse(c.URI); err != nil {
			return StreamSpec{}, fmt.Errorf("stream %s: %w", c.Name, err)
		}
	}
	spec.ReadTimeout = time.Duration(c.ReadTimeout)
	spec.Loop = c.Loop
	reconnect := c.Reconnect.Enabled == nil || *c.Reconnect.Enabled
	return StreamSpec{Name: c.Name, Spec: spec, FPS: c.FPS, Reconnect: reconnect,
		MinBackoff: time.Duration(c.Reconnect.MinBackoff), MaxBackoff: time.Duration(c.Reconnect.MaxBackoff), MaxRetries: c.Reconnect.MaxRetries}, nil
}

func (s *Server) startStream(ctx context.Context, c configs.StreamConfig) error {
	spec, err := streamSpec(c)
	if err != nil {
		return err
	}
	st := newStream(spec, s.m, s.log, s.wake)
	s.mu.Lock()
	s.streams[c.Name] = st
	if s.agree[c.Name] == nil {
		s.agree[c.Name] = NewAgreement(s.cfg.Shadow.Window)
	}
	s.mu.Unlock()
	st.start(ctx)
	return nil
}

// ReloadStreams applies a new stream list without touching the models:
// removed or changed streams stop, new or changed ones start.
func (s *Server) ReloadStreams(list []configs.StreamConfig) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.mu.Lock()
	ctx := s.runCtx
	old := map[string]configs.StreamConfig{}
	for _, c := range s.cfg.Streams {
		old[c.Name] = c
	}
	s.mu.Unlock()
	// Once Run is stopping (ctx canceled) it no longer stops new streams.
	if ctx == nil || ctx.Err() != nil {
		return errors.New("server is not running")
	}
	want := map[string]configs.StreamConfig{}
	for _, c := range list {
		want[c.Name] = c
	}
	var errs []error
	for name, c := range old {
		if n, ok := want[name]; ok && equalStream(n, c) {
			continue
		}
		s.mu.Lock()
		st := s.streams[name]
		delete(s.streams, name)
		if _, keep := want[name]; !keep {
			delete(s.agree, name)
			delete(s.shadowN, name)
		}
		s.mu.Unlock()
		if st != nil {
			st.stop()
		}
		if _, keep := want[name]; !keep {
			s.procMu.Lock()
			s.m.ForgetStream(name)
			s.procMu.Unlock()
			s.log.Info("stream removed", "stream", name)
		}
	}
	for name, c := range want {
		if o, ok := old[name]; ok && equalStream(o, c) {
			continue
		}
		if err := s.startStream(ctx, c); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("stream started", "stream", name)
	}
	s.mu.Lock()
	s.cfg.Streams = list
	s.mu.Unlock()
	return errors.Join(errs...)
}

func equalStream(a, b configs.StreamConfig) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Run serves until ctx is done, then stops the readers, finishes the frames
// in flight, flushes the sinks and shuts the HTTP server down within the
// configured shutdown timeout.
func (s *Server) Run(ctx context.Context) error {
	readerCtx, stopReaders := context.WithCancel(context.Background())
	defer stopReaders()
	s.reloadMu.Lock() // a reload waits until the configured streams run
	s.mu.Lock()
	s.runCtx = readerCtx
	s.mu.Unlock()
	httpErr := make(chan error, 1)
	go func() { httpErr <- s.httpSrv.Serve(s.listener) }()
	for _, c := range s.cfg.Streams {
		if err := s.startStream(readerCtx, c); err != nil {
			s.errs.add(err.Error())
			s.log.Error("stream not started", "err", err)
		}
	}
	nStreams := len(s.cfg.Streams)
	s.reloadMu.Unlock()
	s.ready.Store(true)
	s.m.Ready.Set(1)
	s.notify("READY=1")
	s.log.Info("serving", "listen", s.Addr(), "streams", nStreams)
	if s.cfg.Eval.Data != "" && (s.cfg.Eval.OnStart == nil || *s.cfg.Eval.OnStart) {
		s.startEval()
	}
	err := s.loop(ctx)
	// Shutdown: readers first, then the sinks and HTTP.
	s.notify("STOPPING=1")
	s.ready.Store(false)
	s.m.Ready.Set(0)
	stopReaders()
	// A reload in progress finishes first (later ones are refused: the
	// readers' context is done), so that every stream it started is
	// stopped here. startEval is refused from here on too (see there).
	s.reloadMu.Lock()
	s.mu.Lock()
	streams := make([]*stream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	for _, st := range streams {
		st.stop()
	}
	s.reloadMu.Unlock()
	s.evalWG.Wait()
	if ferr := s.sink.Close(); ferr != nil {
		s.log.Warn("closing sinks", "err", ferr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), max(time.Duration(s.cfg.ShutdownTimeout), time.Second))
	defer cancel()
	if herr := s.httpSrv.Shutdown(sctx); herr != nil {
		s.log.Warn("http shutdown", "err", herr)
	}
	if herr := <-httpErr; herr != nil && !errors.Is(herr, http.ErrServerClosed) && err == nil {
		err = herr
	}
	s.closeModels()
	s.log.Info("stopped")
	return err
}

func (s *Server) notify(state string) {
	if s.opts.Notify != nil {
		s.opts.Notify(state)
	}
}

// work is one frame taken from a stream for inference.
type work struct {
	st   *stream
	img  gocv.Mat
	meta frameMeta
}

// loop is the processing loop: it takes the latest frame of every stream,
// runs int8 on them (batched when the model allows), the FP32 shadow on a
// sample, writes sinks and metrics, and pings the watchdog.
func (s *Server) loop(ctx context.Context) error {
	batch := max(1, s.int8.det.Batch)
	pool := make([]gocv.Mat, batch)
	for i := range pool {
		pool[i] = gocv.NewMat()
	}
	defer func() {
		for i := range pool {
			pool[i].Close()
		}
	}()
	var lastPing, lastSink time.Time
	rr := 0
	for {
		if s.opts.WatchdogEvery > 0 && time.Since(lastPing) >= s.opts.WatchdogEvery {
			s.notify("WATCHDOG=1")
			lastPing = time.Now()
		}
		if time.Since(lastSink) > time.Second {
			s.syncSinkMetrics()
			lastSink = time.Now()
		}
		if ctx.Err() != nil {
			return nil
		}
		s.procMu.Lock()
		s.mu.Lock()
		names := make([]string, 0, len(s.streams))
		for n := range s.streams {
			names = append(names, n)
		}
		slices.Sort(names)
		var items []work
		for k := 0; k < len(names) && len(items) < batch; k++ {
			st := s.streams[names[(rr+k)%len(names)]]
			if meta, ok := st.take(&pool[len(items)]); ok {
				items = append(items, work{st: st, img: pool[len(items)], meta: meta})
			}
		}
		s.mu.Unlock()
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
		s.process(ctx, items)
		s.procMu.Unlock()
	}
}

// process runs one batch of frames through int8 and, when sampled, FP32.
func (s *Server) process(ctx context.Context, items []work) {
	t0 := time.Now()
	d := s.int8.det
	xfs := make([]struct {
		ok  bool
		pre time.Duration
	}, len(items))
	transforms := make([]preprocess.Transform, len(items))
	for i, it := range items {
		p0 := time.Now()
		xf, err := d.Preprocess(it.img, i)
		if err != nil {
			s.frameFailed(it.st.spec.Name, "preprocess", err)
			continue
		}
		transforms[i] = xf
		xfs[i].ok, xfs[i].pre = true, time.Since(p0)
	}
	i0 := time.Now()
	if err := d.Infer(ctx); err != nil {
		for _, it := range items {
			s.frameFailed(it.st.spec.Name, "infer", err)
		}
		return
	}
	infer := time.Since(i0)
	for i, it := range items {
		if !xfs[i].ok {
			continue
		}
		name := it.st.spec.Name
		p0 := time.Now()
		dets := d.Postprocess(i, transforms[i])
		post := time.Since(p0)
		s.observe(name, "int8", it.meta.read, xfs[i].pre, infer, post)
		s.m.FramesInferred.WithLabelValues(name, "int8").Inc()
		for _, x := range dets {
			s.m.Detections.WithLabelValues(name, postprocess.Name(d.Names, x.Class)).Inc()
		}
		s.writeSinks(name, "int8", it, dets, xfs[i].pre, infer, post)
		s.maybeShadow(ctx, it, dets, infer)
	}
	s.mu.Lock()
	s.workTime += time.Since(t0)
	s.mu.Unlock()
}
