package serve

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/yedge/yedge/metrics"
)

// maxScrapesInFlight bounds concurrent /metrics scrapes. A scrape costs a
// few milliseconds and a response buffer; the metrics package's default
// of 10 answered 503 to most of a burst of scrapers (200 clients: 9 in 10
// scrapes refused), which then retried at once. This bound only caps the
// memory of a scrape storm.
const maxScrapesInFlight = 1024

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", newScrapeCache(s.m.Handler(metrics.WithMaxRequestsInFlight(maxScrapesInFlight)), 250*time.Millisecond))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("POST /eval", s.handleEval)
	s.uiRoutes(mux)
	// Bodies are small everywhere: cap them before any handler reads.
	return s.limitBodies(mux)
}

// limitBodies wraps h so that request bodies over http.max_body_bytes (of
// the running plan) are refused.
func (s *Server) limitBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := s.current()
		limit := p.HTTP.MaxBodyBytes
		if r.ContentLength > limit {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	up := 0
	for _, st := range s.streamList() {
		if st.up() {
			up++
		}
	}
	switch {
	case !s.ready.Load():
		http.Error(w, "not ready: models loading or shutting down", http.StatusServiceUnavailable)
	case up == 0:
		http.Error(w, "not ready: no stream is up", http.StatusServiceUnavailable)
	default:
		_, _ = io.WriteString(w, "ready\n")
	}
}

type modelStatus struct {
	Precision string `json:"precision"`
	Path      string `json:"path"`
	SHA256    string `json:"sha256"`
	Provider  string `json:"provider"`
	Input     [2]int `json:"input_hw"`
	Batch     int    `json:"batch"`
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	type out struct {
		Version   string                      `json:"version"`
		Uptime    float64                     `json:"uptime_seconds"`
		Ready     bool                        `json:"ready"`
		Provider  string                      `json:"provider"`
		Threads   int                         `json:"threads"`
		Models    []modelStatus               `json:"models"`
		Streams   []streamStatus              `json:"streams"`
		Agreement map[string]AgreementFigures `json:"agreement"`
		Ratio     *float64                    `json:"int8_fp32_latency_ratio,omitempty"`
		Eval      map[string]evalStatus       `json:"eval,omitempty"`
		EvalBusy  bool                        `json:"eval_running"`
		Reload    *reloadStatus               `json:"reload,omitempty"`
		Pending   []string                    `json:"pending_restart,omitempty"`
		Errors    []errEntry                  `json:"last_errors"`
	}
	p, mods := s.current()
	o := out{Version: s.opts.Version, Uptime: time.Since(s.started).Seconds(), Ready: s.ready.Load(),
		Provider: p.Runtime.Provider, Threads: p.Runtime.Threads,
		Agreement: map[string]AgreementFigures{}, EvalBusy: s.evals.running.Load(), Errors: s.errs.snapshot()}
	for _, m := range []*model{mods.int8, mods.fp32} {
		o.Models = append(o.Models, modelStatus{Precision: m.precision, Path: m.file.Path, SHA256: m.file.SHA256, Provider: m.det.Session.Provider,
			Input: [2]int{m.det.Height, m.det.Width}, Batch: m.det.Batch})
	}
	for _, st := range s.streamList() {
		o.Streams = append(o.Streams, st.status())
		o.Agreement[st.plan.Name] = st.agree.Figures()
	}
	if r, ok := s.lat.ratio(); ok {
		o.Ratio = &r
	}
	o.Eval = s.evals.results()
	s.mu.Lock()
	o.Reload, o.Pending = s.reload, s.pending
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	_ = e.Encode(o)
}

// authorized checks that POST endpoints are enabled and, with a token
// configured, that the bearer token matches.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	p, _ := s.current()
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

func (s *Server) handleEval(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
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
		return
	}
	if p, _ := s.current(); p.Eval.Data == "" {
		http.Error(w, "no eval.data dataset configured", http.StatusConflict)
		return
	}
	if !s.evals.start() {
		http.Error(w, "an evaluation is already running", http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, "evaluation started; see /status and yedge_eval_map50_95\n")
}
