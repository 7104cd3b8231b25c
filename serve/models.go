package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/yedge/yedge/metrics"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
)

// model is one precision: a loaded detector, or the FP32 model loaded on
// demand (see fp32OnDemand).
type model struct {
	precision string
	file      ModelFile
	// det is the loaded detector; read it directly only on a model that
	// is not on demand (the int8 slot), else through detector.
	det *pipeline.Detector
	// info describes the detector (kept while an on-demand model is
	// closed).
	info detInfo
	// load, when set, makes the model on demand: detector loads it when
	// nothing holds it, release closes it.
	load func(context.Context) (*pipeline.Detector, error)
	mu   sync.Mutex // det of an on-demand model
}

// detInfo is what /status and the metrics show of a model's detector.
type detInfo struct {
	provider      string
	batch         int
	height, width int
}

func infoOf(d *pipeline.Detector) detInfo {
	return detInfo{provider: d.Session.Provider, batch: d.Batch, height: d.Height, width: d.Width}
}

// detector returns m's detector, loading an on-demand model that is closed.
func (m *model) detector(ctx context.Context) (*pipeline.Detector, error) {
	if m.load == nil {
		return m.det, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.det == nil {
		d, err := m.load(ctx)
		if err != nil {
			return nil, err
		}
		m.det = d
	}
	return m.det, nil
}

// release closes an on-demand model's detector (the caller makes sure
// that nothing runs on it) and gives its memory back to the OS; reports
// whether it was loaded.
func (m *model) release() bool {
	if m.load == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.det == nil {
		return false
	}
	m.det.Close()
	m.det = nil
	returnMemory()
	return true
}

// returnMemory gives the OS the memory that loading or closing a model
// left free: the Go heap's garbage (parsing the model and cutting its
// head leave tens of MB, which the scavenger would give back only slowly)
// and glibc's free arena pages, where onnxruntime allocates.
func returnMemory() {
	debug.FreeOSMemory()
	onnxrt.TrimNative()
}

// closeDet closes m's detector, if loaded.
func (m *model) closeDet() {
	if m.load != nil {
		m.release()
		return
	}
	m.det.Close()
}

// models are the serving int8 model and the FP32 shadow.
type models struct {
	int8, fp32 *model
}

func (m *models) close() {
	if m == nil {
		return
	}
	if m.int8 != nil && m.int8 != m.fp32 {
		m.int8.closeDet()
	}
	if m.fp32 != nil {
		m.fp32.closeDet()
	}
}

// detectorConfig is the pipeline configuration of one model of p.
func detectorConfig(p Plan, path string, log *slog.Logger) pipeline.Config {
	return pipeline.Config{Model: path, Runtime: p.Runtime, Height: p.Models.Height, Width: p.Models.Width,
		Post: p.Post, NamesFile: p.Models.Names, Logger: log, Interp: p.Models.Interp,
		FullGraph: p.Models.FullGraph}
}

// stableFor is how long a model file must stay unchanged while it is
// loaded: a file still being written in place may parse while incomplete.
const stableFor = 200 * time.Millisecond

// loadModel opens one model, validates it as a YOLOv5 detector (one NCHW
// image input, a [batch, boxes, 5+classes] output) and, with warm, runs it
// three times (providers build engines and caches on the first runs):
// an int8 model, which serves through the pipelined stages, on one of its
// pipelined slots, the FP32 shadow, which runs through Detect, on its own
// slot (each detector's first slot reuses the binding made at loading).
// A warmed model then gives the memory its loading freed back to the OS.
func loadModel(ctx context.Context, p Plan, precision string, f ModelFile, batch int, warm bool, log *slog.Logger) (*model, error) {
	before, err := os.Stat(f.Path)
	if err != nil {
		return nil, &pipeline.ModelError{Err: fmt.Errorf("%s model %q: %w", precision, f.Path, pathErr(err))}
	}
	t0 := time.Now()
	c := detectorConfig(p, f.Path, log)
	c.Batch = batch
	d, err := pipeline.New(c)
	if err != nil && batch > 1 {
		// A static-batch model: one frame at a time.
		c.Batch = 0
		d, err = pipeline.New(c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s model: %w", precision, err)
	}
	if wait := stableFor - time.Since(t0); wait > 0 {
		time.Sleep(wait)
	}
	after, err := os.Stat(f.Path)
	if err != nil || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		d.Close()
		return nil, &pipeline.ModelError{Err: fmt.Errorf("%s model %q is still being written", precision, f.Path)}
	}
	if warm {
		if err := warmUp(ctx, d, precision == metrics.PrecisionInt8); err != nil {
			d.Close()
			return nil, fmt.Errorf("%s model warm-up: %w", precision, err)
		}
		returnMemory()
	}
	return &model{precision: precision, file: f, det: d, info: infoOf(d)}, nil
}

// warmUp runs d three times, on a pipelined slot or on its own slot.
func warmUp(ctx context.Context, d *pipeline.Detector, pipelined bool) error {
	run := d.Infer
	if pipelined {
		sl, err := d.AcquireSlot(ctx)
		if err != nil {
			return err
		}
		defer d.ReleaseSlot(sl)
		run = sl.Infer
	}
	for range 3 {
		if err := run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// loadModels opens both models of p (see loadModel). A plan without an
// int8 model (prepared in the background) serves FP32: the FP32 model
// fills the int8 slot. The FP32 model is on demand (fp32OnDemand): with
// the shadow off it is opened, validated and closed again before the int8
// model loads, and loaded again only while something needs it.
func loadModels(ctx context.Context, p Plan, warm bool, log *slog.Logger) (*models, error) {
	if p.Models.Int8.Path == "" {
		f32, err := loadModel(ctx, p, "fp32", p.Models.FP32, 1, warm, log)
		if err != nil {
			return nil, err
		}
		fp32OnDemand(f32, p, log)
		return &models{int8: f32, fp32: f32}, nil
	}
	var f32 *model
	if warm && !p.Shadow.Enabled {
		var err error
		if f32, err = loadModel(ctx, p, "fp32", p.Models.FP32, 1, false, log); err != nil {
			return nil, err
		}
		fp32OnDemand(f32, p, log)
		f32.release()
	}
	i8, err := loadModel(ctx, p, "int8", p.Models.Int8, p.Models.Batch, warm, log)
	if err != nil {
		return nil, err
	}
	if f32 == nil {
		if f32, err = loadModel(ctx, p, "fp32", p.Models.FP32, 1, warm, log); err != nil {
			i8.det.Close()
			return nil, err
		}
		fp32OnDemand(f32, p, log)
	}
	return &models{int8: i8, fp32: f32}, nil
}

// fp32OnDemand makes the FP32 model m (loaded) on demand: released while
// nothing needs it (Server.releaseFP32), loaded again by the first user
// (the shadow worker for a canary, a stream the guard moved to FP32).
func fp32OnDemand(m *model, p Plan, log *slog.Logger) {
	f := m.file
	m.load = func(ctx context.Context) (*pipeline.Detector, error) {
		log.Info("loading the FP32 model", "model", f.Path)
		x, err := loadModel(ctx, p, "fp32", f, 1, true, log)
		if err != nil {
			return nil, err
		}
		return x.det, nil
	}
}

// CheckModels opens the models of p in onnxruntime sessions and validates
// them as YOLOv5 detectors, then closes them: what a reload does before it
// touches the running pipeline, and what `yedge config check` runs. A
// plan whose int8 model is still to be made (quantization at start-up)
// checks the FP32 model alone. An
// unavailable explicit provider is an error wrapping
// onnxrt.ErrProviderUnavailable; a model that is not a usable YOLOv5
// detector is a *pipeline.ModelError.
func CheckModels(ctx context.Context, p Plan, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if p.Models.Int8.Path == "" {
		m, err := loadModel(ctx, p, "fp32", p.Models.FP32, 1, false, log)
		if err == nil {
			m.det.Close()
		}
		return err
	}
	m, err := loadModels(ctx, p, false, log)
	m.close()
	return err
}

func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
