package pipeline

import (
	"math/rand/v2"
	"slices"
	"time"
)

// maxSamples bounds the memory of a LatencyStats.
const maxSamples = 1 << 16

// LatencyStats summarises durations: count, mean and percentiles. It keeps
// at most 65536 samples (reservoir sampling beyond that), so memory is
// bounded on long runs. The zero value is ready to use.
type LatencyStats struct {
	n       int64
	sum     time.Duration
	samples []time.Duration
	rng     *rand.Rand
}

// Add records one duration.
func (s *LatencyStats) Add(d time.Duration) {
	s.n++
	s.sum += d
	if len(s.samples) < maxSamples {
		s.samples = append(s.samples, d)
		return
	}
	if s.rng == nil {
		s.rng = rand.New(rand.NewPCG(1, 2))
	}
	if j := s.rng.Int64N(s.n); j < maxSamples {
		s.samples[j] = d
	}
}

// Count returns the number of durations added.
func (s *LatencyStats) Count() int64 { return s.n }

// Mean returns the mean duration.
func (s *LatencyStats) Mean() time.Duration {
	if s.n == 0 {
		return 0
	}
	return s.sum / time.Duration(s.n)
}

// Percentile returns the p-th percentile (0..100), nearest rank.
func (s *LatencyStats) Percentile(p float64) time.Duration {
	if len(s.samples) == 0 {
		return 0
	}
	c := slices.Clone(s.samples)
	slices.Sort(c)
	i := int(p/100*float64(len(c)) + 0.5)
	if i > 0 {
		i--
	}
	return c[min(max(i, 0), len(c)-1)]
}
