package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gocv.io/x/gocv"
)

// Defaults of BenchConfig.
const (
	// DefaultBenchWarmup is the number of warm-up passes per detector.
	DefaultBenchWarmup = 10
	// DefaultBenchRuns is the number of measured passes per detector.
	DefaultBenchRuns = 50
)

// BenchConfig describes a benchmark run of [Bench].
type BenchConfig struct {
	// Warmup is the number of untimed passes per detector before measuring;
	// 0 means DefaultBenchWarmup and a negative value means none.
	Warmup int
	// Runs is the number of timed passes per detector; 0 means
	// DefaultBenchRuns.
	Runs int
	// Frames are the input images, cycled: run r uses Frames[r%len(Frames)].
	// Bench does not take ownership of them.
	Frames []gocv.Mat
}

// BenchStats summarises the latencies of one stage over the timed runs, in
// milliseconds.
type BenchStats struct {
	// MedianMs is the 50th percentile (nearest rank).
	MedianMs float64 `json:"median_ms"`
	// P95Ms is the 95th percentile (nearest rank).
	P95Ms float64 `json:"p95_ms"`
	// MeanMs is the arithmetic mean.
	MeanMs float64 `json:"mean_ms"`
	// MinMs is the fastest run.
	MinMs float64 `json:"min_ms"`
	// Runs is the number of timed runs.
	Runs int `json:"runs"`
}

// BenchResult is the outcome of [Bench] for one detector.
type BenchResult struct {
	// Model is the model path the detector was loaded from.
	Model string `json:"model"`
	// Provider is the execution provider in use (tensorrt, cuda, cpu).
	Provider string `json:"provider"`
	// Threads is the onnxruntime intra-op thread count in use.
	Threads int `json:"threads"`
	// Input is the network input size, height and width.
	Input [2]int `json:"input_hw"`
	// Decode is the detector's decode: DecodeRawHead or DecodeGraph.
	Decode string `json:"decode"`
	// Infer is the time of the model run alone.
	Infer BenchStats `json:"infer"`
	// EndToEnd is the time of preprocess + infer + postprocess.
	EndToEnd BenchStats `json:"end_to_end"`
}

// benchStats converts s into a BenchStats.
func benchStats(s *LatencyStats) BenchStats {
	msOf := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	return BenchStats{
		MedianMs: msOf(s.Percentile(50)),
		P95Ms:    msOf(s.Percentile(95)),
		MeanMs:   msOf(s.Mean()),
		MinMs:    msOf(s.Percentile(0)),
		Runs:     int(s.Count()),
	}
}

// Bench times the detectors on the same frames, interleaved so that drifts
// of the machine (thermal throttling, other load) affect them alike. Each
// detector first makes cfg.Warmup untimed passes; then for each run r in
// 0..cfg.Runs-1 every detector makes one pass on frame r%len(cfg.Frames),
// the starting detector rotating from run to run (AB, BA, AB, ... for two).
// A pass is preprocess + infer + postprocess, timed as a whole (end to end)
// and with infer timed alone. progress, if not nil, is called after each
// round of passes (warm-up rounds included) with the rounds done and the
// total. Bench stops with ctx.Err() when ctx is cancelled.
func Bench(ctx context.Context, dets []*Detector, cfg BenchConfig, progress Progress) ([]BenchResult, error) {
	if len(dets) == 0 {
		return nil, errors.New("bench: no detector")
	}
	if len(cfg.Frames) == 0 {
		return nil, errors.New("bench: no frame")
	}
	for i, f := range cfg.Frames {
		if f.Empty() {
			return nil, fmt.Errorf("bench: frame %d is empty", i)
		}
	}
	warmup, runs := cfg.Warmup, cfg.Runs
	switch {
	case warmup == 0:
		warmup = DefaultBenchWarmup
	case warmup < 0:
		warmup = 0
	}
	if runs == 0 {
		runs = DefaultBenchRuns
	}
	if runs < 0 {
		return nil, fmt.Errorf("bench: runs %d must be positive", runs)
	}
	total := warmup + runs
	infer := make([]LatencyStats, len(dets))
	e2e := make([]LatencyStats, len(dets))
	for w := range warmup {
		for _, d := range dets {
			if _, _, err := benchPass(ctx, d, cfg.Frames[w%len(cfg.Frames)]); err != nil {
				return nil, benchErr(ctx, d, err)
			}
		}
		if progress != nil {
			progress(w+1, total)
		}
	}
	for r := range runs {
		img := cfg.Frames[r%len(cfg.Frames)]
		for k := range dets {
			i := (r + k) % len(dets)
			inf, all, err := benchPass(ctx, dets[i], img)
			if err != nil {
				return nil, benchErr(ctx, dets[i], err)
			}
			infer[i].Add(inf)
			e2e[i].Add(all)
		}
		if progress != nil {
			progress(warmup+r+1, total)
		}
	}
	out := make([]BenchResult, len(dets))
	for i, d := range dets {
		out[i] = BenchResult{
			Model:    d.Path(),
			Provider: d.Provider(),
			Threads:  d.Threads(),
			Input:    [2]int{d.Height, d.Width},
			Decode:   d.Decode,
			Infer:    benchStats(&infer[i]),
			EndToEnd: benchStats(&e2e[i]),
		}
	}
	return out, nil
}

// benchPass runs one end-to-end pass of d on img and returns the inference
// time and the end-to-end time.
func benchPass(ctx context.Context, d *Detector, img gocv.Mat) (infer, all time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	xf, err := d.Preprocess(img, 0)
	if err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	if err := d.Infer(ctx); err != nil {
		return 0, 0, err
	}
	t2 := time.Now()
	d.Postprocess(0, xf)
	t3 := time.Now()
	return t2.Sub(t1), t3.Sub(t0), nil
}

// benchErr returns ctx.Err() when the context is done, else err naming the
// model.
func benchErr(ctx context.Context, d *Detector, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return fmt.Errorf("bench %q: %w", d.Path(), err)
}
