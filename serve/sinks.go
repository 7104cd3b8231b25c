package serve

import (
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/sinks"
)

// sinkSet is the daemon's open sinks with their counters.
type sinkSet struct {
	list []*countedSink
	errs *errorLog
}

// countedSink is one sink; JSONL sinks count for themselves, others here.
type countedSink struct {
	sinks.Sink
	jsonl           *sinks.JSONL
	written, errors atomic.Int64
}

// openSinks opens the sinks of a plan; on failure the ones opened are
// closed again.
func openSinks(ps []SinkPlan, errs *errorLog, log *slog.Logger) (*sinkSet, error) {
	k := &sinkSet{errs: errs}
	for _, p := range ps {
		switch p.Type {
		case "stdout":
			k.list = append(k.list, &countedSink{Sink: sinks.NewWriter("stdout", os.Stdout)})
		default: // jsonl
			name := "jsonl:" + p.Path
			j, err := sinks.NewJSONL(sinks.JSONLOptions{Path: p.Path, MaxBytes: p.MaxBytes, MaxFiles: p.MaxFiles,
				FlushInterval: p.FlushInterval, OnError: func(err error) {
					errs.add(errSink, name, err)
					log.Warn("sink write failed", "sink", name, "err", err)
				}})
			if err != nil {
				k.close(log)
				return nil, err
			}
			k.list = append(k.list, &countedSink{Sink: j, jsonl: j})
		}
	}
	return k, nil
}

// write hands r to every sink.
func (k *sinkSet) write(r *sinks.Record) {
	for _, s := range k.list {
		err := s.Write(r)
		if s.jsonl != nil {
			continue // JSONL counts and reports its own errors (OnError)
		}
		if err != nil {
			s.errors.Add(1)
			k.errs.add(errSink, s.Name(), err)
		} else {
			s.written.Add(1)
		}
	}
}

// empty reports whether there is no sink.
func (k *sinkSet) empty() bool { return k == nil || len(k.list) == 0 }

// stats returns every sink's counters.
func (k *sinkSet) stats() []metrics.SinkStats {
	if k == nil {
		return nil
	}
	out := make([]metrics.SinkStats, 0, len(k.list))
	for _, s := range k.list {
		st := metrics.SinkStats{Name: s.Name(), Written: s.written.Load(), Errors: s.errors.Load()}
		if s.jsonl != nil {
			js := s.jsonl.Stats()
			st.Written, st.Errors = js.Written, js.Errors
		}
		out = append(out, st)
	}
	return out
}

// close flushes and closes every sink.
func (k *sinkSet) close(log *slog.Logger) {
	if k == nil {
		return
	}
	for _, s := range k.list {
		if err := s.Close(); err != nil {
			log.Warn("closing sink", "sink", s.Name(), "err", err)
		}
	}
}
