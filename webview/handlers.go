package webview

import (
	"context"
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

//go:embed assets
var assets embed.FS

// MJPEG frame rates: ?fps= defaults to mjpegDefaultFPS and is capped at
// liveMaxFPS.
const mjpegDefaultFPS = 5

// Streams is what the web view reads of the daemon, at request time.
type Streams interface {
	// Settings are the running plan's web view settings.
	Settings() Settings
	// Streams lists the running streams, sorted by name.
	Streams() []Stream
	// Stream returns the running stream of that name.
	Stream(name string) (Stream, bool)
}

// Stream is one running stream as the web view sees it.
type Stream interface {
	// Info describes the stream now.
	Info() Info
	// Board is the stream's web view state.
	Board() *Board
	// Done is closed when the stream stops.
	Done() <-chan struct{}
}

// Settings are the running plan's settings that the web view uses.
type Settings struct {
	// UI off answers 404 to every page and endpoint of the web view.
	UI bool
	// WriteTimeout bounds the write of each MJPEG part (the connection
	// itself outlives it).
	WriteTimeout time.Duration
	Threads      int
	Shadow       ShadowPlanState
}

// Info is a stream's figures at request time.
type Info struct {
	Name   string
	Source string // credentials redacted
	Up     bool
	// LastError is the stream's last connection error, if any.
	LastError Error
	// Precision, Model (a path), Provider, ModelSHA and Batch describe
	// what serves the stream; ShadowModel (a path) is its FP32 reference.
	Precision, Model, Provider, ModelSHA string
	Batch                                int
	ShadowModel                          string
	Shadowed                             int64 // shadowed frames
	Agreement                            agreement.Figures
}

// Register adds the pages, assets and /api/streams endpoints to mux.
// Long-lived responses (MJPEG) end when stop is done.
func Register(mux *http.ServeMux, src Streams, stop context.Context) {
	h := &handlers{src: src, stop: stop}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded folder exists at build time
	}
	page := func(name string, needStream bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if _, ok := src.Stream(r.PathValue("name")); needStream && !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, static, name)
		}
	}
	handle := func(pattern string, f http.HandlerFunc) { mux.Handle(pattern, h.uiOnly(f)) }
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
	handle("GET /api/streams", h.handleStreams)
	handle("GET /api/streams/{name}", h.withStream(h.handleStream))
	handle("GET /api/streams/{name}/snapshot.jpg", h.withStream(h.handleSnapshot))
	handle("GET /api/streams/{name}/mjpeg", h.withStream(h.handleMJPEG))
	handle("GET /api/streams/{name}/compare.jpg", h.withStream(h.handleCompare))
	handle("GET /api/streams/{name}/worst", h.withStream(h.handleWorst))
	handle("GET /api/streams/{name}/worst/{file}", h.withStream(h.handleWorstThumb))
}

// handlers serve the web view.
type handlers struct {
	src  Streams
	stop context.Context
}

// uiOnly answers 404 when the running plan has the web view off, and sets
// the web view's security headers.
func (h *handlers) uiOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.src.Settings().UI {
			http.NotFound(w, r)
			return
		}
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "+
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		next.ServeHTTP(w, r)
	})
}

