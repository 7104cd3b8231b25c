package quant

import (
	"strings"
	"testing"
)

func TestParseCalibMethod(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want CalibMethod
		err  string
	}{
		{"max", Max, ""},
		{"entropy", Entropy, ""},
		{"mse", MSE, ""},
		{"percentile", Percentile, ""},
		{" MSE ", MSE, ""},
		{"kl", "", `unknown calibration method "kl" (choose max, entropy, mse or percentile)`},
		{"", "", `unknown calibration method ""`},
	} {
		got, err := ParseCalibMethod(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCalibMethod(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseCalibMethod(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestQuantDescriptorValidate(t *testing.T) {
	one, neg := 1, -1
	for _, tc := range []struct {
		name string
		d    QuantDescriptor
		err  string
	}{
		{"default activation", DefaultActivation, ""},
		{"default weight", DefaultWeight, ""},
		{"percentile default", ActivationDescriptor(Percentile), ""},
		{"percentile zero means default", QuantDescriptor{NumBits: 8, Symmetric: true, Calib: Percentile}, ""},
		{"asymmetric max", QuantDescriptor{NumBits: 8, Calib: Max}, ""},
		{"bits 1", QuantDescriptor{NumBits: 1, Symmetric: true, Calib: Max}, "bits 1 out of range"},
		{"bits 17", QuantDescriptor{NumBits: 17, Symmetric: true, Calib: Max}, "bits 17 out of range"},
		{"negative axis", QuantDescriptor{NumBits: 8, Axis: &neg, Symmetric: true, Calib: Max}, "axis -1"},
		{"no method", QuantDescriptor{NumBits: 8, Symmetric: true}, "no calibration method"},
		{"bad method", QuantDescriptor{NumBits: 8, Symmetric: true, Calib: "kl"}, `unknown calibration method "kl"`},
		{"percentile 101", QuantDescriptor{NumBits: 8, Symmetric: true, Calib: Percentile, Percentile: 101}, "percentile 101"},
		{"percentile negative", QuantDescriptor{NumBits: 8, Symmetric: true, Calib: Percentile, Percentile: -1}, "percentile -1"},
		{"asymmetric per-channel", QuantDescriptor{NumBits: 8, Axis: &one, Calib: Max}, "per-tensor only"},
		{"asymmetric entropy", QuantDescriptor{NumBits: 8, Calib: Entropy}, "needs calibration method max"},
	} {
		err := tc.d.Validate()
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestQuantDescriptorDefaultsAndString(t *testing.T) {
	if DefaultActivation.Calib != MSE || DefaultActivation.NumBits != 8 || DefaultActivation.Axis != nil ||
		!DefaultActivation.Narrow || !DefaultActivation.Symmetric || DefaultActivation.Unsigned {
		t.Errorf("DefaultActivation = %+v", DefaultActivation)
	}
	if DefaultWeight.Axis == nil || *DefaultWeight.Axis != 0 || DefaultWeight.Calib != Max {
		t.Errorf("DefaultWeight = %+v", DefaultWeight)
	}
	for _, tc := range []struct {
		d    QuantDescriptor
		want string
	}{
		{DefaultActivation, "QuantDescriptor(8bit per-tensor narrow symmetric calib=mse)"},
		{DefaultWeight, "QuantDescriptor(8bit axis=0 narrow symmetric calib=max)"},
		{ActivationDescriptor(Percentile), "QuantDescriptor(8bit per-tensor narrow symmetric calib=percentile(99.99))"},
		{QuantDescriptor{NumBits: 8, Unsigned: true, Calib: Max}, "QuantDescriptor(8bit per-tensor unsigned asymmetric calib=max)"},
	} {
		if got := tc.d.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}
