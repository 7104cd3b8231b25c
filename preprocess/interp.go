package preprocess

import (
	"fmt"
	"strings"

	"gocv.io/x/gocv"
)

// Interp selects the interpolation of the letterbox resize. The zero value
// is InterpReference, the protocol of the accuracy figures, which eval and
// calibration always use.
type Interp int

const (
	// InterpReference ("area") is the Ultralytics validation protocol:
	// INTER_AREA when shrinking, INTER_LINEAR when enlarging.
	InterpReference Interp = iota
	// InterpLinear ("linear") resizes with INTER_LINEAR always, as
	// Ultralytics detect.py letterboxes: about 5x cheaper than INTER_AREA
	// when shrinking, as accurate up to a 2x shrink, less accurate beyond
	// (INTER_LINEAR then skips source pixels).
	InterpLinear
	// InterpAuto ("auto") chooses by the shrink: INTER_LINEAR when the
	// frame is shrunk at most 2x (where it measures as accurate as
	// INTER_AREA on coco-val128 and costs a fifth), INTER_AREA beyond (a
	// 1080p camera into 640, where INTER_LINEAR loses mAP), INTER_LINEAR
	// when enlarging.
	InterpAuto
)

// DeployInterp is the interpolation of detect, bench and serve unless
// told otherwise (--interp, model.interp): auto, the accuracy of area and
// the cost of linear wherever they measure the same; see README
// "Preprocessing" for the figures.
const DeployInterp = InterpAuto

// autoMaxShrink is the largest shrink (source side over resized side) for
// which InterpAuto resizes with INTER_LINEAR.
const autoMaxShrink = 2

// InterpNames lists the accepted names of the interpolations, in order.
var InterpNames = []string{"area", "linear", "auto"}

// String returns the name of the interpolation: "area" or "linear".
func (i Interp) String() string {
	if i >= 0 && int(i) < len(InterpNames) {
		return InterpNames[i]
	}
	return fmt.Sprintf("Interp(%d)", int(i))
}

// ParseInterp parses "area", "linear" or "auto" (case-insensitive).
func ParseInterp(s string) (Interp, error) {
	for i, n := range InterpNames {
		if strings.EqualFold(s, n) {
			return Interp(i), nil
		}
	}
	return 0, fmt.Errorf("interpolation %q: must be one of %s", s, strings.Join(InterpNames, ", "))
}

// flag returns the OpenCV interpolation for a resize from srcW x srcH to
// w x h.
func (i Interp) flag(srcW, srcH, w, h int) gocv.InterpolationFlags {
	shrink := w <= srcW && h <= srcH
	switch {
	case i == InterpReference && shrink:
		return gocv.InterpolationArea
	case i == InterpAuto && shrink && (srcW > autoMaxShrink*w || srcH > autoMaxShrink*h):
		return gocv.InterpolationArea
	}
	return gocv.InterpolationLinear
}
