package quant

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// DefaultNumBins is the number of histogram bins of a first batch,
// pytorch-quantization's HistogramCalibrator num_bins default.
const DefaultNumBins = 2048

// maxNumBins caps Bins (NewTensorStats and cache files).
const maxNumBins = 1 << 20

// Histogram ranges a cache may hold: data are float32, so the last edge
// stays below about 2*MaxFloat32 and a bin is at least the smallest
// float32 over maxNumBins wide; within these, growth arithmetic is exact
// enough and finite.
const (
	maxHistEdge  = 1e40
	minHistWidth = 1e-55
)

// maxBinsFactor bounds memory: a histogram never holds more than
// maxBinsFactor*Bins bins (see TensorStats).
const maxBinsFactor = 8

// histStartBin is start_bin of pytorch-quantization's
// _compute_amax_entropy and _compute_amax_mse: the smallest candidate amax
// is the edge (entropy) or center (MSE) of bin 128.
const histStartBin = 128

// TensorStats is the streaming calibration state of one tensor: running
// min, max and max|x| (pytorch-quantization's MaxCalibrator) and a
// histogram of |x| (HistogramCalibrator, torch_hist semantics,
// skip_zeros=false). Memory is bounded by the histogram, not by the amount
// of data collected. The fields are exported so that a Cache can store
// them as JSON. A TensorStats is not safe for concurrent use; collect on
// several goroutines into separate TensorStats and Merge them.
//
// The histogram covers [0, Edges[len(Hist)]] with bins of equal width.
// The first batch with a non-zero max|x| sets Bins bins over [0, max|x|];
// a later batch whose max|x| exceeds the last edge appends
// ceil((max|x| - lastEdge)/width) bins of the same width before being
// counted, as HistogramCalibrator.collect does. Values are binned as
// torch.histc does: bin = floor(|x| * nbins / lastEdge), |x| == lastEdge
// in the last bin.
//
// One deviation bounds memory: where pytorch-quantization would grow the
// histogram without limit (a first batch of tiny values followed by large
// ones), a histogram that would exceed 8*Bins bins first merges groups of
// 2^k adjacent bins (doubling the width k times). The coarser edges are a
// subset of the old ones, so no count moves to a wrong interval.
type TensorStats struct {
	// Bins is num_bins: the bins of the first histogram.
	Bins int `json:"bins"`
	// Count is the number of finite values collected.
	Count int64 `json:"count"`
	// NonFinite is the number of NaN and ±Inf values, which are otherwise
	// ignored.
	NonFinite int64 `json:"non_finite,omitempty"`
	// Min, Max and AbsMax are the smallest, largest and largest absolute
	// finite values (0 while Count is 0).
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	AbsMax float64 `json:"abs_max"`
	// PendingZeros counts the zeros of batches collected before the
	// histogram exists (every value so far was 0); they join the first bin
	// when it is created.
	PendingZeros int64 `json:"pending_zeros,omitempty"`
	// Hist holds the count of each bin; Edges its len(Hist)+1 edges, from 0.
	Hist  []float64 `json:"hist,omitempty"`
	Edges []float64 `json:"edges,omitempty"`
}

// NewTensorStats returns empty statistics whose first histogram will have
// the given number of bins (DefaultNumBins, as pytorch-quantization, when
// bins <= 0; at most 1<<20).
func NewTensorStats(bins int) *TensorStats {
	if bins <= 0 {
		bins = DefaultNumBins
	}
	bins = min(bins, maxNumBins)
	return &TensorStats{Bins: bins}
}

// binCap is the most bins the histogram may hold.
func (s *TensorStats) binCap() int {
	b := s.Bins
	if b <= 0 {
		b = DefaultNumBins
	}
	return maxBinsFactor * min(b, maxNumBins)
}

