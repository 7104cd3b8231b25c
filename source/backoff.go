package source

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields reconnect delays: min, 2*min, 4*min, ... capped at max, each
// with +-20% jitter and never above max.
type Backoff struct {
	min, max time.Duration
	cur      time.Duration  // the next delay before jitter; 0 means min
	rand     func() float64 // in [0, 1); rand.Float64 unless a test sets it
}

// NewBackoff returns a backoff between min and max (defaults for zero values;
// max is raised to min if below it).
func NewBackoff(lo, hi time.Duration) *Backoff {
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	if hi < lo {
		hi = lo
	}
	return &Backoff{min: lo, max: hi, rand: rand.Float64}
}

// Next returns the next delay and doubles the following one.
func (b *Backoff) Next() time.Duration {
	base := b.cur
	if base <= 0 {
		base = b.min
	}
	if base >= b.max/2 {
		b.cur = b.max
	} else {
		b.cur = base * 2
	}
	d := time.Duration(float64(base) * (0.8 + 0.4*b.rand()))
	if d > b.max {
		d = b.max
	}
	return d
}

// Reset starts the sequence again at min.
func (b *Backoff) Reset() { b.cur = 0 }

// sleepCtx waits for d or until ctx is done, returning ctx.Err() then.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
