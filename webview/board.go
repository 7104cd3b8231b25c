// Package webview is the daemon's web view: a page per stream with its
// live image, latency history, recent errors, and the int8-vs-FP32
// compare image with the strip of the worst disagreeing frames. A [Board]
// per stream keeps what the pages show; the frame loop draws on it only
// while someone watches. The handlers read the daemon through the narrow
// [Streams] interface at request time.
package webview

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"slices"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/agreement"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
)

// The web view's per-stream state. Images are drawn and JPEG-encoded only
// while someone watches the stream (a request for one of its images in the
// last viewLinger, or an open MJPEG connection): with no viewer the
// processing loop pays one mutex and a time comparison per frame, and no
// Mat is cloned, drawn or encoded. The latency history (numbers only) is
// kept always, so that a stream page opened now shows the last minutes.
const (
	// viewLinger keeps encoding after the last image request, so that a
	// page refreshing its images every second or so stays "watching".
	viewLinger = 3 * time.Second
	// liveMaxFPS caps the encoding of live frames per stream (the MJPEG
	// endpoint's cap too).
	liveMaxFPS = 15
	// worstN is how many of the most disagreeing shadowed frames are kept.
	worstN = 6
	// worstWindow forgets disagreeing frames older than this.
	worstWindow = 5 * time.Minute
	// historySeconds is the latency history: one point per second.
	historySeconds = 300
	// thumbWidth is the width of the disagreement strip's thumbnails.
	thumbWidth = 240
	// jpegQuality is the quality of every JPEG of the web view.
	jpegQuality = 80
	// recentErrors is how many errors a stream keeps for its page.
	recentErrors = 10
)

// jpegFrame is one encoded image.
type jpegFrame struct {
	data  []byte
	seq   int64
	at    time.Time
	frame int64
}

// CompareCounts describe one compare frame: matched int8/FP32 pairs and
// the detections only one precision found.
type CompareCounts struct {
	Frame        int64     `json:"frame"`
	At           time.Time `json:"at"`
	Matched      int       `json:"matched"`
	Int8Only     int       `json:"int8_only"`
	FP32Only     int       `json:"fp32_only"`
	Disagreement float64   `json:"disagreement"` // 1 - F1 of the matching
}

// worstFrame is one thumbnail of the disagreement strip.
type worstFrame struct {
	ID int64 `json:"id"`
	CompareCounts
	thumb []byte
}

// histPoint accumulates one second of a stream's stage times (int8).
type histPoint struct {
	sec                    int64
	n, nFP32               int
	read, pre, infer, post time.Duration
	fp32                   time.Duration
}

// Board is a stream's web view state: its images while watched, its
// latency history and recent errors. It is safe for concurrent use.
type Board struct {
	mu      sync.Mutex
	seen    time.Time // last image request
	active  int       // open MJPEG connections
	live    jpegFrame
	liveCh  chan struct{} // closed and replaced when live changes
	cmp     jpegFrame
	counts  CompareCounts
	cmpCh   chan struct{}
	worst   []worstFrame
	nextID  int64
	hist    [historySeconds]histPoint
	errs    []Error
	encoded int64 // images encoded, for tests
}

// NewBoard returns an empty board.
func NewBoard() *Board {
	return &Board{liveCh: make(chan struct{}), cmpCh: make(chan struct{})}
}

// watchingLocked reports whether someone watches; v.mu is held.
func (v *Board) watchingLocked(now time.Time) bool {
	return v.active > 0 || now.Sub(v.seen) < viewLinger
}

// Watching reports whether someone watches the stream.
func (v *Board) Watching(now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.watchingLocked(now)
}

// WantLive reports whether the processing loop should draw and encode
// this frame for the live view: someone watches and the last live image
// is older than 1/liveMaxFPS.
func (v *Board) WantLive(now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.watchingLocked(now) && now.Sub(v.live.at) >= time.Second/liveMaxFPS
}

// touch records an image request.
func (v *Board) touch() {
	v.mu.Lock()
	v.seen = time.Now()
	v.mu.Unlock()
}