// Collect adds a batch of values, as HistogramCalibrator.collect (on |x|)
// and MaxCalibrator.collect do together. NaN and ±Inf are not collected;
// they are counted in NonFinite. A batch costs two branch-free passes
// (min/max, then binning through four lane histograms); it allocates only
// when the histogram is created or grows (and a pooled scratch buffer).
func (s *TensorStats) Collect(x []float32) {
	if s.Bins <= 0 || s.Bins > maxNumBins {
		s.Bins = NewTensorStats(s.Bins).Bins
	}
	mn, mx, nonFinite := minMax(x)
	bad := 0
	if nonFinite { // the careful pass
		mn, mx, bad = minMaxFinite(x)
	}
	s.NonFinite += int64(bad)
	n := len(x) - bad
	if n == 0 {
		return
	}
	lo, hi := float64(mn), float64(mx)
	if s.Count == 0 {
		s.Min, s.Max = lo, hi
	} else {
		s.Min, s.Max = math.Min(s.Min, lo), math.Max(s.Max, hi)
	}
	s.Count += int64(n)
	amax := math.Max(-lo, hi)
	s.AbsMax = math.Max(s.AbsMax, amax)
	switch {
	case len(s.Hist) == 0 && amax == 0:
		s.PendingZeros += int64(n)
		return
	case len(s.Hist) == 0:
		s.initHist(amax)
	case amax > s.Edges[len(s.Hist)]:
		s.grow(amax, 0)
	}
	s.histogram(x, bad > 0)
	if s.PendingZeros > 0 {
		s.Hist[0] += float64(s.PendingZeros)
		s.PendingZeros = 0
	}
}

// orderKey maps float32 bits to an int32 with the same order as the floats
// (-0 just below +0, NaNs beyond ±Inf); it is its own inverse.
func orderKey(b int32) int32 { return b ^ (b>>31)&0x7fffffff }

// Keys of ±Inf: a key at or beyond them is ±Inf or NaN.
var (
	keyPosInf = orderKey(int32(math.Float32bits(float32(math.Inf(1)))))
	keyNegInf = orderKey(int32(math.Float32bits(float32(math.Inf(-1)))))
)

// minMax returns min(x) and max(x) and whether x holds a NaN or ±Inf (then
// the min and max are meaningless). It compares integer order keys in four
// independent lanes, branch-free.
func minMax(x []float32) (mn, mx float32, nonFinite bool) {
	m0, m1, m2, m3 := int32(math.MaxInt32), int32(math.MaxInt32), int32(math.MaxInt32), int32(math.MaxInt32)
	M0, M1, M2, M3 := int32(math.MinInt32), int32(math.MinInt32), int32(math.MinInt32), int32(math.MinInt32)
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a := orderKey(int32(math.Float32bits(x[i])))
		b := orderKey(int32(math.Float32bits(x[i+1])))
		c := orderKey(int32(math.Float32bits(x[i+2])))
		d := orderKey(int32(math.Float32bits(x[i+3])))
		m0, M0 = min(m0, a), max(M0, a)
		m1, M1 = min(m1, b), max(M1, b)
		m2, M2 = min(m2, c), max(M2, c)
		m3, M3 = min(m3, d), max(M3, d)
	}
	for ; i < len(x); i++ {
		a := orderKey(int32(math.Float32bits(x[i])))
		m0, M0 = min(m0, a), max(M0, a)
	}
	lo, hi := min(m0, m1, m2, m3), max(M0, M1, M2, M3)
	if len(x) == 0 {
		return float32(math.Inf(1)), float32(math.Inf(-1)), false
	}
	return math.Float32frombits(uint32(orderKey(lo))), math.Float32frombits(uint32(orderKey(hi))),
		lo <= keyNegInf || hi >= keyPosInf
}

// minMaxFinite returns the min and max of the finite values of x and the
// number of NaN and ±Inf values.
func minMaxFinite(x []float32) (mn, mx float32, bad int) {
	mn, mx = float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range x {
		if v-v != 0 { // NaN, ±Inf
			bad++
			continue
		}
		mn, mx = min(mn, v), max(mx, v)
	}
	return mn, mx, bad
}

