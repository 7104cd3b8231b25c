// Package metrics owns yedge's Prometheus registry and every yedge_ metric.
//
// All metric names, units and labels live in this one file so that they can
// be read, reviewed and linted together (see metrics_test.go, which runs
// promlint over the registry). Conventions:
//
//   - every name starts with "yedge_";
//   - durations are in seconds (base units), never milliseconds;
//   - counters end in "_total";
//   - *_info gauges carry metadata in labels and always have the value 1;
//   - label values for "stage" are the Stage* constants, for "precision"
//     the Precision* constants.
//
// The daemon creates one *Metrics with New, observes its histograms frame
// by frame, registers its owners' figures with Watch (read at scrape
// time), and serves Handler on the metrics listener (:9464 by default,
// see deploy/prometheus/prometheus.yml). deploy/grafana and
// deploy/prometheus/alerts.yml reference only the names returned by Names;
// deploy's tests enforce that.
package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace is the prefix of every yedge metric name.
const Namespace = "yedge"

// Label values of the "stage" label of yedge_stage_duration_seconds and
// yedge_frames_failed_total.
const (
	StageRead        = "read"
	StagePreprocess  = "preprocess"
	StageInfer       = "infer"
	StagePostprocess = "postprocess"
)

// Label values of the "precision" label.
const (
	PrecisionInt8 = "int8"
	PrecisionFP32 = "fp32"
)

// Metric family names, exactly as exposed. Names returns all of them.
const (
	NameBuildInfo          = "yedge_build_info"
	NameDeviceInfo         = "yedge_device_info"
	NameModelInfo          = "yedge_model_info"
	NameStageSeconds       = "yedge_stage_duration_seconds"
	NameFramesRead         = "yedge_frames_read_total"
	NameFramesInferred     = "yedge_frames_inferred_total"
	NameFramesSkipped      = "yedge_frames_skipped_total"
	NameFramesFailed       = "yedge_frames_failed_total"
	NameStreamUp           = "yedge_stream_up"
	NameReconnects         = "yedge_stream_reconnects_total"
	NameDetections         = "yedge_detections_total"
	NameShadowFrames       = "yedge_shadow_frames_total"
	NameAgreementPrecision = "yedge_agreement_precision"
	NameAgreementRecall    = "yedge_agreement_recall"
	NameAgreementIoU       = "yedge_agreement_mean_iou"
	NameAgreementScoreDiff = "yedge_agreement_score_diff"
	NameAgreementCountDiff = "yedge_agreement_count_diff"
	NameLatencyRatio       = "yedge_int8_fp32_latency_ratio"
	NameEvalMAP50          = "yedge_eval_map50"
	NameEvalMAP5095        = "yedge_eval_map50_95"
	NameEvalTimestamp      = "yedge_eval_timestamp_seconds"
	NameSinkWritten        = "yedge_sink_records_total"
	NameSinkErrors         = "yedge_sink_errors_total"
	NameReloads            = "yedge_reload_total"
	NameErrors             = "yedge_errors_total"
	NameReady              = "yedge_ready"
	NameModelPhase         = "yedge_model_phase"
	NameCalibImages        = "yedge_calibration_images"
	NameModelBuildSeconds  = "yedge_model_build_seconds"
	NameCanaries           = "yedge_canary_total"
	NameCanaryFrames       = "yedge_canary_frames"
	NameCanaryRecall       = "yedge_canary_recall"
	NameCanaryPrecision    = "yedge_canary_precision"
	NameServingInfo        = "yedge_serving_info"
	NameGuardFallback      = "yedge_guard_fallback"
	NameGuardTransitions   = "yedge_guard_transitions_total"
	NamePipelineBusy       = "yedge_pipeline_busy_seconds_total"
	NamePipelineWait       = "yedge_pipeline_queue_wait_seconds"
	NamePipelineDropped    = "yedge_pipeline_dropped_total"
)

// Model lifecycle phases, the values of the "phase" label of
// yedge_model_phase.
const (
	PhaseServing     = "serving"     // nothing in preparation
	PhaseCalibrating = "calibrating" // quantizing the FP32 model
	PhaseBuilding    = "building"    // loading a new int8 model: session, engine, warm-up
	PhaseCanary      = "canary"      // the new model runs beside the serving one
)

// Phases returns the lifecycle phases (a fresh copy).
func Phases() []string { return []string{PhaseServing, PhaseCalibrating, PhaseBuilding, PhaseCanary} }

// Names returns the family name of every yedge_ metric New registers, in
// declaration order. Histogram families are listed once under their base
// name; PromQL sees them as NAME_bucket, NAME_sum and NAME_count. The slice
// is a fresh copy on every call.
func Names() []string {
	return []string{
		NameBuildInfo, NameDeviceInfo, NameModelInfo, NameStageSeconds,
		NameFramesRead, NameFramesInferred, NameFramesSkipped, NameFramesFailed,
		NameStreamUp, NameReconnects, NameDetections, NameShadowFrames,
		NameAgreementPrecision, NameAgreementRecall, NameAgreementIoU,
		NameAgreementScoreDiff, NameAgreementCountDiff, NameLatencyRatio,
		NameEvalMAP50, NameEvalMAP5095, NameEvalTimestamp,
		NameSinkWritten, NameSinkErrors, NameReloads, NameErrors, NameReady,
		NameModelPhase, NameCalibImages, NameModelBuildSeconds, NameCanaries, NameCanaryFrames,
		NameCanaryRecall, NameCanaryPrecision, NameServingInfo, NameGuardFallback, NameGuardTransitions,
		NamePipelineBusy, NamePipelineWait, NamePipelineDropped,
	}
}

// Histograms returns the family names among Names that are histograms.
func Histograms() []string {
	return []string{NameStageSeconds, NamePipelineWait}
}