// begin and end bracket a long-lived viewer (an MJPEG connection).
func (v *Board) begin() {
	v.mu.Lock()
	v.active++
	v.mu.Unlock()
}

func (v *Board) end() {
	v.mu.Lock()
	v.active--
	v.seen = time.Now()
	v.mu.Unlock()
}

// latestLive returns the live image and a channel closed when it changes.
func (v *Board) latestLive() (jpegFrame, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.live, v.liveCh
}

// latestCompare returns the compare image, its counts and a channel
// closed when it changes.
func (v *Board) latestCompare() (jpegFrame, CompareCounts, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cmp, v.counts, v.cmpCh
}

func (v *Board) setLive(f jpegFrame) {
	v.mu.Lock()
	f.seq = v.live.seq + 1
	v.live = f
	v.encoded++
	close(v.liveCh)
	v.liveCh = make(chan struct{})
	v.mu.Unlock()
}

func (v *Board) setCompare(f jpegFrame, c CompareCounts) {
	v.mu.Lock()
	f.seq = v.cmp.seq + 1
	v.cmp, v.counts = f, c
	v.encoded++
	close(v.cmpCh)
	v.cmpCh = make(chan struct{})
	v.mu.Unlock()
}

// pruneWorstLocked forgets disagreeing frames older than worstWindow.
func (v *Board) pruneWorstLocked(now time.Time) {
	v.worst = slices.DeleteFunc(v.worst, func(w worstFrame) bool { return now.Sub(w.At) > worstWindow })
}

// qualifiesWorst reports whether a frame of this disagreement enters the
// strip (so that a thumbnail is encoded only when it does).
func (v *Board) qualifiesWorst(now time.Time, d float64) bool {
	if d <= 0 {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pruneWorstLocked(now)
	return len(v.worst) < worstN || d > v.worst[len(v.worst)-1].Disagreement
}

// addWorst inserts a thumbnail, keeping the worstN worst, worst first.
func (v *Board) addWorst(c CompareCounts, thumb []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nextID++
	v.worst = append(v.worst, worstFrame{ID: v.nextID, CompareCounts: c, thumb: thumb})
	slices.SortStableFunc(v.worst, func(a, b worstFrame) int {
		switch {
		case a.Disagreement > b.Disagreement:
			return -1
		case a.Disagreement < b.Disagreement:
			return 1
		}
		return b.At.Compare(a.At)
	})
	if len(v.worst) > worstN {
		v.worst = v.worst[:worstN]
	}
	v.encoded++
}

// worstList returns the strip, worst first.
func (v *Board) worstList() []worstFrame {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pruneWorstLocked(time.Now())
	return slices.Clone(v.worst)
}

// worstThumb returns one thumbnail of the strip.
func (v *Board) worstThumb(id int64) ([]byte, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, w := range v.worst {
		if w.ID == id {
			return w.thumb, true
		}
	}
	return nil, false
}

// encodedCount is the number of images encoded so far.
func (v *Board) encodedCount() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.encoded
}

// Record adds an int8 frame's stage times to the history.
func (v *Board) Record(now time.Time, read time.Duration, tm pipeline.Timing) {
	sec := now.Unix()
	v.mu.Lock()
	p := &v.hist[sec%historySeconds]
	if p.sec != sec {
		*p = histPoint{sec: sec}
	}
	p.n++
	p.read += read
	p.pre += tm.Preprocess
	p.infer += tm.Infer
	p.post += tm.Postprocess
	v.mu.Unlock()
}

// RecordFP32 adds a shadow inference time to the history.
func (v *Board) RecordFP32(now time.Time, infer time.Duration) {
	sec := now.Unix()
	v.mu.Lock()
	p := &v.hist[sec%historySeconds]
	if p.sec != sec {
		*p = histPoint{sec: sec}
	}
	p.nFP32++
	p.fp32 += infer
	v.mu.Unlock()
}

