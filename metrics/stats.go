package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// StreamStats are one stream's figures, read at scrape time.
type StreamStats struct {
	// Name is the stream's name (the "stream" label).
	Name string
	// Up is whether the source delivers frames.
	Up bool
	// FramesRead, FramesSkipped, Reconnects and ShadowFrames are counters.
	FramesRead, FramesSkipped, Reconnects, ShadowFrames int64
	// Inferred counts frames that completed inference, by precision.
	Inferred map[string]int64
	// Failed counts frames lost to an error, by stage.
	Failed map[string]int64
	// Detections counts detections of the serving model, by class name.
	Detections map[string]int64
	// Agreement holds the rolling int8-vs-FP32 figures; nil before the
	// first shadowed frame.
	Agreement *Agreement
	// Precision and Model are what serves the stream: "int8" or "fp32",
	// and the short content hash (12 hex) of the model
	// (yedge_serving_info); "" before the first model.
	Precision, Model string
	// Fallback is whether the guard moved the stream to FP32.
	Fallback bool
	// Transitions counts guard transitions by the precision moved to.
	Transitions map[string]int64
}

// Agreement are the rolling int8-vs-FP32 figures of a stream.
type Agreement struct {
	Precision, Recall, MeanIoU, ScoreDiff, CountDiff float64
}

// SinkStats are one sink's counters, read at scrape time.
type SinkStats struct {
	// Name is the sink's name (the "sink" label).
	Name string
	// Written and Errors count records written and failed writes.
	Written, Errors int64
}

// Stats is what Watch reads at every scrape.
type Stats interface {
	// StreamStats returns the figures of every running stream.
	StreamStats() []StreamStats
	// SinkStats returns the counters of every open sink.
	SinkStats() []SinkStats
	// DaemonStats returns the daemon-wide figures.
	DaemonStats() DaemonStats
}

// Watch registers a collector that reads the per-stream and per-sink
// series from s at every scrape, so that they are never copied by a loop
// and a removed stream's series vanish with it.
func (m *Metrics) Watch(s Stats) {
	m.Registry.MustRegister(&statsCollector{src: s, descs: newStatsDescs(), daemon: newDaemonDescs()})
}

type statsDescs struct {
	read, inferred, skipped, failed, up, reconnects, detections, shadow *prometheus.Desc
	agreePrecision, agreeRecall, agreeIoU, agreeScore, agreeCount       *prometheus.Desc
	sinkWritten, sinkErrors                                             *prometheus.Desc
	serving, fallback, transitions                                      *prometheus.Desc
}

func newStatsDescs() statsDescs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return statsDescs{
		read:           d(NameFramesRead, "Frames decoded from the stream source.", "stream"),
		inferred:       d(NameFramesInferred, "Frames that completed inference.", "stream", "precision"),
		skipped:        d(NameFramesSkipped, "Frames dropped for backpressure: a newer frame replaced them before inference.", "stream"),
		failed:         d(NameFramesFailed, "Frames lost to an error, by the stage that failed.", "stream", "stage"),
		up:             d(NameStreamUp, "1 while the stream source delivers frames, 0 while it is down or reconnecting.", "stream"),
		reconnects:     d(NameReconnects, "Reconnect attempts of the stream source.", "stream"),
		detections:     d(NameDetections, "Detections emitted by the serving model, by class.", "stream", "class"),
		shadow:         d(NameShadowFrames, "Frames also run through the FP32 shadow model for agreement monitoring.", "stream"),
		agreePrecision: d(NameAgreementPrecision, "Share of int8 detections matched by an FP32 detection (same class, IoU >= 0.5) over the rolling window.", "stream"),
		agreeRecall:    d(NameAgreementRecall, "Share of FP32 detections matched by an int8 detection (same class, IoU >= 0.5) over the rolling window.", "stream"),
		agreeIoU:       d(NameAgreementIoU, "Mean IoU of matched int8/FP32 detection pairs over the rolling window.", "stream"),
		agreeScore:     d(NameAgreementScoreDiff, "Mean absolute score difference of matched int8/FP32 detection pairs over the rolling window.", "stream"),
		agreeCount:     d(NameAgreementCountDiff, "Mean int8 minus FP32 detection count per shadowed frame over the rolling window.", "stream"),
		sinkWritten:    d(NameSinkWritten, "Detection records written by a sink.", "sink"),
		sinkErrors:     d(NameSinkErrors, "Failed writes of a sink.", "sink"),
		serving:        d(NameServingInfo, "The precision and model (short content hash) serving the stream; always 1.", "stream", "precision", "model"),
		fallback:       d(NameGuardFallback, "1 while the guard has moved the stream to FP32 because the int8 model disagreed with FP32.", "stream"),
		transitions:    d(NameGuardTransitions, "Guard transitions of the stream by the precision moved to (fp32: fallback, int8: back after a canary).", "stream", "to"),
	}
}

type statsCollector struct {
	src    Stats
	descs  statsDescs
	daemon daemonDescs
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.descs
	for _, x := range []*prometheus.Desc{d.read, d.inferred, d.skipped, d.failed, d.up, d.reconnects, d.detections, d.shadow,
		d.agreePrecision, d.agreeRecall, d.agreeIoU, d.agreeScore, d.agreeCount, d.sinkWritten, d.sinkErrors,
		d.serving, d.fallback, d.transitions} {
		ch <- x
	}
	for _, x := range c.daemon.all() {
		ch <- x
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.descs
	counter := func(desc *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	byKey := func(desc *prometheus.Desc, stream string, m map[string]int64) {
		for _, k := range sortedKeys(m) {
			counter(desc, m[k], stream, k)
		}
	}
	for _, s := range c.src.StreamStats() {
		up := 0.0
		if s.Up {
			up = 1
		}
		gauge(d.up, up, s.Name)
		counter(d.read, s.FramesRead, s.Name)
		counter(d.skipped, s.FramesSkipped, s.Name)
		counter(d.reconnects, s.Reconnects, s.Name)
		counter(d.shadow, s.ShadowFrames, s.Name)
		byKey(d.inferred, s.Name, s.Inferred)
		byKey(d.failed, s.Name, s.Failed)
		byKey(d.detections, s.Name, s.Detections)
		byKey(d.transitions, s.Name, s.Transitions)
		if s.Precision != "" {
			gauge(d.serving, 1, s.Name, s.Precision, s.Model)
		}
		fb := 0.0
		if s.Fallback {
			fb = 1
		}
		gauge(d.fallback, fb, s.Name)
		if a := s.Agreement; a != nil {
			gauge(d.agreePrecision, a.Precision, s.Name)
			gauge(d.agreeRecall, a.Recall, s.Name)
			gauge(d.agreeIoU, a.MeanIoU, s.Name)
			gauge(d.agreeScore, a.ScoreDiff, s.Name)
			gauge(d.agreeCount, a.CountDiff, s.Name)
		}
	}
	for _, s := range c.src.SinkStats() {
		counter(d.sinkWritten, s.Written, s.Name)
		counter(d.sinkErrors, s.Errors, s.Name)
	}
	c.daemon.collect(ch, c.src.DaemonStats())
}
