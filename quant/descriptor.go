package quant

import (
	"errors"
	"fmt"
	"strings"
)

// CalibMethod names a calibration method: how amax is chosen from the
// statistics of a tensor. The values are pytorch-quantization's
// calib_method / compute_amax(method) names.
type CalibMethod string

// The calibration methods of pytorch-quantization: MaxCalibrator and the
// three HistogramCalibrator.compute_amax methods.
const (
	// Max takes amax = max|x| (MaxCalibrator).
	Max CalibMethod = "max"
	// Entropy minimizes the KL divergence between the histogram and its
	// 8-bit quantization, as TensorRT's entropy calibration does
	// (_compute_amax_entropy).
	Entropy CalibMethod = "entropy"
	// MSE minimizes the mean squared fake-quantization error over the
	// histogram (_compute_amax_mse).
	MSE CalibMethod = "mse"
	// Percentile clips a percentile of |x| (_compute_amax_percentile).
	Percentile CalibMethod = "percentile"
)

// DefaultPercentile is the percentile used by the Percentile method when
// none is given (pytorch-quantization's quant_modules examples use 99.99).
const DefaultPercentile = 99.99

// calibMethods lists the methods in the order messages name them.
var calibMethods = []CalibMethod{Max, Entropy, MSE, Percentile}

// valid reports whether m is one of the known methods.
func (m CalibMethod) valid() bool {
	for _, c := range calibMethods {
		if m == c {
			return true
		}
	}
	return false
}

// ParseCalibMethod parses a calibration method name (max, entropy, mse or
// percentile; case and surrounding space ignored), as pytorch-quantization's
// calib_method / compute_amax accept.
func ParseCalibMethod(s string) (CalibMethod, error) {
	m := CalibMethod(strings.ToLower(strings.TrimSpace(s)))
	if m.valid() {
		return m, nil
	}
	return "", fmt.Errorf("unknown calibration method %q (choose max, entropy, mse or percentile)", s)
}

// QuantDescriptor describes how a tensor is quantized, like
// pytorch-quantization's QuantDescriptor (tensor_quant.py,
// ScaledQuantDescriptor): bit width, per-tensor or per-channel axis,
// signedness, range and calibration method.
type QuantDescriptor struct {
	// NumBits is the quantized bit width (num_bits), 2 to 16.
	NumBits int
	// Axis is the channel axis for per-channel amax (axis); nil means one
	// amax for the whole tensor.
	Axis *int
	// Unsigned quantizes to [0, 2^NumBits-1] (unsigned).
	Unsigned bool
	// Narrow uses [-(2^(NumBits-1)-1), 2^(NumBits-1)-1], e.g. [-127, 127]
	// as TensorRT does, instead of the full range (narrow_range).
	Narrow bool
	// Symmetric uses zero point 0 and amax = max|x| scaling, the only mode
	// of pytorch-quantization; false asks for onnxruntime-style
	// asymmetric uint8 (AsymmetricParams), which needs the Max method.
	Symmetric bool
	// Calib is the calibration method (calib_method, and the method given
	// to HistogramCalibrator.compute_amax).
	Calib CalibMethod
	// Percentile is the percentile for the Percentile method, in (0, 100];
	// 0 means DefaultPercentile.
	Percentile float64
}

// DefaultActivation is the descriptor for activations: 8-bit per-tensor
// signed narrow symmetric (pytorch-quantization's
// QUANT_DESC_8BIT_PER_TENSOR with TensorRT's [-127, 127] range), calibrated
// with the histogram MSE method. Use ActivationDescriptor for another
// method.
var DefaultActivation = ActivationDescriptor(MSE)

// DefaultWeight is the descriptor for conv weights: 8-bit per output
// channel (axis 0), signed narrow symmetric, max calibration
// (pytorch-quantization's QUANT_DESC_8BIT_CONV2D_WEIGHT_PER_CHANNEL).
// Its Axis points to a shared 0; set a new pointer rather than writing
// through it.
var DefaultWeight = QuantDescriptor{NumBits: 8, Axis: new(int), Narrow: true, Symmetric: true, Calib: Max}

// ActivationDescriptor returns DefaultActivation's settings with the given
// calibration method (pytorch-quantization's QuantDescriptor(num_bits=8,
// calib_method=m)). The Percentile method gets DefaultPercentile.
func ActivationDescriptor(m CalibMethod) QuantDescriptor {
	d := QuantDescriptor{NumBits: 8, Narrow: true, Symmetric: true, Calib: m}
	if m == Percentile {
		d.Percentile = DefaultPercentile
	}
	return d
}

// Validate reports the first problem with d: a bit width outside [2, 16],
// a negative axis, an unknown method, a percentile outside (0, 100] for
// the Percentile method, or an asymmetric descriptor that is per-channel
// or not calibrated with Max (the histograms are of |x|).
func (d QuantDescriptor) Validate() error {
	if d.NumBits < 2 || d.NumBits > 16 {
		return fmt.Errorf("quantization bits %d out of range [2, 16]", d.NumBits)
	}
	if d.Axis != nil && *d.Axis < 0 {
		return fmt.Errorf("quantization axis %d is negative", *d.Axis)
	}
	if d.Calib == "" {
		return errors.New("no calibration method (choose max, entropy, mse or percentile)")
	}
	if !d.Calib.valid() {
		return fmt.Errorf("unknown calibration method %q (choose max, entropy, mse or percentile)", string(d.Calib))
	}
	if d.Calib == Percentile && d.Percentile != 0 && !(d.Percentile > 0 && d.Percentile <= 100) {
		return fmt.Errorf("percentile %v out of range (0, 100]", d.Percentile)
	}
	if !d.Symmetric {
		if d.Axis != nil {
			return errors.New("asymmetric quantization is per-tensor only (axis must be unset)")
		}
		if d.Calib != Max {
			return fmt.Errorf("asymmetric quantization needs calibration method max, not %s (histograms are of |x|)", d.Calib)
		}
	}
	return nil
}

// String describes d in the manner of pytorch-quantization's
// QuantDescriptor.__str__, e.g.
// "QuantDescriptor(8bit per-tensor narrow symmetric calib=mse)".
func (d QuantDescriptor) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "QuantDescriptor(%dbit", d.NumBits)
	if d.Axis != nil {
		fmt.Fprintf(&b, " axis=%d", *d.Axis)
	} else {
		b.WriteString(" per-tensor")
	}
	if d.Unsigned {
		b.WriteString(" unsigned")
	}
	if d.Narrow {
		b.WriteString(" narrow")
	}
	if d.Symmetric {
		b.WriteString(" symmetric")
	} else {
		b.WriteString(" asymmetric")
	}
	fmt.Fprintf(&b, " calib=%s", d.Calib)
	if d.Calib == Percentile {
		p := d.Percentile
		if p == 0 {
			p = DefaultPercentile
		}
		fmt.Fprintf(&b, "(%g)", p)
	}
	b.WriteString(")")
	return b.String()
}
