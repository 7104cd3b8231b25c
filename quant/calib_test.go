package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

// handHist is a 256-bin histogram over [0, 2.56] whose amax per method was
// computed with a line-by-line pure-Python transcription of
// pytorch-quantization's _compute_amax_entropy / _mse / _percentile
// (linspace, digitize, Counter, scipy's entropy; float32 via struct).
func handHist() (hist, edges []float64) {
	const n = 256
	hist = make([]float64, n)
	edges = make([]float64, n+1)
	for k := range hist {
		c := math.Floor(10000 * math.Exp(-float64(k)/20))
		if k%7 == 0 && k < 100 {
			c += 3
		}
		if k >= 60 && k < 70 && k%2 == 0 {
			c = 0
		}
		hist[k] = c
	}
	hist[250] = 1
	hist[200] = 0
	for k := range edges {
		edges[k] = float64(k) * 0.01
	}
	return hist, edges
}

func statsFrom(hist, edges []float64) *TensorStats {
	var total float64
	for _, c := range hist {
		total += c
	}
	return &TensorStats{Bins: len(hist), Count: int64(total), Max: edges[len(hist)], AbsMax: edges[len(hist)],
		Hist: slices.Clone(hist), Edges: slices.Clone(edges)}
}

func TestComputeAmaxHandHistogram(t *testing.T) {
	hist, edges := handHist()
	s := statsFrom(hist, edges)
	if s.Count != 202921 {
		t.Fatalf("hand histogram total %d, want 202921 (as in Python)", s.Count)
	}
	for _, tc := range []struct {
		m    CalibMethod
		p    float64
		want float64
	}{
		{Entropy, 0, edges[185]},          // 1.85
		{MSE, 0, float64(float32(1.695))}, // center of bin 169, float32
		{Percentile, 99, edges[91]},       // 0.91
		{Percentile, 99.9, edges[134]},    // 1.34
		{Percentile, 0, edges[168]},       // default 99.99: 1.68
		{Percentile, 99.99, edges[168]},   // 1.68
		{Percentile, 100, edges[256]},     // 2.56
		{Max, 0, 2.56},
	} {
		got, err := s.ComputeAmax(tc.m, tc.p)
		if err != nil || got != tc.want {
			t.Errorf("%s(%v) = %v, %v; want %v", tc.m, tc.p, got, err, tc.want)
		}
	}
	// ComputeAmax does not modify the histogram (pytorch's entropy does).
	if !slices.Equal(s.Hist, hist) {
		t.Error("ComputeAmax modified the histogram")
	}
	if got := entropyRef(hist, edges, 8, false, 128); got != edges[185] {
		t.Errorf("Go reference entropy = %v, want %v", got, edges[185])
	}
}

// entropyRef transcribes _compute_amax_entropy literally (numpy semantics:
// linspace, digitize, Counter, normalization, scipy.stats.entropy).
func entropyRef(hist, edges []float64, numBits int, unsigned bool, start int) float64 {
	bins := slices.Clone(hist)
	bins[0] = bins[1]
	nbins := 1 << (numBits - 1)
	if unsigned {
		nbins <<= 1
	}
	var divs []float64
	for i := start; i <= len(bins); i++ {
		step := float64(i) / float64(nbins)
		space := make([]float64, nbins+1)
		for j := range space {
			space[j] = float64(j) * step
		}
		space[nbins] = float64(i)
		dig := make([]int, i)
		for x := range dig {
			// np.digitize(x, space) (right=False) = #{space <= x}.
			dig[x] = sort.Search(len(space), func(j int) bool { return space[j] > float64(x) }) - 1
			if bins[x] == 0 {
				dig[x] = -1
			}
		}
		counts := make([]float64, nbins)
		counter := map[int]int{}
		for idx, d := range dig {
			counter[d]++
			if d != -1 {
				counts[d] += bins[idx]
			}
		}
		for k, v := range counter {
			if k != -1 {
				counts[k] /= float64(v)
			}
		}
		q := make([]float64, i)
		for idx, d := range dig {
			if d != -1 {
				q[idx] = counts[d]
			}
		}
		p := slices.Clone(bins[:i])
		for _, c := range bins[i:] {
			p[i-1] += c
		}
		var sp, sq float64
		for k := range p {
			sp += p[k]
			sq += q[k]
		}
		ent := 0.0
		for k := range p {
			pk, qk := p[k]/sp, q[k]/sq
			switch {
			case pk == 0:
			case qk == 0 || math.IsNaN(qk):
				ent = math.Inf(1)
			default:
				ent += pk * math.Log(pk/qk)
			}
		}
		divs = append(divs, ent)
	}
	best := len(divs) - 1
	for k := len(divs) - 1; k >= 0; k-- {
		if divs[k] < divs[best] {
			best = k
		}
	}
	return edges[best+start]
}

