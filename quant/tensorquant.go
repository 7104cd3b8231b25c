package quant

import (
	"fmt"
	"math"
)

// zeroAmaxEpsilon is pytorch-quantization's threshold (tensor_quant.py,
// _tensor_quant: epsilon = 1/(1<<24)) below which a positive amax is
// treated as zero: every value quantizes to 0.
const zeroAmaxEpsilon = 1.0 / (1 << 24)

// MaxBound returns the largest quantized magnitude, 2^(bits-1+unsigned)-1:
// 127 for signed 8-bit, 255 for unsigned 8-bit. It is pytorch-quantization's
// max_bound (tensor_quant.py, _tensor_quant). bits should be in [1, 32].
func MaxBound(bits int, unsigned bool) float64 {
	e := bits - 1
	if unsigned {
		e++
	}
	return math.Ldexp(1, e) - 1
}

// minBound is the smallest quantized value: 0 when unsigned, -maxBound for
// a narrow range, -maxBound-1 for the full range (as _tensor_quant).
func minBound(maxB float64, unsigned, narrow bool) float64 {
	switch {
	case unsigned:
		return 0
	case narrow:
		return -maxB
	default:
		return -maxB - 1
	}
}

// FakeQuant quantizes and dequantizes one value as pytorch-quantization's
// fake_tensor_quant (tensor_quant.py, FakeTensorQuantFunction) does, in
// float32 arithmetic as torch does on float32 tensors:
//
//	scale = maxBound/amax
//	out   = clamp(round(x*scale), minBound, maxBound) / scale
//
// with round half to even (torch.round), maxBound = MaxBound(bits,
// unsigned) and minBound = -maxBound when narrow (pytorch-quantization's
// narrow_range), -maxBound-1 otherwise, 0 when unsigned.
//
// Edge cases: an amax that is not a positive finite number (<= 0, NaN,
// +Inf) returns x unchanged — the "not quantized" convention of this
// package, where pytorch-quantization would return zeros (amax 0) or NaN
// (amax Inf). A positive amax <= 2^-24 quantizes every finite value to 0,
// as pytorch-quantization's zero_amax_mask does. NaN stays NaN and ±Inf
// saturates to ±amax. A negative x with unsigned clamps to 0 where
// pytorch-quantization raises TypeError.
func FakeQuant(x float32, amax float32, bits int, unsigned, narrow bool) float32 {
	if !(amax > 0) || amax > math.MaxFloat32 {
		return x
	}
	if float64(amax) <= zeroAmaxEpsilon {
		return x * 0 // 0 with x's sign; NaN for NaN and ±Inf, as torch
	}
	maxB := MaxBound(bits, unsigned)
	return fakeQuant(x, float32(maxB)/amax, float32(minBound(maxB, unsigned, narrow)), float32(maxB))
}

// fakeQuant is FakeQuant's arithmetic for a precomputed scale and bounds.
func fakeQuant(x, scale, lo, hi float32) float32 {
	r := float32(math.RoundToEven(float64(x * scale)))
	if r > hi {
		r = hi
	} else if r < lo {
		r = lo
	}
	return r / scale
}

// FakeQuantSlice writes FakeQuant(src[i], amax, bits, unsigned, narrow) to
// dst[i] for every i: fake_tensor_quant over a tensor with one per-tensor
// amax. dst and src may be the same slice; dst must be at least as long as
// src (it panics otherwise, as an out-of-range index would).
func FakeQuantSlice(dst, src []float32, amax float32, bits int, unsigned, narrow bool) {
	if len(dst) < len(src) {
		panic(fmt.Sprintf("quant.FakeQuantSlice: dst has %d elements, src %d", len(dst), len(src)))
	}
	dst = dst[:len(src)]
	if !(amax > 0) || amax > math.MaxFloat32 || float64(amax) <= zeroAmaxEpsilon {
		for i, v := range src {
			dst[i] = FakeQuant(v, amax, bits, unsigned, narrow)
		}
		return
	}
	maxB := MaxBound(bits, unsigned)
	scale, lo, hi := float32(maxB)/amax, float32(minBound(maxB, unsigned, narrow)), float32(maxB)
	for i, v := range src {
		dst[i] = fakeQuant(v, scale, lo, hi)
	}
}

// QuantParams are the parameters of an ONNX QuantizeLinear /
// DequantizeLinear pair for one tensor or channel: y_scale, y_zero_point
// and the integer range the quantized type allows (what
// pytorch-quantization's TensorQuantizer exports as scale and zero point).
type QuantParams struct {
	Scale     float32
	ZeroPoint int32
	Min, Max  int32 // integer range, inclusive
	Unsigned  bool  // uint8 zero point (else int8)
}

