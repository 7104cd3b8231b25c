package onnxrt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Provider names accepted by Options.Provider.
const (
	ProviderAuto     = "auto"
	ProviderTensorRT = "tensorrt"
	ProviderCUDA     = "cuda"
	ProviderCPU      = "cpu"
)

// Providers lists the valid values of Options.Provider.
var Providers = []string{ProviderAuto, ProviderTensorRT, ProviderCUDA, ProviderCPU}

// ErrProviderUnavailable is wrapped by errors returned when an explicitly
// requested execution provider cannot be used.
var ErrProviderUnavailable = errors.New("execution provider not available")

// TensorRTOptions configures the TensorRT execution provider.
type TensorRTOptions struct {
	FP16     bool   // allow FP16 kernels (trt_fp16_enable)
	INT8     bool   // allow INT8 kernels (trt_int8_enable); Q/DQ models use explicit quantization
	CacheDir string // engine and timing caches (trt_engine_cache_path, trt_timing_cache_path)
	DLACore  int    // -1: no DLA; otherwise trt_dla_enable with this core
	// WorkspaceBytes caps the TensorRT builder workspace; 0 leaves the default.
	WorkspaceBytes int64
	// ModelKey, when set, keys the engine cache folder (engines/<key>):
	// onnxruntime names engines by graph structure, not weights, so a model
	// replaced in place must not reuse the old engine. NewSession fills it
	// with the model's SHA-256 prefix.
	ModelKey string
}

// Bounds of Options that every front end (flags, configuration) checks.
const (
	// MaxThreads is the largest intra-op thread count.
	MaxThreads = 1024
	// MaxDeviceID is the largest GPU index.
	MaxDeviceID = 255
)

// Options configures a Session.
type Options struct {
	Provider string // auto, tensorrt, cuda or cpu; "" means auto
	DeviceID int    // GPU index for CUDA and TensorRT
	Threads  int    // intra-op threads; <= 0 means DefaultThreads()
	TensorRT TensorRTOptions
	// OptimizedModelPath, when set, makes onnxruntime write the optimized graph
	// there (used to check which Q/DQ patterns were fused).
	OptimizedModelPath string
	// DisableOptimizations runs the graph as written (ORT_DISABLE_ALL).
	DisableOptimizations bool
	// NoSpin stops onnxruntime's intra-op threads from spinning between
	// runs, for processes that share the cores with other work (the daemon's
	// readers and HTTP): spinning threads then only steal their CPU.
	NoSpin bool
	// NoMemPattern turns off onnxruntime's memory pattern: the block for
	// all intermediate tensors that the first run at an input shape plans
	// and later runs allocate at once. Without it each tensor is taken
	// from the CPU arena when it is produced and given back when it is
	// consumed, so the arena holds the largest set of tensors alive at
	// one time rather than a block laid out for the whole graph: the
	// daemon with its int8 and FP32 sessions takes 40-70 MB less resident
	// memory (scripts/footprint.sh), at no measurable cost in speed for
	// YOLOv5 on the CPU provider (interleaved runs: int8 0.99x, FP32 1.01x).
	NoMemPattern bool
	// Quiet logs the loaded model at debug level only (for the many
	// short-lived sessions of calibration and sensitivity analysis).
	Quiet  bool
	Logger *slog.Logger
}

// DefaultThreads is the rule for the intra-op thread count when none is
// given (Options.Threads 0, --threads 0, provider.threads 0): every core
// the process may use. The pipelined stages (capture and decode,
// preprocess, postprocess and the outputs) share those cores with
// inference; measured on a 2-core machine (scripts/bench-pipeline.sh,
// int8 cpu model, vtest.avi and vtest-1080p.mp4), two threads still give
// 22-31% more frames per second than one, because those stages take only
// 5-25% of a core each and run while inference waits at its
// synchronisation points. On TensorRT or CUDA the count only sizes the
// CPU kernels.
func DefaultThreads() int { return goruntime.NumCPU() }

// DefaultTensorRTOptions returns int8 and fp16 enabled, caches under dir.
func DefaultTensorRTOptions(dir string) TensorRTOptions {
	return TensorRTOptions{FP16: true, INT8: true, CacheDir: dir, DLACore: -1}
}

// ElemType is an ONNX tensor element type name such as "float32" or "uint8".
type ElemType string

// TensorInfo describes a model input or output. Dimensions that are dynamic
// are -1.
type TensorInfo struct {
	Name  string
	Type  ElemType
	Shape []int64
}

