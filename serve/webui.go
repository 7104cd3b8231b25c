package serve

import (
	"embed"
	"encoding/json"
	"io/fs"
	"math"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/yedge/yedge/agreement"
)

// The web view: plain HTML, CSS and JS embedded in the binary (no build
// step), and the JSON and image endpoints under /api/streams. http.ui:
// false answers 404 to all of it; /status and /metrics stay.

//go:embed webui
var webuiFiles embed.FS

// MJPEG frame rates: ?fps= defaults to mjpegDefaultFPS and is capped at
// liveMaxFPS.
const mjpegDefaultFPS = 5

// uiRoutes registers the pages, assets and /api/streams endpoints.
func (s *Server) uiRoutes(mux *http.ServeMux) {
	static, err := fs.Sub(webuiFiles, "webui")
	if err != nil {
		panic(err) // the embedded folder exists at build time
	}
	page := func(name string, needStream bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if needStream && s.streamByName(r.PathValue("name")) == nil {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, static, name)
		}
	}
	handle := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.uiOnly(h)) }
	handle("GET /{$}", page("index.html", false))
	handle("GET /streams/{name}", page("stream.html", true))
	handle("GET /streams/{name}/compare", page("compare.html", true))
	assets := http.StripPrefix("/ui/", http.FileServerFS(static))
	handle("GET /ui/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".html") || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // pages have their own routes; no listings
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		assets.ServeHTTP(w, r)
	})
	handle("GET /api/streams", s.handleStreams)
	handle("GET /api/streams/{name}", s.withStream(s.handleStream))
	handle("GET /api/streams/{name}/snapshot.jpg", s.withStream(s.handleSnapshot))
	handle("GET /api/streams/{name}/mjpeg", s.withStream(s.handleMJPEG))
	handle("GET /api/streams/{name}/compare.jpg", s.withStream(s.handleCompare))
	handle("GET /api/streams/{name}/worst", s.withStream(s.handleWorst))
	handle("GET /api/streams/{name}/worst/{file}", s.withStream(s.handleWorstThumb))
}

// uiOnly answers 404 when the running plan has the web view off, and sets
// the web view's security headers.
func (s *Server) uiOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, _ := s.current(); !p.HTTP.UI {
			http.NotFound(w, r)
			return
		}
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "+
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.ServeHTTP(w, r)
	})
}

// streamByName returns a running stream, or nil.
func (s *Server) streamByName(name string) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[name]
}

// withStream resolves {name} to a running stream (404 otherwise).
func (s *Server) withStream(h func(http.ResponseWriter, *http.Request, *stream)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st := s.streamByName(r.PathValue("name"))
		if st == nil {
			http.Error(w, "no such stream", http.StatusNotFound)
			return
		}
		h(w, r, st)
	}
}

// streamView is one stream in /api/streams.
type streamView struct {
	Name        string             `json:"name"`
	Source      string             `json:"source"` // credentials redacted
	Health      string             `json:"health"` // up, starting, down
	Up          bool               `json:"up"`
	LastError   string             `json:"last_error,omitempty"`
	ErrorAt     time.Time          `json:"last_error_at,omitzero"`
	FPS         float64            `json:"fps"`        // int8 frames inferred per second (last 5 s)
	LatencyMs   float64            `json:"latency_ms"` // mean read+preprocess+infer+postprocess (last 5 s)
	StagesMs    map[string]float64 `json:"stages_ms"`
	Precision   string             `json:"precision"`
	Model       string             `json:"model"`
	Provider    string             `json:"provider"`
	ShadowModel string             `json:"shadow_model"`
	Shadowed    int64              `json:"shadow_frames"`
	Agreement   agreement.Figures  `json:"agreement"`
	F1          *float64           `json:"agreement_f1,omitempty"` // of the rolling window; absent before a shadowed frame
	Watched     bool               `json:"watched"`
	Encoded     int64              `json:"images_encoded"` // JPEGs encoded for the web view since the stream started
	Links       map[string]string  `json:"links"`
}

// streamDetail is /api/streams/{name}: the tile's figures, the history,
// the recent errors and the last compare frame's counts.
type streamDetail struct {
	streamView
	Threads    int             `json:"threads"`
	Batch      int             `json:"batch"`
	ModelSHA   string          `json:"model_sha256"`
	History    []HistoryPoint  `json:"history"`
	HistorySec int             `json:"history_seconds"`
	Errors     []errEntry      `json:"errors"`
	Compare    *CompareCounts  `json:"compare,omitempty"`
	Shadow     ShadowPlanState `json:"shadow"`
}

