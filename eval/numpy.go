package eval

import (
	"math"
	"sort"
)

// This file holds faithful Go versions of the few NumPy routines YOLOv5's
// metrics rely on.

// linspace returns n evenly spaced values from start to stop inclusive,
// computed as numpy.linspace does (i*step + start, last value set to stop).
func linspace(start, stop float64, n int) []float64 {
	y := make([]float64, n)
	if n == 1 {
		y[0] = start
		return y
	}
	step := (stop - start) / float64(n-1)
	for i := range y {
		y[i] = float64(i)*step + start
	}
	if n > 1 {
		y[n-1] = stop
	}
	return y
}

// interp is numpy.interp for one point: the piecewise-linear interpolant of
// (xp, fp) at x, with xp non-decreasing. x < xp[0] gives left and x >
// xp[last] gives right (NumPy's defaults are fp[0] and fp[last]). With
// repeated xp values the segment used is the one starting at the LAST index
// j with xp[j] <= x, and x == xp[j] returns fp[j] exactly, as NumPy's
// binary_search_with_guess and arr_interp do.
func interp(x float64, xp, fp []float64, left, right float64) float64 {
	n := len(xp)
	if n == 0 || len(fp) != n {
		return math.NaN() // NumPy raises; never reached from this package
	}
	if math.IsNaN(x) {
		return x
	}
	if x > xp[n-1] {
		return right
	}
	if x < xp[0] {
		return left
	}
	// j = largest index with xp[j] <= x.
	j := sort.Search(n, func(i int) bool { return xp[i] > x }) - 1
	if j < 0 { // only when xp holds NaNs; NumPy's search gives -1 too
		return left
	}
	if j == n-1 || xp[j] == x {
		return fp[j]
	}
	slope := (fp[j+1] - fp[j]) / (xp[j+1] - xp[j])
	y := slope*(x-xp[j]) + fp[j]
	if math.IsNaN(y) { // "If we get nan in one direction, try the other"
		y = slope*(x-xp[j+1]) + fp[j+1]
		if math.IsNaN(y) && fp[j] == fp[j+1] {
			y = fp[j]
		}
	}
	return y
}

// trapz is numpy.trapz(y, x): the trapezoidal integral of y over x.
func trapz(y, x []float64) float64 {
	s := 0.0
	for k := 0; k+1 < len(x) && k+1 < len(y); k++ {
		s += (x[k+1] - x[k]) * (y[k+1] + y[k]) / 2
	}
	return s
}

// smooth is YOLOv5's box filter of fraction f (utils/metrics.py smooth):
// nf = round(len(y)*f*2)//2 + 1 taps, the ends padded with y[0] and y[-1],
// then np.convolve(..., mode='valid'). It returns len(y) values.
func smooth(y []float64, f float64) []float64 {
	if len(y) == 0 {
		return nil
	}
	nf := int(math.RoundToEven(float64(len(y))*f*2))/2 + 1 // Python round: half to even
	half := nf / 2
	yp := make([]float64, 0, len(y)+2*half)
	for range half {
		yp = append(yp, y[0])
	}
	yp = append(yp, y...)
	for range half {
		yp = append(yp, y[len(y)-1])
	}
	w := 1 / float64(nf)
	out := make([]float64, len(yp)-nf+1)
	for k := range out {
		s := 0.0
		for m := range nf {
			s += yp[k+m] * w
		}
		out[k] = s
	}
	return out
}

// argmax returns the index of the first maximum of y, like numpy.argmax
// (a NaN counts as the maximum, as in NumPy).
func argmax(y []float64) int {
	best := 0
	for i, v := range y {
		if math.IsNaN(v) {
			if !math.IsNaN(y[best]) {
				return i
			}
			continue
		}
		if v > y[best] {
			best = i
		}
	}
	return best
}

// computeAP is YOLOv5's compute_ap: the 101-point interpolated average
// precision (COCO style) of one recall/precision curve. Sentinels (0, 1) and
// (1, 0) are appended, the precision envelope is taken from the right, it is
// sampled with np.interp at linspace(0, 1, 101) and integrated with
// np.trapz.
func computeAP(recall, precision []float64) float64 {
	n := len(recall)
	mrec := make([]float64, n+2)
	mpre := make([]float64, n+2)
	mrec[0], mpre[0] = 0, 1
	copy(mrec[1:], recall)
	copy(mpre[1:], precision)
	mrec[n+1], mpre[n+1] = 1, 0
	// np.flip(np.maximum.accumulate(np.flip(mpre))); np.maximum propagates NaN.
	for k := n; k >= 0; k-- {
		if math.IsNaN(mpre[k+1]) || mpre[k+1] > mpre[k] {
			mpre[k] = mpre[k+1]
		}
	}
	x := apPoints
	y := make([]float64, len(x))
	for i, xi := range x {
		y[i] = interp(xi, mrec, mpre, mpre[0], mpre[n+1])
	}
	return trapz(y, x)
}

// apPoints is np.linspace(0, 1, 101), the recall grid of compute_ap.
var apPoints = linspace(0, 1, 101)
