package serve

import (
	"log/slog"
	"time"

	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/source"
)

// Plan is everything the daemon runs with, fully resolved: no field has a
// default to apply and no value is read from a file or the environment by
// serve. It is built by package plan from a configuration file and the
// command's flags.
type Plan struct {
	// Listen is the HTTP address (host:port).
	Listen string
	// Runtime are the onnxruntime session options (provider, threads,
	// TensorRT caches) of both models.
	Runtime onnxrt.Options
	// Models are the model files and their input geometry.
	Models ModelsPlan
	// Post are the post-processing options of live detection.
	Post postprocess.Options
	// Streams are the frame sources, in order.
	Streams []StreamPlan
	// Shadow configures the FP32 shadow.
	Shadow ShadowPlan
	// Eval configures accuracy evaluation on a dataset.
	Eval EvalPlan
	// Sinks receive the detections.
	Sinks []SinkPlan
	// HTTP configures the HTTP server.
	HTTP HTTPPlan
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration
	// Device identifies this device (yedge_device_info).
	Device DevicePlan
	// Lifecycle configures new int8 models: canary, guard and store.
	Lifecycle LifecyclePlan
	// Process holds the settings the command applies to the process
	// before serve starts: logging, the onnxruntime library and
	// quantization at start-up.
	Process ProcessPlan
}

// ProcessPlan holds the settings of the process around serve. A reload
// applies LogLevel (through Options.LogLevel); the others only a restart
// applies, and a reload that changes them lists them in pending_restart.
type ProcessPlan struct {
	// LogLevel is the least level logged.
	LogLevel slog.Level
	// LogFormat is the log's format: text or json.
	LogFormat string
	// Library is the onnxruntime library as configured: the flag's and
	// the configuration's values ("" for either: searched).
	Library string
	// Quantize describes quantization at start-up (model.quantize), ""
	// without it. The daemon compares it only.
	Quantize string
}

// LifecyclePlan configures the model lifecycle: the canary every new int8
// model runs before it serves, the guard that moves a stream to FP32 when
// its int8 model disagrees with FP32, and the model store.
type LifecyclePlan struct {
	Canary CanaryPlan
	Guard  GuardPlan
	// StateDir holds the model store (models/<sha256>.onnx, index.json);
	// "" : no store (pushed models are refused).
	StateDir string
	// Keep is the number of models the store keeps, MaxBytes their
	// largest total size (0: no bound).
	Keep     int
	MaxBytes int64
}

// CanaryPlan configures the canary.
type CanaryPlan struct {
	// Frames is the number of shadowed frames it runs on.
	Frames int
	// MinRecall and MinPrecision are the least agreement with FP32
	// promoted; Tolerance how much worse than the serving int8 model on
	// the same frames the canary may be.
	MinRecall, MinPrecision, Tolerance float64
}

// GuardPlan configures the guard.
type GuardPlan struct {
	// MinRecall and MinPrecision: the rolling agreement below either
	// counts as low.
	MinRecall, MinPrecision float64
	// For is how long the agreement must stay low.
	For time.Duration
	// MinFrames is the least number of shadowed frames in a stream's
	// window before the guard judges it (at most the window).
	MinFrames int
}

// DevicePlan is the device's identity: an id and labels such as site and
// zone, exported once as yedge_device_info, never on every series.
type DevicePlan struct {
	ID     string
	Labels map[string]string
}

// ModelFile is one model file and the SHA-256 of its content when the
// plan was built, so that a model replaced in place is a change.
type ModelFile struct {
	Path   string
	SHA256 string
}