// HistoryPoint is one second of a stream's history: int8 frames inferred
// and the mean milliseconds of each stage, and the mean FP32 shadow
// inference when a frame was shadowed in that second.
type HistoryPoint struct {
	T           int64   `json:"t"` // Unix seconds
	Frames      int     `json:"frames"`
	Read        float64 `json:"read_ms"`
	Preprocess  float64 `json:"preprocess_ms"`
	Infer       float64 `json:"infer_ms"`
	Postprocess float64 `json:"postprocess_ms"`
	FP32Infer   float64 `json:"fp32_infer_ms,omitempty"`
}

func meanMs(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / 1000 / float64(n)
}

// history returns the points of the last historySeconds that have frames,
// oldest first; the current (incomplete) second is left out.
func (v *Board) history(now time.Time) []HistoryPoint {
	end := now.Unix()
	out := []HistoryPoint{}
	v.mu.Lock()
	defer v.mu.Unlock()
	for sec := end - historySeconds + 1; sec < end; sec++ {
		p := v.hist[sec%historySeconds]
		if p.sec != sec || p.n+p.nFP32 == 0 {
			continue
		}
		out = append(out, HistoryPoint{T: sec, Frames: p.n, Read: meanMs(p.read, p.n), Preprocess: meanMs(p.pre, p.n),
			Infer: meanMs(p.infer, p.n), Postprocess: meanMs(p.post, p.n), FP32Infer: meanMs(p.fp32, p.nFP32)})
	}
	return out
}

// recent returns the int8 frame rate and the mean end-to-end and per-stage
// milliseconds over the last complete seconds (up to 5).
func (v *Board) recent(now time.Time) (fps, total float64, stages map[string]float64) {
	end := now.Unix()
	v.mu.Lock()
	defer v.mu.Unlock()
	var n int
	var read, pre, infer, post time.Duration
	const span = 5
	for sec := end - span; sec < end; sec++ {
		p := v.hist[sec%historySeconds]
		if p.sec != sec {
			continue
		}
		n += p.n
		read, pre, infer, post = read+p.read, pre+p.pre, infer+p.infer, post+p.post
	}
	stages = map[string]float64{"read": meanMs(read, n), "preprocess": meanMs(pre, n), "infer": meanMs(infer, n), "postprocess": meanMs(post, n)}
	return float64(n) / span, meanMs(read+pre+infer+post, n), stages
}

// Error is one error shown on a stream's page (the daemon's /status
// lists the same entries).
type Error struct {
	At    time.Time `json:"at"`
	Class string    `json:"class,omitempty"`
	Where string    `json:"where,omitempty"`
	Error string    `json:"error"`
}

// AddError keeps one of the stream's recent errors.
func (v *Board) AddError(e Error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, e)
	if len(v.errs) > recentErrors {
		v.errs = slices.Delete(v.errs, 0, len(v.errs)-recentErrors)
	}
}

// errors returns the stream's recent errors, oldest first.
func (v *Board) errors() []Error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Error{}, v.errs...)
}

// encodeJPEG encodes img; the bytes are copied out of OpenCV's buffer.
func encodeJPEG(img gocv.Mat) ([]byte, error) {
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, img, []int{gocv.IMWriteJpegQuality, jpegQuality})
	if err != nil {
		return nil, err
	}
	defer buf.Close()
	return bytes.Clone(buf.GetBytes()), nil
}

// DrawLive draws the int8 detections on a copy of img (frame is its
// index in the stream) and stores it as the live image.
func (v *Board) DrawLive(img gocv.Mat, frame int64, dets []postprocess.Detection, names []string) error {
	m := img.Clone()
	defer m.Close()
	postprocess.Draw(&m, dets, names)
	data, err := encodeJPEG(m)
	if err != nil {
		return fmt.Errorf("web view: encoding frame %d: %w", frame, err)
	}
	v.setLive(jpegFrame{data: data, at: time.Now(), frame: frame})
	return nil
}

