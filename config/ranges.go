package config

import (
	"math"
	"strconv"
	"time"

	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/source"
)

// Range is the declaration of one numeric key: its default and its
// documented range, in one place. Key paths write list items as "[]"
// ("streams[].fps"). Durations are in seconds. The parser fills in
// Default where the file leaves the key out, and the validator checks
// every value against the range; README's table is tested against it.
type Range struct {
	// Key is the key path.
	Key string
	// Default is the value of a key the file leaves out (in seconds for a
	// duration), unless Computed.
	Default float64
	// Computed marks a key whose default the parser derives from other
	// keys (model.batch from the streams, read_timeout from the source);
	// Note says how.
	Computed bool
	// Min and Max bound the value; MinOpen and MaxOpen exclude the bound.
	Min, Max         float64
	MinOpen, MaxOpen bool
	// Duration marks a duration key (bounds in seconds).
	Duration bool
	// Note says what special values mean ("0: all cores").
	Note string
}

const (
	hour = 3600
	day  = 24 * hour
)

// ranges is the one table of numeric keys: the validator checks against it
// and README's table is tested against it.
var ranges = []Range{
	{Key: "shutdown_timeout", Default: 10, Min: 0, MinOpen: true, Max: hour, Duration: true},
	{Key: "model.batch", Computed: true, Min: 1, Max: pipeline.MaxBatch, Note: "1: no batching; default: the number of streams, at most 8"},
	{Key: "model.quantize.images", Default: 128, Min: 1, Max: 100000},
	{Key: "provider.threads", Min: 0, Max: onnxrt.MaxThreads, Note: "0: all cores"},
	{Key: "provider.device_id", Min: 0, Max: onnxrt.MaxDeviceID},
	{Key: "provider.tensorrt.dla_core", Min: 0, Max: 7, Note: "leave it out for no DLA"},
	{Key: "provider.tensorrt.workspace_mb", Min: 0, Max: 1 << 20, Note: "0: the TensorRT default"},
	{Key: "thresholds.conf", Default: 0.25, Min: 0, Max: 1},
	{Key: "thresholds.iou", Default: 0.45, Min: 0, MinOpen: true, Max: 1},
	{Key: "thresholds.max_det", Default: 300, Min: 1, Max: postprocess.MaxDetections},
	{Key: "streams[].fps", Min: 0, Max: 1000, Note: "0: no cap"},
	{Key: "streams[].read_timeout", Computed: true, Min: 0, Max: hour, Duration: true, Note: "0: no bound"},
	{Key: "streams[].reconnect.min_backoff", Default: source.DefaultMinBackoff.Seconds(), Min: 0, MinOpen: true, Max: hour, Duration: true},
	{Key: "streams[].reconnect.max_backoff", Default: source.DefaultMaxBackoff.Seconds(), Min: 0, MinOpen: true, Max: day, Duration: true, Note: "at least min_backoff"},
	{Key: "streams[].reconnect.max_retries", Min: 0, Max: 1000000, Note: "0: unlimited"},
	{Key: "shadow.every_n", Default: 10, Min: 1, Max: 1000000},
	{Key: "shadow.budget", Min: 0, Max: 1, MaxOpen: true, Note: "a fraction of compute time; 0: every_n only"},
	{Key: "shadow.iou", Default: 0.5, Min: 0, MinOpen: true, Max: 1},
	{Key: "shadow.window", Default: 200, Min: 1, Max: 100000},
	{Key: "eval.images", Min: 0, Max: 1000000, Note: "0: all"},
	{Key: "sinks[].max_size_mb", Default: 100, Min: 1, Max: 1 << 20},
	{Key: "sinks[].max_files", Default: 5, Min: 1, Max: 1000},
	{Key: "sinks[].flush_interval", Default: 1, Min: 0, MinOpen: true, Max: hour, Duration: true},
	{Key: "http.max_body_bytes", Default: 4096, Min: 1, Max: 1 << 30},
	{Key: "http.max_model_bytes", Default: 256 << 20, Min: 1, Max: 4 << 30},
	{Key: "http.read_timeout", Default: 5, Min: 0, MinOpen: true, Max: hour, Duration: true},
	{Key: "http.write_timeout", Default: 30, Min: 0, MinOpen: true, Max: hour, Duration: true},
	{Key: "canary.frames", Default: 30, Min: 1, Max: 1000000},
	{Key: "canary.min_recall", Default: 0.8, Min: 0, Max: 1},
	{Key: "canary.min_precision", Default: 0.8, Min: 0, Max: 1},
	{Key: "canary.tolerance", Default: 0.05, Min: 0, Max: 1},
	{Key: "guard.min_recall", Default: 0.5, Min: 0, Max: 1, Note: "0: the guard never falls back on recall"},
	{Key: "guard.min_precision", Default: 0.5, Min: 0, Max: 1, Note: "0: the guard never falls back on precision"},
	{Key: "guard.for", Default: 30, Min: 0, MinOpen: true, Max: day, Duration: true},
	{Key: "guard.min_frames", Default: 5, Min: 1, Max: 100000, Note: "or shadow.window, if smaller"},
	{Key: "store.keep", Default: 5, Min: 1, Max: 1000, Note: "the serving, promoted and rollback models are kept beyond it"},
	{Key: "store.max_size_mb", Default: 1024, Min: 1, Max: 1048576, Note: "the serving, promoted and rollback models are kept beyond it"},
}

// Ranges returns the documented range of every numeric key, in schema
// order (a fresh copy).
func Ranges() []Range { return append([]Range(nil), ranges...) }

// String renders the range as "0 to 256 (0: all cores)", "(0s, 1h0m0s]".
func (r Range) String() string {
	f := func(x float64) string {
		if r.Duration {
			return time.Duration(x * float64(time.Second)).String()
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	lo, hi := "[", "]"
	if r.MinOpen {
		lo = "("
	}
	if r.MaxOpen {
		hi = ")"
	}
	s := lo + f(r.Min) + ", " + f(r.Max) + hi
	if r.Note != "" {
		s += " (" + r.Note + ")"
	}
	return s
}

// contains reports whether x is in the range (NaN never is).
func (r Range) contains(x float64) bool {
	if math.IsNaN(x) || x < r.Min || x > r.Max {
		return false
	}
	return !(r.MinOpen && x == r.Min) && !(r.MaxOpen && x == r.Max)
}

// RangeOf returns the declared range of a numeric key ("thresholds.iou"),
// for the command-line flags that set the same values.
func RangeOf(key string) (Range, bool) {
	for _, r := range ranges {
		if r.Key == key {
			return r, true
		}
	}
	return Range{}, false
}

func rangeOf(key string) Range {
	for _, r := range ranges {
		if r.Key == key {
			return r
		}
	}
	panic("config: no range for " + key)
}

// check adds a problem when x, the value of the numeric key at path
// ("streams[1].fps"), is outside its range r.
func (v *validator) check(path string, r Range, x float64) {
	if r.contains(x) {
		return
	}
	got := strconv.FormatFloat(x, 'g', -1, 64)
	if r.Duration {
		got = time.Duration(x * float64(time.Second)).String()
	}
	v.add(path, "%s is out of range: want %s", got, r)
}
