package serve

import (
	"maps"
	"slices"
	"sync"
	"time"

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
	mu     sync.Mutex
	list   []errEntry
	counts map[string]int64 // by class: yedge_errors_total
}

// errorLogSize is how many errors /status shows.
const errorLogSize = 20

func (l *errorLog) add(class, where string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = map[string]int64{}
	}
	l.counts[class]++
	msg := class + ": " + err.Error()
	if where != "" {
		msg = class + " " + where + ": " + err.Error()
	}
	l.list = append(l.list, errEntry{At: time.Now(), Class: class, Where: where, Error: msg})
	if len(l.list) > errorLogSize {
		l.list = slices.Delete(l.list, 0, len(l.list)-errorLogSize)
	}
}

// classes returns the error counts by class.
func (l *errorLog) classes() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.counts)
}

// snapshot returns the errors, oldest first (never nil, for JSON []).
func (l *errorLog) snapshot() []errEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]errEntry{}, l.list...)
}