// initHist creates Bins bins over [0, amax] with torch.linspace's edges.
func (s *TensorStats) initHist(amax float64) {
	n := s.Bins
	s.Hist = make([]float64, n)
	s.Edges = make([]float64, n+1)
	step := amax / float64(n)
	half := (n + 1) / 2
	for i := range s.Edges {
		if i < half {
			s.Edges[i] = step * float64(i)
		} else {
			s.Edges[i] = amax - step*float64(n-i)
		}
	}
}

// histScratch holds per-lane counts for histogram4.
var histScratch = sync.Pool{New: func() any { return new([]uint32) }}

// histogram counts |x| of finite values into the existing bins, whose last
// edge is at least max|x|.
func (s *TensorStats) histogram(x []float32, checkFinite bool) {
	h := s.Hist
	n := len(h)
	inv := float64(n) / s.Edges[n]
	last := n - 1
	if !checkFinite && len(x) >= 4*n {
		p := histScratch.Get().(*[]uint32)
		if cap(*p) < 4*n {
			*p = make([]uint32, 4*n)
		}
		sc := (*p)[:4*n]
		const chunk = 1 << 30 // a lane counts at most chunk/4 < 2^32
		for len(x) > 0 {
			k := min(len(x), chunk)
			histogram4(h, sc, x[:k], inv)
			x = x[k:]
		}
		histScratch.Put(p)
		return
	}
	if checkFinite {
		for _, v := range x {
			if v-v != 0 {
				continue
			}
			i := int(math.Abs(float64(v)) * inv)
			if uint(i) > uint(last) {
				i = last
			}
			h[i]++
		}
		return
	}
	for _, v := range x {
		i := int(math.Abs(float64(v)) * inv)
		if uint(i) > uint(last) {
			i = last
		}
		h[i]++
	}
}

// histogram4 counts |x| (all finite) into h through four interleaved
// uint32 lane histograms in sc (4*len(h), zero on entry and on return), so
// that runs of equal bins (the zeros after ReLU) do not serialize on one
// memory increment.
func histogram4(h []float64, sc []uint32, x []float32, inv float64) {
	n := len(h)
	last := n - 1
	s0, s1, s2, s3 := sc[:n], sc[n:2*n], sc[2*n:3*n], sc[3*n:4*n]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a := int(math.Abs(float64(x[i])) * inv)
		b := int(math.Abs(float64(x[i+1])) * inv)
		c := int(math.Abs(float64(x[i+2])) * inv)
		d := int(math.Abs(float64(x[i+3])) * inv)
		if uint(a) > uint(last) {
			a = last
		}
		if uint(b) > uint(last) {
			b = last
		}
		if uint(c) > uint(last) {
			c = last
		}
		if uint(d) > uint(last) {
			d = last
		}
		s0[a]++
		s1[b]++
		s2[c]++
		s3[d]++
	}
	for ; i < len(x); i++ {
		a := int(math.Abs(float64(x[i])) * inv)
		if uint(a) > uint(last) {
			a = last
		}
		s0[a]++
	}
	for k := range h {
		h[k] += float64(s0[k]) + float64(s1[k]) + float64(s2[k]) + float64(s3[k])
	}
	clear(sc)
}

// grow extends the histogram to cover newmax with bins of the same width
// (ceil((newmax-lastEdge)/width - tol) more), first coarsening it by a
// power of two if that would exceed binCap.
func (s *TensorStats) grow(newmax, tol float64) {
	n := len(s.Hist)
	last := s.Edges[n]
	if !(newmax > last) {
		return
	}
	w := s.Edges[1] - s.Edges[0]
	add := math.Ceil((newmax-last)/w - tol)
	if add < 1 {
		return
	}
	limit := float64(s.binCap())
	if float64(n)+add > limit {
		f := 1.0
		for f < 1e300 { // the range limits of validate end it far sooner
			f *= 2
			m := math.Ceil(float64(n) / f)
			newLast := last + (m*f-float64(n))*w
			add = math.Max(0, math.Ceil((newmax-newLast)/(w*f)-tol))
			if m+add <= limit {
				break
			}
		}
		s.coarsen(f)
	}
	if add >= 1 && add <= limit {
		s.extend(int(add))
	}
}

