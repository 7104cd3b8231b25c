package sinks

import (
	"math"
	"time"

	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/source"
)

// Frame is what a record says of the frame its detections come from:
// what the source said of it (index, time, position, image file,
// corruption), the stream's name, the decoded size and how long reading
// took.
type Frame struct {
	source.Frame
	// Stream is the source's name.
	Stream string
	// Width and Height are the decoded frame's size in pixels.
	Width, Height int
	// Read is how long reading and decoding the frame took.
	Read time.Duration
}

// Stages are how long the model's stages took for a frame.
type Stages struct {
	Preprocess, Infer, Postprocess time.Duration
}

// NewRecord builds the record of one frame's detections: the one schema
// that `yedge detect --out` and the daemon's sinks write, built in one
// place from the frame, the model's precision ("int8", "fp32") and
// stage times. names maps class ids to names (postprocess.Name); scores
// are rounded to 4 decimals and boxes to 1/100 pixel, durations to a
// microsecond.
func NewRecord(f Frame, precision string, names []string, dets []postprocess.Detection, st Stages) *Record {
	r := &Record{Stream: f.Stream, Frame: f.Index, Time: f.Time.UTC(), Precision: precision, Width: f.Width, Height: f.Height,
		PTSms: millis(f.PTS), Image: f.Name, Corrupt: f.Corrupt,
		Ms: map[string]float64{"read": millis(f.Read), "preprocess": millis(st.Preprocess), "infer": millis(st.Infer),
			"postprocess": millis(st.Postprocess)},
		Detections: make([]Detection, 0, len(dets))}
	for _, d := range dets {
		r.Detections = append(r.Detections, Detection{Class: d.Class, Name: postprocess.Name(names, d.Class), Score: round(d.Score, 1e4),
			Box: [4]float32{round(d.Box.X1, 100), round(d.Box.Y1, 100), round(d.Box.X2, 100), round(d.Box.Y2, 100)}})
	}
	return r
}

// millis is d in milliseconds, to the microsecond: the unit of a record's
// durations.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// round rounds v to 1/scale (half away from zero).
func round(v, scale float32) float32 { return float32(math.Round(float64(v*scale))) / scale }
