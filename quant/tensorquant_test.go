package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestMaxBound(t *testing.T) {
	for _, tc := range []struct {
		bits     int
		unsigned bool
		want     float64
	}{
		{8, false, 127}, {8, true, 255}, {4, false, 7}, {4, true, 15}, {16, false, 32767}, {1, true, 1},
	} {
		if got := MaxBound(tc.bits, tc.unsigned); got != tc.want {
			t.Errorf("MaxBound(%d, %v) = %v, want %v", tc.bits, tc.unsigned, got, tc.want)
		}
	}
}

func TestFakeQuantKnownValues(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		name             string
		x, amax          float32
		bits             int
		unsigned, narrow bool
		want             float32
	}{
		// amax 1: scale 127; 0.5*127 = 63.5 rounds half to even -> 64.
		{"half even up", 0.5, 1, 8, false, true, 64.0 / 127},
		{"half even up neg", -0.5, 1, 8, false, true, -64.0 / 127},
		// amax 127: scale 1, so x is the integer directly.
		{"62.5 to 62", 62.5, 127, 8, false, true, 62},
		{"63.5 to 64", 63.5, 127, 8, false, true, 64},
		{"2.5 to 2", 2.5, 127, 8, false, true, 2},
		{"-2.5 to -2", -2.5, 127, 8, false, true, -2},
		{"0.5 to 0", 0.5, 127, 8, false, true, 0},
		{"1.5 to 2", 1.5, 127, 8, false, true, 2},
		{"exact", 100, 127, 8, false, true, 100},
		{"clamp above", 1000, 127, 8, false, true, 127},
		{"clamp above amax 1", 3, 1, 8, false, true, 1},
		{"narrow -amax", -127, 127, 8, false, true, -127},
		{"full -amax", -127, 127, 8, false, false, -127},
		{"narrow below", -128, 127, 8, false, true, -127},
		{"full below", -128, 127, 8, false, false, -128},
		{"full far below", -500, 127, 8, false, false, -128},
		{"unsigned", 200.4, 255, 8, true, true, 200},
		{"unsigned clamp", 300, 255, 8, true, true, 255},
		{"unsigned negative clamps to 0", -5, 255, 8, true, true, 0},
		{"4 bit", 0.3, 1, 4, false, true, 2.0 / 7}, // 0.3*7 = 2.1 -> 2
		{"amax 0 unchanged", 0.37, 0, 8, false, true, 0.37},
		{"amax negative unchanged", 0.37, -1, 8, false, true, 0.37},
		{"amax NaN unchanged", 0.37, nan, 8, false, true, 0.37},
		{"amax Inf unchanged", 0.37, inf, 8, false, true, 0.37},
		{"tiny amax zeroes", 0.37, 1e-9, 8, false, true, 0},
		{"+Inf saturates", inf, 2, 8, false, true, 2},
		{"-Inf saturates", -inf, 2, 8, false, false, -256.0 / 127},
	} {
		got := FakeQuant(tc.x, tc.amax, tc.bits, tc.unsigned, tc.narrow)
		if got != tc.want {
			t.Errorf("%s: FakeQuant(%v, %v, %d, %v, %v) = %v, want %v", tc.name, tc.x, tc.amax, tc.bits, tc.unsigned, tc.narrow, got, tc.want)
		}
	}
	if got := FakeQuant(nan, 1, 8, false, true); !math.IsNaN(float64(got)) {
		t.Errorf("FakeQuant(NaN) = %v, want NaN", got)
	}
}

// TestFakeQuantErrorBound: inside [-amax, amax] the error is at most half
// a quantization step (plus float32 rounding).
func TestFakeQuantErrorBound(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]float32, 1000)
	dst := make([]float32, len(src))
	for trial := 0; trial < 200; trial++ {
		amax := float32(math.Exp(r.Float64()*20 - 10))
		narrow := trial%2 == 0
		for i := range src {
			src[i] = (2*r.Float32() - 1) * amax
		}
		FakeQuantSlice(dst, src, amax, 8, false, narrow)
		step := float64(amax) / 127
		for i, x := range src {
			if q := FakeQuant(x, amax, 8, false, narrow); q != dst[i] {
				t.Fatalf("FakeQuantSlice[%d] = %v, FakeQuant = %v", i, dst[i], q)
			}
			if e := math.Abs(float64(dst[i]) - float64(x)); e > step/2*(1+1e-5) {
				t.Fatalf("amax %v x %v: error %v > step/2 %v", amax, x, e, step/2)
			}
			if level := float64(dst[i]) / step; math.Abs(level-math.Round(level)) > 1e-3 {
				t.Fatalf("amax %v x %v: %v is not on the grid", amax, x, dst[i])
			}
		}
	}
}