// coarsen merges groups of f (a power of two) adjacent bins into one.
func (s *TensorStats) coarsen(f float64) {
	n := len(s.Hist)
	last := s.Edges[n]
	w := s.Edges[1] - s.Edges[0]
	m := 1
	if f < float64(n) {
		m = int(math.Ceil(float64(n) / f))
	}
	hist := make([]float64, m)
	edges := make([]float64, m+1)
	for j := range edges {
		if k := float64(j) * f; k <= float64(n) {
			edges[j] = s.Edges[int(k)]
		} else {
			edges[j] = last + (k-float64(n))*w
		}
	}
	for k, c := range s.Hist {
		hist[int(float64(k)/f)] += c
	}
	s.Hist, s.Edges = hist, edges
}

// extend appends add empty bins of the current width.
func (s *TensorStats) extend(add int) {
	n := len(s.Hist)
	last := s.Edges[n]
	w := s.Edges[1] - s.Edges[0]
	s.Hist = append(s.Hist, make([]float64, add)...)
	s.Edges = slices.Grow(s.Edges, add)
	for k := 1; k <= add; k++ {
		s.Edges = append(s.Edges, last+float64(k)*w)
	}
}

// Merge adds the statistics of o to s, for collection on several
// goroutines. Counts, min, max and max|x| merge exactly. Histograms on the
// same grid (equal bin width; one may be longer) add exactly, so merging
// equals collecting both inputs in sequence. Otherwise the result is on
// the coarser of the two grids (extended to cover both), and each bin of
// the finer histogram is spread over the bins it overlaps in proportion to
// the overlap — the usual assumption that values are uniform within a bin;
// counts may then be fractional. pytorch-quantization has no merge.
// o is not modified; merging s into itself is an error.
func (s *TensorStats) Merge(o *TensorStats) error {
	if o == nil {
		return nil
	}
	if o == s {
		return errors.New("merge tensor statistics with themselves")
	}
	if err := o.validate(); err != nil {
		return fmt.Errorf("merge tensor statistics: %w", err)
	}
	if s.Bins <= 0 {
		s.Bins = o.Bins
	}
	switch {
	case len(o.Hist) == 0:
		if len(s.Hist) > 0 {
			s.Hist[0] += float64(o.PendingZeros)
		} else {
			s.PendingZeros += o.PendingZeros
		}
	case len(s.Hist) == 0:
		s.Hist, s.Edges = slices.Clone(o.Hist), slices.Clone(o.Edges)
		s.Hist[0] += float64(s.PendingZeros)
		s.PendingZeros = 0
	default:
		s.mergeHist(o)
	}
	if o.Count > 0 {
		if s.Count == 0 {
			s.Min, s.Max = o.Min, o.Max
		} else {
			s.Min, s.Max = math.Min(s.Min, o.Min), math.Max(s.Max, o.Max)
		}
	}
	s.Count += o.Count
	s.NonFinite += o.NonFinite
	s.AbsMax = math.Max(s.AbsMax, o.AbsMax)
	return nil
}

// mergeTol is the relative tolerance under which bin widths and edges are
// the same grid (they may be computed by different formulas).
const mergeTol = 1e-9

// mergeHist merges o's histogram into s's (both non-empty).
func (s *TensorStats) mergeHist(o *TensorStats) {
	sw, ow := s.Edges[1]-s.Edges[0], o.Edges[1]-o.Edges[0]
	oLast := o.Edges[len(o.Hist)]
	if math.Abs(sw-ow) <= mergeTol*math.Max(sw, ow) {
		s.grow(oLast, mergeTol)
		if len(o.Hist) <= len(s.Hist) && sameEdges(s.Edges, o.Edges, mergeTol*sw) {
			for i, c := range o.Hist {
				s.Hist[i] += c
			}
			return
		}
		sw = s.Edges[1] - s.Edges[0] // grow may have coarsened
	}
	if ow > sw {
		t := &TensorStats{Bins: s.Bins, Hist: slices.Clone(o.Hist), Edges: slices.Clone(o.Edges)}
		t.grow(s.Edges[len(s.Hist)], mergeTol)
		spread(t.Edges, t.Hist, s.Edges, s.Hist)
		s.Hist, s.Edges = t.Hist, t.Edges
		return
	}
	s.grow(oLast, mergeTol)
	spread(s.Edges, s.Hist, o.Edges, o.Hist)
}