// Compare colours: matched pairs green, int8-only orange, FP32-only magenta.
var (
	colMatched  = color.RGBA{R: 40, G: 200, B: 80, A: 255}
	colInt8Only = color.RGBA{R: 255, G: 140, B: 0, A: 255}
	colFP32Only = color.RGBA{R: 230, G: 40, B: 230, A: 255}
	colWhite    = color.RGBA{R: 255, G: 255, B: 255, A: 255}
	colBlack    = color.RGBA{A: 255}
)

// drawBox draws one box with an optional label above it.
func drawBox(img *gocv.Mat, b postprocess.Box, col color.RGBA, thick int, label string) {
	r := image.Rect(int(b.X1), int(b.Y1), int(b.X2), int(b.Y2))
	gocv.Rectangle(img, r, col, thick)
	if label == "" {
		return
	}
	scale := 0.45
	sz := gocv.GetTextSize(label, gocv.FontHersheySimplex, scale, 1)
	y := r.Min.Y
	if y-sz.Y-4 < 0 {
		y = r.Max.Y + sz.Y + 4
	}
	gocv.Rectangle(img, image.Rect(r.Min.X, y-sz.Y-4, r.Min.X+sz.X+2, y), col, -1)
	gocv.PutText(img, label, image.Pt(r.Min.X+1, y-3), gocv.FontHersheySimplex, scale, colBlack, 1)
}

// DrawCompare draws int8 and FP32 detections of a shadowed frame together
// (matched pairs thin green, both boxes; int8-only thick orange and
// FP32-only thick magenta, labelled with their precision, class and
// score), stores it as the stream's compare image and, when the frame is
// among the worst disagreements, adds its thumbnail to the strip.
func (v *Board) DrawCompare(img gocv.Mat, frame int64, names []string, i8, f32 []postprocess.Detection, a agreement.Frame, pairs []agreement.Pair) error {
	m := img.Clone()
	defer m.Close()
	thick := max(2, (m.Cols()+m.Rows())/500)
	usedI := make([]bool, len(i8))
	usedF := make([]bool, len(f32))
	for _, p := range pairs {
		usedI[p.Int8], usedF[p.FP32] = true, true
		drawBox(&m, f32[p.FP32].Box, colMatched, 1, "")
		drawBox(&m, i8[p.Int8].Box, colMatched, 1, "")
	}
	for j, d := range f32 {
		if !usedF[j] {
			drawBox(&m, d.Box, colFP32Only, thick, fmt.Sprintf("fp32 %s %.2f", postprocess.Name(names, d.Class), d.Score))
		}
	}
	for i, d := range i8 {
		if !usedI[i] {
			drawBox(&m, d.Box, colInt8Only, thick, fmt.Sprintf("int8 %s %.2f", postprocess.Name(names, d.Class), d.Score))
		}
	}
	now := time.Now()
	c := CompareCounts{Frame: frame, At: now, Matched: a.Matched, Int8Only: a.Int8 - a.Matched, FP32Only: a.FP32 - a.Matched,
		Disagreement: a.Disagreement()}
	legend := fmt.Sprintf("frame %d  matched %d  int8-only %d  fp32-only %d", c.Frame, c.Matched, c.Int8Only, c.FP32Only)
	gocv.Rectangle(&m, image.Rect(0, 0, m.Cols(), 22), colBlack, -1)
	gocv.PutText(&m, legend, image.Pt(6, 16), gocv.FontHersheySimplex, 0.5, colWhite, 1)
	data, err := encodeJPEG(m)
	if err != nil {
		return fmt.Errorf("web view: encoding compare frame %d: %w", frame, err)
	}
	v.setCompare(jpegFrame{data: data, at: now, frame: frame}, c)
	if !v.qualifiesWorst(now, c.Disagreement) || m.Cols() == 0 {
		return nil
	}
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(m, &small, image.Pt(thumbWidth, max(1, m.Rows()*thumbWidth/m.Cols())), 0, 0, gocv.InterpolationArea)
	thumb, err := encodeJPEG(small)
	if err != nil {
		return fmt.Errorf("web view: encoding a thumbnail of frame %d: %w", frame, err)
	}
	v.addWorst(c, thumb)
	return nil
}
