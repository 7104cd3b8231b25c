package quant

import (
	"math"
	"strings"
	"testing"
)

func TestWriteTRTCalibTable(t *testing.T) {
	var b strings.Builder
	amax := map[string]float64{
		"images":                   127,  // scale 1.0
		"/model.0/conv/Conv_out:0": 1,    // scale 1/127
		"a":                        12.7, // scale 0.1
	}
	if err := WriteTRTCalibTable(&b, amax, ""); err != nil {
		t.Fatal(err)
	}
	want := "TRT-8601-EntropyCalibration2\n" +
		"/model.0/conv/Conv_out:0: 3c010204\n" +
		"a: 3dcccccd\n" +
		"images: 3f800000\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	scales, err := ParseTRTCalibTable(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(scales) != len(amax) {
		t.Fatalf("parsed %d scales, want %d", len(scales), len(amax))
	}
	for name, a := range amax {
		if got, want := scales[name], float32(a/127); got != want {
			t.Errorf("%s: scale %v, want %v", name, got, want)
		}
	}
	b.Reset()
	if err := WriteTRTCalibTable(&b, map[string]float64{"x": 2}, "TRT-100300-EntropyCalibration2"); err != nil ||
		!strings.HasPrefix(b.String(), "TRT-100300-EntropyCalibration2\nx: ") {
		t.Errorf("custom header: %q, %v", b.String(), err)
	}
}

func TestTRTCalibTableRoundTrip(t *testing.T) {
	amax := map[string]float64{}
	for i := 0; i < 50; i++ {
		amax[strings.Repeat("t", i%5+1)+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = math.Exp(float64(i)/5 - 5)
	}
	var b strings.Builder
	if err := WriteTRTCalibTable(&b, amax, ""); err != nil {
		t.Fatal(err)
	}
	scales, err := ParseTRTCalibTable(strings.NewReader(strings.ReplaceAll(b.String(), "\n", "\r\n") + "\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range amax {
		if s, ok := scales[name]; !ok || s != float32(a/127) {
			t.Errorf("%s: %v, want %v", name, s, float32(a/127))
		}
	}
}

func TestTRTCalibTableErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		amax   map[string]float64
		header string
		err    string
	}{
		{"zero amax", map[string]float64{"a": 0}, "", `tensor "a": amax 0`},
		{"NaN amax", map[string]float64{"a": math.NaN()}, "", "amax NaN"},
		{"Inf amax", map[string]float64{"a": math.Inf(1)}, "", "amax +Inf"},
		{"underflow", map[string]float64{"a": 1e-60}, "", "amax 1e-60"},
		{"empty name", map[string]float64{"": 1}, "", "bad tensor name"},
		{"newline name", map[string]float64{"a\nb": 1}, "", "bad tensor name"},
		{"newline header", map[string]float64{"a": 1}, "TRT\nx", "line break"},
	} {
		var b strings.Builder
		err := WriteTRTCalibTable(&b, tc.amax, tc.header)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
	for _, tc := range []struct {
		name, in, err string
	}{
		{"empty", "", "empty"},
		{"bad header", "calib\na: 3f800000\n", "header"},
		{"no colon", "TRT-8601-EntropyCalibration2\na 3f800000\n", "line 2"},
		{"bad hex", "TRT-8601-EntropyCalibration2\na: 3f80000g\n", `scale "3f80000g"`},
		{"short hex", "TRT-8601-EntropyCalibration2\na: 3f80\n", "8 hex digits"},
		{"duplicate", "TRT-8601-EntropyCalibration2\na: 3f800000\na: 3f800000\n", `line 3: tensor "a" appears twice`},
	} {
		_, err := ParseTRTCalibTable(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
	s, err := ParseTRTCalibTable(strings.NewReader("TRT-8601-EntropyCalibration2\nin:0: 3c010204\n"))
	if err != nil || s["in:0"] != math.Float32frombits(0x3c010204) {
		t.Errorf("name with colon: %v, %v", s, err)
	}
}