// sameEdges reports whether b's edges equal a's first len(b) within tol.
func sameEdges(a, b []float64, tol float64) bool {
	if len(b) > len(a) {
		return false
	}
	for i, e := range b {
		if math.Abs(a[i]-e) > tol {
			return false
		}
	}
	return true
}

// spread adds each source bin's count to the destination bins it
// overlaps, in proportion to the overlap. The destination must cover the
// source's range (up to rounding; any excess goes to the last bin).
func spread(dstEdges, dst, srcEdges, src []float64) {
	n := len(dst)
	inv := float64(n) / dstEdges[n]
	for j, c := range src {
		if c == 0 {
			continue
		}
		a, b := srcEdges[j], srcEdges[j+1]
		k := min(max(int(a*inv), 0), n-1)
		for k > 0 && dstEdges[k] > a {
			k--
		}
		for k < n-1 && dstEdges[k+1] <= a {
			k++
		}
		rest := c
		for ; k < n-1 && dstEdges[k+1] < b; k++ {
			part := c * (dstEdges[k+1] - math.Max(a, dstEdges[k])) / (b - a)
			dst[k] += part
			rest -= part
		}
		dst[k] += math.Max(rest, 0)
	}
}

// validate reports inconsistent statistics (from a file or a caller).
func (s *TensorStats) validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case s.Bins <= 0 || s.Bins > maxNumBins:
		return fmt.Errorf("bins %d out of range [1, %d]", s.Bins, maxNumBins)
	case s.Count < 0 || s.NonFinite < 0 || s.PendingZeros < 0:
		return fmt.Errorf("negative count (count %d, non_finite %d, pending_zeros %d)", s.Count, s.NonFinite, s.PendingZeros)
	case !finite(s.Min) || !finite(s.Max) || !finite(s.AbsMax):
		return fmt.Errorf("non-finite min %v, max %v or abs_max %v", s.Min, s.Max, s.AbsMax)
	case math.Abs(s.Min) > math.MaxFloat32 || math.Abs(s.Max) > math.MaxFloat32 || s.AbsMax > math.MaxFloat32:
		return fmt.Errorf("min %v, max %v or abs_max %v beyond float32", s.Min, s.Max, s.AbsMax)
	case s.Count > 0 && (s.Min > s.Max || s.AbsMax < math.Max(-s.Min, s.Max)):
		return fmt.Errorf("inconsistent min %v, max %v, abs_max %v", s.Min, s.Max, s.AbsMax)
	case s.AbsMax < 0:
		return fmt.Errorf("negative abs_max %v", s.AbsMax)
	case len(s.Hist) == 0 && len(s.Edges) == 0:
		return nil
	case len(s.Hist) == 0 || len(s.Edges) != len(s.Hist)+1:
		return fmt.Errorf("%d histogram bins with %d edges (want bins+1)", len(s.Hist), len(s.Edges))
	case len(s.Hist) > maxBinsFactor*maxNumBins:
		return fmt.Errorf("%d histogram bins, more than %d", len(s.Hist), maxBinsFactor*maxNumBins)
	case s.PendingZeros > 0:
		return errors.New("pending zeros with a histogram")
	case s.Edges[0] != 0:
		return fmt.Errorf("first histogram edge %v is not 0", s.Edges[0])
	}
	w := s.Edges[1] - s.Edges[0]
	if last := s.Edges[len(s.Hist)]; !(w >= minHistWidth) || !(last <= maxHistEdge) {
		return fmt.Errorf("histogram [0, %v] with bin width %v is outside float32 data", last, w)
	}
	for i, c := range s.Hist {
		if !(c >= 0) || !finite(c) {
			return fmt.Errorf("histogram bin %d count %v is not a non-negative number", i, c)
		}
		e, f := s.Edges[i], s.Edges[i+1]
		if !finite(f) || math.Abs((f-e)-w) > 1e-6*w {
			return fmt.Errorf("histogram edges %v, %v are not a uniform grid of width %v", e, f, w)
		}
	}
	return nil
}

