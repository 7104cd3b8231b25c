package serve

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/agreement"
	"github.com/yedge/yedge/postprocess"
)

// TestGuardMinFrames: the guard judges a stream's window only once it
// holds guard.min_frames shadowed frames, or the whole window when that
// is smaller.
func TestGuardMinFrames(t *testing.T) {
	bad := agreement.Frame{Int8: 4, FP32: 4, Matched: 0} // recall and precision 0
	tests := []struct {
		name              string
		minFrames, window int
		judgedAt          int // the frame at which the guard starts counting
	}{
		{"min_frames within the window", 3, 10, 3},
		{"the default", 5, 200, 5},
		{"min_frames beyond the window", 20, 10, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &lifecycle{log: slog.New(slog.DiscardHandler), errs: &errorLog{}}
			st := &stream{plan: StreamPlan{Name: "cam"}, agree: agreement.NewWindow(tc.window)}
			var p Plan
			p.Shadow.Window = tc.window
			p.Lifecycle.Guard = GuardPlan{MinRecall: 0.5, MinPrecision: 0.5, For: time.Nanosecond, MinFrames: tc.minFrames}
			for i := 1; i <= tc.judgedAt; i++ {
				st.agree.Add(bad)
				l.checkGuard(p, st)
				if counting := !st.guard.lowSince.IsZero(); counting != (i == tc.judgedAt) {
					t.Fatalf("frame %d: counting %v, want from frame %d", i, counting, tc.judgedAt)
				}
			}
			time.Sleep(time.Millisecond)
			st.agree.Add(bad)
			l.checkGuard(p, st)
			if !st.guard.fallback.Load() {
				t.Errorf("no fallback after %d low frames held past guard.for", tc.judgedAt+1)
			}
		})
	}
}

// TestShadowedJudgesEmptyInt8: a shadowed frame on which the serving int8
// model found nothing (a nil slice) is still an int8 frame the guard
// judges; a frame FP32 served is not.
func TestShadowedJudgesEmptyInt8(t *testing.T) {
	for _, servedInt8 := range []bool{true, false} {
		l := &lifecycle{log: slog.New(slog.DiscardHandler), errs: &errorLog{}}
		st := &stream{plan: StreamPlan{Name: "cam"}, agree: agreement.NewWindow(10)}
		var p Plan
		p.Shadow.Window = 10
		p.Lifecycle.Guard = GuardPlan{MinRecall: 0.5, MinPrecision: 0.5, For: time.Nanosecond, MinFrames: 1}
		fp32 := []postprocess.Detection{{Class: 0, Score: 0.9, Box: postprocess.Box{X2: 10, Y2: 10}}}
		for range 2 {
			st.agree.Add(agreement.Match(nil, fp32, 0.5))
			if err := l.shadowed(context.Background(), p, st, gocv.Mat{}, servedInt8, nil, fp32); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		if got := st.guard.fallback.Load(); got != servedInt8 {
			t.Errorf("served by int8 %v: fallback %v", servedInt8, got)
		}
	}
}