// String renders the info as name:type[d0,d1,...] with ? for dynamic dims.
func (t TensorInfo) String() string {
	dims := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		if d < 0 {
			dims[i] = "?"
		} else {
			dims[i] = strconv.FormatInt(d, 10)
		}
	}
	return fmt.Sprintf("%s:%s[%s]", t.Name, t.Type, strings.Join(dims, ","))
}

// Session is one onnxruntime inference session on one model. A Session is
// not safe for concurrent Run calls on the same Binding; different Bindings
// of one Session may run concurrently.
type Session struct {
	path     string
	sess     *ort.DynamicAdvancedSession
	Inputs   []TensorInfo
	Outputs  []TensorInfo
	Metadata map[string]string
	// Provider is the execution provider actually in use.
	Provider string
	// Threads is the intra-op thread count in use.
	Threads int
	log     *slog.Logger
}

// Path returns the model file path.
func (s *Session) Path() string { return s.path }

// providerChain returns the providers to try for a requested provider.
func providerChain(p string) ([][]string, error) {
	switch p {
	case "", ProviderAuto:
		return [][]string{{ProviderTensorRT, ProviderCUDA}, {ProviderCUDA}, {ProviderCPU}}, nil
	case ProviderTensorRT:
		return [][]string{{ProviderTensorRT, ProviderCUDA}}, nil
	case ProviderCUDA:
		return [][]string{{ProviderCUDA}}, nil
	case ProviderCPU:
		return [][]string{{ProviderCPU}}, nil
	}
	return nil, fmt.Errorf("unknown provider %q (want one of %s)", p, strings.Join(Providers, ", "))
}

// NewSession loads the model at path with the requested provider. Init must
// have been called. With provider auto, TensorRT then CUDA then CPU are tried
// and the one in use is logged and stored in Session.Provider; an explicit
// provider that cannot be used is an error wrapping ErrProviderUnavailable.
func NewSession(path string, opts Options) (*Session, error) {
	if !ort.IsInitialized() {
		return nil, errors.New("onnxruntime is not initialized (call runtime.Init first)")
	}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("model file %q: no such file", path)
		}
		return nil, fmt.Errorf("model file %q: %w", path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("model file %q is a directory", path)
	}
	return newSession(path, nil, opts)
}

// NewSessionFromBytes loads a serialized model held in memory; name is used
// in messages. It is how the quantizer runs models it has just built.
func NewSessionFromBytes(data []byte, name string, opts Options) (*Session, error) {
	if !ort.IsInitialized() {
		return nil, errors.New("onnxruntime is not initialized (call runtime.Init first)")
	}
	return newSession(name, data, opts)
}

func newSession(path string, data []byte, opts Options) (*Session, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	chain, err := providerChain(opts.Provider)
	if err != nil {
		return nil, err
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = DefaultThreads()
	}
	var ins, outs []ort.InputOutputInfo
	if data != nil {
		ins, outs, err = ort.GetInputOutputInfoWithONNXData(data)
	} else {
		ins, outs, err = ort.GetInputOutputInfo(path)
	}
	if err != nil {
		return nil, fmt.Errorf("model %q cannot be loaded by onnxruntime: %w", path, err)
	}
	s := &Session{path: path, Threads: threads, log: log}
	for _, i := range ins {
		s.Inputs = append(s.Inputs, infoFrom(i))
	}
	for _, o := range outs {
		s.Outputs = append(s.Outputs, infoFrom(o))
	}
	names := func(t []TensorInfo) []string {
		n := make([]string, len(t))
		for i := range t {
			n[i] = t[i].Name
		}
		return n
	}
	if opts.TensorRT.CacheDir != "" && opts.TensorRT.ModelKey == "" && chain[0][0] == ProviderTensorRT {
		key, err := modelKey(path, data)
		if err != nil {
			return nil, fmt.Errorf("model %q: %w", path, err)
		}
		opts.TensorRT.ModelKey = key
	}
	var failures []string
	for _, providers := range chain {
		so, err := newSessionOptions(providers, threads, opts)
		if err == nil {
			if data != nil {
				s.sess, err = ort.NewDynamicAdvancedSessionWithONNXData(data, names(s.Inputs), names(s.Outputs), so)
			} else {
				s.sess, err = ort.NewDynamicAdvancedSession(path, names(s.Inputs), names(s.Outputs), so)
			}
			release(so)
		}
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", providers[0], err))
			if opts.Provider != "" && opts.Provider != ProviderAuto {
				return nil, fmt.Errorf("provider %s for model %q: %w: %v", providers[0], path, ErrProviderUnavailable, err)
			}
			if providers[0] == ProviderCPU {
				return nil, fmt.Errorf("creating onnxruntime session for %q: %v", path, err)
			}
			log.Info("execution provider not available, trying the next", "provider", providers[0], "reason", shortReason(err))
			log.Debug("execution provider error", "provider", providers[0], "err", err)
			continue
		}
		s.Provider = providers[0]
		break
	}
	if s.sess == nil {
		return nil, fmt.Errorf("no execution provider could run %q: %s", path, strings.Join(failures, "; "))
	}
	s.Metadata = readMetadata(s.sess)
	if !opts.Quiet {
		log.Info("model loaded", "model", path, "provider", s.Provider, "threads", threads,
			"inputs", fmt.Sprint(s.Inputs), "outputs", fmt.Sprint(s.Outputs))
	}
	return s, nil
}