// TestEntropyMatchesReference compares the regrouped KL evaluation with the
// literal transcription on varied histograms.
func TestEntropyMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := 0; trial < 12; trial++ {
		n := []int{128, 129, 200, 300, 411}[trial%5]
		hist := make([]float64, n)
		edges := make([]float64, n+1)
		scale := 5 + r.Float64()*60
		for k := range hist {
			v := math.Floor(5000 * math.Exp(-float64(k)/scale) * (0.5 + r.Float64()))
			if r.IntN(6) == 0 {
				v = 0
			}
			hist[k] = v
		}
		if trial%3 == 0 { // sparse outliers far out
			for j := 0; j < 3; j++ {
				hist[n-1-r.IntN(n/4)] += float64(1 + r.IntN(3))
			}
		}
		if trial%4 == 1 { // empty bins right before the tail: infinite KL candidates
			for k := n/2 - 10; k < n/2; k++ {
				hist[k] = 0
			}
		}
		for k := range edges {
			edges[k] = float64(k) / float64(n)
		}
		got := entropyAmax(hist, edges, 8, false, 128, 1)
		want := entropyRef(hist, edges, 8, false, 128)
		if got != want {
			t.Errorf("trial %d (n=%d): entropy amax %v, reference %v", trial, n, got, want)
		}
	}
}

func TestMaxCalibration(t *testing.T) {
	s := NewTensorStats(0)
	if s.Bins != DefaultNumBins {
		t.Fatalf("default bins %d", s.Bins)
	}
	s.Collect([]float32{0.5, -3.25, 2})
	s.Collect([]float32{1, 2.5})
	s.Collect(nil)
	if s.Min != -3.25 || s.Max != 2.5 || s.AbsMax != 3.25 || s.Count != 5 {
		t.Errorf("stats min %v max %v absmax %v count %d", s.Min, s.Max, s.AbsMax, s.Count)
	}
	if a, err := s.ComputeAmax(Max, 0); err != nil || a != 3.25 {
		t.Errorf("max amax = %v, %v", a, err)
	}
	var total float64
	for _, c := range s.Hist {
		total += c
	}
	if total != 5 || len(s.Hist) != DefaultNumBins || s.Hist[DefaultNumBins-1] != 1 {
		t.Errorf("histogram total %v, bins %d, last bin %v", total, len(s.Hist), s.Hist[len(s.Hist)-1])
	}
}

// TestHistcBinning checks torch.histc's bin rule on the first batch.
func TestHistcBinning(t *testing.T) {
	s := NewTensorStats(4)
	// edges 0, 1, 2, 3, 4 (max|x| = 4)
	s.Collect([]float32{0, 0.99, 1, -1.5, 2, 3.999, 4, -4})
	if want := []float64{0, 1, 2, 3, 4}; !slices.Equal(s.Edges, want) {
		t.Fatalf("edges %v, want %v", s.Edges, want)
	}
	if want := []float64{2, 2, 1, 3}; !slices.Equal(s.Hist, want) {
		t.Errorf("hist %v, want %v", s.Hist, want)
	}
}

func TestCollectNonFiniteAndZeros(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	s := NewTensorStats(8)
	s.Collect([]float32{0, 0, nan, 0})
	s.Collect([]float32{-inf, inf})
	if s.PendingZeros != 3 || len(s.Hist) != 0 || s.NonFinite != 3 || s.Count != 3 || s.AbsMax != 0 {
		t.Fatalf("after zeros: %+v", s)
	}
	if a, err := s.ComputeAmax(Entropy, 0); err != nil || a != 0 {
		t.Errorf("all-zero amax = %v, %v; want 0", a, err)
	}
	s.Collect([]float32{8, nan, -2, 0})
	if s.PendingZeros != 0 || s.Count != 6 || s.NonFinite != 4 || s.Min != -2 || s.Max != 8 {
		t.Errorf("after data: %+v", s)
	}
	if want := []float64{4, 0, 1, 0, 0, 0, 0, 1}; !slices.Equal(s.Hist, want) {
		t.Errorf("hist %v, want %v", s.Hist, want)
	}
	e := NewTensorStats(8)
	e.Collect([]float32{nan})
	if _, err := e.ComputeAmax(Max, 0); err == nil || !strings.Contains(err.Error(), "no finite values") {
		t.Errorf("only NaN: error %v", err)
	}
}