// ModelsPlan names the models and their input geometry.
type ModelsPlan struct {
	// FP32 is the FP32 model: the shadow and the reference.
	FP32 ModelFile
	// Int8 is the Q/DQ int8 model that serves.
	Int8 ModelFile
	// Height and Width are the network input size (0: from the model).
	Height, Width int
	// Batch is the int8 batch across streams for dynamic-batch models (1:
	// none); a static-batch model runs one frame at a time.
	Batch int
	// Names is a class names file ("": the model's metadata, else COCO).
	Names string
	// FullGraph runs the models' full graphs instead of the raw-head
	// decode (pipeline.Config.FullGraph).
	FullGraph bool
	// Interp is the letterbox interpolation of the int8 model and the
	// shadow; evaluation keeps the reference protocol.
	Interp preprocess.Interp
}

// StreamPlan is one stream.
type StreamPlan struct {
	// Name identifies the stream; it is a metrics label.
	Name string
	// Source is what to open; source owns reconnecting (Reconnect,
	// backoff, MaxRetries) and stall detection (ReadTimeout).
	Source source.Spec
	// FPS caps the frame rate; 0 is no cap.
	FPS float64
}

// ShadowPlan configures the FP32 shadow.
type ShadowPlan struct {
	// Enabled turns the shadow on.
	Enabled bool
	// EveryN shadows one inferred frame in N per stream (>= 1).
	EveryN int
	// Budget caps the FP32 share of compute time; 0: EveryN only.
	Budget float64
	// IoU matches an int8 detection to an FP32 one.
	IoU float32
	// Window is the rolling window of shadowed frames.
	Window int
}

// EvalPlan configures evaluation.
type EvalPlan struct {
	// Data is a YOLO dataset folder; "" disables evaluation.
	Data string
	// Images limits the images evaluated (0: all).
	Images int
	// OnStart evaluates once serving starts.
	OnStart bool
}

// SinkPlan is one detection sink.
type SinkPlan struct {
	// Type is "jsonl" or "stdout".
	Type string
	// Path is the JSON-lines file of a jsonl sink.
	Path string
	// MaxBytes rotates the file at this size.
	MaxBytes int64
	// MaxFiles is the number of rotated files kept.
	MaxFiles int
	// FlushInterval is the flush period.
	FlushInterval time.Duration
}

// HTTPPlan configures the HTTP server.
type HTTPPlan struct {
	// MaxBodyBytes caps request bodies.
	MaxBodyBytes int64
	// MaxModelBytes caps the body of POST /models.
	MaxModelBytes int64
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound
	// each phase of a request.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// EnablePost enables the POST control endpoints.
	EnablePost bool
	// Token, when not empty, must be sent by POST requests as
	// "Authorization: Bearer <token>".
	Token string
	// UI serves the web view and its /api/streams endpoints.
	UI bool
}

// Change is what differs between a running plan and the next one, as
// [Plan.Diff] decides it: the parts a reload must rebuild.
type Change struct {
	// Added, Removed and Restarted are stream names: new, gone, and
	// changed (stopped and started again).
	Added, Removed, Restarted []string
	// Models: the FP32 model, its content, input geometry, runtime or
	// post-processing options changed; both models are reloaded.
	Models bool
	// Int8: the int8 model changed; it is loaded beside the serving one
	// and runs as a canary before it serves (with Models too: the other
	// model changes swap at once, the serving int8 model stays until the
	// canary passes).
	Int8 bool
	// Sinks: the sinks changed; they are reopened.
	Sinks bool
	// Restart: a setting that only a restart applies changed
	// (RestartKeys: the listen address, the HTTP server's timeouts,
	// state_dir, the store's limits, the log format, the onnxruntime
	// library, model.quantize).
	Restart bool
	// Settings: shadow, eval, canary, guard, store, request limits, token,
	// web view, shutdown timeout or log level changed; they apply to the next frame or
	// request.
	Settings bool
}

// None reports whether nothing changed.
func (c Change) None() bool {
	return len(c.Added)+len(c.Removed)+len(c.Restarted) == 0 && !c.Models && !c.Int8 && !c.Sinks && !c.Restart && !c.Settings
}

// StreamsOnly reports whether only streams changed.
func (c Change) StreamsOnly() bool {
	return !c.Models && !c.Int8 && !c.Sinks && !c.Restart && !c.Settings
}
