package agreement

import (
	"math"
	"testing"

	"github.com/yedge/yedge/postprocess"
)

func det(c int, s float32, x1, y1, x2, y2 float32) postprocess.Detection {
	return postprocess.Detection{Class: c, Score: s, Box: postprocess.Box{X1: x1, Y1: y1, X2: x2, Y2: y2}}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name       string
		int8, fp32 []postprocess.Detection
		matched    int
		iou        float64
	}{
		{"identical", []postprocess.Detection{det(0, .9, 0, 0, 10, 10)}, []postprocess.Detection{det(0, .8, 0, 0, 10, 10)}, 1, 1},
		{"other class", []postprocess.Detection{det(1, .9, 0, 0, 10, 10)}, []postprocess.Detection{det(0, .8, 0, 0, 10, 10)}, 0, 0},
		{"too little overlap", []postprocess.Detection{det(0, .9, 0, 0, 10, 10)}, []postprocess.Detection{det(0, .8, 6, 0, 16, 10)}, 0, 0},
		{"one-to-one, best IoU first", []postprocess.Detection{det(0, .9, 0, 0, 10, 10), det(0, .9, 1, 0, 11, 10)},
			[]postprocess.Detection{det(0, .8, 1, 0, 11, 10)}, 1, 1},
		{"nothing", nil, nil, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := Match(tc.int8, tc.fp32, 0.5)
			if a.Matched != tc.matched || math.Abs(a.SumIoU-tc.iou) > 1e-6 {
				t.Errorf("got %+v", a)
			}
		})
	}
}

func TestAgreementWindow(t *testing.T) {
	a := NewWindow(2)
	if f := a.Figures(); f.Frames != 0 || f.Precision != 1 || f.Recall != 1 {
		t.Errorf("empty: %+v", f)
	}
	a.Add(Frame{Int8: 4, FP32: 2, Matched: 2, SumIoU: 1.8, SumScoreDiff: 0.1})
	a.Add(Frame{Int8: 0, FP32: 2, Matched: 0})
	f := a.Figures()
	if f.Frames != 2 || f.Precision != 0.5 || f.Recall != 0.5 || math.Abs(f.MeanIoU-0.9) > 1e-9 || f.CountDiff != 0 {
		t.Errorf("figures %+v", f)
	}
	a.Add(Frame{Int8: 1, FP32: 1, Matched: 1, SumIoU: 1}) // pushes out the first frame
	f = a.Figures()
	if f.Frames != 2 || f.Precision != 1 || f.Recall != 1.0/3 {
		t.Errorf("rolled figures %+v", f)
	}
}

func TestMatchPairs(t *testing.T) {
	i8 := []postprocess.Detection{det(0, .9, 0, 0, 10, 10), det(0, .7, 1, 0, 11, 10), det(2, .5, 50, 50, 60, 60)}
	f32 := []postprocess.Detection{det(0, .8, 1, 0, 11, 10), det(1, .6, 80, 80, 90, 90)}
	a, pairs := MatchPairs(i8, f32, 0.5)
	if a.Matched != 1 || len(pairs) != 1 || pairs[0].Int8 != 1 || pairs[0].FP32 != 0 || pairs[0].IoU != 1 {
		t.Fatalf("MatchPairs = %+v, %+v", a, pairs)
	}
	if a != Match(i8, f32, 0.5) {
		t.Errorf("MatchPairs and Match disagree: %+v vs %+v", a, Match(i8, f32, 0.5))
	}
	// 1 matched of 3 + 2 detections: F1 = 2/5.
	if d := a.Disagreement(); math.Abs(d-0.6) > 1e-9 {
		t.Errorf("Disagreement = %v, want 0.6", d)
	}
	if d := (Frame{}).Disagreement(); d != 0 {
		t.Errorf("Disagreement of nothing = %v, want 0", d)
	}
}
