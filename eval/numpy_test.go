package eval

import (
	"math"
	"testing"
)

func TestLinspace(t *testing.T) {
	x := linspace(0, 1, 101)
	if len(x) != 101 || x[0] != 0 || x[50] != 0.5 || x[100] != 1 {
		t.Fatalf("linspace(0,1,101) = %v", x)
	}
	v := linspace(0.5, 0.95, 10)
	for i, want := range []float64{0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95} {
		if math.Abs(v[i]-want) > 1e-12 {
			t.Errorf("iouv[%d] = %v, want %v", i, v[i], want)
		}
	}
	if v[9] != 0.95 {
		t.Errorf("last value %v, want exactly 0.95", v[9])
	}
}

func TestInterp(t *testing.T) {
	tests := []struct {
		name        string
		x           float64
		xp, fp      []float64
		left, right float64
		want        float64
	}{
		{"inside", 1.5, []float64{1, 2, 3}, []float64{10, 20, 30}, -1, -2, 15},
		{"on knot", 2, []float64{1, 2, 3}, []float64{10, 20, 30}, -1, -2, 20},
		{"first knot", 1, []float64{1, 2, 3}, []float64{10, 20, 30}, -1, -2, 10},
		{"last knot is fp[last], not right", 3, []float64{1, 2, 3}, []float64{10, 20, 30}, -1, -2, 30},
		{"left", 0.999, []float64{1, 2, 3}, []float64{10, 20, 30}, -1, -2, -1},
		{"right", 3.001, []float64{1, 2, 3}, []float64{10, 20, 30}, -1, -2, -2},
		{"duplicate knot takes last", 0.5, []float64{0, 0.5, 0.5, 1}, []float64{1, 1, 0.6, 0.6}, 9, 9, 0.6},
		{"before duplicates", 0.25, []float64{0, 0.5, 0.5, 1}, []float64{1, 1, 0.6, 0.2}, 9, 9, 1},
		{"after duplicates", 0.75, []float64{0, 0.5, 0.5, 1}, []float64{1, 1, 0.6, 0.2}, 9, 9, 0.4},
		{"leading duplicates", 0, []float64{0, 0, 1}, []float64{1, 0, 0}, 9, 9, 0},
		{"all equal, on", -1, []float64{-1, -1, -1}, []float64{0.2, 0.5, 1}, 0, 7, 1},
		{"all equal, right", -0.5, []float64{-1, -1, -1}, []float64{0.2, 0.5, 1}, 0, 7, 7},
		{"all equal, left", -2, []float64{-1, -1, -1}, []float64{0.2, 0.5, 1}, 0, 7, 0},
		{"single point on", 2, []float64{2}, []float64{5}, 1, 9, 5},
		{"single point left", 1, []float64{2}, []float64{5}, 1, 9, 1},
		{"single point right", 3, []float64{2}, []float64{5}, 1, 9, 9},
		{"long array bisection", 7.25, []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []float64{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20}, 0, 0, 14.5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := interp(tc.x, tc.xp, tc.fp, tc.left, tc.right); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("interp(%v, %v, %v) = %v, want %v", tc.x, tc.xp, tc.fp, got, tc.want)
			}
		})
	}
	if got := interp(math.NaN(), []float64{0, 1}, []float64{0, 1}, 0, 1); !math.IsNaN(got) {
		t.Errorf("interp(NaN) = %v, want NaN", got)
	}
}

func TestComputeAP(t *testing.T) {
	tests := []struct {
		name              string
		recall, precision []float64
		want              float64
	}{
		// The (1, 0) sentinel makes the curve drop to 0 at recall 1: the
		// last trapezoid loses 0.005, so a perfect curve scores 0.995.
		{"perfect", []float64{1}, []float64{1}, 0.995},
		{"perfect, several points", []float64{1. / 3, 2. / 3, 1}, []float64{1, 1, 1}, 0.995},
		{"nothing found", []float64{0}, []float64{0}, 0},
		{"nothing found, several", []float64{0, 0, 0}, []float64{0, 0, 0}, 0},
		// mrec [0 .5 1], mpre [1 1 0]: 1 up to 0.5 then a linear ramp to 0.
		{"half recall", []float64{0.5}, []float64{1}, 0.75},
		// TP, FP, TP with 2 labels: envelope [1 1 2/3 2/3 0] at mrec
		// [0 .5 .5 1 1]; 49*0.01 + 0.01*(1+2/3)/2 + 49*0.01*2/3 + 0.01*(2/3)/2.
		{"tp fp tp", []float64{0.5, 0.5, 1}, []float64{1, 0.5, 2. / 3}, 497. / 600},
		// The envelope lifts the FP dip back to the later precision.
		{"envelope", []float64{0.5, 0.5, 0.5, 1}, []float64{1, 0.5, 1. / 3, 0.5}, 0.49 + 0.01*(1+0.5)/2 + 0.49*0.5 + 0.01*0.5/2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := computeAP(tc.recall, tc.precision); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("computeAP(%v, %v) = %.15f, want %.15f", tc.recall, tc.precision, got, tc.want)
			}
		})
	}
}

func TestSmooth(t *testing.T) {
	// An impulse shows the filter length: round(1000*0.1*2)//2+1 = 101 taps.
	y := make([]float64, 1000)
	y[500] = 1
	s := smooth(y, 0.1)
	if len(s) != 1000 {
		t.Fatalf("len = %d, want 1000", len(s))
	}
	for k, want := range map[int]float64{449: 0, 450: 1. / 101, 500: 1. / 101, 550: 1. / 101, 551: 0} {
		if math.Abs(s[k]-want) > 1e-15 {
			t.Errorf("s[%d] = %v, want %v", k, s[k], want)
		}
	}
	// Padding repeats the end values, so a ramp's ends are pulled inwards
	// only on one side.
	for i := range y {
		y[i] = 1
	}
	y[0] = 0
	s = smooth(y, 0.1)
	if want := 50. / 101; math.Abs(s[0]-want) > 1e-12 { // 50 pads + y[0] are 0
		t.Errorf("s[0] = %v, want %v", s[0], want)
	}
	if argmax(s) != 51 { // yp[50] is y[0]; the window at 51 is all ones
		t.Errorf("argmax = %d, want 51 (first all-ones window)", argmax(s))
	}
}

func TestArgmaxFirst(t *testing.T) {
	if got := argmax([]float64{1, 3, 2, 3}); got != 1 {
		t.Errorf("argmax = %d, want 1", got)
	}
	if got := argmax([]float64{1, math.NaN(), 5}); got != 1 {
		t.Errorf("argmax with NaN = %d, want 1", got)
	}
}
