package pipeline

import (
	"sync"
	"time"
)

// StageStats collects, for each stage, the time it was busy with each
// frame (or batch), the time the frame waited in the queue before it, and
// the frames dropped there. It is safe for concurrent use; the zero value
// is not: use NewStageStats.
type StageStats struct {
	mu     sync.Mutex
	start  time.Time
	order  []string
	stages map[string]*stageRec
	// OnObserve, if set, is called with every observation (the daemon
	// feeds its histograms from it). Set it before the first Observe.
	OnObserve func(stage string, busy, wait time.Duration)
	// OnDrop, if set, is called with every drop.
	OnDrop func(stage string, n int)
}

type stageRec struct {
	busy, wait LatencyStats
	busyTotal  time.Duration
	dropped    int64
}

// NewStageStats starts collecting; busy shares are relative to now.
func NewStageStats() *StageStats {
	return &StageStats{start: time.Now(), stages: map[string]*stageRec{}}
}

func (s *StageStats) rec(stage string) *stageRec {
	r := s.stages[stage]
	if r == nil {
		r = &stageRec{}
		s.stages[stage] = r
		s.order = append(s.order, stage)
	}
	return r
}

// Observe records one frame's (or batch's) busy time in stage and how
// long it waited for the stage.
func (s *StageStats) Observe(stage string, busy, wait time.Duration) {
	s.mu.Lock()
	r := s.rec(stage)
	r.busy.Add(busy)
	r.wait.Add(wait)
	r.busyTotal += busy
	s.mu.Unlock()
	if s.OnObserve != nil {
		s.OnObserve(stage, busy, wait)
	}
}

// Drop records n frames dropped at stage (a live source's frame replaced
// by a newer one before preprocessing, a shadow sample skipped while the
// shadow worker was busy).
func (s *StageStats) Drop(stage string, n int) {
	s.mu.Lock()
	s.rec(stage).dropped += int64(n)
	s.mu.Unlock()
	if s.OnDrop != nil {
		s.OnDrop(stage, n)
	}
}

// StageFigures summarises one stage.
type StageFigures struct {
	// MeanMs is the mean busy time per frame (per batch for infer).
	MeanMs float64 `json:"mean_ms"`
	// MedianMs is the median busy time per frame (per batch for infer).
	MedianMs float64 `json:"median_ms"`
	// P95Ms is the 95th percentile busy time.
	P95Ms float64 `json:"p95_ms"`
	// WaitMedianMs is the median time a frame waited in the queue before
	// the stage (for preprocess: for a free slot).
	WaitMedianMs float64 `json:"wait_median_ms"`
	// Busy is the stage's busy time over the wall time since the stats
	// started: 1 means the stage never rested, the bottleneck.
	Busy float64 `json:"busy"`
	// Frames is the number of observations.
	Frames int64 `json:"frames"`
	// Dropped is the number of frames dropped at the stage.
	Dropped int64 `json:"dropped"`
}

// Figures returns each stage's figures, keyed by stage name, and the
// stage names in the order they were first seen.
func (s *StageStats) Figures() (map[string]StageFigures, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wall := time.Since(s.start)
	out := make(map[string]StageFigures, len(s.stages))
	for name, r := range s.stages {
		f := StageFigures{
			MeanMs:       msOf(r.busy.Mean()),
			MedianMs:     msOf(r.busy.Percentile(50)),
			P95Ms:        msOf(r.busy.Percentile(95)),
			WaitMedianMs: msOf(r.wait.Percentile(50)),
			Frames:       r.busy.Count(),
			Dropped:      r.dropped,
		}
		if wall > 0 {
			f.Busy = float64(r.busyTotal) / float64(wall)
		}
		out[name] = f
	}
	return out, append([]string(nil), s.order...)
}

func msOf(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