// Output is one float32 output of RunFloat, valid only inside the callback.
type Output struct {
	Name  string
	Shape []int64
	Data  []float32
}

// modelKey is the first 16 hex digits of the model's SHA-256 (of data, or
// else of the file at path).
func modelKey(path string, data []byte) (string, error) {
	h := sha256.New()
	if data != nil {
		h.Write(data)
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// release destroys an onnxruntime object. onnxruntime_go's Destroy methods
// free C memory and fail only for an object that was never initialised or
// is already destroyed, which this package never passes: an error is a bug
// here, logged rather than returned to callers that could not act on it.
func release(v interface{ Destroy() error }) {
	if err := v.Destroy(); err != nil {
		slog.Error("runtime: releasing an onnxruntime object", "type", fmt.Sprintf("%T", v), "err", err)
	}
}

// RunFloat runs the model on one float32 input of the given shape and calls
// fn once with every float32 output, held in onnxruntime-allocated memory
// that is released when fn returns (fn must not keep the slices).
func (s *Session) RunFloat(ctx context.Context, shape []int64, input []float32, fn func(outs []Output) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	in, err := ort.NewTensor(ort.NewShape(shape...), input)
	if err != nil {
		return fmt.Errorf("input tensor %v: %w", shape, err)
	}
	defer release(in)
	vals := make([]ort.Value, len(s.Outputs))
	if err := s.sess.Run([]ort.Value{in}, vals); err != nil {
		return fmt.Errorf("inference on %q: %w", s.path, err)
	}
	defer func() {
		for _, v := range vals {
			if v != nil {
				release(v)
			}
		}
	}()
	outs := make([]Output, 0, len(vals))
	for i, v := range vals {
		if t, ok := v.(*ort.Tensor[float32]); ok {
			outs = append(outs, Output{Name: s.Outputs[i].Name, Shape: t.GetShape(), Data: t.GetData()})
		}
	}
	return fn(outs)
}

var missingLib = regexp.MustCompile(`Failed to load library (\S+)`)

// shortReason condenses onnxruntime's provider errors for logs.
func shortReason(err error) string {
	s := err.Error()
	if m := missingLib.FindStringSubmatch(s); m != nil {
		return "provider library not loadable: " + filepath.Base(m[1]) + " (this onnxruntime build has no GPU providers)"
	}
	return firstLine(s)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func newSessionOptions(providers []string, threads int, opts Options) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*ort.SessionOptions, error) {
		release(so)
		return nil, err
	}
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return fail(err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return fail(err)
	}
	if opts.NoSpin {
		if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
			return fail(err)
		}
	}
	if opts.NoMemPattern {
		if err := so.SetMemPattern(false); err != nil {
			return fail(err)
		}
	}
	if opts.DisableOptimizations {
		if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
			return fail(err)
		}
	}
	if opts.OptimizedModelPath != "" {
		if err := so.SetOptimizedModelFilePath(opts.OptimizedModelPath); err != nil {
			return fail(err)
		}
	}
	for _, p := range providers {
		switch p {
		case ProviderTensorRT:
			if err := appendTensorRT(so, opts); err != nil {
				return fail(fmt.Errorf("tensorrt: %w", err))
			}
		case ProviderCUDA:
			if err := appendCUDA(so, opts); err != nil {
				return fail(fmt.Errorf("cuda: %w", err))
			}
		}
	}
	return so, nil
}