// ShadowPlanState is the shadow policy shown on a stream page.
type ShadowPlanState struct {
	Enabled bool    `json:"enabled"`
	EveryN  int     `json:"every_n"`
	Budget  float64 `json:"budget"`
	IoU     float32 `json:"iou"`
}

func (s *Server) streamView(st *stream, now time.Time) streamView {
	_, mods := s.current()
	status := st.status()
	v := streamView{Name: status.Name, Source: status.Source, Up: status.Up, LastError: status.LastError, ErrorAt: status.ErrorAt,
		Precision: mods.int8.precision, Model: filepath.Base(mods.int8.file.Path), Provider: mods.int8.det.Session.Provider,
		ShadowModel: filepath.Base(mods.fp32.file.Path), Shadowed: st.shadowed.Load(), Agreement: st.agree.Figures(),
		Watched: st.view.watching(now), Encoded: st.view.encodedCount()}
	switch {
	case v.Up:
		v.Health = "up"
	case v.LastError != "":
		v.Health = "down"
	default:
		v.Health = "starting"
	}
	v.FPS, v.LatencyMs, v.StagesMs = st.view.recent(now)
	if a := v.Agreement; a.Frames > 0 && a.Precision+a.Recall > 0 {
		f1 := 2 * a.Precision * a.Recall / (a.Precision + a.Recall)
		v.F1 = &f1
	}
	base := "/api/streams/" + v.Name
	v.Links = map[string]string{"page": "/streams/" + v.Name, "compare_page": "/streams/" + v.Name + "/compare", "self": base,
		"snapshot": base + "/snapshot.jpg", "mjpeg": base + "/mjpeg", "compare": base + "/compare.jpg", "worst": base + "/worst"}
	return v
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) handleStreams(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	out := []streamView{}
	for _, st := range s.streamList() {
		out = append(out, s.streamView(st, now))
	}
	writeJSON(w, map[string]any{"streams": out})
}

func (s *Server) handleStream(w http.ResponseWriter, r *http.Request, st *stream) {
	now := time.Now()
	p, mods := s.current()
	d := streamDetail{streamView: s.streamView(st, now), Threads: p.Runtime.Threads, Batch: mods.int8.det.Batch,
		ModelSHA: mods.int8.file.SHA256, History: st.view.history(now), HistorySec: historySeconds, Errors: st.view.errors(),
		Shadow: ShadowPlanState{Enabled: p.Shadow.Enabled, EveryN: p.Shadow.EveryN, Budget: p.Shadow.Budget, IoU: p.Shadow.IoU}}
	// Connection errors of a live source are kept by source's monitor:
	// show the latest one too when the stream's own list lacks it.
	if d.LastError != "" && (len(d.Errors) == 0 || d.Errors[len(d.Errors)-1].Error != d.LastError) {
		d.Errors = append(d.Errors, errEntry{At: d.ErrorAt, Class: errStream, Error: d.LastError})
	}
	if _, c, _ := st.view.latestCompare(); !c.At.IsZero() {
		d.Compare = &c
	}
	writeJSON(w, d)
}

// waitFresh waits (up to wait) for an image newer than viewLinger, as
// one is encoded only while someone watches: the first request of a new
// viewer starts the encoding and gets the next frame.
func (s *Server) waitFresh(r *http.Request, st *stream, latest func() (jpegFrame, <-chan struct{}), wait time.Duration) jpegFrame {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		f, ch := latest()
		if f.data != nil && time.Since(f.at) < viewLinger {
			return f
		}
		select {
		case <-ch:
		case <-deadline.C:
			return f // stale or none
		case <-r.Context().Done():
			return f
		case <-st.done:
			return f
		}
	}
}

func writeJPEG(w http.ResponseWriter, f jpegFrame) {
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(f.data)))
	h.Set("X-Yedge-Frame", strconv.FormatInt(f.frame, 10))
	_, _ = w.Write(f.data)
}

func noImage(w http.ResponseWriter, what string) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, what, http.StatusServiceUnavailable)
}

func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request, st *stream) {
	st.view.touch()
	f := s.waitFresh(r, st, st.view.latestLive, 2*time.Second)
	if f.data == nil {
		noImage(w, "no frame yet")
		return
	}
	writeJPEG(w, f)
}

