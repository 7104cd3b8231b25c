// Package plan turns a configuration file and the command's flags into the
// daemon's resolved plan ([serve.Plan]) and prepares what that plan needs
// before serving: the onnxruntime library, and the int8 model when the
// configuration asks for quantization at start-up. It is the one place
// where configuration keys, flags and environment meet: configuration
// defaults live in package config (the schema), flag defaults in the
// flag definitions, and every other rule in the package that owns it
// (input size in pipeline, TensorRT cache folder in runtime, URIs,
// reconnecting and stall bounds in source, calibrator defaults in quant).
// Package serve takes the result and knows nothing of YAML or quant.
package plan

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/yedge/yedge/config"
	"github.com/yedge/yedge/internal/fsx"
	"github.com/yedge/yedge/modelstore"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/pipeline/calib"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/quant"
	"github.com/yedge/yedge/serve"
)

// Overrides are the command-line flags that override the configuration
// file; nil fields were not given.
type Overrides struct {
	Library   *string
	Provider  *string
	Threads   *int
	DeviceID  *int
	TRTCache  *string
	TRTFP16   *bool
	TRTINT8   *bool
	LogLevel  *string
	LogFormat *string
}

// Daemon is a resolved plan and what must happen before it serves.
type Daemon struct {
	// Serve is what the daemon runs. Serve.Models.Int8 is empty until
	// Prepare has quantized, when Quantize is set.
	Serve serve.Plan
	// Library and LibraryConfig locate the onnxruntime library: the
	// command's flag and the configuration's key ("" for either: search
	// the standard places, as runtime.Init does). The command loads it.
	Library, LibraryConfig string
	// LogLevel and LogFormat configure logging.
	LogLevel, LogFormat string
	// Quantize, when set, makes the int8 model from the FP32 one.
	Quantize *Quantize
	// ConfigPath is the file the plan was built from.
	ConfigPath string
}

// Quantize is quantization at start-up, resolved.
type Quantize struct {
	Calib    string
	Images   int
	Target   quant.Target
	Method   quant.CalibMethod
	KeepHead bool
	// Exclude is the expression as written (it identifies the model made
	// with it); exclude is it compiled, when the file was read.
	Exclude  string
	exclude  *regexp.Regexp
	CacheDir string
	// Height and Width are the calibration input size: the serving size.
	Height, Width int
}

// Load finds the configuration (config.Search), parses and validates it,
// and builds the plan with the overrides.
func Load(path string, o Overrides) (*Daemon, error) {
	p, err := config.Search(path)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(p)
	if err != nil {
		return nil, err
	}
	return Build(cfg, o)
}