func TestFakeQuantSliceInPlaceAndPanic(t *testing.T) {
	x := []float32{0.5, -0.5, 3}
	FakeQuantSlice(x, x, 1, 8, false, true)
	want := []float32{64.0 / 127, -64.0 / 127, 1}
	if !slices.Equal(x, want) {
		t.Errorf("in place = %v, want %v", x, want)
	}
	y := []float32{0.25}
	FakeQuantSlice(y, y, 0, 8, false, true)
	if y[0] != 0.25 {
		t.Errorf("amax 0 changed the value to %v", y[0])
	}
	defer func() {
		if recover() == nil {
			t.Error("short dst did not panic")
		}
	}()
	FakeQuantSlice(make([]float32, 1), x, 1, 8, false, true)
}

func TestSymmetricParams(t *testing.T) {
	for _, tc := range []struct {
		amax             float32
		bits             int
		unsigned, narrow bool
		want             QuantParams
	}{
		{1.27, 8, false, true, QuantParams{Scale: float32(float64(float32(1.27)) / 127), Min: -127, Max: 127}},
		{1.27, 8, false, false, QuantParams{Scale: float32(float64(float32(1.27)) / 127), Min: -128, Max: 127}},
		{127, 8, false, true, QuantParams{Scale: 1, Min: -127, Max: 127}},
		{255, 8, true, true, QuantParams{Scale: 1, Min: 0, Max: 255, Unsigned: true}},
		{0, 8, false, true, QuantParams{Scale: 1, Min: -127, Max: 127}},
		{float32(math.NaN()), 8, false, false, QuantParams{Scale: 1, Min: -128, Max: 127}},
	} {
		if got := SymmetricParams(tc.amax, tc.bits, tc.unsigned, tc.narrow); got != tc.want {
			t.Errorf("SymmetricParams(%v, %d, %v, %v) = %+v, want %+v", tc.amax, tc.bits, tc.unsigned, tc.narrow, got, tc.want)
		}
	}
	p := SymmetricParams(127, 8, false, true)
	for _, tc := range []struct {
		x    float32
		want int32
	}{{0.5, 0}, {1.5, 2}, {2.5, 2}, {-2.5, -2}, {126.6, 127}, {500, 127}, {-500, -127}, {float32(math.Inf(-1)), -127}, {float32(math.NaN()), 0}} {
		if got := p.Quantize(tc.x); got != tc.want {
			t.Errorf("Quantize(%v) = %d, want %d", tc.x, got, tc.want)
		}
	}
	if got := SymmetricParams(127, 8, false, false).Quantize(-500); got != -128 {
		t.Errorf("full range Quantize(-500) = %d, want -128", got)
	}
	if got := p.Dequantize(-127); got != -127 {
		t.Errorf("Dequantize(-127) = %v", got)
	}
}

func TestAsymmetricParams(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float32
		want   QuantParams
	}{
		// scale 4/255, zero point round(1/(4/255)) = round(63.75) = 64.
		{-1, 3, QuantParams{Scale: float32(4.0 / 255), ZeroPoint: 64, Max: 255, Unsigned: true}},
		{2, 5, QuantParams{Scale: float32(5.0 / 255), ZeroPoint: 0, Max: 255, Unsigned: true}},
		{-4, -1, QuantParams{Scale: float32(4.0 / 255), ZeroPoint: 255, Max: 255, Unsigned: true}},
		{0, 0, QuantParams{Scale: 1, ZeroPoint: 0, Max: 255, Unsigned: true}},
		{float32(math.NaN()), 2.55, QuantParams{Scale: float32(2.55 / 255), ZeroPoint: 0, Max: 255, Unsigned: true}},
	} {
		got := AsymmetricParams(tc.lo, tc.hi, 8)
		if got.ZeroPoint != tc.want.ZeroPoint || got.Min != 0 || got.Max != 255 || !got.Unsigned ||
			math.Abs(float64(got.Scale-tc.want.Scale)) > 1e-7*float64(tc.want.Scale) {
			t.Errorf("AsymmetricParams(%v, %v) = %+v, want %+v", tc.lo, tc.hi, got, tc.want)
		}
	}
	p := AsymmetricParams(-1, 3, 8)
	for _, tc := range []struct {
		x    float32
		want int32
	}{{0, 64}, {3, 255}, {-1, 0}, {10, 255}, {-10, 0}} {
		if got := p.Quantize(tc.x); got != tc.want {
			t.Errorf("asymmetric Quantize(%v) = %d, want %d", tc.x, got, tc.want)
		}
	}
	if got := p.Dequantize(64); got != 0 {
		t.Errorf("Dequantize(zero point) = %v, want 0", got)
	}
	if got, want := p.Dequantize(255), float32(191)*p.Scale; got != want {
		t.Errorf("Dequantize(255) = %v, want %v", got, want)
	}
}

