package serve

import (
	"github.com/yedge/yedge/webview"
)

// viewStreams is the web view's window on the daemon ([webview.Streams]):
// the running streams and plan, read at request time.
type viewStreams struct{ s *Server }

// Settings implements webview.Streams.
func (v viewStreams) Settings() webview.Settings {
	p, _ := v.s.current()
	sh := p.Shadow
	return webview.Settings{UI: p.HTTP.UI, WriteTimeout: p.HTTP.WriteTimeout, Threads: p.Runtime.Threads,
		Shadow: webview.ShadowPlanState{Enabled: sh.Enabled, EveryN: sh.EveryN, Budget: sh.Budget, IoU: sh.IoU}}
}

// Streams implements webview.Streams.
func (v viewStreams) Streams() []webview.Stream {
	_, mods := v.s.current()
	var out []webview.Stream
	for _, st := range v.s.streamList() {
		out = append(out, viewStream{st, mods})
	}
	return out
}

// Stream implements webview.Streams.
func (v viewStreams) Stream(name string) (webview.Stream, bool) {
	v.s.mu.Lock()
	st := v.s.streams[name]
	v.s.mu.Unlock()
	if st == nil {
		return nil, false
	}
	_, mods := v.s.current()
	return viewStream{st, mods}, true
}

// viewStream is one stream for the web view ([webview.Stream]).
type viewStream struct {
	st   *stream
	mods *models
}

// Info implements webview.Stream.
func (v viewStream) Info() webview.Info {
	st, i8, f32 := v.st.status(), v.mods.int8, v.mods.fp32
	return webview.Info{Name: st.Name, Source: st.Source, Up: st.Up,
		LastError: errEntry{At: st.ErrorAt, Class: errStream, Error: st.LastError},
		Precision: i8.precision, Model: i8.file.Path, Provider: i8.det.Session.Provider, ModelSHA: i8.file.SHA256,
		Batch: i8.det.Batch, ShadowModel: f32.file.Path, Shadowed: v.st.shadowed.Load(), Agreement: v.st.agree.Figures()}
}

// Board implements webview.Stream.
func (v viewStream) Board() *webview.Board { return v.st.board }

// Done implements webview.Stream.
func (v viewStream) Done() <-chan struct{} { return v.st.done }
