package pipeline

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		h, w int
		bad  string
	}{
		{"", 0, 0, ""},
		{"640", 640, 640, ""},
		{"320x640", 320, 640, ""},
		{"320X4096", 320, 4096, ""},
		{"32", 32, 32, ""},
		{"99968", 0, 0, "[32, 4096]"},
		{"4128", 0, 0, "[32, 4096]"},
		{"0", 0, 0, "multiple of 32"},
		{"-640", 0, 0, "multiple of 32"},
		{"100", 0, 0, "multiple of 32"},
		{"abc", 0, 0, "HEIGHTxWIDTH"},
		{"640x", 0, 0, "HEIGHTxWIDTH"},
		{"1x2x3", 0, 0, "HEIGHTxWIDTH"},
		{"NaN", 0, 0, "HEIGHTxWIDTH"},
		{"99999999999999999999", 0, 0, "HEIGHTxWIDTH"},
	} {
		h, w, err := ParseSize(tc.in)
		if tc.bad == "" {
			if err != nil || h != tc.h || w != tc.w {
				t.Errorf("%q: %d %d %v", tc.in, h, w, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.bad) || !strings.HasPrefix(err.Error(), "imgsz ") {
			t.Errorf("%q: err %v, want one naming imgsz and %q", tc.in, err, tc.bad)
		}
	}
}

// New refuses an input beyond the budget before allocating anything (the
// model is not even loaded).
func TestNewRefusesHugeInput(t *testing.T) {
	for _, cfg := range []Config{
		{Model: "dyn.onnx", Height: 99968, Width: 99968},
		{Model: "dyn.onnx", Height: 640, Width: 640, Batch: 65},
		{Model: "dyn.onnx", Height: 4096, Width: 4096, Batch: 2},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInputTooLarge) {
			t.Errorf("%+v: err = %v, want ErrInputTooLarge", cfg, err)
		}
	}
	if _, err := New(Config{Model: "dyn.onnx", Batch: -1}); err == nil {
		t.Error("negative batch accepted")
	}
}
