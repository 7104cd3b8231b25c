package sinks

import (
	"math"
	"time"

	"github.com/yedge/yedge/postprocess"
)

// NewRecord builds the record of one frame's detections: the one schema
// that `yedge detect --out` and the daemon's sinks write. names maps class
// ids to names (postprocess.Name); scores are rounded to 4 decimals and
// boxes to 1/100 pixel. Ms and the optional fields are left for the caller.
func NewRecord(stream string, frame int64, at time.Time, precision string, width, height int, names []string, dets []postprocess.Detection) *Record {
	r := &Record{Stream: stream, Frame: frame, Time: at, Precision: precision, Width: width, Height: height,
		Detections: make([]Detection, 0, len(dets))}
	for _, d := range dets {
		r.Detections = append(r.Detections, Detection{Class: d.Class, Name: postprocess.Name(names, d.Class), Score: round(d.Score, 1e4),
			Box: [4]float32{round(d.Box.X1, 100), round(d.Box.Y1, 100), round(d.Box.X2, 100), round(d.Box.Y2, 100)}})
	}
	return r
}

// round rounds v to 1/scale (half away from zero).
func round(v, scale float32) float32 { return float32(math.Round(float64(v*scale))) / scale }