func (s *Server) handleCompare(w http.ResponseWriter, r *http.Request, st *stream) {
	st.view.touch()
	latest := func() (jpegFrame, <-chan struct{}) {
		f, _, ch := st.view.latestCompare()
		return f, ch
	}
	// Shadowed frames are one in shadow.every_n: wait a little longer.
	f := s.waitFresh(r, st, latest, 4*time.Second)
	if f.data == nil {
		noImage(w, "no shadowed frame yet")
		return
	}
	// The counts of exactly this image (it may have been replaced since).
	f2, c, _ := st.view.latestCompare()
	if f2.seq == f.seq {
		h := w.Header()
		h.Set("X-Yedge-Matched", strconv.Itoa(c.Matched))
		h.Set("X-Yedge-Int8-Only", strconv.Itoa(c.Int8Only))
		h.Set("X-Yedge-FP32-Only", strconv.Itoa(c.FP32Only))
		h.Set("X-Yedge-Disagreement", strconv.FormatFloat(c.Disagreement, 'f', 3, 64))
		f = f2
	}
	writeJPEG(w, f)
}

func (s *Server) handleWorst(w http.ResponseWriter, r *http.Request, st *stream) {
	st.view.touch()
	list := st.view.worstList()
	type item struct {
		worstFrame
		URL string `json:"url"`
	}
	out := []item{}
	for _, x := range list {
		out = append(out, item{x, "/api/streams/" + st.plan.Name + "/worst/" + strconv.FormatInt(x.ID, 10) + ".jpg"})
	}
	writeJSON(w, map[string]any{"n": worstN, "window_seconds": worstWindow.Seconds(), "frames": out})
}

func (s *Server) handleWorstThumb(w http.ResponseWriter, r *http.Request, st *stream) {
	st.view.touch()
	id, err := strconv.ParseInt(strings.TrimSuffix(r.PathValue("file"), ".jpg"), 10, 64)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	b, ok := st.view.worstThumb(id)
	if !ok {
		http.NotFound(w, r)
		return
	}
	writeJPEG(w, jpegFrame{data: b, frame: -1})
}

// handleMJPEG streams the live view as multipart/x-mixed-replace, one JPEG
// part per new frame at most ?fps= per second (default 5, at most 15).
// The connection outlives http.write_timeout: the write deadline is moved
// forward by write_timeout before each frame. It ends when the client
// goes, the stream stops, a reload turns http.ui off, or the server shuts
// down.
func (s *Server) handleMJPEG(w http.ResponseWriter, r *http.Request, st *stream) {
	fps := float64(mjpegDefaultFPS)
	if q := r.URL.Query().Get("fps"); q != "" {
		v, err := strconv.ParseFloat(q, 64)
		if err != nil || math.IsNaN(v) || v <= 0 {
			http.Error(w, "fps: want a number > 0 (at most 15)", http.StatusBadRequest)
			return
		}
		fps = min(v, liveMaxFPS)
	}
	gap := time.Duration(float64(time.Second) / fps)
	p, _ := s.current()
	writeTimeout := p.HTTP.WriteTimeout
	st.view.begin()
	defer st.view.end()
	rc := http.NewResponseController(w)
	mw := multipart.NewWriter(w)
	h := w.Header()
	h.Set("Content-Type", "multipart/x-mixed-replace; boundary="+mw.Boundary())
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	ctx := r.Context()
	var last int64
	var next time.Time
	keepalive := time.NewTimer(time.Hour)
	defer keepalive.Stop()
	for {
		if !sleepUntil(ctx, s.viewCtx, st.done, next) {
			return
		}
		if p, _ := s.current(); !p.HTTP.UI {
			return // turned off by a reload
		}
		f, ch := st.view.latestLive()
		if f.data == nil || f.seq == last {
			// Wait for a new frame; resend the last one every 5 s so that
			// a client that vanished is noticed and proxies stay open.
			keepalive.Reset(5 * time.Second)
			select {
			case <-ch:
				continue
			case <-keepalive.C:
				if f.data == nil {
					continue
				}
			case <-ctx.Done():
				return
			case <-s.viewCtx.Done():
				return
			case <-st.done:
				return
			}
		}
		if err := rc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
			return
		}
		part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"image/jpeg"}, "Content-Length": {strconv.Itoa(len(f.data))}})
		if err != nil {
			return
		}
		if _, err := part.Write(f.data); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		last = f.seq
		next = time.Now().Add(gap)
	}
}

// sleepUntil waits until t; it reports false when any of the contexts or
// the channel is done first.
func sleepUntil(ctx, views interface{ Done() <-chan struct{} }, done <-chan struct{}, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-ctx.Done():
			return false
		case <-views.Done():
			return false
		case <-done:
			return false
		default:
			return true
		}
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
	case <-views.Done():
	case <-done:
	}
	return false
}
