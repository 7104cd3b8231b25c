package serve

import (
	"slices"
	"sync"
	"time"

	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/webview"
)

// Error classes: the "class" label of yedge_errors_total and of the
// entries of /status last_errors.
const (
	errStream = "stream" // a source failed, stalled or ended
	errFrame  = "frame"  // a frame failed in a stage
	errSink   = "sink"   // a sink write failed
	errReload = "reload" // a reload was rejected
	errEval   = "eval"   // an evaluation failed
	errStore  = "store"  // the model store failed (a write, its index)
)

// errEntry is one error in /status: Error reads "CLASS WHERE: cause". A
// stream's page in the web view lists the same entries.
type errEntry = webview.Error

// errorLog keeps the last errors of every class for /status and counts
// them in yedge_errors_total{class}. It is safe for concurrent use.
type errorLog struct {
	m    *metrics.Metrics
	mu   sync.Mutex
	list []errEntry
}

// errorLogSize is how many errors /status shows.
const errorLogSize = 20

func (l *errorLog) add(class, where string, err error) {
	l.m.Errors.WithLabelValues(class).Inc()
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := class + ": " + err.Error()
	if where != "" {
		msg = class + " " + where + ": " + err.Error()
	}
	l.list = append(l.list, errEntry{At: time.Now(), Class: class, Where: where, Error: msg})
	if len(l.list) > errorLogSize {
		l.list = slices.Delete(l.list, 0, len(l.list)-errorLogSize)
	}
}

// snapshot returns the errors, oldest first (never nil, for JSON []).
func (l *errorLog) snapshot() []errEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]errEntry{}, l.list...)
}
