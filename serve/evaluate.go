package serve

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/yedge/yedge/eval"
	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
)

// evalStatus is one precision's last evaluation, for /status.
type evalStatus struct {
	MAP50    float64   `json:"map50"`
	MAP50_95 float64   `json:"map50_95"`
	P        float64   `json:"precision"`
	R        float64   `json:"recall"`
	Images   int       `json:"images"`
	At       time.Time `json:"at"`
	Error    string    `json:"error,omitempty"`
}

// evaluator runs one evaluation at a time in the background.
type evaluator struct {
	s       *Server
	running atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	res     map[string]evalStatus
	// ok are the last successful evaluations: yedge_eval_*.
	ok []metrics.EvalStats
}

// start evaluates both precisions on the plan's dataset in the background,
// with sessions of their own (the live ones keep serving). It reports
// false when an evaluation runs already or the server is stopping.
func (e *evaluator) start() bool {
	if !e.running.CompareAndSwap(false, true) {
		return false
	}
	s := e.s
	// Add under mu, and not once Run is stopping (runCtx done, before Run
	// waits for wg): an Add during that Wait would panic or outlive Run.
	mods := s.life.models()
	s.mu.Lock()
	ctx, p := s.runCtx, s.plan
	if ctx != nil && ctx.Err() != nil {
		s.mu.Unlock()
		e.running.Store(false)
		return false
	}
	e.wg.Add(1)
	s.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	files := []*model{mods.int8, mods.fp32}
	go func() {
		defer e.wg.Done()
		defer e.running.Store(false)
		e.run(ctx, p, files)
	}()
	return true
}

// wait waits for a running evaluation.
func (e *evaluator) wait() { e.wg.Wait() }

// results returns the last results by precision (nil before any).
func (e *evaluator) results() map[string]evalStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.res) == 0 {
		return nil
	}
	return maps.Clone(e.res)
}

func (e *evaluator) run(ctx context.Context, p Plan, mods []*model) {
	s := e.s
	ds, err := eval.LoadDataset(p.Eval.Data)
	if err != nil {
		s.errs.add(errEval, "", err)
		s.log.Error("eval", "err", err)
		return
	}
	if n := p.Eval.Images; n > 0 && n < len(ds.Images) {
		ds.Images = ds.Images[:n]
	}
	for _, m := range mods {
		c := detectorConfig(p, m.file.Path, slog.New(slog.DiscardHandler))
		c.Post = postprocess.EvalOptions()
		c.Interp = preprocess.InterpReference // the protocol of the reference figures
		// One thread: evaluation shares the device with live streams.
		c.Runtime.Threads = 1
		st := evalStatus{At: time.Now()}
		d, err := pipeline.New(c)
		if err == nil {
			var res eval.Result
			res, _, err = pipeline.Evaluate(ctx, d, ds, postprocess.EvalOptions(), nil, s.log)
			d.Close()
			if err == nil {
				st = evalStatus{MAP50: res.MAP50, MAP50_95: res.MAP50_95, P: res.Precision, R: res.Recall, Images: res.Images, At: time.Now()}
				s.log.Info("eval done", "precision", m.precision, "map50", res.MAP50, "map50_95", res.MAP50_95, "images", res.Images)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.Error = err.Error()
			s.errs.add(errEval, m.precision, err)
			s.log.Error("eval failed", "precision", m.precision, "err", err)
		}
		e.mu.Lock()
		if e.res == nil {
			e.res = map[string]evalStatus{}
		}
		e.res[m.precision] = st
		if st.Error == "" {
			e.ok = append(slices.DeleteFunc(e.ok, func(x metrics.EvalStats) bool { return x.Precision == m.precision }),
				metrics.EvalStats{Precision: m.precision, MAP50: st.MAP50, MAP50_95: st.MAP50_95, At: st.At})
		}
		e.mu.Unlock()
	}
}
