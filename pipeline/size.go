package pipeline

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/yedge/yedge/onnx"
)

// Bounds on the network input, checked before any buffer is allocated.
const (
	// MinImageSize is the smallest input side (one stride).
	MinImageSize = 32
	// MaxImageSize is the largest input side in pixels.
	MaxImageSize = 4096
	// SizeMultiple is the multiple every input side must be (the YOLOv5
	// stride).
	SizeMultiple = 32
	// MaxBatch is the largest batch size.
	MaxBatch = 64
	// MaxInputPixels bounds batch x height x width (4096x4096 at batch 1,
	// 640x640 up to batch 40): the input and output buffers and
	// onnxruntime's activations grow with it.
	MaxInputPixels = MaxImageSize * MaxImageSize
)

// ErrInputTooLarge is wrapped by the errors of New and CheckInputSize for an
// input size or batch beyond MaxImageSize, MaxBatch or MaxInputPixels.
var ErrInputTooLarge = errors.New("input too large")

// ParseSize parses an input size option: "" (0, 0: from the model), "N"
// (N x N) or "HEIGHTxWIDTH". Each side must be a multiple of SizeMultiple in
// [MinImageSize, MaxImageSize]. Errors name the option as "imgsz" and quote
// the value; callers add their own flag or key name.
func ParseSize(s string) (h, w int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	bad := func(why string) (int, int, error) {
		return 0, 0, fmt.Errorf("imgsz %q: %s", s, why)
	}
	parts := strings.Split(strings.ToLower(s), "x")
	if len(parts) > 2 {
		return bad("want N or HEIGHTxWIDTH")
	}
	var v [2]int
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return bad("want N or HEIGHTxWIDTH (whole numbers)")
		}
		if n < MinImageSize || n > MaxImageSize || n%SizeMultiple != 0 {
			return bad(fmt.Sprintf("%d must be a multiple of %d in [%d, %d]", n, SizeMultiple, MinImageSize, MaxImageSize))
		}
		v[i] = n
	}
	if len(parts) == 1 {
		v[1] = v[0]
	}
	return v[0], v[1], nil
}

// CheckInputSize returns an error wrapping ErrInputTooLarge when a batch of
// batch images of h x w exceeds MaxImageSize, MaxBatch or MaxInputPixels.
func CheckInputSize(batch, h, w int) error {
	switch {
	case h > MaxImageSize || w > MaxImageSize:
		return fmt.Errorf("input %dx%d: %w: each side must be at most %d", h, w, ErrInputTooLarge, MaxImageSize)
	case batch > MaxBatch:
		return fmt.Errorf("batch %d: %w: must be at most %d", batch, ErrInputTooLarge, MaxBatch)
	case int64(batch)*int64(h)*int64(w) > MaxInputPixels:
		return fmt.Errorf("batch %d x %dx%d: %w: batch x height x width must be at most %d", batch, h, w, ErrInputTooLarge, MaxInputPixels)
	}
	return nil
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

// StaticBatch returns the fixed batch size of model m's image input, or 0
// when the batch is dynamic (or the input is not NCHW).
func StaticBatch(m *onnx.Model) int {
	r := onnx.Inspect(m)
	if len(r.Inputs) != 1 || len(r.Inputs[0].Shape) != 4 {
		return 0
	}
	if v, err := strconv.Atoi(r.Inputs[0].Shape[0]); err == nil && v > 0 {
		return v
	}
	return 0
}