// Build resolves a validated configuration and the overrides into a plan.
// It reads the model files (their content hashes, their input size) and
// the token file.
func Build(cfg *config.Config, o Overrides) (*Daemon, error) {
	if err := cfg.ParseErr(); err != nil {
		return nil, err // Load reports these with their lines
	}
	d := &Daemon{Library: pick(o.Library, ""), LibraryConfig: cfg.ONNXRuntime.Library, LogLevel: pick(o.LogLevel, cfg.LogLevel),
		LogFormat: pick(o.LogFormat, cfg.LogFormat), ConfigPath: cfg.Path}
	p := &d.Serve
	p.Listen = cfg.Listen
	p.Device = serve.DevicePlan{ID: cfg.Device.ID, Labels: cfg.Device.Labels}
	p.ShutdownTimeout = cfg.ShutdownTimeout.Std()
	p.Runtime = runtimeOptions(cfg.Provider, o)
	if err := d.buildModels(cfg); err != nil {
		return nil, err
	}
	t := cfg.Thresholds
	p.Post = postprocess.DeployOptions()
	p.Post.Conf, p.Post.IoU, p.Post.MaxDet = float32(t.Conf), float32(t.IoU), t.MaxDet
	for i, s := range cfg.Streams {
		spec := cfg.Source(i) // parsed when the file was read; validated
		r := s.Reconnect
		spec.Reconnect = *r.Enabled
		spec.MinBackoff, spec.MaxBackoff, spec.MaxRetries = r.MinBackoff.Std(), r.MaxBackoff.Std(), r.MaxRetries
		spec.ReadTimeout, spec.Loop = s.ReadTimeout.Std(), s.Loop
		p.Streams = append(p.Streams, serve.StreamPlan{Name: s.Name, Source: spec, FPS: s.FPS})
	}
	sh := cfg.Shadow
	p.Shadow = serve.ShadowPlan{Enabled: *sh.Enabled, EveryN: sh.EveryN, Budget: sh.Budget, IoU: float32(sh.IoU), Window: sh.Window}
	p.Eval = serve.EvalPlan{Data: cfg.Eval.Data, Images: cfg.Eval.Images, OnStart: *cfg.Eval.OnStart}
	for _, s := range cfg.Sinks {
		p.Sinks = append(p.Sinks, serve.SinkPlan{Type: s.Type, Path: s.Path, MaxBytes: int64(s.MaxSizeMB) << 20,
			MaxFiles: s.MaxFiles, FlushInterval: s.FlushInterval.Std()})
	}
	p.Lifecycle = serve.LifecyclePlan{
		Canary: serve.CanaryPlan{Frames: cfg.Canary.Frames, MinRecall: cfg.Canary.MinRecall, MinPrecision: cfg.Canary.MinPrecision,
			Tolerance: cfg.Canary.Tolerance},
		Guard: serve.GuardPlan{MinRecall: cfg.Guard.MinRecall, MinPrecision: cfg.Guard.MinPrecision, For: cfg.Guard.For.Std(),
			MinFrames: cfg.Guard.MinFrames},
		StateDir: StateDir(cfg.StateDir), Keep: cfg.Store.Keep,
		MaxBytes: int64(cfg.Store.MaxSizeMB) << 20}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(d.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", d.LogLevel)
	}
	p.Process = serve.ProcessPlan{LogLevel: lvl, LogFormat: d.LogFormat, Library: cmp.Or(d.Library, d.LibraryConfig)}
	if d.Quantize != nil {
		p.Process.Quantize = d.Quantize.describe()
	}
	var err error
	p.HTTP, err = httpPlan(cfg.HTTP)
	return d, err
}

// runtimeOptions are the daemon's onnxruntime options: the provider
// section with the command's overrides. The daemon's readers and HTTP
// share the cores, so onnxruntime's threads must not spin between runs;
// it runs for long on devices with little memory, so without a memory
// pattern (onnxrt.Options.NoMemPattern).
func runtimeOptions(pr config.ProviderConfig, o Overrides) onnxrt.Options {
	trt := onnxrt.DefaultTensorRTOptions(pick(o.TRTCache, pr.TensorRT.CacheDir))
	if trt.CacheDir == "" {
		trt.CacheDir = onnxrt.DefaultTensorRTCacheDir()
	}
	trt.FP16 = pick(o.TRTFP16, *pr.TensorRT.FP16)
	trt.INT8 = pick(o.TRTINT8, *pr.TensorRT.INT8)
	if pr.TensorRT.DLACore != nil {
		trt.DLACore = *pr.TensorRT.DLACore
	}
	trt.WorkspaceBytes = int64(pr.TensorRT.WorkspaceMB) << 20
	return onnxrt.Options{Provider: pick(o.Provider, pr.Name), DeviceID: pick(o.DeviceID, pr.DeviceID),
		Threads: pick(o.Threads, pr.Threads), TensorRT: trt, NoSpin: true, NoMemPattern: true}
}

