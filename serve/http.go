package serve

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/yedge/yedge/eval"
	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
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
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("POST /eval", s.handleEval)
	// Bodies are small everywhere: cap them before any handler reads.
	limit := s.cfg.HTTP.MaxBodyBytes
	if limit <= 0 {
		limit = 4096
	}
	return limitBodies(mux, limit)
}

// limitBodies wraps h so that request bodies over limit are refused.
func limitBodies(h http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	s.mu.Lock()
	for _, st := range s.streams {
		if st.up.Load() {
			up++
		}
	}
	s.mu.Unlock()
	switch {
	case !s.ready.Load():
		http.Error(w, "not ready: models loading or shutting down", http.StatusServiceUnavailable)
	case up == 0:
		http.Error(w, "not ready: no stream is up", http.StatusServiceUnavailable)
	default:
		io.WriteString(w, "ready\n")
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
		Models    []modelStatus               `json:"models"`
		Streams   []streamStatus              `json:"streams"`
		Agreement map[string]AgreementFigures `json:"agreement"`
		Ratio     *float64                    `json:"int8_fp32_latency_ratio,omitempty"`
		Eval      map[string]evalStatus       `json:"eval,omitempty"`
		EvalBusy  bool                        `json:"eval_running"`
		Errors    []errEntry                  `json:"last_errors"`
	}
	o := out{Version: s.opts.Version, Uptime: time.Since(s.started).Seconds(), Ready: s.ready.Load(),
		Agreement: map[string]AgreementFigures{}, EvalBusy: s.evalRunning.Load(), Errors: s.errs.snapshot()}
	for _, m := range []*model{s.int8, s.fp32} {
		o.Models = append(o.Models, modelStatus{Precision: m.precision, Path: m.path, SHA256: m.sha256, Provider: m.det.Session.Provider,
			Input: [2]int{m.det.Height, m.det.Width}, Batch: m.det.Batch})
	}
	s.mu.Lock()
	for name, st := range s.streams {
		o.Streams = append(o.Streams, st.status())
		if a := s.agree[name]; a != nil {
			o.Agreement[name] = a.Figures()
		}
	}
	s.mu.Unlock()
	slices.SortFunc(o.Streams, func(a, b streamStatus) int { return strings.Compare(a.Name, b.Name) })
	if r, ok := s.lat.ratio(); ok {
		o.Ratio = &r
	}
	s.evalMu.Lock()
	if len(s.evalRes) > 0 {
		o.Eval = map[string]evalStatus{}
		for k, v := range s.evalRes {
			o.Eval[k] = v
		}
	}
	s.evalMu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	e.Encode(o)
}

// authorized checks that POST endpoints are enabled and, with a token file
// configured, that the bearer token matches.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if p := s.cfg.HTTP.EnablePost; p != nil && !*p {
		http.Error(w, "POST endpoints are disabled (http.enable_post: false)", http.StatusForbidden)
		return false
	}
	if len(s.token) > 0 {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), s.token) != 1 {
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
	if s.cfg.Eval.Data == "" {
		http.Error(w, "no eval.data dataset configured", http.StatusConflict)
		return
	}
	if !s.startEval() {
		http.Error(w, "an evaluation is already running", http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, "evaluation started; see /status and yedge_eval_map50_95\n")
}

// startEval evaluates both precisions on the configured dataset in the
// background, with sessions of their own (the live ones keep serving).
func (s *Server) startEval() bool {
	if !s.evalRunning.CompareAndSwap(false, true) {
		return false
	}
	// Add under mu, and not once Run is stopping (runCtx done, set before
	// Run takes mu and then waits for evalWG): an Add after or during that
	// Wait would panic ("WaitGroup is reused") or outlive Run.
	s.mu.Lock()
	ctx := s.runCtx
	if ctx != nil && ctx.Err() != nil {
		s.mu.Unlock()
		s.evalRunning.Store(false)
		return false
	}
	s.evalWG.Add(1)
	s.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	go func() {
		defer s.evalWG.Done()
		defer s.evalRunning.Store(false)
		s.runEval(ctx)
	}()
	return true
}

func (s *Server) runEval(ctx context.Context) {
	ds, err := eval.LoadDataset(s.cfg.Eval.Data)
	if err != nil {
		s.errs.add("eval: " + err.Error())
		s.log.Error("eval", "err", err)
		return
	}
	if n := s.cfg.Eval.Images; n > 0 && n < len(ds.Images) {
		ds.Images = ds.Images[:n]
	}
	for _, m := range []*model{s.int8, s.fp32} {
		c := s.detCfg
		c.Model = m.path
		c.Post = postprocess.EvalOptions()
		c.Logger = slog.New(slog.DiscardHandler)
		// One thread: evaluation shares the device with live streams.
		c.Runtime.Threads = 1
		st := evalStatus{At: time.Now()}
		d, err := pipeline.New(c)
		if err == nil {
			var res eval.Result
			res, _, err = pipeline.Evaluate(ctx, d, ds, postprocess.EvalOptions(), nil, s.log)
			d.Close()
			if err == nil {
				st = evalStatus{MAP50: res.MAP50, MAP50_95: res.MAP50_95, P: res.Precision, R: res.Recall, Images: res.Images, At: time.Now()}
				s.m.EvalMAP50.WithLabelValues(m.precision).Set(res.MAP50)
				s.m.EvalMAP5095.WithLabelValues(m.precision).Set(res.MAP50_95)
				s.m.EvalTimestamp.WithLabelValues(m.precision).Set(float64(time.Now().Unix()))
				s.log.Info("eval done", "precision", m.precision, "map50", res.MAP50, "map50_95", res.MAP50_95, "images", res.Images)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.Error = err.Error()
			s.errs.add("eval " + m.precision + ": " + err.Error())
			s.log.Error("eval failed", "precision", m.precision, "err", err)
		}
		s.evalMu.Lock()
		s.evalRes[m.precision] = st
		s.evalMu.Unlock()
	}
}
