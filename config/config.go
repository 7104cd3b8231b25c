// Package config holds the configuration of the yedge daemon (yedge serve):
// the YAML schema ([Config]), its defaults, strict parsing ([Parse], [Load])
// and semantic validation ([Config.Validate]), and the example files that
// live beside it (yedge.yaml, jetson.yaml).
//
// Parsing is strict: an unknown key, a duplicate key or a value of the wrong
// type is an error that names the file, the line and the key path, and
// suggests the closest valid key ("yedge.yaml:12: unknown key \"strems\" at
// the top level (did you mean \"streams\"?)"). Validation reports every
// problem at once, each as a [*Problem] ("yedge.yaml:14: streams[1].fps:
// must be >= 0, got -5"), joined with [errors.Join].
//
// Relative paths in a configuration file (models, calibration images, the
// dataset, sinks, the token file, stream files) are resolved against the
// directory of that file. Stream URIs may carry credentials
// (rtsp://user:pass@host/...): no message of this package prints them, and
// [Config.Redacted] returns a copy safe to show (for /status).
package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is yedge serve's configuration.
type Config struct {
	// Listen is the HTTP address of the metrics, status and control
	// endpoints (default "127.0.0.1:9464").
	Listen string `yaml:"listen" json:"listen"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level" json:"log_level"`
	// LogFormat is text or json (default text).
	LogFormat string `yaml:"log_format" json:"log_format"`
	// Device identifies this device in a fleet (yedge_device_info).
	Device DeviceConfig `yaml:"device" json:"device"`
	// ONNXRuntime locates the onnxruntime shared library.
	ONNXRuntime ONNXRuntimeConfig `yaml:"onnxruntime" json:"onnxruntime"`
	// Model names the FP32 and int8 models.
	Model ModelConfig `yaml:"model" json:"model"`
	// Provider selects and configures the execution provider.
	Provider ProviderConfig `yaml:"provider" json:"provider"`
	// Thresholds are the post-processing thresholds.
	Thresholds Thresholds `yaml:"thresholds" json:"thresholds"`
	// Streams are the frame sources (at least one).
	Streams []StreamConfig `yaml:"streams" json:"streams"`
	// Shadow configures the FP32 shadow that measures int8 agreement.
	Shadow ShadowConfig `yaml:"shadow" json:"shadow"`
	// Eval configures the accuracy evaluation on a labelled dataset.
	Eval EvalConfig `yaml:"eval" json:"eval"`
	// Sinks receive the detections.
	Sinks []SinkConfig `yaml:"sinks" json:"sinks"`
	// HTTP configures the HTTP server.
	HTTP HTTPConfig `yaml:"http" json:"http"`
	// Canary configures the canary every new int8 model runs against FP32
	// before it serves.
	Canary CanaryConfig `yaml:"canary" json:"canary"`
	// Guard configures the fallback of a stream to FP32 when the serving
	// int8 model disagrees with FP32.
	Guard GuardConfig `yaml:"guard" json:"guard"`
	// Store configures the model store in StateDir.
	Store StoreConfig `yaml:"store" json:"store"`
	// StateDir holds the model store (default: $STATE_DIRECTORY under
	// systemd, else the user's state folder, ~/.local/state/yedge).
	StateDir string `yaml:"state_dir" json:"state_dir"`
	// ShutdownTimeout bounds a graceful stop (default 10s).
	ShutdownTimeout Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
	// Path is the file the configuration was loaded from ("" when parsed
	// from memory with an empty name).
	Path string `yaml:"-" json:"path,omitempty"`

	// lines maps the key path of every non-null key and sequence item
	// present in the file ("streams[1].fps") to its line.
	lines map[string]int
	// tags maps the key path of every scalar value to its YAML tag.
	tags map[string]string
	// parsed are the string keys parsed once (values.go).
	parsed parsed
}

// DeviceConfig identifies the device in a fleet. It is exported once, as
// yedge_device_info{device_id, <labels>} = 1; the fleet's Prometheus
// configs add the same values as target labels (deploy/prometheus), so no
// other series carries them in /metrics.
type DeviceConfig struct {
	// ID names the device (default: $YEDGE_DEVICE_ID, else the hostname).
	ID string `yaml:"id" json:"id"`
	// Labels are extra identity labels (site, zone, ...): keys are
	// Prometheus label names, values free text.
	Labels map[string]string `yaml:"labels" json:"labels,omitempty"`
}