// ComputeAmax returns the amax that method m chooses from the statistics,
// as pytorch-quantization's calibrators compute_amax do for 8-bit signed
// quantization:
//
//   - Max: AbsMax (MaxCalibrator).
//   - Entropy: _compute_amax_entropy with num_bits 8, stride 1,
//     start_bin 128: with bins = Hist and bins[0] = bins[1], for every
//     i from 128 to len(bins) the reference P is bins[:i] with the tail
//     sum(bins[i:]) added to P[i-1], and the candidate Q spreads each of
//     128 groups of the first i bins (np.digitize(range(i),
//     linspace(0, i, 129)) - 1) evenly over the group's non-zero bins;
//     amax = Edges[i] for the last i minimizing the KL divergence
//     scipy.stats.entropy(P, Q). The divergence is evaluated per group
//     (Σ b log b - c log(c/n)), which is the same sum as scipy's,
//     regrouped; a NaN divergence (no counts below i) counts as +Inf.
//   - MSE: _compute_amax_mse: centers = (Edges[1:]+Edges[:-1])/2 in
//     float32; for i from 128 to len(centers)-1, amax = centers[i] and
//     mse = mean(Hist × (FakeQuant(centers, amax, 8, signed, narrow) -
//     centers)²); the first minimizing center.
//   - Percentile: _compute_amax_percentile: cdf = cumsum(Hist/sum(Hist)),
//     amax = Edges[searchsorted(cdf, p/100)] (left). percentile is p in
//     (0, 100]; 0 means DefaultPercentile.
//
// Unlike pytorch-quantization, the histogram is not modified (its
// entropy method sets bins[0] = bins[1] in place). With fewer than 128
// bins (129 for MSE) the histogram methods fall back to AbsMax. When every
// collected value was 0, ComputeAmax returns 0: callers treat the tensor
// as constant zero (not quantizable). It is an error to ask for amax
// before any finite value was collected.
func (s *TensorStats) ComputeAmax(m CalibMethod, percentile float64) (float64, error) {
	if !m.valid() {
		return 0, fmt.Errorf("unknown calibration method %q (choose max, entropy, mse or percentile)", string(m))
	}
	if m == Percentile {
		if percentile == 0 {
			percentile = DefaultPercentile
		}
		if !(percentile > 0 && percentile <= 100) {
			return 0, fmt.Errorf("percentile %v out of range (0, 100]", percentile)
		}
	}
	if s.Count == 0 {
		if s.NonFinite > 0 {
			return 0, fmt.Errorf("no finite values collected (%d NaN or Inf)", s.NonFinite)
		}
		return 0, errors.New("no values collected")
	}
	if s.AbsMax == 0 {
		return 0, nil
	}
	n := len(s.Hist)
	if m == Max || n == 0 || len(s.Edges) != n+1 {
		return s.AbsMax, nil
	}
	switch m {
	case Percentile:
		return percentileAmax(s.Hist, s.Edges, percentile, s.AbsMax), nil
	case MSE:
		if n <= histStartBin {
			return s.AbsMax, nil
		}
		return mseAmax(s.Hist, s.Edges, 8, histStartBin), nil
	default: // Entropy
		if n < histStartBin {
			return s.AbsMax, nil
		}
		return entropyAmax(s.Hist, s.Edges, 8, false, histStartBin, s.AbsMax), nil
	}
}

// percentileAmax is _compute_amax_percentile.
func percentileAmax(hist, edges []float64, percentile, fallback float64) float64 {
	var total float64
	for _, c := range hist {
		total += c
	}
	if !(total > 0) {
		return fallback
	}
	p := percentile / 100
	var cdf float64
	for i, c := range hist {
		cdf += c / total
		if cdf >= p {
			return edges[i]
		}
	}
	return edges[len(hist)]
}

