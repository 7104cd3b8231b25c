package metrics

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DaemonStats are the daemon-wide figures its owners keep (the frame loop,
// the model lifecycle, the evaluator, reloads, the error log), read at
// scrape time like the per-stream ones.
type DaemonStats struct {
	// Ready is yedge_ready.
	Ready bool
	// Models are the loaded models (yedge_model_info); while FP32 serves
	// in the int8 slot only the FP32 one.
	Models []ModelInfo
	// Phase is the model lifecycle phase (Phases; yedge_model_phase).
	Phase string
	// CalibDone and CalibTotal are the calibration images of the
	// quantization in progress or the last one (none: CalibTotal 0).
	CalibDone, CalibTotal int
	// BuildSeconds is the time spent building the new int8 model, growing
	// while it runs.
	BuildSeconds float64
	// CanaryFrames, CanaryRecall and CanaryPrecision are the running (or
	// last) canary's.
	CanaryFrames                  int
	CanaryRecall, CanaryPrecision float64
	// Canaries, Reloads, Errors, Busy (seconds) and Dropped are counters
	// by result, result, class and pipeline stage.
	Canaries, Reloads, Errors, Dropped map[string]int64
	Busy                               map[string]float64
	// LatencyRatio is the int8/FP32 ratio of median inference latencies
	// (0 before the first shadowed frame).
	LatencyRatio float64
	// Eval are the last successful evaluation of each precision.
	Eval []EvalStats
}

// ModelInfo is one loaded model.
type ModelInfo struct {
	Precision, Model, SHA256, Provider string
}

// EvalStats is one precision's last evaluation.
type EvalStats struct {
	Precision       string
	MAP50, MAP50_95 float64
	At              time.Time
}

type daemonDescs struct {
	ready, model, phase, calib, build, canaries, canaryFrames, canaryRecall, canaryPrecision *prometheus.Desc
	reloads, errors, busy, dropped, ratio, map50, map5095, evalAt                            *prometheus.Desc
}

func newDaemonDescs() daemonDescs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return daemonDescs{
		ready: d(NameReady, "1 once models and engines are loaded and frames are served, else 0."),
		model: d(NameModelInfo, "Loaded model per precision with its file SHA-256 and the execution provider in use; always 1.",
			"precision", "model", "sha256", "provider"),
		phase: d(NameModelPhase, "1 for the current model lifecycle phase (serving, calibrating, building, canary), 0 for the others.", "phase"),
		calib: d(NameCalibImages, "Calibration images of the quantization in progress or the last one, by state (done, total).", "state"),
		build: d(NameModelBuildSeconds, "Time spent loading and warming up the new int8 model (session and engine build)."),
		canaries: d(NameCanaries,
			"Canary decisions on new int8 models by result (promoted, rejected, failed).", "result"),
		canaryFrames:    d(NameCanaryFrames, "Shadowed frames the running or last canary ran on."),
		canaryRecall:    d(NameCanaryRecall, "Share of FP32 detections matched by the running or last canary model."),
		canaryPrecision: d(NameCanaryPrecision, "Share of the running or last canary model's detections matched by FP32."),
		reloads:         d(NameReloads, "Configuration reloads (SIGHUP) by result: applied, unchanged or rejected.", "result"),
		errors:          d(NameErrors, "Errors by class (stream, frame, sink, reload, eval); the last ones are in /status.", "class"),
		busy: d(NamePipelineBusy,
			"Time each concurrent pipeline stage (preprocess, infer, postprocess, sink, shadow) was busy; rate() is its busy share.", "stage"),
		dropped: d(NamePipelineDropped,
			"Frames a pipeline stage dropped rather than delay int8 (shadow: sample skipped while the FP32 worker was busy).", "stage"),
		ratio:   d(NameLatencyRatio, "Median int8 inference latency divided by median FP32 inference latency over the rolling window."),
		map50:   d(NameEvalMAP50, "mAP at IoU 0.5 of the last evaluation run.", "precision"),
		map5095: d(NameEvalMAP5095, "mAP averaged over IoU 0.5 to 0.95 of the last evaluation run.", "precision"),
		evalAt:  d(NameEvalTimestamp, "Unix time of the last evaluation run.", "precision"),
	}
}

func (d daemonDescs) all() []*prometheus.Desc {
	return []*prometheus.Desc{d.ready, d.model, d.phase, d.calib, d.build, d.canaries, d.canaryFrames, d.canaryRecall,
		d.canaryPrecision, d.reloads, d.errors, d.busy, d.dropped, d.ratio, d.map50, d.map5095, d.evalAt}
}

// collect sends the daemon-wide series of s.
func (d daemonDescs) collect(ch chan<- prometheus.Metric, s DaemonStats) {
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counters := func(desc *prometheus.Desc, m map[string]int64) {
		for _, k := range sortedKeys(m) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(m[k]), k)
		}
	}
	gauge(d.ready, b2f(s.Ready))
	for _, m := range s.Models {
		gauge(d.model, 1, m.Precision, m.Model, m.SHA256, m.Provider)
	}
	for _, p := range Phases() {
		gauge(d.phase, b2f(p == s.Phase), p)
	}
	if s.CalibTotal > 0 {
		gauge(d.calib, float64(s.CalibDone), "done")
		gauge(d.calib, float64(s.CalibTotal), "total")
	}
	gauge(d.build, s.BuildSeconds)
	gauge(d.canaryFrames, float64(s.CanaryFrames))
	gauge(d.canaryRecall, s.CanaryRecall)
	gauge(d.canaryPrecision, s.CanaryPrecision)
	counters(d.canaries, s.Canaries)
	counters(d.reloads, s.Reloads)
	counters(d.errors, s.Errors)
	counters(d.dropped, s.Dropped)
	for _, k := range sortedKeys(s.Busy) {
		ch <- prometheus.MustNewConstMetric(d.busy, prometheus.CounterValue, s.Busy[k], k)
	}
	gauge(d.ratio, s.LatencyRatio)
	for _, e := range s.Eval {
		gauge(d.map50, e.MAP50, e.Precision)
		gauge(d.map5095, e.MAP50_95, e.Precision)
		gauge(d.evalAt, float64(e.At.Unix()), e.Precision)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
