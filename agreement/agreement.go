// Package agreement compares the detections of two models on the same
// frames (int8 against its FP32 reference): matching within a class by
// IoU, per-frame counts, a rolling window of figures and plain sums.
package agreement

import (
	"slices"
	"sync"

	"github.com/yedge/yedge/postprocess"
)

// Frame compares the int8 detections of one frame with the FP32
// shadow's: detections are matched greedily by IoU (highest first) within
// the same class at IoU >= the threshold.
type Frame struct {
	Int8, FP32, Matched  int
	SumIoU, SumScoreDiff float64
}

// Pair is one matched int8/FP32 detection pair: indices into the int8
// and FP32 slices given to [MatchPairs], and their IoU.
type Pair struct {
	Int8, FP32 int
	IoU        float32
}

// Match compares int8 detections with FP32 detections of the same frame.
func Match(int8, fp32 []postprocess.Detection, iou float32) Frame {
	a, _ := MatchPairs(int8, fp32, iou)
	return a
}

// MatchPairs is [Match] that also returns the matched pairs, highest IoU
// first. An int8 detection in no pair is int8-only, an FP32 one FP32-only.
func MatchPairs(int8, fp32 []postprocess.Detection, iou float32) (Frame, []Pair) {
	a := Frame{Int8: len(int8), FP32: len(fp32)}
	var cands []Pair
	for i, x := range int8 {
		for j, y := range fp32 {
			if x.Class != y.Class {
				continue
			}
			if v := postprocess.IoU(x.Box, y.Box); v >= iou {
				cands = append(cands, Pair{i, j, v})
			}
		}
	}
	slices.SortStableFunc(cands, func(p, q Pair) int {
		switch {
		case p.IoU > q.IoU:
			return -1
		case p.IoU < q.IoU:
			return 1
		}
		return 0
	})
	usedI := make([]bool, len(int8))
	usedJ := make([]bool, len(fp32))
	var pairs []Pair
	for _, p := range cands {
		if usedI[p.Int8] || usedJ[p.FP32] {
			continue
		}
		usedI[p.Int8], usedJ[p.FP32] = true, true
		pairs = append(pairs, p)
		a.Matched++
		a.SumIoU += float64(p.IoU)
		d := float64(int8[p.Int8].Score - fp32[p.FP32].Score)
		if d < 0 {
			d = -d
		}
		a.SumScoreDiff += d
	}
	return a, pairs
}

// Disagreement is 1 - F1 of the frame's matching: 0 when every detection
// found its counterpart (or neither model detected anything), 1 when none
// did.
func (f Frame) Disagreement() float64 {
	if f.Int8+f.FP32 == 0 {
		return 0
	}
	return 1 - 2*float64(f.Matched)/float64(f.Int8+f.FP32)
}

// Window holds rolling int8-vs-FP32 figures over the last Window
// shadowed frames. It is safe for concurrent use.
type Window struct {
	mu     sync.Mutex
	window []Frame
	next   int
	full   bool
}

// NewWindow returns a rolling window of n frames (n >= 1).
func NewWindow(n int) *Window {
	return &Window{window: make([]Frame, max(n, 1))}
}

// Add records one shadowed frame.
func (a *Window) Add(f Frame) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.window[a.next] = f
	a.next = (a.next + 1) % len(a.window)
	if a.next == 0 {
		a.full = true
	}
}

// Reset empties the window.
func (a *Window) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.window)
	a.next, a.full = 0, false
}

// Figures are the rolling figures.
type Figures struct {
	Frames    int     `json:"frames"`
	Precision float64 `json:"precision"`  // matched / int8 detections
	Recall    float64 `json:"recall"`     // matched / FP32 detections
	MeanIoU   float64 `json:"mean_iou"`   // over matched pairs
	ScoreDiff float64 `json:"score_diff"` // mean |int8 - FP32| score of matched pairs
	CountDiff float64 `json:"count_diff"` // mean int8 - FP32 detections per frame
}

// Figures computes the rolling figures. With no detections on either side
// precision and recall are 1 (full agreement on "nothing").
func (a *Window) Figures() Figures {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.next
	if a.full {
		n = len(a.window)
	}
	var f Figures
	f.Frames = n
	var i8, f32, m int
	var iou, sd, cd float64
	for _, w := range a.window[:n] {
		i8 += w.Int8
		f32 += w.FP32
		m += w.Matched
		iou += w.SumIoU
		sd += w.SumScoreDiff
		cd += float64(w.Int8 - w.FP32)
	}
	f.Precision, f.Recall = 1, 1
	if i8 > 0 {
		f.Precision = float64(m) / float64(i8)
	}
	if f32 > 0 {
		f.Recall = float64(m) / float64(f32)
	}
	if m > 0 {
		f.MeanIoU = iou / float64(m)
		f.ScoreDiff = sd / float64(m)
	}
	if n > 0 {
		f.CountDiff = cd / float64(n)
	}
	return f
}

// Sum accumulates frame agreements with no window (a canary's frames).
type Sum struct {
	Frames, Int8, FP32, Matched int
}

// Add adds one frame.
func (a *Sum) Add(f Frame) {
	a.Frames++
	a.Int8 += f.Int8
	a.FP32 += f.FP32
	a.Matched += f.Matched
}

// Rates returns recall and precision, 1 with nothing to match (as
// [Window.Figures]).
func (a Sum) Rates() (recall, precision float64) {
	recall, precision = 1, 1
	if a.FP32 > 0 {
		recall = float64(a.Matched) / float64(a.FP32)
	}
	if a.Int8 > 0 {
		precision = float64(a.Matched) / float64(a.Int8)
	}
	return recall, precision
}
