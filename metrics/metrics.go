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
// The daemon creates one *Metrics with New, updates its fields from the
// pipeline, and serves Handler on the metrics listener (:9464 by default,
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
	NameReady              = "yedge_ready"
)

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
		NameSinkWritten, NameSinkErrors, NameReady,
	}
}

// Histograms returns the family names among Names that are histograms.
func Histograms() []string {
	return []string{NameStageSeconds}
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
	// the device's identity (configs.DeviceConfig), one series per daemon.
	// New sets device_id to the hostname; SetDevice replaces it.
	DeviceInfo *DeviceInfo
	// ModelInfo is yedge_model_info{precision,model,sha256,provider}, 1 for
	// each loaded model; provider is the execution provider actually in use
	// (after any fallback). Use SetModelInfo to replace a model's series.
	ModelInfo *prometheus.GaugeVec

	// StageSeconds is yedge_stage_duration_seconds{stream,precision,stage}:
	// per-frame time of each stage (read|preprocess|infer|postprocess).
	StageSeconds *prometheus.HistogramVec

	// FramesRead is yedge_frames_read_total{stream}: frames decoded from
	// the source.
	FramesRead *prometheus.CounterVec
	// FramesInferred is yedge_frames_inferred_total{stream,precision}:
	// frames that completed inference.
	FramesInferred *prometheus.CounterVec
	// FramesSkipped is yedge_frames_skipped_total{stream}: frames dropped for
	// backpressure, because a newer frame replaced them before inference.
	FramesSkipped *prometheus.CounterVec
	// FramesFailed is yedge_frames_failed_total{stream,stage}: frames lost
	// to an error in the given stage.
	FramesFailed *prometheus.CounterVec

	// StreamUp is yedge_stream_up{stream}: 1 while the source delivers
	// frames, 0 while it is disconnected or reconnecting.
	StreamUp *prometheus.GaugeVec
	// Reconnects is yedge_stream_reconnects_total{stream}.
	Reconnects *prometheus.CounterVec
	// Detections is yedge_detections_total{stream,class}: detections emitted
	// by the serving (int8) model, by class name.
	Detections *prometheus.CounterVec

	// ShadowFrames is yedge_shadow_frames_total{stream}: frames also run
	// through the FP32 shadow model for agreement monitoring.
	ShadowFrames *prometheus.CounterVec
	// AgreementPrecision is yedge_agreement_precision{stream}: int8
	// detections matched to an FP32 detection (same class, IoU >= 0.5) over
	// all int8 detections, across the rolling window.
	AgreementPrecision *prometheus.GaugeVec
	// AgreementRecall is yedge_agreement_recall{stream}: matched detections
	// over all FP32 detections, across the rolling window.
	AgreementRecall *prometheus.GaugeVec
	// AgreementIoU is yedge_agreement_mean_iou{stream}: mean IoU of matched
	// int8/FP32 pairs.
	AgreementIoU *prometheus.GaugeVec
	// AgreementScoreDiff is yedge_agreement_score_diff{stream}: mean
	// |score_int8 - score_fp32| of matched pairs.
	AgreementScoreDiff *prometheus.GaugeVec
	// AgreementCountDiff is yedge_agreement_count_diff{stream}: mean
	// (count_int8 - count_fp32) per shadowed frame; may be negative.
	AgreementCountDiff *prometheus.GaugeVec
	// LatencyRatio is yedge_int8_fp32_latency_ratio: median int8 inference
	// latency over median FP32 inference latency (rolling window); below 1
	// means int8 is faster.
	LatencyRatio prometheus.Gauge

	// EvalMAP50 is yedge_eval_map50{precision}: mAP@0.5 of the last
	// evaluation run.
	EvalMAP50 *prometheus.GaugeVec
	// EvalMAP5095 is yedge_eval_map50_95{precision}: mAP@0.5:0.95 of the
	// last evaluation run.
	EvalMAP5095 *prometheus.GaugeVec
	// EvalTimestamp is yedge_eval_timestamp_seconds{precision}: Unix time of
	// the last evaluation run.
	EvalTimestamp *prometheus.GaugeVec

	// SinkWritten is yedge_sink_records_total{sink}: records written.
	SinkWritten *prometheus.CounterVec
	// SinkErrors is yedge_sink_errors_total{sink}: failed writes.
	SinkErrors *prometheus.CounterVec

	// Ready is yedge_ready: 1 once models and engines are loaded and the
	// daemon has told systemd READY=1, 0 before and while shutting down.
	Ready prometheus.Gauge

	// streamVecs are the vectors with a "stream" label, for ForgetStream.
	streamVecs []*prometheus.MetricVec
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
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}

	m := &Metrics{
		Registry: prometheus.NewRegistry(),

		BuildInfo: gauge(NameBuildInfo,
			"Build information of the running yedge binary; always 1.",
			"version", "revision", "goversion"),
		DeviceInfo: newDeviceInfo(),
		ModelInfo: gauge(NameModelInfo,
			"Loaded model per precision with its file SHA-256 and the execution provider in use; always 1.",
			"precision", "model", "sha256", "provider"),

		StageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    NameStageSeconds,
			Help:    "Time one frame spent in a pipeline stage (read, preprocess, infer, postprocess).",
			Buckets: StageBuckets(),
		}, []string{"stream", "precision", "stage"}),

		FramesRead: counter(NameFramesRead,
			"Frames decoded from the stream source.", "stream"),
		FramesInferred: counter(NameFramesInferred,
			"Frames that completed inference.", "stream", "precision"),
		FramesSkipped: counter(NameFramesSkipped,
			"Frames dropped for backpressure: a newer frame replaced them before inference.", "stream"),
		FramesFailed: counter(NameFramesFailed,
			"Frames lost to an error, by the stage that failed.", "stream", "stage"),

		StreamUp: gauge(NameStreamUp,
			"1 while the stream source delivers frames, 0 while it is down or reconnecting.", "stream"),
		Reconnects: counter(NameReconnects,
			"Reconnect attempts of the stream source.", "stream"),
		Detections: counter(NameDetections,
			"Detections emitted by the serving model, by class.", "stream", "class"),

		ShadowFrames: counter(NameShadowFrames,
			"Frames also run through the FP32 shadow model for agreement monitoring.", "stream"),
		AgreementPrecision: gauge(NameAgreementPrecision,
			"Share of int8 detections matched by an FP32 detection (same class, IoU >= 0.5) over the rolling window.", "stream"),
		AgreementRecall: gauge(NameAgreementRecall,
			"Share of FP32 detections matched by an int8 detection (same class, IoU >= 0.5) over the rolling window.", "stream"),
		AgreementIoU: gauge(NameAgreementIoU,
			"Mean IoU of matched int8/FP32 detection pairs over the rolling window.", "stream"),
		AgreementScoreDiff: gauge(NameAgreementScoreDiff,
			"Mean absolute score difference of matched int8/FP32 detection pairs over the rolling window.", "stream"),
		AgreementCountDiff: gauge(NameAgreementCountDiff,
			"Mean int8 minus FP32 detection count per shadowed frame over the rolling window.", "stream"),
		LatencyRatio: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: NameLatencyRatio,
			Help: "Median int8 inference latency divided by median FP32 inference latency over the rolling window.",
		}),

		EvalMAP50: gauge(NameEvalMAP50,
			"mAP at IoU 0.5 of the last evaluation run.", "precision"),
		EvalMAP5095: gauge(NameEvalMAP5095,
			"mAP averaged over IoU 0.5 to 0.95 of the last evaluation run.", "precision"),
		EvalTimestamp: gauge(NameEvalTimestamp,
			"Unix time of the last evaluation run.", "precision"),

		SinkWritten: counter(NameSinkWritten,
			"Detection records written by a sink.", "sink"),
		SinkErrors: counter(NameSinkErrors,
			"Failed writes of a sink.", "sink"),

		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: NameReady,
			Help: "1 once models and engines are loaded and frames are served, else 0.",
		}),
	}

	m.streamVecs = []*prometheus.MetricVec{
		m.StageSeconds.MetricVec,
		m.FramesRead.MetricVec, m.FramesInferred.MetricVec,
		m.FramesSkipped.MetricVec, m.FramesFailed.MetricVec,
		m.StreamUp.MetricVec, m.Reconnects.MetricVec, m.Detections.MetricVec,
		m.ShadowFrames.MetricVec,
		m.AgreementPrecision.MetricVec, m.AgreementRecall.MetricVec,
		m.AgreementIoU.MetricVec, m.AgreementScoreDiff.MetricVec,
		m.AgreementCountDiff.MetricVec,
	}

	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.BuildInfo, m.DeviceInfo, m.ModelInfo, m.StageSeconds,
		m.FramesRead, m.FramesInferred, m.FramesSkipped, m.FramesFailed,
		m.StreamUp, m.Reconnects, m.Detections,
		m.ShadowFrames, m.AgreementPrecision, m.AgreementRecall,
		m.AgreementIoU, m.AgreementScoreDiff, m.AgreementCountDiff,
		m.LatencyRatio,
		m.EvalMAP50, m.EvalMAP5095, m.EvalTimestamp,
		m.SinkWritten, m.SinkErrors,
		m.Ready,
	)
	m.BuildInfo.WithLabelValues(version, revision, runtime.Version()).Set(1)
	return m
}

// SetModelInfo sets yedge_model_info for one precision to 1, first deleting
// any earlier series of that precision, so a model or provider swapped at
// reload does not leave a stale series behind.
func (m *Metrics) SetModelInfo(precision, model, sha256, provider string) {
	m.ModelInfo.DeletePartialMatch(prometheus.Labels{"precision": precision})
	m.ModelInfo.WithLabelValues(precision, model, sha256, provider).Set(1)
}

// ObserveStage records d in yedge_stage_duration_seconds for one stream,
// precision and stage.
func (m *Metrics) ObserveStage(stream, precision, stage string, d time.Duration) {
	m.StageSeconds.WithLabelValues(stream, precision, stage).Observe(d.Seconds())
}

// ForgetStream deletes every series labelled stream=name, for a stream
// removed from the configuration (SIGHUP). It returns the number of series
// deleted. Metrics without a stream label are left alone.
func (m *Metrics) ForgetStream(name string) int {
	n := 0
	for _, v := range m.streamVecs {
		n += v.DeletePartialMatch(prometheus.Labels{"stream": name})
	}
	return n
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
