package serve

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/yedge/yedge/agreement"
	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/webview"
)

// maxScrapesInFlight bounds concurrent /metrics scrapes. A scrape costs a
// few milliseconds and a response buffer; the metrics package's default
// of 10 answered 503 to most of a burst of scrapers (200 clients: 9 in 10
// scrapes refused), which then retried at once. This bound only caps the
// memory of a scrape storm.
const maxScrapesInFlight = 1024

// httpAPI serves the daemon's HTTP API: /metrics, /healthz, /readyz,
// /status, POST /eval, POST /models and /models/rollback, and mounts the
// web view. /status reads every owner, so it keeps the composition root.
type httpAPI struct{ s *Server }

func (h *httpAPI) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", newScrapeCache(h.s.m.Handler(metrics.WithMaxRequestsInFlight(maxScrapesInFlight)), 250*time.Millisecond))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", h.handleReady)
	mux.HandleFunc("GET /status", h.handleStatus)
	mux.HandleFunc("POST /eval", h.handleEval)
	webview.Register(mux, viewStreams{h.s}, h.s.viewCtx)
	mux.HandleFunc("POST /models", h.handlePushModel)
	mux.HandleFunc("POST /models/rollback", h.handleRollback)
	// Bodies are small everywhere: cap them before any handler reads.
	return h.limitBodies(mux)
}

// limitBodies wraps next so that request bodies over http.max_body_bytes
// (of the running plan) are refused.
func (h *httpAPI) limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := h.s.current()
		limit := p.HTTP.MaxBodyBytes
		if r.Method == http.MethodPost && r.URL.Path == "/models" {
			limit = p.HTTP.MaxModelBytes // an ONNX model
		}
		if r.ContentLength > limit {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

func (h *httpAPI) handleReady(w http.ResponseWriter, r *http.Request) {
	up := 0
	for _, st := range h.s.streamList() {
		if st.up() {
			up++
		}
	}
	switch {
	case !h.s.ready.Load():
		http.Error(w, "not ready: models loading or shutting down", http.StatusServiceUnavailable)
	case up == 0:
		http.Error(w, "not ready: no stream is up", http.StatusServiceUnavailable)
	default:
		msg := "ready\n"
		if err := h.s.life.storeErr(); err != nil {
			// Detection runs; model pushes do not: say so, ready still.
			msg += "model store: " + err.Error() + "\n"
		}
		_, _ = io.WriteString(w, msg)
	}
}

type modelStatus struct {
	Precision string `json:"precision"`
	Path      string `json:"path"`
	SHA256    string `json:"sha256"`
	Provider  string `json:"provider"`
	Input     [2]int `json:"input_hw"`
	Batch     int    `json:"batch"`
	// Serving: this model fills the serving slot (FP32 serves until the
	// int8 model is ready).
	Serving bool `json:"serving"`
}

func (h *httpAPI) handleStatus(w http.ResponseWriter, r *http.Request) {
	type out struct {
		Version   string                       `json:"version"`
		Uptime    float64                      `json:"uptime_seconds"`
		Ready     bool                         `json:"ready"`
		Provider  string                       `json:"provider"`
		Threads   int                          `json:"threads"`
		Models    []modelStatus                `json:"models"`
		Streams   []streamStatus               `json:"streams"`
		Agreement map[string]agreement.Figures `json:"agreement"`
		Ratio     *float64                     `json:"int8_fp32_latency_ratio,omitempty"`
		Eval      map[string]evalStatus        `json:"eval,omitempty"`
		EvalBusy  bool                         `json:"eval_running"`
		Reload    *reloadStatus                `json:"reload,omitempty"`
		Lifecycle lifecycleStatus              `json:"lifecycle"`
		Pending   []string                     `json:"pending_restart,omitempty"`
		Errors    []errEntry                   `json:"last_errors"`
	}
	p, mods := h.s.current()
	o := out{Version: h.s.opts.Version, Uptime: time.Since(h.s.started).Seconds(), Ready: h.s.ready.Load(),
		Provider: p.Runtime.Provider, Threads: p.Runtime.Threads,
		Agreement: map[string]agreement.Figures{}, EvalBusy: h.s.evals.running.Load(), Errors: h.s.errs.snapshot()}
	for i, m := range []*model{mods.int8, mods.fp32} {
		if i == 1 && mods.fp32Serving() {
			o.Models[0].Serving = true
			break
		}
		o.Models = append(o.Models, modelStatus{Precision: m.precision, Path: m.file.Path, SHA256: m.file.SHA256, Provider: m.info.provider,
			Input: [2]int{m.info.height, m.info.width}, Batch: m.info.batch, Serving: i == 0})
	}
	for _, st := range h.s.streamList() {
		o.Streams = append(o.Streams, st.status())
		o.Agreement[st.plan.Name] = st.agree.Figures()
	}
	if r, ok := h.s.frames.lat.ratio(); ok {
		o.Ratio = &r
	}
	o.Eval = h.s.evals.results()
	o.Lifecycle = h.s.life.lifecycleStatus(mods)
	h.s.mu.Lock()
	o.Reload, o.Pending = h.s.reload, h.s.pending
	h.s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	_ = e.Encode(o)
}

// authorized checks that POST endpoints are enabled and, with a token
// configured, that the bearer token matches.
func (h *httpAPI) authorized(w http.ResponseWriter, r *http.Request) bool {
	p, _ := h.s.current()
	if !p.HTTP.EnablePost {
		http.Error(w, "POST endpoints are disabled (http.enable_post: false)", http.StatusForbidden)
		return false
	}
	if token := p.HTTP.Token; token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="yedge"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return false
		}
	}
	return true
}