func TestHistogramExtension(t *testing.T) {
	s := NewTensorStats(16)
	a := []float32{1.6, 0.05, 0.75, 1.55}
	s.Collect(a) // width 0.1, 16 bins
	w := s.Edges[1] - s.Edges[0]
	b := []float32{2.05, 1.62, 0.01, 2.01}
	s.Collect(b) // ceil((2.05-1.6)/0.1) = 5 more bins
	if len(s.Hist) != 21 || len(s.Edges) != 22 {
		t.Fatalf("%d bins, %d edges; want 21, 22", len(s.Hist), len(s.Edges))
	}
	for k := 1; k < len(s.Edges); k++ {
		if d := s.Edges[k] - s.Edges[k-1]; math.Abs(d-w) > 1e-12 {
			t.Fatalf("bin %d width %v, want %v", k-1, d, w)
		}
	}
	if math.Abs(s.Edges[21]-2.1) > 1e-6 {
		t.Errorf("last edge %v, want 2.1", s.Edges[21])
	}
	want := make([]float64, 21)
	for _, v := range []int{15, 0, 7, 15, 20, 16, 0, 20} {
		want[v]++
	}
	if !slices.Equal(s.Hist, want) {
		t.Errorf("hist %v\nwant %v", s.Hist, want)
	}
	// A smaller batch uses the existing edges.
	s.Collect([]float32{0.35})
	if len(s.Hist) != 21 || s.Hist[3] != 1 || s.Count != 9 {
		t.Errorf("small batch: %d bins, bin 3 = %v, count %d", len(s.Hist), s.Hist[3], s.Count)
	}
}

// TestHistogramCoarsen: growth beyond 8*Bins merges bins by a power of two.
func TestHistogramCoarsen(t *testing.T) {
	s := NewTensorStats(4)
	s.Collect([]float32{0.1, 0.3, 0.6, 1}) // width 0.25
	s.Collect([]float32{100, 50})          // would need 400 bins > 32
	if len(s.Hist) > 32 {
		t.Fatalf("%d bins exceed the cap", len(s.Hist))
	}
	// factor 16: width 4, 25 bins up to 100
	if len(s.Hist) != 25 || s.Edges[1] != 4 || s.Edges[25] != 100 {
		t.Errorf("%d bins, width %v, last edge %v; want 25, 4, 100", len(s.Hist), s.Edges[1], s.Edges[25])
	}
	if s.Hist[0] != 4 || s.Hist[24] != 1 || s.Hist[12] != 1 {
		t.Errorf("hist %v", s.Hist)
	}
	if err := s.validate(); err != nil {
		t.Error(err)
	}
}

func uniformSamples(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 99))
	x := make([]float32, n)
	for i := range x {
		x[i] = r.Float32()
	}
	return x
}

func TestPercentileUniform(t *testing.T) {
	s := NewTensorStats(0)
	x := uniformSamples(1_000_000, 1)
	for i := 0; i < len(x); i += 100_000 {
		s.Collect(x[i : i+100_000])
	}
	w := s.Edges[1] - s.Edges[0]
	a, err := s.ComputeAmax(Percentile, 99.99)
	if err != nil || math.Abs(a-0.9999) > w {
		t.Errorf("99.99th percentile of U[0,1) = %v, %v; want 0.9999 within %v", a, err, w)
	}
	a, _ = s.ComputeAmax(Percentile, 50)
	if math.Abs(a-0.5) > 2*w {
		t.Errorf("median = %v, want 0.5", a)
	}
}

func TestPercentileOutliers(t *testing.T) {
	s := NewTensorStats(0)
	x := uniformSamples(1_000_000, 2)
	for i := 0; i < 50; i++ {
		x[i*1000] = 1000 // 5e-5 of the data
	}
	s.Collect(x)
	w := s.Edges[1] - s.Edges[0] // 1000/2048
	for _, tc := range []struct {
		p      float64
		lo, hi float64
	}{
		{99.99, 0.5, 1},              // the outliers are clipped
		{99.999, 1000 - w, 1000 - w}, // they are not: left edge of the last bin
		{100, 1000 - w, 1000},        // cumsum may stop short of 1: searchsorted gives len
	} {
		a, err := s.ComputeAmax(Percentile, tc.p)
		if err != nil || a < tc.lo || a > tc.hi {
			t.Errorf("percentile %v = %v, %v; want [%v, %v]", tc.p, a, err, tc.lo, tc.hi)
		}
	}
	if a, _ := s.ComputeAmax(Max, 0); a != 1000 {
		t.Errorf("max = %v", a)
	}
}

