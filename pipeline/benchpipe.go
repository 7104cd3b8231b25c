package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/yedge/yedge/postprocess"
)

// PipelineResult is the outcome of [BenchPipeline] for one detector.
type PipelineResult struct {
	// Model is the model path ("null" for the null model).
	Model string `json:"model"`
	// Provider is the execution provider in use.
	Provider string `json:"provider"`
	// Threads is onnxruntime's intra-op thread count.
	Threads int `json:"threads"`
	// Input is the network input size, height and width.
	Input [2]int `json:"input_hw"`
	// Frames is the number of frames that went through every stage.
	Frames int64 `json:"frames"`
	// Seconds is the wall time of the timed run.
	Seconds float64 `json:"seconds"`
	// PipelineFPS is Frames over Seconds: the pipelined throughput.
	PipelineFPS float64 `json:"pipeline_fps"`
	// InferMedianMs is the median inference time.
	InferMedianMs float64 `json:"infer_median_ms"`
	// Stages gives each stage's median time and busy share.
	Stages map[string]StageFigures `json:"stages"`
	// Order lists the stage names in pipeline order.
	Order []string `json:"-"`
}

// BenchPipeline runs d's real pipeline (a Feed reading on its own
// goroutine, then Stages) on frames from open, first for warmup frames
// untimed, then for frames timed, and reports the throughput and each
// stage's figures. open is called once per run and must return a reader
// of at least that many frames (a looping file, a camera). live selects
// the Feed's latest-frame behaviour.
func BenchPipeline(ctx context.Context, d *Detector, open func(context.Context) (FrameReader, func() error, error), live bool, warmup, frames int) (PipelineResult, error) {
	if frames <= 0 {
		return PipelineResult{}, fmt.Errorf("bench pipeline: %d frames", frames)
	}
	if warmup > 0 {
		if _, _, err := runPipeline(ctx, d, open, live, warmup); err != nil {
			return PipelineResult{}, err
		}
	}
	stats, el, err := runPipeline(ctx, d, open, live, frames)
	if err != nil {
		return PipelineResult{}, err
	}
	fig, order := stats.Figures()
	res := PipelineResult{Model: d.Path(), Provider: d.Provider(), Threads: d.Threads(), Input: [2]int{d.Height, d.Width},
		Frames: fig[StageSink].Frames, Seconds: el.Seconds(), InferMedianMs: fig[StageInfer].MedianMs, Stages: fig, Order: order}
	if el > 0 {
		res.PipelineFPS = float64(res.Frames) / el.Seconds()
	}
	return res, nil
}

// runPipeline runs n frames through the stages and returns their stats
// and the wall time.
func runPipeline(ctx context.Context, d *Detector, open func(context.Context) (FrameReader, func() error, error), live bool, n int) (*StageStats, time.Duration, error) {
	src, closeSrc, err := open(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = closeSrc() }() // a read-only source: nothing to lose
	stats := NewStageStats()
	feed := NewFeed(ctx, src, live, stats)
	defer feed.Close()
	var mu sync.Mutex
	var failed error
	jobs := feed.Jobs(d, int64(n))
	taken := 0
	start := time.Now()
	err = Stages{
		Stats: stats,
		Next: func(ctx context.Context) (*Job, error) {
			j, err := jobs(ctx)
			if errors.Is(err, io.EOF) && taken < n {
				return nil, fmt.Errorf("bench pipeline: the source ended after %d of %d frames", taken, n)
			}
			taken++
			return j, err
		},
		Deliver: func(*Job, int, []postprocess.Detection) error { return nil },
		Fail: func(_ *Job, _ int, stage string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if failed == nil {
				failed = fmt.Errorf("bench pipeline: %s: %w", stage, err)
			}
		},
		Done: feed.Done,
	}.Run(ctx)
	el := time.Since(start)
	if err == nil {
		mu.Lock()
		err = failed
		mu.Unlock()
	}
	return stats, el, err
}
