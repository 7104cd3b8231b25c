package sinks

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Record is one frame's detections, written by a sink as one JSON line.
type Record struct {
	// Stream is the name of the source stream.
	Stream string `json:"stream"`
	// Frame is the frame number within the stream.
	Frame int64 `json:"frame"`
	// Time is when the frame was captured (or read).
	Time time.Time `json:"time"`
	// Precision is the model precision that produced the detections ("int8", "fp32").
	Precision string `json:"precision"`
	// Width is the frame width in pixels.
	Width int `json:"width"`
	// Height is the frame height in pixels.
	Height int `json:"height"`
	// PTSms is the frame's position in a video file in milliseconds when
	// known, else the time since the source was opened (omitted when 0).
	PTSms float64 `json:"pts_ms,omitempty"`
	// Image is the file of an image or folder source (omitted otherwise).
	Image string `json:"image,omitempty"`
	// Corrupt is true for a frame whose image file failed source.CheckImage
	// (truncated data): its detections come from a partly missing picture.
	// Omitted when false.
	Corrupt bool `json:"corrupt,omitempty"`
	// Ms holds per-stage durations in milliseconds: "read", "preprocess",
	// "infer", "postprocess".
	Ms map[string]float64 `json:"ms"`
	// Detections are the frame's detections. A nil slice is written as [].
	Detections []Detection `json:"detections"`
}

// Detection is one detected object.
type Detection struct {
	// Class is the class index.
	Class int `json:"class"`
	// Name is the class name.
	Name string `json:"name"`
	// Score is the detection confidence in [0, 1].
	Score float32 `json:"score"`
	// Box is the bounding box as x1, y1, x2, y2 in frame pixels.
	Box [4]float32 `json:"box"`
}

// Sink receives detection records. Implementations are safe for concurrent use.
type Sink interface {
	// Name identifies the sink, e.g. "jsonl:/var/lib/yedge/detections.jsonl" or "stdout".
	Name() string
	// Write writes one record. It must not block the caller for long: the
	// daemon calls it from its processing loop. The sink does not retain r.
	Write(r *Record) error
	// Flush pushes buffered records to the underlying file or writer.
	Flush() error
	// Close flushes and releases the sink. Later Writes fail with ErrClosed.
	Close() error
}

// Stats are a sink's cumulative record counters.
type Stats struct {
	// Written counts records handed to the operating system in full.
	Written int64
	// Errors counts I/O errors (write, flush, sync, open, rotate); each one was
	// also passed to the sink's OnError callback.
	Errors int64
	// Dropped counts records that were discarded: the queue was full, the
	// record could not be encoded, or it was lost to a write error.
	Dropped int64
}

var (
	// ErrClosed is returned by Write and Flush on a closed sink.
	ErrClosed = errors.New("sinks: sink is closed")
	// ErrQueueFull is returned by JSONL.Write when its queue is full and the
	// record was dropped (and counted in Stats.Dropped).
	ErrQueueFull = errors.New("sinks: queue full, record dropped")
	errNilRecord = errors.New("sinks: nil record")
)

var emptyDetections = []Detection{}

// encodeLine encodes r as one JSON line terminated by '\n'.
func encodeLine(r *Record) ([]byte, error) {
	if r == nil {
		return nil, errNilRecord
	}
	if r.Detections == nil {
		c := *r
		c.Detections = emptyDetections
		r = &c
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("sinks: encode record: %w", err)
	}
	return append(b, '\n'), nil
}