// TestQuantizeDequantizeError: the QuantizeLinear -> DequantizeLinear round
// trip is within scale/2 of x for random x inside the range, for symmetric
// (signed narrow and full, unsigned) and asymmetric uint8 params over
// ranges from 1e-4 to 1e4: both inside the calibrated range (where x is
// expected to fall) and inside the representable range [Dequantize(Min),
// Dequantize(Max)]; Quantize never leaves [Min, Max].
func TestQuantizeDequantizeError(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	type tc struct {
		name   string
		p      QuantParams
		lo, hi float64 // calibrated range
	}
	for trial := 0; trial < 300; trial++ {
		mag := math.Pow(10, r.Float64()*8-4)
		lo := -float32(r.Float64() * mag)
		hi := float32(r.Float64() * mag)
		amax := max(-lo, hi)
		cases := []tc{
			{"asymmetric", AsymmetricParams(lo, hi, 8), float64(lo), float64(hi)},
			{"symmetric narrow", SymmetricParams(amax, 8, false, true), -float64(amax), float64(amax)},
			{"symmetric full", SymmetricParams(amax, 8, false, false), -float64(amax), float64(amax)},
			{"symmetric unsigned", SymmetricParams(hi, 8, true, true), 0, float64(hi)},
		}
		for _, c := range cases {
			p := c.p
			rlo, rhi := float64(p.Dequantize(p.Min)), float64(p.Dequantize(p.Max))
			for i := 0; i < 400; i++ {
				var x float32
				switch {
				case i == 0:
					x = float32(c.lo)
				case i == 1:
					x = float32(c.hi)
				case i%2 == 0:
					x = float32(c.lo + (c.hi-c.lo)*r.Float64())
				default:
					x = float32(rlo + (rhi-rlo)*r.Float64())
				}
				q := p.Quantize(x)
				if q < p.Min || q > p.Max {
					t.Fatalf("%s %+v: Quantize(%v) = %d outside [%d, %d]", c.name, p, x, q, p.Min, p.Max)
				}
				e := math.Abs(float64(p.Dequantize(q)) - float64(x))
				if e > float64(p.Scale)/2*(1+1e-4) {
					t.Fatalf("%s %+v (range %v..%v): x %v round trip error %v > scale/2 %v", c.name, p, c.lo, c.hi, x, e, p.Scale/2)
				}
			}
		}
	}
}

func TestPerChannelAmax(t *testing.T) {
	w := []float32{
		// out 0: in 0 (2x2), in 1 (2x2)
		1, -2, 0.5, 0, 0, 0, -3, 1,
		// out 1
		0.25, 0, 0, 0, 0, 0, 0, -0.5,
		// out 2
		0, 0, 0, 0, 0, 0, 0, 0,
	}
	dims := []int64{3, 2, 2, 2}
	for _, tc := range []struct {
		axis int
		want []float32
	}{
		{0, []float32{3, 0.5, 0}},
		{-4, []float32{3, 0.5, 0}},
		{1, []float32{2, 3}},
		{3, []float32{3, 2}},
		{-1, []float32{3, 2}},
	} {
		if got := PerChannelAmax(w, dims, tc.axis); !slices.Equal(got, tc.want) {
			t.Errorf("axis %d: %v, want %v", tc.axis, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		dims []int64
		axis int
	}{
		{"axis too big", dims, 4},
		{"axis too small", dims, -5},
		{"wrong product", []int64{3, 2, 2, 3}, 0},
		{"zero dim", []int64{3, 0, 2, 2}, 0},
		{"negative dim", []int64{-3, 2, 2, 2}, 0},
		{"no dims", nil, 0},
	} {
		if got := PerChannelAmax(w, tc.dims, tc.axis); got != nil {
			t.Errorf("%s: %v, want nil", tc.name, got)
		}
	}
	nan := []float32{1, float32(math.NaN()), 5, 2}
	got := PerChannelAmax(nan, []int64{2, 2}, 0)
	if !math.IsNaN(float64(got[0])) || got[1] != 5 {
		t.Errorf("NaN channel: %v, want [NaN 5]", got)
	}
}