// SymmetricParams returns the symmetric QuantizeLinear parameters for amax,
// as pytorch-quantization exports fake_tensor_quant to ONNX
// (tensor_quant.py, _onnx_int8_helper): scale = amax/MaxBound(bits,
// unsigned) — amax/127 for signed 8-bit whether or not narrow — and zero
// point 0. The integer range is [-127, 127] when narrow, [-128, 127]
// otherwise, [0, 255] when unsigned (for 8 bits).
//
// An amax that is not a positive finite number gets Scale 1, as
// _onnx_int8_helper's masked_fill_(scale == 0, 1.0): such a tensor is
// constant zero (or unquantizable) and any scale represents 0 exactly.
func SymmetricParams(amax float32, bits int, unsigned, narrow bool) QuantParams {
	maxB := MaxBound(bits, unsigned)
	p := QuantParams{
		Scale:    1,
		Min:      int32(minBound(maxB, unsigned, narrow)),
		Max:      int32(maxB),
		Unsigned: unsigned,
	}
	if amax > 0 && amax <= math.MaxFloat32 {
		// amax.item() / bound in pytorch-quantization: a float64 division.
		if s := float32(float64(amax) / maxB); s > 0 {
			p.Scale = s
		}
	}
	return p
}

// AsymmetricParams returns unsigned asymmetric QuantizeLinear parameters
// for the range [lo, hi], as onnxruntime's quantization tool
// (compute_scale_zp) does for uint8 activations: the range is widened to
// contain 0 (rmin = min(lo, 0), rmax = max(hi, 0)), scale =
// (rmax-rmin)/(2^bits-1) (1 when that is 0), zero point =
// clamp(round_half_even(-rmin/scale), 0, 2^bits-1). pytorch-quantization
// itself is symmetric only; this serves CPU targets that prefer uint8.
// Non-finite lo or hi are treated as 0. bits should be in [1, 31].
func AsymmetricParams(lo, hi float32, bits int) QuantParams {
	qmax := math.Ldexp(1, bits) - 1
	rmin, rmax := lo, hi
	if rmin != rmin || rmin < -math.MaxFloat32 || rmin > 0 {
		rmin = 0
	}
	if rmax != rmax || rmax > math.MaxFloat32 || rmax < 0 {
		rmax = 0
	}
	// float(rmax - rmin) / float(qmax - qmin), the difference in float32.
	scale := float32(float64(rmax-rmin) / qmax)
	if scale < 0x1p-126 || scale > math.MaxFloat32 { // numpy.finfo(float32).tiny
		scale = 1
	}
	zp := math.RoundToEven(float64(-rmin / scale))
	zp = math.Max(0, math.Min(zp, qmax))
	return QuantParams{Scale: scale, ZeroPoint: int32(zp), Min: 0, Max: int32(qmax), Unsigned: true}
}

// Quantize is ONNX QuantizeLinear for one value:
// clamp(round_half_even(x/Scale) + ZeroPoint, Min, Max), the division in
// float32. ±Inf saturate; NaN maps to ZeroPoint (the quantized zero).
func (p QuantParams) Quantize(x float32) int32 {
	v := math.RoundToEven(float64(x/p.Scale)) + float64(p.ZeroPoint)
	switch {
	case math.IsNaN(v):
		return p.ZeroPoint
	case v < float64(p.Min):
		return p.Min
	case v > float64(p.Max):
		return p.Max
	}
	return int32(v)
}

// Dequantize is ONNX DequantizeLinear for one value: (q-ZeroPoint)*Scale.
func (p QuantParams) Dequantize(q int32) float32 {
	return float32(int64(q)-int64(p.ZeroPoint)) * p.Scale
}

// PerChannelAmax returns, for every index c along axis, max|w| over the
// slice of w at c: pytorch-quantization's per-channel weight amax
// (QuantDescriptor axis=(0), reduce_amax over the other axes; for conv
// weights [out, in, kh, kw] use axis 0). A negative axis counts from the
// end. A NaN in a channel makes its amax NaN, as torch's max does.
//
// It returns nil if dims do not describe w (a dimension <= 0 or a product
// other than len(w)) or axis is out of range.
func PerChannelAmax(w []float32, dims []int64, axis int) []float32 {
	if axis < 0 {
		axis += len(dims)
	}
	if axis < 0 || axis >= len(dims) {
		return nil
	}
	outer, inner := 1, 1
	for i, d := range dims {
		if d <= 0 || d > int64(len(w)) {
			return nil
		}
		switch {
		case i < axis:
			outer *= int(d)
		case i > axis:
			inner *= int(d)
		}
		if outer > len(w) || inner > len(w) {
			return nil
		}
	}
	ch := int(dims[axis])
	if outer*ch*inner != len(w) {
		return nil
	}
	out := make([]float32, ch)
	for o := 0; o < outer; o++ {
		for c := 0; c < ch; c++ {
			m := out[c]
			base := (o*ch + c) * inner
			for _, v := range w[base : base+inner] {
				a := float32(math.Abs(float64(v)))
				if a > m || a != a { // NaN sticks: a > NaN is false
					m = a
				}
			}
			out[c] = m
		}
	}
	return out
}