// mseAmax is _compute_amax_mse (stride 1, narrow signed fake quantization).
func mseAmax(hist, edges []float64, numBits, start int) float64 {
	n := len(hist)
	centers := make([]float32, n)
	counts := make([]float32, n)
	var nz []int
	for k := range hist {
		centers[k] = (float32(edges[k+1]) + float32(edges[k])) / 2
		counts[k] = float32(hist[k])
		if counts[k] != 0 {
			nz = append(nz, k)
		}
	}
	maxB := MaxBound(numBits, false)
	lo, hi := float32(-maxB), float32(maxB)
	best, bestI := math.Inf(1), start
	for i := start; i < n; i++ {
		amax := centers[i]
		var sum float64
		if !(float64(amax) > zeroAmaxEpsilon) {
			for _, k := range nz {
				d := FakeQuant(centers[k], amax, numBits, false, true) - centers[k]
				sum += float64(d * d * counts[k])
			}
		} else {
			scale := hi / amax
			for _, k := range nz {
				c := centers[k]
				d := fakeQuant(c, scale, lo, hi) - c
				sum += float64(d * d * counts[k])
			}
		}
		if mse := sum / float64(n); mse < best {
			best, bestI = mse, i
		}
	}
	return float64(centers[bestI])
}

// entropyAmax is _compute_amax_entropy (stride 1).
func entropyAmax(hist, edges []float64, numBits int, unsigned bool, start int, fallback float64) float64 {
	n := len(hist)
	nb := 1 << (numBits - 1)
	if unsigned {
		nb <<= 1
	}
	b := slices.Clone(hist)
	b[0] = b[1]
	blogb := make([]float64, n)
	suffix := make([]float64, n+1) // suffix[i] = sum(b[i:])
	for k := n - 1; k >= 0; k-- {
		if b[k] > 0 {
			blogb[k] = b[k] * math.Log(b[k])
		}
		suffix[k] = suffix[k+1] + b[k]
	}
	total := suffix[0]
	if !(total > 0) {
		return fallback
	}
	cg := make([]float64, nb) // per group: sum of non-zero counts
	lg := make([]float64, nb) // per group: sum of b log b
	ng := make([]int, nb)     // per group: non-zero bins
	best, bestI := math.Inf(1), n
	for i := start; i <= n; i++ {
		var sumQ float64
		for g := 0; g < nb; g++ {
			var c, l float64
			cnt := 0
			for k := (g*i + nb - 1) / nb; k < ((g+1)*i+nb-1)/nb; k++ {
				if v := b[k]; v > 0 {
					c += v
					l += blogb[k]
					cnt++
				}
			}
			cg[g], lg[g], ng[g] = c, l, cnt
			sumQ += c
		}
		kl := math.Inf(1)
		if sumQ > 0 {
			// Σ P log(P/Q) over the first i bins with P = b, regrouped.
			var a float64
			for g := 0; g < nb; g++ {
				if ng[g] > 0 {
					a += lg[g] - cg[g]*math.Log(cg[g]/float64(ng[g]))
				}
			}
			ok := true
			if tail := suffix[i]; tail > 0 {
				// P[i-1] = b[i-1] + tail instead of b[i-1].
				if bl := b[i-1]; bl > 0 {
					g := (i - 1) * nb / i
					q := cg[g] / float64(ng[g])
					p := bl + tail
					a += p*math.Log(p/q) - bl*math.Log(bl/q)
				} else {
					ok = false // P > 0 where Q = 0
				}
			}
			if ok {
				// scipy normalizes P by total and Q by sumQ.
				kl = a/total + math.Log(sumQ/total)
			}
		}
		if math.IsNaN(kl) {
			kl = math.Inf(1)
		}
		if kl <= best { // last argmin
			best, bestI = kl, i
		}
	}
	return edges[bestI]
}
