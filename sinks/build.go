package sinks

import (
	"time"

	"github.com/yedge/yedge/postprocess"
)

// NewRecord builds the record of one frame's detections: the one schema
// that `yedge detect --out` and the daemon's sinks write. names maps class
// ids to names (postprocess.Name); Ms is left for the caller.
func NewRecord(stream string, frame int64, at time.Time, precision string, width, height int, names []string, dets []postprocess.Detection) *Record {
	r := &Record{Stream: stream, Frame: frame, Time: at, Precision: precision, Width: width, Height: height,
		Detections: make([]Detection, 0, len(dets))}
	for _, d := range dets {
		r.Detections = append(r.Detections, Detection{Class: d.Class, Name: postprocess.Name(names, d.Class), Score: d.Score,
			Box: [4]float32{d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2}})
	}
	return r
}