// ONNXRuntimeConfig locates the onnxruntime shared library.
type ONNXRuntimeConfig struct {
	// Library is the path of libonnxruntime.so; "" searches as the
	// --ort-lib flag does ($YEDGE_ORT_LIB, setup folder, system). A bare
	// file name (no "/") is left to the dynamic loader.
	Library string `yaml:"library" json:"library"`
}

// ModelConfig names the models.
type ModelConfig struct {
	// FP32 is the FP32 ONNX model (required): the shadow, and the source
	// for quantize-at-start-up.
	FP32 string `yaml:"fp32" json:"fp32"`
	// INT8 is a Q/DQ int8 model; leave it empty and set Quantize to
	// quantize FP32 at start-up instead.
	INT8 string `yaml:"int8" json:"int8"`
	// Quantize, when set (and INT8 empty), quantizes FP32 at start-up.
	Quantize *QuantizeConfig `yaml:"quantize" json:"quantize,omitempty"`
	// ImgSize is the input size for dynamic models: "" (from the model,
	// else 640), "640" or "320x640" (height x width).
	ImgSize string `yaml:"imgsz" json:"imgsz"`
	// Names is an optional class names file.
	Names string `yaml:"names" json:"names"`
	// Batch batches frames across streams for dynamic-batch models
	// (default: the number of streams, capped at 8); 1 disables batching.
	Batch int `yaml:"batch" json:"batch"`
	// FullGraph runs the models' full graphs, Detect decode included,
	// instead of cutting them before the decode and decoding the raw head
	// in Go (default false).
	FullGraph bool `yaml:"full_graph" json:"full_graph"`
	// Interp is the letterbox interpolation of the serving models and the
	// shadow: "auto" (default: INTER_LINEAR for frames shrunk at most 2x,
	// where it is as accurate and a fifth of the cost, INTER_AREA beyond),
	// "area" (the reference protocol: INTER_AREA when shrinking) or
	// "linear" (INTER_LINEAR always). Evaluation keeps area whatever this
	// says.
	Interp string `yaml:"interp" json:"interp"`
}

// QuantizeConfig configures quantization at start-up.
type QuantizeConfig struct {
	// Calib is the folder of calibration images (required).
	Calib string `yaml:"calib" json:"calib"`
	// Images is the number of calibration images (default 128).
	Images int `yaml:"images" json:"images"`
	// Target is the Q/DQ layout: tensorrt (default) or cpu.
	Target string `yaml:"target" json:"target"`
	// Method is the calibrator: max, entropy, mse (default) or percentile.
	Method string `yaml:"method" json:"method"`
	// KeepHead keeps the Detect-head convolutions in float (default true).
	KeepHead *bool `yaml:"keep_head" json:"keep_head"`
	// Exclude is a regular expression of node names kept in float.
	Exclude string `yaml:"exclude" json:"exclude"`
	// CacheDir is where the calibration cache and the produced int8 model
	// live (required).
	CacheDir string `yaml:"cache_dir" json:"cache_dir"`
}

// ProviderConfig selects and configures the execution provider.
type ProviderConfig struct {
	// Name is auto (default), tensorrt, cuda or cpu.
	Name string `yaml:"name" json:"name"`
	// Threads is the intra-op thread count (0: all cores).
	Threads int `yaml:"threads" json:"threads"`
	// DeviceID is the GPU index for CUDA and TensorRT.
	DeviceID int `yaml:"device_id" json:"device_id"`
	// TensorRT configures the TensorRT provider.
	TensorRT TensorRTConfig `yaml:"tensorrt" json:"tensorrt"`
}

// TensorRTConfig configures the TensorRT execution provider.
type TensorRTConfig struct {
	// CacheDir holds the engine and timing caches ("" : the user cache
	// folder, as the --trt-cache flag).
	CacheDir string `yaml:"cache_dir" json:"cache_dir"`
	// FP16 allows FP16 kernels (default true).
	FP16 *bool `yaml:"fp16" json:"fp16"`
	// INT8 allows INT8 kernels (default true).
	INT8 *bool `yaml:"int8" json:"int8"`
	// DLACore runs on this DLA core (Jetson); nil: no DLA.
	DLACore *int `yaml:"dla_core" json:"dla_core,omitempty"`
	// WorkspaceMB caps the builder workspace in MiB (0: TensorRT default).
	WorkspaceMB int `yaml:"workspace_mb" json:"workspace_mb"`
}