// TensorRTProviderOptions returns the onnxruntime TensorRT EP option keys
// yedge sets for opts. Exposed so that the keys can be tested and documented
// without a GPU.
func TensorRTProviderOptions(opts Options) map[string]string {
	t := opts.TensorRT
	m := map[string]string{
		"device_id":       strconv.Itoa(opts.DeviceID),
		"trt_fp16_enable": boolStr(t.FP16),
		"trt_int8_enable": boolStr(t.INT8),
	}
	if t.CacheDir != "" {
		m["trt_engine_cache_enable"] = "1"
		m["trt_engine_cache_path"] = filepath.Join(t.CacheDir, "engines", t.ModelKey)
		m["trt_timing_cache_enable"] = "1"
		m["trt_timing_cache_path"] = filepath.Join(t.CacheDir, "timing")
	}
	if t.DLACore >= 0 {
		m["trt_dla_enable"] = "1"
		m["trt_dla_core"] = strconv.Itoa(t.DLACore)
	}
	if t.WorkspaceBytes > 0 {
		m["trt_max_workspace_size"] = strconv.FormatInt(t.WorkspaceBytes, 10)
	}
	return m
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func appendTensorRT(so *ort.SessionOptions, opts Options) error {
	if dir := opts.TensorRT.CacheDir; dir != "" {
		for _, sub := range []string{filepath.Join("engines", opts.TensorRT.ModelKey), "timing"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
				return fmt.Errorf("TensorRT cache folder: %w", err)
			}
		}
	}
	to, err := ort.NewTensorRTProviderOptions()
	if err != nil {
		return err
	}
	defer release(to)
	if err := to.Update(TensorRTProviderOptions(opts)); err != nil {
		return err
	}
	return so.AppendExecutionProviderTensorRT(to)
}

func appendCUDA(so *ort.SessionOptions, opts Options) error {
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer release(co)
	if err := co.Update(map[string]string{"device_id": strconv.Itoa(opts.DeviceID)}); err != nil {
		return err
	}
	return so.AppendExecutionProviderCUDA(co)
}

func readMetadata(s *ort.DynamicAdvancedSession) map[string]string {
	out := map[string]string{}
	md, err := s.GetModelMetadata()
	if err != nil {
		return out
	}
	defer release(md)
	keys, err := md.GetCustomMetadataMapKeys()
	if err != nil {
		return out
	}
	for _, k := range keys {
		if v, ok, err := md.LookupCustomMetadataMap(k); err == nil && ok {
			out[k] = v
		}
	}
	return out
}

func infoFrom(i ort.InputOutputInfo) TensorInfo {
	return TensorInfo{Name: i.Name, Type: elemType(i.DataType), Shape: append([]int64(nil), i.Dimensions...)}
}

func elemType(t ort.TensorElementDataType) ElemType {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return "float32"
	case ort.TensorElementDataTypeFloat16:
		return "float16"
	case ort.TensorElementDataTypeUint8:
		return "uint8"
	case ort.TensorElementDataTypeInt8:
		return "int8"
	case ort.TensorElementDataTypeInt32:
		return "int32"
	case ort.TensorElementDataTypeInt64:
		return "int64"
	case ort.TensorElementDataTypeDouble:
		return "float64"
	}
	return ElemType(strings.ToLower(t.String()))
}

// Close releases the session.
func (s *Session) Close() error {
	if s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	return err
}

// Binding is a set of preallocated float32 tensors, one input and one or
// more outputs, for repeated runs at one input shape without allocation.
// Their memory is outside the Go heap (see allocFloats) and released by
// Close.
type Binding struct {
	s      *Session
	in     *ort.Tensor[float32]
	out    []*ort.Tensor[float32]
	outIdx []int
	bound  []bool // by output index
	ins    []ort.Value
	outs   []ort.Value
	data   [][]float32
	shapes [][]int64
	mem    [][]byte // the tensors' mappings, freed by Close
}

// tensor allocates a float32 tensor of shape whose memory the Binding
// owns.
func (b *Binding) tensor(shape ort.Shape) (*ort.Tensor[float32], error) {
	if err := shape.Validate(); err != nil {
		return nil, err
	}
	data, mem, err := allocFloats(int(shape.FlattenedSize()))
	if err != nil {
		return nil, err
	}
	t, err := ort.NewTensor(shape, data)
	if err != nil {
		freeFloats(mem)
		return nil, err
	}
	b.mem = append(b.mem, mem)
	return t, nil
}