// gaussianWithOutliers is N(0,1) (1e6 samples, seeded) with 5 values at ±50.
func gaussianWithOutliers() []float32 {
	r := rand.New(rand.NewPCG(7, 8))
	x := make([]float32, 1_000_000)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for i, v := range []float32{50, -50, 50, -50, 50} {
		x[i*1000] = v
	}
	return x
}

// TestGaussianOutliers: the histogram methods ignore (entropy, percentile)
// or weigh (MSE: squared clipping error) 5 outliers at 50 among 1e6 N(0,1).
func TestGaussianOutliers(t *testing.T) {
	s := NewTensorStats(0)
	x := gaussianWithOutliers()
	for i := 0; i < len(x); i += 250_000 {
		s.Collect(x[i : i+250_000])
	}
	if s.AbsMax != 50 || s.Count != 1_000_000 || len(s.Hist) != DefaultNumBins {
		t.Fatalf("absmax %v count %d bins %d", s.AbsMax, s.Count, len(s.Hist))
	}
	for _, tc := range []struct {
		m      CalibMethod
		p      float64
		lo, hi float64
	}{
		{Max, 0, 50, 50},
		{Entropy, 0, 2, 6},
		{Percentile, 99.99, 3.5, 4.3}, // |N(0,1)| 99.99% = 3.89
		{Percentile, 99.9, 3.1, 3.4},  // 3.29
		// MSE trades 1e6 rounding errors (∝ amax²) against 5 clipped
		// outliers ((50-amax)² each): about 50*5/(5+1e6/(12*127²)) ≈ 24.
		{MSE, 0, 15, 35},
	} {
		a, err := s.ComputeAmax(tc.m, tc.p)
		t.Logf("N(0,1)+outliers %s(%v): amax %v", tc.m, tc.p, a)
		if err != nil || a < tc.lo || a > tc.hi {
			t.Errorf("%s(%v) = %v, %v; want [%v, %v]", tc.m, tc.p, a, err, tc.lo, tc.hi)
		}
	}
	got, _ := s.ComputeAmax(Entropy, 0)
	if want := entropyRef(s.Hist, s.Edges, 8, false, 128); got != want {
		t.Errorf("entropy %v, literal reference %v", got, want)
	}
}

// TestGaussianNoOutliers pins looser ranges for plain N(0,1).
func TestGaussianNoOutliers(t *testing.T) {
	s := NewTensorStats(0)
	x := gaussianWithOutliers()
	for i := 0; i < 5; i++ {
		x[i*1000] = 0
	}
	s.Collect(x)
	for _, tc := range []struct {
		m      CalibMethod
		lo, hi float64
	}{
		{Entropy, 2, 5},
		{MSE, 2.5, 5},
	} {
		a, err := s.ComputeAmax(tc.m, 0)
		t.Logf("N(0,1) %s: amax %v (max %v)", tc.m, a, s.AbsMax)
		if err != nil || a < tc.lo || a > tc.hi {
			t.Errorf("%s = %v, %v; want [%v, %v]", tc.m, a, err, tc.lo, tc.hi)
		}
	}
}

func TestComputeAmaxErrorsAndFallbacks(t *testing.T) {
	s := NewTensorStats(0)
	if _, err := s.ComputeAmax(Max, 0); err == nil || !strings.Contains(err.Error(), "no values collected") {
		t.Errorf("empty: %v", err)
	}
	s.Collect([]float32{1, 2})
	if _, err := s.ComputeAmax("kl", 0); err == nil || !strings.Contains(err.Error(), `unknown calibration method "kl"`) {
		t.Errorf("bad method: %v", err)
	}
	for _, p := range []float64{-1, 100.5, math.NaN()} {
		if _, err := s.ComputeAmax(Percentile, p); err == nil {
			t.Errorf("percentile %v accepted", p)
		}
	}
	small := NewTensorStats(100) // < start_bin 128: fall back to max
	small.Collect([]float32{0.5, 3, 1})
	for _, m := range []CalibMethod{Entropy, MSE} {
		if a, err := small.ComputeAmax(m, 0); err != nil || a != 3 {
			t.Errorf("%s on 100 bins = %v, %v; want AbsMax 3", m, a, err)
		}
	}
}