// buildModels resolves the model section: the model files (read for their
// hashes and input), the input geometry and batch, and quantization at
// start-up.
func (d *Daemon) buildModels(cfg *config.Config) error {
	p := &d.Serve
	h, w := cfg.InputSize()
	fp32, fm, err := modelFile(cfg.Model.FP32)
	if err != nil {
		return err
	}
	p.Models = serve.ModelsPlan{FP32: fp32, Height: h, Width: w, Batch: cfg.Model.Batch, Names: cfg.Model.Names,
		FullGraph: cfg.Model.FullGraph, Interp: cfg.Interp()}
	batchOf := fm // the int8 model made at start-up has the FP32 model's input
	if cfg.Model.INT8 != "" {
		if p.Models.Int8, batchOf, err = modelFile(cfg.Model.INT8); err != nil {
			return err
		}
	}
	// A model with a fixed batch runs that batch, whatever the default
	// (one per stream) asks: a reload that adds a stream is then no model
	// change.
	if b := pipeline.StaticBatch(batchOf); b > 0 {
		p.Models.Batch = b
	}
	if q := cfg.Model.Quantize; q != nil && cfg.Model.INT8 == "" {
		qh, qw, err := pipeline.InputSize(fm, h, w)
		if err != nil {
			return err
		}
		d.Quantize = &Quantize{Calib: q.Calib, Images: q.Images, Target: cfg.QuantizeTarget(), Method: cfg.QuantizeMethod(),
			KeepHead: *q.KeepHead, Exclude: q.Exclude, exclude: cfg.QuantizeExclude(), CacheDir: q.CacheDir, Height: qh, Width: qw}
	}
	return nil
}

// httpPlan resolves the http section; it reads the token file.
func httpPlan(hc config.HTTPConfig) (serve.HTTPPlan, error) {
	p := serve.HTTPPlan{MaxBodyBytes: hc.MaxBodyBytes, MaxModelBytes: hc.MaxModelBytes, ReadTimeout: hc.ReadTimeout.Std(), WriteTimeout: hc.WriteTimeout.Std(),
		// Headers get at most 5s, and never more than read_timeout.
		ReadHeaderTimeout: min(5*time.Second, hc.ReadTimeout.Std()), IdleTimeout: 60 * time.Second, EnablePost: *hc.EnablePost,
		UI: *hc.UI}
	if hc.TokenFile != "" {
		b, err := fsx.ReadFile(hc.TokenFile, fsx.MaxSecretBytes)
		if err != nil {
			return p, fmt.Errorf("http.token_file: %w", err)
		}
		if p.Token = strings.TrimSpace(string(b)); p.Token == "" {
			return p, fmt.Errorf("http.token_file %q is empty", hc.TokenFile)
		}
	}
	return p, nil
}

// pick returns the override when given, else the configured value.
func pick[T any](override *T, configured T) T {
	if override != nil {
		return *override
	}
	return configured
}

// modelFile loads and hashes a model file; it must be a complete ONNX
// model.
func modelFile(path string) (serve.ModelFile, *onnx.Model, error) {
	m, err := onnx.Load(path)
	if err != nil {
		return serve.ModelFile{}, nil, &pipeline.ModelError{Err: err}
	}
	return serve.ModelFile{Path: path, SHA256: m.SHA256()}, m, nil
}

// Prepare makes the int8 model when the plan quantizes at start-up
// (reusing an earlier one: see EnsureInt8). The onnxruntime library must
// be loaded (runtime.Init).
func (d *Daemon) Prepare(ctx context.Context, log *slog.Logger) error {
	if d.Quantize == nil {
		return nil
	}
	path, err := EnsureInt8(ctx, d.Serve.Models.FP32.Path, *d.Quantize, d.Serve.Runtime, log)
	if err != nil {
		return fmt.Errorf("quantizing at start-up: %w", err)
	}
	d.Serve.Models.Int8, _, err = modelFile(path)
	return err
}

// StateDir is the daemon's state folder (the model store): the
// configured state_dir, else $STATE_DIRECTORY (systemd's StateDirectory=,
// its first entry), else $XDG_STATE_HOME/yedge, else
// ~/.local/state/yedge; "" when none can be found (no home).
func StateDir(configured string) string {
	if configured != "" {
		return configured
	}
	if d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "yedge")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "yedge")
	}
	return ""
}