// Bind allocates an input tensor of inputShape for input 0 and an output
// tensor for output outputIndex; the output shape is learnt by one run. Only
// float32 input and output are supported.
func (s *Session) Bind(inputShape []int64, outputIndex int) (*Binding, error) {
	return s.BindOutputs(inputShape, []int{outputIndex})
}

// BindOutputs is Bind for several outputs: it allocates an input tensor of
// inputShape for input 0 and one tensor for each output in outputIndexes
// (distinct, float32), whose shapes are learnt by one run. Outputs() and
// OutputShapes() follow the order of outputIndexes.
func (s *Session) BindOutputs(inputShape []int64, outputIndexes []int) (*Binding, error) {
	if len(s.Inputs) != 1 {
		return nil, fmt.Errorf("model %q has %d inputs; yedge needs exactly one image input", s.path, len(s.Inputs))
	}
	if s.Inputs[0].Type != "float32" {
		return nil, fmt.Errorf("model %q: input %s must be float32", s.path, s.Inputs[0])
	}
	if len(outputIndexes) == 0 {
		return nil, fmt.Errorf("model %q: no output to bind", s.path)
	}
	bound := make([]bool, len(s.Outputs))
	for _, i := range outputIndexes {
		if i < 0 || i >= len(s.Outputs) {
			return nil, fmt.Errorf("model %q has no output %d", s.path, i)
		}
		if bound[i] {
			return nil, fmt.Errorf("model %q: output %d bound twice", s.path, i)
		}
		if s.Outputs[i].Type != "float32" {
			return nil, fmt.Errorf("model %q: output %s must be float32", s.path, s.Outputs[i])
		}
		bound[i] = true
	}
	b := &Binding{s: s, outIdx: slices.Clone(outputIndexes), bound: bound}
	in, err := b.tensor(ort.NewShape(inputShape...))
	if err != nil {
		return nil, fmt.Errorf("allocating input %v: %w", inputShape, err)
	}
	b.in = in
	b.ins = []ort.Value{in}
	b.outs = make([]ort.Value, len(s.Outputs))
	// First run lets onnxruntime allocate outputs so that we learn the shapes.
	if err := s.sess.Run(b.ins, b.outs); err != nil {
		b.Close()
		return nil, fmt.Errorf("running %q at input shape %v: %w", s.path, inputShape, err)
	}
	shapes := make([]ort.Shape, len(outputIndexes))
	for k, i := range outputIndexes {
		shapes[k] = b.outs[i].GetShape().Clone()
	}
	for i, v := range b.outs {
		if v != nil {
			release(v)
		}
		b.outs[i] = nil
	}
	for k, i := range outputIndexes {
		out, err := b.tensor(shapes[k])
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("allocating output %s %v: %w", s.Outputs[i].Name, shapes[k], err)
		}
		b.out = append(b.out, out)
		b.outs[i] = out
		b.data = append(b.data, out.GetData())
		b.shapes = append(b.shapes, []int64(out.GetShape()))
	}
	return b, nil
}

// Input returns the input buffer to fill (NCHW float32).
func (b *Binding) Input() []float32 { return b.in.GetData() }

// Output returns the first bound output's buffer of the last Run.
func (b *Binding) Output() []float32 { return b.data[0] }

// OutputShape returns the first bound output's shape.
func (b *Binding) OutputShape() []int64 { return b.shapes[0] }

// Outputs returns the bound outputs' buffers of the last Run, in the order
// they were bound. The slices are the Binding's own, reused by every Run.
func (b *Binding) Outputs() [][]float32 { return b.data }

// OutputShapes returns the bound outputs' shapes, in the order they were
// bound.
func (b *Binding) OutputShapes() [][]int64 { return b.shapes }

// Run runs the model on the input buffer. Outputs that are not bound are
// allocated by onnxruntime and released after the run.
func (b *Binding) Run(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := b.s.sess.Run(b.ins, b.outs)
	for i, v := range b.outs {
		if !b.bound[i] && v != nil {
			release(v)
			b.outs[i] = nil
		}
	}
	if err != nil {
		return fmt.Errorf("inference on %q: %w", b.s.path, err)
	}
	return nil
}

// Close releases the tensors and their memory.
func (b *Binding) Close() {
	if b.in != nil {
		release(b.in)
		b.in = nil
	}
	for _, o := range b.out {
		release(o)
	}
	for _, m := range b.mem {
		freeFloats(m)
	}
	b.out, b.data, b.shapes, b.mem = nil, nil, nil, nil
}