func (h *httpAPI) handleEval(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		bodyError(w, err)
		return
	}
	if p, _ := h.s.current(); p.Eval.Data == "" {
		http.Error(w, "no eval.data dataset configured", http.StatusConflict)
		return
	}
	if !h.s.evals.start() {
		http.Error(w, "an evaluation is already running", http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, "evaluation started; see /status and yedge_eval_map50_95\n")
}

// bodyError answers a request whose body could not be read.
func bodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooBig):
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		http.Error(w, "request body not received within http.read_timeout", http.StatusRequestTimeout)
	default:
		http.Error(w, "reading the request body failed", http.StatusBadRequest)
	}
}

// handlePushModel receives an int8 ONNX model (the body, at most
// http.max_model_bytes, arriving at least pushMinBytes every
// pushRateWindow), writes it once, atomically, into the model store by its
// content hash, checks that it parses as ONNX, and runs it as a canary in
// the background: loaded and warmed up beside the serving model, promoted
// only if it passes. The lifecycle is taken before the body is read, so a
// push refused because another model is being prepared writes nothing.
// A body that is not a model is 400 and leaves nothing in the store; a
// store that cannot write is 507 (no space) or 500, logged and in
// last_errors.
func (h *httpAPI) handlePushModel(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	st := h.s.life.store
	if st == nil {
		_, _ = io.Copy(io.Discard, r.Body)
		msg := "no model store (state_dir)"
		if err := h.s.life.storeErr(); err != nil {
			msg += ": " + err.Error()
		}
		http.Error(w, msg, http.StatusConflict)
		return
	}
	if !h.s.life.take() {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, errBusy.Error(), http.StatusConflict)
		return
	}
	started := false
	defer func() {
		if !started {
			h.s.life.give()
		}
	}()
	body := &rateReader{r: r.Body, rc: http.NewResponseController(w)}
	body.extend()
	sha, path, err := st.Add(body, "push", "")
	if err != nil {
		if body.err != nil && errors.Is(err, body.err) {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				http.Error(w, fmt.Sprintf("model body too slow: less than %d KiB in %v", pushMinBytes>>10, pushRateWindow), http.StatusRequestTimeout)
				return
			}
			bodyError(w, err)
			return
		}
		h.storeFailed(w, "writing a pushed model", err)
		return
	}
	if _, err := onnx.Load(path); err != nil {
		if rerr := st.Remove(sha); rerr != nil {
			h.s.log.Warn("model store: a refused push not removed", "sha256", short(sha), "err", rerr)
		}
		h.s.log.Warn("pushed model refused", "sha256", short(sha), "err", err)
		http.Error(w, "not an ONNX model: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := h.s.life.start(ModelFile{Path: path, SHA256: sha}, "push"); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	started = true
	h.s.log.Info("model received", "sha256", short(sha), "path", path)
	writeAccepted(w, sha, "received; it runs as a canary before it serves: see /status lifecycle")
}

// Push bodies are bounded by a minimum transfer rate rather than by
// http.read_timeout: at least pushMinBytes every pushRateWindow, so that a
// large model over a slow link arrives, and a stalled client is dropped.
const (
	pushRateWindow = 10 * time.Second
	pushMinBytes   = 64 << 10
)

// rateReader reads a request body, pushing the connection's read deadline
// pushRateWindow ahead each time pushMinBytes more have arrived; it keeps
// the body's own error, to tell it from the store'h.s.
type rateReader struct {
	r   io.Reader
	rc  *http.ResponseController
	n   int64 // bytes since the deadline moved
	err error
}

// extend moves the read deadline a window ahead, and the write deadline
// (http.write_timeout runs from the request's start) a window past it,
// for the answer.
func (b *rateReader) extend() {
	now := time.Now()
	_ = b.rc.SetReadDeadline(now.Add(pushRateWindow))
	_ = b.rc.SetWriteDeadline(now.Add(2 * pushRateWindow))
}

func (b *rateReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n >= pushMinBytes {
		b.n = 0
		b.extend()
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// storeFailed answers a store failure with 507 (no space left) or 500,
// logs it and records it in last_errors.
func (h *httpAPI) storeFailed(w http.ResponseWriter, what string, err error) {
	h.s.log.Error("model store: "+what+" failed", "err", err)
	h.s.errs.add(errStore, "model store", err)
	code := http.StatusInternalServerError
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		code = http.StatusInsufficientStorage
	}
	http.Error(w, "model store: "+what+" failed: "+pathErr(err).Error(), code)
}

// handleRollback returns to the previously promoted model, through a
// canary like any new model.
func (h *httpAPI) handleRollback(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		bodyError(w, err)
		return
	}
	st := h.s.life.store
	if st == nil {
		http.Error(w, "no model store (state_dir)", http.StatusConflict)
		return
	}
	e, ok := st.Previous()
	if !ok {
		http.Error(w, "no earlier promoted model in the store", http.StatusConflict)
		return
	}
	if err := h.s.life.offer(ModelFile{Path: st.Path(e.SHA256), SHA256: e.SHA256}, "rollback"); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	writeAccepted(w, e.SHA256, "rolling back; the model runs as a canary before it serves: see /status lifecycle")
}

func writeAccepted(w http.ResponseWriter, sha, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]string{"sha256": sha, "status": msg})
}