// Thresholds are the post-processing thresholds.
type Thresholds struct {
	// Conf is the confidence threshold, objectness x class (default 0.25).
	Conf float64 `yaml:"conf" json:"conf"`
	// IoU is the NMS IoU threshold (default 0.45).
	IoU float64 `yaml:"iou" json:"iou"`
	// MaxDet is the maximum number of detections per frame (default 300).
	MaxDet int `yaml:"max_det" json:"max_det"`
}

// StreamConfig is one frame source.
type StreamConfig struct {
	// Name identifies the stream (required, unique, [A-Za-z0-9_.-]{1,64});
	// it is a metrics label.
	Name string `yaml:"name" json:"name"`
	// URI is the source (required), as source.Parse accepts it: a video
	// file, an image folder, a /dev/video device, a camera index, an
	// rtsp/http/rtmp/... URL or a GStreamer pipeline; "camera:N" is
	// camera N too. It may hold credentials: show it through
	// source.Redact.
	URI string `yaml:"uri" json:"uri"`
	// FPS caps the frame rate; 0 is no cap.
	FPS float64 `yaml:"fps" json:"fps"`
	// Reconnect configures reconnection of live sources.
	Reconnect ReconnectConfig `yaml:"reconnect" json:"reconnect"`
	// ReadTimeout bounds a frame read (default 10s for live sources, 0 =
	// no bound for files).
	ReadTimeout Duration `yaml:"read_timeout" json:"read_timeout"`
	// Loop restarts video files (and image folders) at their end.
	Loop bool `yaml:"loop" json:"loop"`
}

// ReconnectConfig configures the reconnection of a live source.
type ReconnectConfig struct {
	// Enabled reconnects with backoff on failures and stalls (default true).
	Enabled *bool `yaml:"enabled" json:"enabled"`
	// MinBackoff is the first reconnect delay (default 500ms).
	MinBackoff Duration `yaml:"min_backoff" json:"min_backoff"`
	// MaxBackoff caps the reconnect delay (default 30s).
	MaxBackoff Duration `yaml:"max_backoff" json:"max_backoff"`
	// MaxRetries is the number of consecutive attempts before giving up
	// (0: unlimited).
	MaxRetries int `yaml:"max_retries" json:"max_retries"`
}

// ShadowConfig configures the FP32 shadow: some frames also run through the
// FP32 model, and the agreement of the int8 detections with them is measured.
type ShadowConfig struct {
	// Enabled turns the shadow on (default true).
	Enabled *bool `yaml:"enabled" json:"enabled"`
	// EveryN shadows one frame in N per stream (default 10).
	EveryN int `yaml:"every_n" json:"every_n"`
	// Budget, in [0, 1), is the largest fraction of compute time spent in
	// the shadow; 0 uses EveryN only.
	Budget float64 `yaml:"budget" json:"budget"`
	// IoU matches an int8 detection to an FP32 one (default 0.5).
	IoU float64 `yaml:"iou" json:"iou"`
	// Window is the rolling window of shadowed frames (default 200).
	Window int `yaml:"window" json:"window"`
}

// EvalConfig configures the accuracy evaluation.
type EvalConfig struct {
	// Data is an optional YOLO dataset folder (with images/).
	Data string `yaml:"data" json:"data"`
	// Images limits the number of images (0: all).
	Images int `yaml:"images" json:"images"`
	// OnStart evaluates at start-up (default true when Data is set).
	OnStart *bool `yaml:"on_start" json:"on_start"`
}

// SinkConfig is one detection sink.
type SinkConfig struct {
	// Type is jsonl or stdout.
	Type string `yaml:"type" json:"type"`
	// Path is the JSON-lines file (jsonl: required; its folder must exist).
	Path string `yaml:"path" json:"path"`
	// MaxSizeMB rotates the file at this size (default 100).
	MaxSizeMB int `yaml:"max_size_mb" json:"max_size_mb"`
	// MaxFiles is the number of rotated files kept (default 5).
	MaxFiles int `yaml:"max_files" json:"max_files"`
	// FlushInterval is the flush period (default 1s).
	FlushInterval Duration `yaml:"flush_interval" json:"flush_interval"`
}