// withStream resolves {name} to a running stream (404 otherwise).
func (h *handlers) withStream(f func(http.ResponseWriter, *http.Request, Stream)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, ok := h.src.Stream(r.PathValue("name"))
		if !ok {
			http.Error(w, "no such stream", http.StatusNotFound)
			return
		}
		f(w, r, st)
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
	Errors     []Error         `json:"errors"`
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

func streamViewOf(st Stream, now time.Time) streamView {
	in, b := st.Info(), st.Board()
	v := streamView{Name: in.Name, Source: in.Source, Up: in.Up, LastError: in.LastError.Error, ErrorAt: in.LastError.At,
		Precision: in.Precision, Model: filepath.Base(in.Model), Provider: in.Provider, ShadowModel: filepath.Base(in.ShadowModel),
		Shadowed: in.Shadowed, Agreement: in.Agreement, Watched: b.Watching(now), Encoded: b.encodedCount()}
	switch {
	case v.Up:
		v.Health = "up"
	case v.LastError != "":
		v.Health = "down"
	default:
		v.Health = "starting"
	}
	v.FPS, v.LatencyMs, v.StagesMs = b.recent(now)
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

func (h *handlers) handleStreams(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	out := []streamView{}
	for _, st := range h.src.Streams() {
		out = append(out, streamViewOf(st, now))
	}
	writeJSON(w, map[string]any{"streams": out})
}

func (h *handlers) handleStream(w http.ResponseWriter, r *http.Request, st Stream) {
	now := time.Now()
	set, in, b := h.src.Settings(), st.Info(), st.Board()
	d := streamDetail{streamView: streamViewOf(st, now), Threads: set.Threads, Batch: in.Batch,
		ModelSHA: in.ModelSHA, History: b.history(now), HistorySec: historySeconds, Errors: b.errors(), Shadow: set.Shadow}
	// Connection errors of a live source are kept by source's monitor:
	// show the latest one too when the stream's own list lacks it.
	if e := in.LastError; e.Error != "" && (len(d.Errors) == 0 || d.Errors[len(d.Errors)-1].Error != e.Error) {
		d.Errors = append(d.Errors, e)
	}
	if _, c, _ := b.latestCompare(); !c.At.IsZero() {
		d.Compare = &c
	}
	writeJSON(w, d)
}

// waitFresh waits (up to wait) for an image newer than viewLinger, as
// one is encoded only while someone watches: the first request of a new
// viewer starts the encoding and gets the next frame.
func (h *handlers) waitFresh(r *http.Request, st Stream, latest func() (jpegFrame, <-chan struct{}), wait time.Duration) jpegFrame {
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
		case <-st.Done():
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

func (h *handlers) handleSnapshot(w http.ResponseWriter, r *http.Request, st Stream) {
	st.Board().touch()
	f := h.waitFresh(r, st, st.Board().latestLive, 2*time.Second)
	if f.data == nil {
		noImage(w, "no frame yet")
		return
	}
	writeJPEG(w, f)
}

func (h *handlers) handleCompare(w http.ResponseWriter, r *http.Request, st Stream) {
	st.Board().touch()
	latest := func() (jpegFrame, <-chan struct{}) {
		f, _, ch := st.Board().latestCompare()
		return f, ch
	}
	// Shadowed frames are one in shadow.every_n: wait a little longer.
	f := h.waitFresh(r, st, latest, 4*time.Second)
	if f.data == nil {
		noImage(w, "no shadowed frame yet")
		return
	}
	// The counts of exactly this image (it may have been replaced since).
	f2, c, _ := st.Board().latestCompare()
	if f2.seq == f.seq {
		hd := w.Header()
		hd.Set("X-Yedge-Matched", strconv.Itoa(c.Matched))
		hd.Set("X-Yedge-Int8-Only", strconv.Itoa(c.Int8Only))
		hd.Set("X-Yedge-FP32-Only", strconv.Itoa(c.FP32Only))
		hd.Set("X-Yedge-Disagreement", strconv.FormatFloat(c.Disagreement, 'f', 3, 64))
		f = f2
	}
	writeJPEG(w, f)
}

func (h *handlers) handleWorst(w http.ResponseWriter, r *http.Request, st Stream) {
	st.Board().touch()
	list := st.Board().worstList()
	type item struct {
		worstFrame
		URL string `json:"url"`
	}
	out := []item{}
	for _, x := range list {
		out = append(out, item{x, "/api/streams/" + st.Info().Name + "/worst/" + strconv.FormatInt(x.ID, 10) + ".jpg"})
	}
	writeJSON(w, map[string]any{"n": worstN, "window_seconds": worstWindow.Seconds(), "frames": out})
}

func (h *handlers) handleWorstThumb(w http.ResponseWriter, r *http.Request, st Stream) {
	st.Board().touch()
	id, err := strconv.ParseInt(strings.TrimSuffix(r.PathValue("file"), ".jpg"), 10, 64)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	b, ok := st.Board().worstThumb(id)
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
func (h *handlers) handleMJPEG(w http.ResponseWriter, r *http.Request, st Stream) {
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
	writeTimeout := h.src.Settings().WriteTimeout
	b := st.Board()
	b.begin()
	defer b.end()
	rc := http.NewResponseController(w)
	mw := multipart.NewWriter(w)
	hd := w.Header()
	hd.Set("Content-Type", "multipart/x-mixed-replace; boundary="+mw.Boundary())
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	ctx := r.Context()
	var last int64
	var next time.Time
	keepalive := time.NewTimer(time.Hour)
	defer keepalive.Stop()
	for {
		if !sleepUntil(ctx, h.stop, st.Done(), next) {
			return
		}
		if !h.src.Settings().UI {
			return // turned off by a reload
		}
		f, ch := b.latestLive()
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
			case <-h.stop.Done():
				return
			case <-st.Done():
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