func sameStats(t *testing.T, what string, got, want *TensorStats) {
	t.Helper()
	if got.Count != want.Count || got.NonFinite != want.NonFinite || got.Min != want.Min || got.Max != want.Max ||
		got.AbsMax != want.AbsMax || got.PendingZeros != want.PendingZeros || !slices.Equal(got.Hist, want.Hist) {
		t.Errorf("%s: got %+v\nwant %+v", what, got, want)
	}
	if len(got.Edges) != len(want.Edges) {
		t.Fatalf("%s: %d edges, want %d", what, len(got.Edges), len(want.Edges))
	}
	for i := range got.Edges {
		if math.Abs(got.Edges[i]-want.Edges[i]) > 1e-12 {
			t.Errorf("%s: edge %d = %v, want %v", what, i, got.Edges[i], want.Edges[i])
		}
	}
}

func TestMergeEqualsSequentialOnSameGrid(t *testing.T) {
	a := []float32{1.6, 0.05, -0.75, 1.55, float32(math.NaN())}
	b := []float32{-1.6, 0.3, 0.31, 0} // same max: identical edges
	c := []float32{2.05, 1.62, 0.01}   // extends the grid
	seq := NewTensorStats(16)
	seq.Collect(a)
	seq.Collect(b)
	s1, s2 := NewTensorStats(16), NewTensorStats(16)
	s1.Collect(a)
	s2.Collect(b)
	if err := s1.Merge(s2); err != nil {
		t.Fatal(err)
	}
	sameStats(t, "identical edges", s1, seq)

	// Same width, one grid longer, both directions.
	seq.Collect(c)
	x, y := NewTensorStats(16), NewTensorStats(16)
	x.Collect(a)
	x.Collect(c)
	y.Collect(b)
	if err := y.Merge(x); err != nil {
		t.Fatal(err)
	}
	sameStats(t, "shorter merges longer", y, seq)
	x2, y2 := NewTensorStats(16), NewTensorStats(16)
	x2.Collect(a)
	x2.Collect(c)
	y2.Collect(b)
	if err := x2.Merge(y2); err != nil {
		t.Fatal(err)
	}
	sameStats(t, "longer merges shorter", x2, seq)
}

func TestMergeDifferentGrids(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	a := make([]float32, 200_000)
	b := make([]float32, 200_000)
	for i := range a {
		a[i] = float32(r.NormFloat64())
		b[i] = float32(2 * r.NormFloat64())
	}
	seq := NewTensorStats(0)
	seq.Collect(b)
	seq.Collect(a)
	for _, order := range []string{"fine<-coarse", "coarse<-fine"} {
		s, o := NewTensorStats(0), NewTensorStats(0)
		s.Collect(a)
		o.Collect(b)
		if order == "coarse<-fine" {
			s, o = o, s
		}
		if err := s.Merge(o); err != nil {
			t.Fatal(err)
		}
		if s.Count != seq.Count || s.Min != seq.Min || s.Max != seq.Max || s.AbsMax != seq.AbsMax {
			t.Errorf("%s: scalars %+v vs %+v", order, s, seq)
		}
		var total float64
		for _, c := range s.Hist {
			total += c
		}
		if math.Abs(total-float64(s.Count)) > 1e-6 {
			t.Errorf("%s: histogram total %v, count %d", order, total, s.Count)
		}
		if err := s.validate(); err != nil {
			t.Errorf("%s: %v", order, err)
		}
		// The result is on the coarser grid (b's), so it matches b-then-a.
		if math.Abs((s.Edges[1]-s.Edges[0])-(seq.Edges[1]-seq.Edges[0])) > 1e-12 {
			t.Errorf("%s: width %v, want the coarser %v", order, s.Edges[1], seq.Edges[1])
		}
		w := seq.Edges[1] - seq.Edges[0]
		for _, m := range []CalibMethod{Percentile, Entropy, MSE} {
			got, _ := s.ComputeAmax(m, 99.9)
			want, _ := seq.ComputeAmax(m, 99.9)
			if math.Abs(got-want) > 3*w {
				t.Errorf("%s: %s amax %v, sequential %v", order, m, got, want)
			}
		}
	}
}