// HTTPConfig configures the HTTP server.
type HTTPConfig struct {
	// MaxBodyBytes caps request bodies (default 4096).
	MaxBodyBytes int64 `yaml:"max_body_bytes" json:"max_body_bytes"`
	// ReadTimeout bounds reading a request (default 5s).
	ReadTimeout Duration `yaml:"read_timeout" json:"read_timeout"`
	// WriteTimeout bounds writing a response (default 30s).
	WriteTimeout Duration `yaml:"write_timeout" json:"write_timeout"`
	// EnablePost enables the POST control endpoints (default true).
	EnablePost *bool `yaml:"enable_post" json:"enable_post"`
	// MaxModelBytes caps the body of POST /models, an ONNX model
	// (default 256 MiB).
	MaxModelBytes int64 `yaml:"max_model_bytes" json:"max_model_bytes"`
	// TokenFile, when set, holds the token that POST requests must send as
	// "Authorization: Bearer <token>"; the file must exist.
	TokenFile string `yaml:"token_file" json:"token_file"`
	// UI serves the web view (/, /streams/NAME, /api/streams...) on the
	// listen address (default true).
	UI *bool `yaml:"ui" json:"ui"`
}

// CanaryConfig configures the canary: a new int8 model runs beside the
// serving one on the shadowed frames, and is promoted only when its
// agreement with FP32 is good enough.
type CanaryConfig struct {
	// Frames is the number of shadowed frames the canary runs on
	// (default 30).
	Frames int `yaml:"frames" json:"frames"`
	// MinRecall is the least canary-vs-FP32 recall promoted (default 0.8).
	MinRecall float64 `yaml:"min_recall" json:"min_recall"`
	// MinPrecision is the least canary-vs-FP32 precision promoted
	// (default 0.8).
	MinPrecision float64 `yaml:"min_precision" json:"min_precision"`
	// Tolerance is how much worse than the serving int8 model (on the same
	// frames) the canary may be (default 0.05).
	Tolerance float64 `yaml:"tolerance" json:"tolerance"`
}

// GuardConfig configures the guard: a stream whose rolling int8-vs-FP32
// agreement stays low falls back to FP32.
type GuardConfig struct {
	// MinRecall is the rolling recall below which the guard counts
	// (default 0.5).
	MinRecall float64 `yaml:"min_recall" json:"min_recall"`
	// MinPrecision is the rolling precision below which the guard counts
	// (default 0.5).
	MinPrecision float64 `yaml:"min_precision" json:"min_precision"`
	// For is how long the agreement must stay low before the stream falls
	// back (default 30s).
	For Duration `yaml:"for" json:"for"`
	// MinFrames is the least number of shadowed frames in the stream's
	// window before the guard judges it (default 5, or shadow.window if
	// smaller).
	MinFrames int `yaml:"min_frames" json:"min_frames"`
}

// StoreConfig configures the model store.
type StoreConfig struct {
	// Keep is the number of models kept (default 5); the serving and the
	// promoted ones are never deleted.
	Keep int `yaml:"keep" json:"keep"`
	// MaxSizeMB bounds the models' bytes on disk (default 1024 MiB): the
	// oldest that may go are deleted first, as for Keep.
	MaxSizeMB int `yaml:"max_size_mb" json:"max_size_mb"`
}

// Duration is a time.Duration written in YAML as "500ms", "10s", "1m30s",
// or a plain integer of seconds ("10"). Negative durations are errors.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration parses a Duration: a Go duration ("500ms", "10s") or an
// integer number of seconds; negative values are errors.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("want a duration such as 500ms or 10s, got an empty value")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("must not be negative, got %s", s)
		}
		if n > int64(time.Duration(1<<63-1)/time.Second) {
			return 0, fmt.Errorf("duration %s seconds is too long", s)
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 500ms, 10s or 1m30s (a plain integer is seconds), got %q", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative, got %s", s)
	}
	return Duration(d), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(value *yaml.Node) error {
	// A *yaml.TypeError keeps the line in the decoder's message.
	fail := func(msg string) error {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", value.Line, msg)}}
	}
	if value.Kind != yaml.ScalarNode {
		return fail("want a duration such as 500ms or 10s, got a " + kindName(value))
	}
	v, err := ParseDuration(value.Value)
	if err != nil {
		return fail(err.Error())
	}
	*d = v
	return nil
}