// Background returns the preparation of the int8 model for the daemon to
// run in the background while FP32 serves (serve.Options.Prepare), or nil
// when the plan quantizes nothing. It serves the model store's promoted
// model when that was made from the same FP32 model and options (no
// calibration again); else it quantizes (see EnsureInt8) at a lower
// priority than serving (see lowPriority) and adds the result to the
// store. The onnxruntime library must be loaded.
func (d *Daemon) Background(log *slog.Logger) func(ctx context.Context, progress func(done, total int)) (serve.ModelFile, error) {
	if d.Quantize == nil {
		return nil
	}
	q, fp32, rt, lc := *d.Quantize, d.Serve.Models.FP32, d.Serve.Runtime, d.Serve.Lifecycle
	return func(ctx context.Context, progress func(done, total int)) (serve.ModelFile, error) {
		key := quantizeKey(fp32.SHA256, q)
		var st *modelstore.Store
		if lc.StateDir != "" {
			var err error
			if st, err = modelstore.Open(lc.StateDir, modelstore.Limits{Keep: lc.Keep, MaxBytes: lc.MaxBytes}); err != nil {
				log.Warn("no model store", "err", err)
			}
		}
		if st != nil {
			if e, ok := st.Promoted(); ok && e.MadeFrom == key {
				if f, _, err := modelFile(st.Path(e.SHA256)); err == nil && f.SHA256 == e.SHA256 {
					log.Info("serving the model store's promoted int8 model: same FP32 model and options, no calibration", "model", f.Path)
					return f, nil
				}
			}
		}
		// Calibration takes one intra-op thread at a lower priority: the
		// streams keep the other cores.
		rt.Threads = 1
		var path string
		var err error
		lowPriority(log, func() { path, err = ensureInt8(ctx, fp32.Path, q, rt, log, progress) })
		if err != nil {
			return serve.ModelFile{}, fmt.Errorf("quantizing at start-up: %w", err)
		}
		if st != nil {
			if _, p, err := st.AddFile(path, "quantize", key); err == nil {
				path = p
			} else {
				log.Warn("model store: quantized model not recorded", "err", err)
			}
		}
		f, _, err := modelFile(path)
		return f, err
	}
}

// CheckFolders checks the folders the daemon will use as it will use
// them, without writing: state_dir can hold the model store (a writable
// folder, or one that can be made), and the calibration folder of
// model.quantize has images. It is what `yedge config check` adds to the
// config's own validation; the daemon meets the same conditions later,
// when it opens the store or calibrates.
func (d *Daemon) CheckFolders() error {
	var errs []error
	if dir := d.Serve.Lifecycle.StateDir; dir != "" {
		errs = append(errs, modelstore.CheckDir(dir))
	}
	if q := d.Quantize; q != nil {
		if _, err := calib.ImagePaths(q.Calib, q.Images); err != nil {
			errs = append(errs, fmt.Errorf("model.quantize.calib: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Summary describes the plan in one line for `yedge config check`.
func (d *Daemon) Summary() string {
	p := d.Serve
	var b strings.Builder
	fmt.Fprintf(&b, "%d stream", len(p.Streams))
	if len(p.Streams) != 1 {
		b.WriteString("s")
	}
	fmt.Fprintf(&b, ", model %s", p.Models.FP32.Path)
	if q := d.Quantize; q != nil {
		fmt.Fprintf(&b, ", int8 quantized at start-up into %s (target %s, method %s, %dx%d)", q.CacheDir, q.Target, q.Method, q.Height, q.Width)
	} else {
		fmt.Fprintf(&b, ", int8 %s", p.Models.Int8.Path)
	}
	fmt.Fprintf(&b, ", provider %s, threads %d, listen %s", p.Runtime.Provider, p.Runtime.Threads, p.Listen)
	return b.String()
}

// describe is q's options in one string (the compiled expression left
// out), compared across reloads.
func (q *Quantize) describe() string {
	b, _ := json.Marshal(q)
	return string(b)
}