// StageBuckets returns the bucket upper bounds (seconds) of
// yedge_stage_duration_seconds: fine resolution from 1 ms to 200 ms, the
// range a YOLOv5 stage takes on Jetson and desktop GPUs, plus two coarse
// buckets for stalls. The slice is a fresh copy on every call.
func StageBuckets() []float64 {
	return []float64{.001, .002, .003, .005, .0075, .01, .015, .02, .03, .04, .05, .075, .1, .15, .2, .3, .5}
}

// Metrics holds the registry and every yedge metric. All fields are safe
// for concurrent use; the client library updates them with atomics, so
// scrapes never block the frame pipeline.
type Metrics struct {
	// Registry is yedge's own registry (not prometheus.DefaultRegisterer),
	// holding every metric below plus the Go runtime and process collectors.
	Registry *prometheus.Registry

	// BuildInfo is yedge_build_info{version,revision,goversion}, always 1.
	BuildInfo *prometheus.GaugeVec
	// DeviceInfo is yedge_device_info{device_id,<device labels>}, always 1:
	// the device's identity (config.DeviceConfig), one series per daemon.
	// New sets device_id to the hostname; SetDevice replaces it.
	DeviceInfo *DeviceInfo
	// PipelineWait is yedge_pipeline_queue_wait_seconds{stage}: how long a
	// frame waited before a stage (for preprocess: for a free buffer).
	PipelineWait *prometheus.HistogramVec
	// StageSeconds is yedge_stage_duration_seconds{stream,precision,stage}:
	// per-frame time of each stage (read|preprocess|infer|postprocess).
	StageSeconds *prometheus.HistogramVec

	// Every other yedge_ series (per stream, per sink, and the daemon's:
	// readiness, models, lifecycle, canary, reloads, errors, evaluation,
	// pipeline busy time and drops, latency ratio) is read from the
	// daemon's owners at scrape time: see Watch. Only the histograms above
	// are pushed, frame by frame.
}

// New creates a registry with the Go and process collectors and every yedge
// metric, and sets yedge_build_info{version,revision,goversion} to 1. Empty
// version or revision are reported as "unknown".
func New(version, revision string) *Metrics {
	if version == "" {
		version = "unknown"
	}
	if revision == "" {
		revision = "unknown"
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}

	m := &Metrics{
		Registry: prometheus.NewRegistry(),

		BuildInfo: gauge(NameBuildInfo,
			"Build information of the running yedge binary; always 1.",
			"version", "revision", "goversion"),
		DeviceInfo: newDeviceInfo(),

		StageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    NameStageSeconds,
			Help:    "Time one frame spent in a pipeline stage (read, preprocess, infer, postprocess).",
			Buckets: StageBuckets(),
		}, []string{"stream", "precision", "stage"}),

		PipelineWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    NamePipelineWait,
			Help:    "Time a frame waited in the queue before a pipeline stage.",
			Buckets: StageBuckets(),
		}, []string{"stage"}),
	}

	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.BuildInfo, m.DeviceInfo, m.StageSeconds, m.PipelineWait,
	)
	m.BuildInfo.WithLabelValues(version, revision, runtime.Version()).Set(1)
	return m
}

// ObserveStage records d in yedge_stage_duration_seconds for one stream,
// precision and stage.
func (m *Metrics) ObserveStage(stream, precision, stage string, d time.Duration) {
	m.StageSeconds.WithLabelValues(stream, precision, stage).Observe(d.Seconds())
}

// ForgetStream deletes the stage histograms of a stream removed from the
// configuration (SIGHUP), and returns the number of series deleted. The
// other per-stream series come from Watch and vanish with the stream.
func (m *Metrics) ForgetStream(name string) int {
	return m.StageSeconds.DeletePartialMatch(prometheus.Labels{"stream": name})
}

// DefaultMaxRequestsInFlight is how many scrapes Handler serves at once
// before answering 503; DefaultScrapeTimeout bounds one scrape.
const (
	DefaultMaxRequestsInFlight = 10
	DefaultScrapeTimeout       = 10 * time.Second
)

// HandlerOption changes the promhttp.HandlerOpts that Handler uses.
type HandlerOption func(*promhttp.HandlerOpts)

// WithErrorLog logs errors met while gathering or encoding metrics.
func WithErrorLog(l promhttp.Logger) HandlerOption {
	return func(o *promhttp.HandlerOpts) { o.ErrorLog = l }
}

// WithMaxRequestsInFlight limits concurrent scrapes; n <= 0 means no limit.
func WithMaxRequestsInFlight(n int) HandlerOption {
	return func(o *promhttp.HandlerOpts) { o.MaxRequestsInFlight = n }
}

// WithTimeout bounds one scrape; d <= 0 means no timeout.
func WithTimeout(d time.Duration) HandlerOption {
	return func(o *promhttp.HandlerOpts) { o.Timeout = d }
}

// Handler returns the /metrics handler for m.Registry. By default it serves
// at most DefaultMaxRequestsInFlight scrapes at once and each for at most
// DefaultScrapeTimeout, keeps serving what it can when one collector fails
// (counting failures in promhttp_metric_handler_errors_total), and offers
// OpenMetrics and gzip/zstd compression. It takes no lock of ours, so
// concurrent scrapes run in parallel with each other and with the pipeline.
// Handler may be called more than once.
func (m *Metrics) Handler(opts ...HandlerOption) http.Handler {
	o := promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.Registry,
		MaxRequestsInFlight: DefaultMaxRequestsInFlight,
		Timeout:             DefaultScrapeTimeout,
		EnableOpenMetrics:   true,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return promhttp.HandlerFor(m.Registry, o)
}
