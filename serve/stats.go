package serve

import (
	"maps"

	"github.com/yedge/yedge/metrics"
)

// scrapeStats is what the metrics collector reads of the daemon at every
// scrape ([metrics.Stats]): each owner's own counters and state, never a
// copy pushed by a loop.
type scrapeStats struct{ s *Server }

// StreamStats implements metrics.Stats.
func (x scrapeStats) StreamStats() []metrics.StreamStats {
	var out []metrics.StreamStats
	_, mods := x.s.current()
	for _, st := range x.s.streamList() {
		v := st.stats()
		v.Precision, v.Model = servingOf(st, mods)
		v.Fallback = st.guard.fallback.Load()
		st.cmu.Lock()
		v.Transitions = maps.Clone(st.guard.trans)
		st.cmu.Unlock()
		out = append(out, v)
	}
	return out
}

// SinkStats implements metrics.Stats.
func (x scrapeStats) SinkStats() []metrics.SinkStats {
	x.s.mu.Lock()
	k := x.s.sinks
	x.s.mu.Unlock()
	return k.stats()
}

// DaemonStats implements metrics.Stats.
func (x scrapeStats) DaemonStats() metrics.DaemonStats {
	s := x.s
	d := metrics.DaemonStats{Ready: s.ready.Load(), Errors: s.errs.classes()}
	s.life.stats(&d)
	s.frames.stats(&d)
	s.mu.Lock()
	d.Reloads = maps.Clone(s.reloads)
	s.mu.Unlock()
	s.evals.mu.Lock()
	d.Eval = append(d.Eval, s.evals.ok...)
	s.evals.mu.Unlock()
	return d
}
