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
)

// DeployInterp is the interpolation of detect, bench and serve unless
// told otherwise (--interp, model.interp): the reference, since linear
// loses mAP where a frame is shrunk more than 2x (a 1080p camera into 640);
// see README "Preprocessing" for the figures.
const DeployInterp = InterpReference

// InterpNames lists the accepted names of the interpolations, in order.
var InterpNames = []string{"area", "linear"}

// String returns the name of the interpolation: "area" or "linear".
func (i Interp) String() string {
	if i >= 0 && int(i) < len(InterpNames) {
		return InterpNames[i]
	}
	return fmt.Sprintf("Interp(%d)", int(i))
}

// ParseInterp parses "area" or "linear" (case-insensitive).
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
	if i == InterpReference && w <= srcW && h <= srcH {
		return gocv.InterpolationArea
	}
	return gocv.InterpolationLinear
}