func TestMergeEdgeCases(t *testing.T) {
	s := NewTensorStats(8)
	if err := s.Merge(s); err == nil {
		t.Error("self merge accepted")
	}
	if err := s.Merge(nil); err != nil {
		t.Error(err)
	}
	z := NewTensorStats(8)
	z.Collect([]float32{0, 0})
	d := NewTensorStats(8)
	d.Collect([]float32{8, 1})
	// empty <- zeros <- data, and data <- zeros give the same.
	if err := s.Merge(z); err != nil {
		t.Fatal(err)
	}
	if s.PendingZeros != 2 || s.Count != 2 {
		t.Errorf("empty<-zeros: %+v", s)
	}
	if err := s.Merge(d); err != nil {
		t.Fatal(err)
	}
	d2 := NewTensorStats(8)
	d2.Collect([]float32{8, 1})
	if err := d2.Merge(z); err != nil {
		t.Fatal(err)
	}
	seq := NewTensorStats(8)
	seq.Collect([]float32{0, 0})
	seq.Collect([]float32{8, 1})
	sameStats(t, "zeros then data", s, seq)
	sameStats(t, "data then zeros", d2, seq)
	if s.Hist[0] != 2 || s.Hist[1] != 1 || s.Hist[7] != 1 {
		t.Errorf("hist %v", s.Hist)
	}
	bad := &TensorStats{Bins: 8, Count: 1, Max: 1, AbsMax: 1, Hist: []float64{1}, Edges: []float64{0}}
	if err := s.Merge(bad); err == nil || !strings.Contains(err.Error(), "edges") {
		t.Errorf("bad stats merged: %v", err)
	}
}

func BenchmarkCollect(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, 1<<20)
	for i := range x {
		x[i] = float32(max(0, r.NormFloat64())) // ReLU-like: many zeros
	}
	s := NewTensorStats(0)
	s.Collect(x)
	b.SetBytes(int64(4 * len(x)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Collect(x)
	}
}

func BenchmarkComputeAmax(b *testing.B) {
	s := NewTensorStats(0)
	s.Collect(gaussianWithOutliers())
	for _, m := range []CalibMethod{Entropy, MSE} {
		b.Run(string(m), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := s.ComputeAmax(m, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestMinMaxKeys(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	negZero := float32(math.Copysign(0, -1))
	r := rand.New(rand.NewPCG(13, 14))
	cases := [][]float32{
		{1}, {-1, -2, -3}, {negZero, 0}, {0, negZero}, {1e-45, -1e-45}, {3.4e38, -3.4e38, 7},
		{1, 2, 3, 4, 5, 6, 7, nan}, {nan, 1, 2, 3, 4}, {1, 2, -inf, 3, 4}, {1, 2, 3, 4, inf},
		{float32(math.Float32frombits(0xffc00001)), 5},
	}
	for n := 1; n < 40; n += 3 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * math.Exp(r.Float64()*20-10))
		}
		cases = append(cases, x)
	}
	for _, x := range cases {
		mn, mx, nonFinite := minMax(x)
		wmn, wmx, bad := minMaxFinite(x)
		if nonFinite != (bad > 0) {
			t.Errorf("%v: nonFinite %v, %d bad", x, nonFinite, bad)
			continue
		}
		if !nonFinite && (math.Float32bits(mn) != math.Float32bits(wmn) && mn != wmn || mx != wmx) {
			t.Errorf("%v: min/max %v %v, want %v %v", x, mn, mx, wmn, wmx)
		}
	}
}

// TestHistogramLanesMatchSimple: the 4-lane path (large batches) and the
// simple loop (small batches, non-finite values) count alike.
func TestHistogramLanesMatchSimple(t *testing.T) {
	x := gaussianWithOutliers()[:100_003]
	big := NewTensorStats(0)
	big.Collect(x)
	small := NewTensorStats(0)
	small.Collect(x[:1000]) // holds the outlier at 50: same edges
	for i := 1000; i < len(x); i += 997 {
		small.Collect(x[i:min(i+997, len(x))])
	}
	withNaN := NewTensorStats(0)
	y := append(slices.Clone(x), float32(math.NaN()))
	withNaN.Collect(y)
	sameStats(t, "small batches", small, big)
	withNaN.NonFinite = 0
	sameStats(t, "with NaN", withNaN, big)
}
