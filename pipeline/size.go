package pipeline

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/yedge/yedge/onnx"
)

// MaxImageSize bounds each side of a network input: beyond it the input
// tensor alone (3 x H x W float32 per frame) would take hundreds of MiB.
const MaxImageSize = 4096

// ParseSize parses an input size: "" (0, 0: from the model), "N" (square)
// or "HEIGHTxWIDTH" such as "384x640". Each side must be a positive
// multiple of 32 (the YOLOv5 stride) of at most MaxImageSize. It is the one
// parser of the imgsz flag and config key; errors name neither.
func ParseSize(s string) (h, w int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), "x")
	if len(parts) > 2 {
		return 0, 0, fmt.Errorf("imgsz %q: want N or HEIGHTxWIDTH such as 640 or 384x640", s)
	}
	var v [2]int
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		switch {
		case err != nil || n <= 0:
			return 0, 0, fmt.Errorf("imgsz %q: want N or HEIGHTxWIDTH such as 640 or 384x640", s)
		case n > MaxImageSize:
			return 0, 0, fmt.Errorf("imgsz %q: each side must be at most %d", s, MaxImageSize)
		case n%32 != 0:
			return 0, 0, fmt.Errorf("imgsz %q: sizes must be multiples of 32 (the YOLOv5 stride)", s)
		}
		v[i] = n
	}
	if len(parts) == 1 {
		v[1] = v[0]
	}
	return v[0], v[1], nil
}

// InputSize resolves the network input size of model m for a requested
// size (0: none), by the rule every command and the daemon share: a
// static model's own size (a different request is an error), else the
// request, else DefaultImageSize.
func InputSize(m *onnx.Model, reqH, reqW int) (h, w int, err error) {
	r := onnx.Inspect(m)
	if len(r.Inputs) != 1 || len(r.Inputs[0].Shape) != 4 {
		return 0, 0, &ModelError{fmt.Errorf("model %q: want one NCHW image input, have %v", m.Path, r.Inputs)}
	}
	shape := make([]int64, 4)
	for i, d := range r.Inputs[0].Shape {
		shape[i] = -1
		if v, err := strconv.ParseInt(d, 10, 64); err == nil && v > 0 {
			shape[i] = v
		}
	}
	stride := 32
	if v, err := strconv.Atoi(m.Metadata()["stride"]); err == nil && v > 0 {
		stride = v
	}
	h, w, err = resolveSize(shape, reqH, reqW, stride)
	if err != nil {
		return 0, 0, &ModelError{fmt.Errorf("model %q: %w", m.Path, err)}
	}
	return h, w, nil
}
