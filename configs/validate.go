package configs

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/yedge/yedge/quant"
	yrt "github.com/yedge/yedge/runtime"
	"github.com/yedge/yedge/source"
)

// Problem is one error in a configuration: where (file, line, key path)
// and what. [Parse] and [Config.Validate] return problems, several joined
// with [errors.Join]; find them with errors.As or [Problems].
type Problem struct {
	// File is the configuration's name (its path, usually).
	File string
	// Line is the line of the key at fault, or of its nearest enclosing key
	// present in the file; 0 when unknown.
	Line int
	// Path is the key path at fault ("streams[1].fps"); "" for the file as
	// a whole.
	Path string
	// Msg says what is wrong. It never holds credentials.
	Msg string

	bare bool // Msg names the key itself (unknown keys): omit Path
}

// Error renders "FILE:LINE: PATH: MSG" (without LINE when unknown).
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Path != "" && !p.bare {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

func newProblem(file string, line int, path, msg string) *Problem {
	return &Problem{File: file, Line: line, Path: path, Msg: source.Redact(msg)}
}

// Problems returns the problems held by err (one, or several joined), in
// order; nil when err holds none.
func Problems(err error) []*Problem {
	var out []*Problem
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if p, ok := e.(*Problem); ok {
			out = append(out, p)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		walk(errors.Unwrap(e))
	}
	walk(err)
	return out
}

// joinProblems sorts problems by line (unknown lines last) and joins them;
// nil when there are none.
func joinProblems(ps []*Problem) error {
	if len(ps) == 0 {
		return nil
	}
	sort.SliceStable(ps, func(i, j int) bool {
		li, lj := ps[i].Line, ps[j].Line
		if li == 0 || lj == 0 {
			return lj == 0 && li != 0
		}
		return li < lj
	})
	if len(ps) == 1 {
		return ps[0]
	}
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// lineOf returns the line of path, or of its nearest ancestor in the file.
func (c *Config) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := c.lines[p]; ok {
			return l
		}
	}
	return 0
}

// parentPath strips the last ".key" or "[i]" of a key path.
func parentPath(p string) string {
	i := max(strings.LastIndex(p, "."), strings.LastIndex(p, "["))
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Line returns the line of a key path ("streams[1].uri") in the file the
// configuration was parsed from, or of its nearest enclosing key present;
// 0 when unknown (for instance for a Config built in code).
func (c *Config) Line(path string) int { return c.lineOf(path) }

type validator struct {
	c  *Config
	ps []*Problem
}

func (v *validator) add(path, format string, args ...any) {
	file := v.c.Path
	if file == "" {
		file = "config"
	}
	v.ps = append(v.ps, newProblem(file, v.c.lineOf(path), path, fmt.Sprintf(format, args...)))
}

var (
	streamNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)
	logLevels    = []string{"debug", "info", "warn", "error"}
)

// Validate checks the configuration's values and the files it names: the
// models, calibration images, names file, dataset, token file and the
// folders of the sinks must exist, stream URIs must be valid sources
// (source.Parse: a missing file or an unknown scheme is an error), numbers
// must be in range. It returns every problem found, joined, each a
// [*Problem] naming the key path and its line
// ("yedge.yaml:14: streams[1].fps: must be >= 0, got -5"); nil when all is
// well. Messages never print credentials.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.top()
	v.device()
	v.model()
	v.provider()
	v.thresholds()
	v.streams()
	v.shadow()
	v.eval()
	v.sinks()
	v.http()
	return joinProblems(v.ps)
}

func (v *validator) top() {
	c := v.c
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		v.add("listen", "want HOST:PORT such as %s or :9464, got %q", DefaultListen, c.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add("listen", "port %q of %q is not a number from 0 to 65535", port, c.Listen)
	}
	if !slices.Contains(logLevels, strings.ToLower(c.LogLevel)) {
		v.add("log_level", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		v.add("log_format", "want text or json, got %q", c.LogFormat)
	}
	if lib := c.ONNXRuntime.Library; strings.Contains(lib, "/") {
		v.file("onnxruntime.library", lib)
	}
	if c.ShutdownTimeout <= 0 {
		v.add("shutdown_timeout", "must be > 0, got %s", c.ShutdownTimeout)
	}
}

// file checks that path is an existing regular file.
func (v *validator) file(key, path string) bool {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		v.add(key, "file %q does not exist", path)
	case err != nil:
		v.add(key, "%q: %v", path, pathErr(err))
	case st.IsDir():
		v.add(key, "%q is a folder, want a file", path)
	default:
		return true
	}
	return false
}

// dir checks that path is an existing folder.
func (v *validator) dir(key, path string) bool {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		v.add(key, "folder %q does not exist", path)
	case err != nil:
		v.add(key, "%q: %v", path, pathErr(err))
	case !st.IsDir():
		v.add(key, "%q is a file, want a folder", path)
	default:
		return true
	}
	return false
}

// notFile checks that path, if it exists, is a folder.
func (v *validator) notFile(key, path string) {
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		v.add(key, "%q is a file, want a folder", path)
	}
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (v *validator) model() {
	m := &v.c.Model
	if m.FP32 == "" {
		v.add("model.fp32", "required: the FP32 ONNX model (the shadow, and the source of quantization)")
	} else {
		v.file("model.fp32", m.FP32)
	}
	switch {
	case m.INT8 == "" && m.Quantize == nil:
		v.add("model.int8", "model.int8 or model.quantize is required: a Q/DQ int8 model, or quantization at start-up")
	case m.INT8 != "" && m.Quantize != nil:
		v.add("model.quantize", "model.int8 and model.quantize are exclusive: give a Q/DQ model, or quantize at start-up")
	}
	if m.INT8 != "" && v.file("model.int8", m.INT8) && m.INT8 == m.FP32 {
		v.add("model.int8", "is the same file as model.fp32 (%q)", m.FP32)
	}
	if q := m.Quantize; q != nil {
		if q.Calib == "" {
			v.add("model.quantize.calib", "required: the folder of calibration images")
		} else {
			v.dir("model.quantize.calib", q.Calib)
		}
		if q.Images < 1 {
			v.add("model.quantize.images", "must be >= 1, got %d", q.Images)
		}
		if _, err := quant.ParseTarget(q.Target); err != nil {
			v.add("model.quantize.target", "%v", err)
		}
		if _, err := quant.ParseCalibMethod(q.Method); err != nil {
			v.add("model.quantize.method", "%v", err)
		}
		if q.Exclude != "" {
			if _, err := regexp.Compile(q.Exclude); err != nil {
				v.add("model.quantize.exclude", "not a regular expression: %v", err)
			}
		}
		if q.CacheDir == "" {
			v.add("model.quantize.cache_dir", "required when model.quantize is set: the folder of the calibration cache and the produced int8 model")
		} else {
			v.notFile("model.quantize.cache_dir", q.CacheDir)
		}
	}
	if m.ImgSize != "" {
		if err := checkImgSize(m.ImgSize); err != nil {
			v.add("model.imgsz", "%v", err)
		}
	}
	if m.Names != "" {
		v.file("model.names", m.Names)
	}
	if m.Batch < 1 {
		v.add("model.batch", "must be >= 1 (1 disables batching), got %d", m.Batch)
	}
}

// checkImgSize checks "640" or "320x640" (height x width).
func checkImgSize(s string) error {
	parts := strings.Split(strings.ToLower(s), "x")
	if len(parts) > 2 {
		return fmt.Errorf("want N or HEIGHTxWIDTH such as 640 or 384x640, got %q", s)
	}
	for _, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 {
			return fmt.Errorf("want N or HEIGHTxWIDTH such as 640 or 384x640, got %q", s)
		}
		if n%32 != 0 {
			return fmt.Errorf("%q: sizes must be multiples of 32 (the YOLOv5 stride)", s)
		}
	}
	return nil
}

func (v *validator) provider() {
	p := &v.c.Provider
	if !slices.Contains(yrt.Providers, p.Name) {
		v.add("provider.name", "want one of %s, got %q", strings.Join(yrt.Providers, ", "), p.Name)
	}
	if p.Threads < 0 {
		v.add("provider.threads", "must be >= 0 (0: all cores), got %d", p.Threads)
	}
	if p.DeviceID < 0 {
		v.add("provider.device_id", "must be >= 0, got %d", p.DeviceID)
	}
	t := &p.TensorRT
	if t.DLACore != nil && *t.DLACore < 0 {
		v.add("provider.tensorrt.dla_core", "must be >= 0 (leave it out for no DLA), got %d", *t.DLACore)
	}
	if t.WorkspaceMB < 0 {
		v.add("provider.tensorrt.workspace_mb", "must be >= 0 (0: the TensorRT default), got %d", t.WorkspaceMB)
	}
	if t.CacheDir != "" {
		v.notFile("provider.tensorrt.cache_dir", t.CacheDir)
	}
}

// unit reports whether x is in [0, 1].
func unit(x float64) bool { return x >= 0 && x <= 1 }

func (v *validator) thresholds() {
	t := &v.c.Thresholds
	if !unit(t.Conf) {
		v.add("thresholds.conf", "must be in [0, 1], got %v", t.Conf)
	}
	if !unit(t.IoU) {
		v.add("thresholds.iou", "must be in [0, 1], got %v", t.IoU)
	}
	if t.MaxDet < 1 {
		v.add("thresholds.max_det", "must be >= 1, got %d", t.MaxDet)
	}
}

func (v *validator) streams() {
	if len(v.c.Streams) == 0 {
		v.add("streams", "at least one stream is required (name and uri)")
		return
	}
	names := map[string]int{}
	for i := range v.c.Streams {
		s := &v.c.Streams[i]
		p := fmt.Sprintf("streams[%d]", i)
		switch {
		case s.Name == "":
			v.add(p+".name", "required: a unique name ([A-Za-z0-9_.-], up to 64 characters)")
		case !streamNameRE.MatchString(s.Name):
			v.add(p+".name", "%s: want up to 64 letters, digits, '_', '.' or '-' (it is a metrics label)", quoteValue(s.Name))
		default:
			if j, dup := names[s.Name]; dup {
				v.add(p+".name", "duplicate stream name %q (also streams[%d])", s.Name, j)
			} else {
				names[s.Name] = i
			}
		}
		v.uri(p+".uri", s.URI)
		if math.IsNaN(s.FPS) || math.IsInf(s.FPS, 0) || s.FPS < 0 {
			v.add(p+".fps", "must be >= 0, got %v (0: no cap)", s.FPS)
		}
		r := &s.Reconnect
		if r.MinBackoff <= 0 {
			v.add(p+".reconnect.min_backoff", "must be > 0, got %s", r.MinBackoff)
		}
		if r.MaxBackoff < r.MinBackoff {
			v.add(p+".reconnect.max_backoff", "must be >= min_backoff (%s), got %s", r.MinBackoff, r.MaxBackoff)
		}
		if r.MaxRetries < 0 {
			v.add(p+".reconnect.max_retries", "must be >= 0 (0: unlimited), got %d", r.MaxRetries)
		}
		if s.ReadTimeout < 0 {
			v.add(p+".read_timeout", "must be >= 0, got %s", s.ReadTimeout)
		}
	}
}

// uri checks a stream URI with source.Parse (or as camera:N).
func (v *validator) uri(key, uri string) {
	if strings.TrimSpace(uri) == "" {
		v.add(key, "required: a video file, camera index, camera:N, /dev/videoN, rtsp/http/rtmp/... URL or GStreamer pipeline")
		return
	}
	if _, ok, err := cameraIndex(uri); ok {
		if err != nil {
			v.add(key, "%v", err)
		}
		return
	}
	if _, err := source.Parse(uri); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "unsupported URL scheme") {
			msg += " (want rtsp, rtsps, http, https, rtmp, rtmps, udp, tcp, srt or file)"
		}
		v.add(key, "%s", msg)
	}
}

func (v *validator) shadow() {
	s := &v.c.Shadow
	if s.EveryN < 1 {
		v.add("shadow.every_n", "must be >= 1, got %d", s.EveryN)
	}
	if !(s.Budget >= 0 && s.Budget < 1) {
		v.add("shadow.budget", "must be in [0, 1) (a fraction of compute time; 0: every_n only), got %v", s.Budget)
	}
	if !(s.IoU > 0 && s.IoU <= 1) {
		v.add("shadow.iou", "must be in (0, 1], got %v", s.IoU)
	}
	if s.Window < 1 {
		v.add("shadow.window", "must be >= 1, got %d", s.Window)
	}
}

func (v *validator) eval() {
	e := &v.c.Eval
	if e.Data != "" {
		if v.dir("eval.data", e.Data) {
			if st, err := os.Stat(filepath.Join(e.Data, "images")); err != nil || !st.IsDir() {
				v.add("eval.data", "%q is not a YOLO dataset: it has no images/ folder", e.Data)
			}
		}
	} else if e.OnStart != nil && *e.OnStart && v.c.has("eval.on_start") {
		v.add("eval.on_start", "needs eval.data (a YOLO dataset folder)")
	}
	if e.Images < 0 {
		v.add("eval.images", "must be >= 0 (0: all), got %d", e.Images)
	}
}

func (v *validator) sinks() {
	paths := map[string]int{}
	stdout := -1
	for i := range v.c.Sinks {
		s := &v.c.Sinks[i]
		p := fmt.Sprintf("sinks[%d]", i)
		switch s.Type {
		case "jsonl":
			if s.Path == "" {
				v.add(p+".path", "required for a jsonl sink: the JSON-lines file")
				break
			}
			if st, err := os.Stat(s.Path); err == nil && st.IsDir() {
				v.add(p+".path", "%q is a folder, want a file", s.Path)
			} else if dir := filepath.Dir(s.Path); !isDir(dir) {
				v.add(p+".path", "the folder %q of %q does not exist", dir, s.Path)
			}
			if j, dup := paths[filepath.Clean(s.Path)]; dup {
				v.add(p+".path", "sinks[%d] writes %q too", j, s.Path)
			} else {
				paths[filepath.Clean(s.Path)] = i
			}
		case "stdout":
			if s.Path != "" {
				v.add(p+".path", "only jsonl sinks take a path")
			}
			if stdout >= 0 {
				v.add(p+".type", "sinks[%d] is a stdout sink already", stdout)
			} else {
				stdout = i
			}
		case "":
			v.add(p+".type", "required: jsonl or stdout")
		default:
			v.add(p+".type", "want jsonl or stdout, got %q", s.Type)
		}
		if s.MaxSizeMB < 1 {
			v.add(p+".max_size_mb", "must be >= 1, got %d", s.MaxSizeMB)
		}
		if s.MaxFiles < 1 {
			v.add(p+".max_files", "must be >= 1, got %d", s.MaxFiles)
		}
		if s.FlushInterval <= 0 {
			v.add(p+".flush_interval", "must be > 0, got %s", s.FlushInterval)
		}
	}
}

func (v *validator) http() {
	h := &v.c.HTTP
	if h.MaxBodyBytes < 1 {
		v.add("http.max_body_bytes", "must be >= 1, got %d", h.MaxBodyBytes)
	}
	if h.ReadTimeout <= 0 {
		v.add("http.read_timeout", "must be > 0, got %s", h.ReadTimeout)
	}
	if h.WriteTimeout <= 0 {
		v.add("http.write_timeout", "must be > 0, got %s", h.WriteTimeout)
	}
	if h.TokenFile != "" && v.file("http.token_file", h.TokenFile) {
		v.token(h.TokenFile)
	}
}

// token checks that the token file is a readable regular file holding a
// token (it is not printed).
func (v *validator) token(path string) {
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		v.add("http.token_file", "%q is not a regular file", path)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		v.add("http.token_file", "%q: %v", path, pathErr(err))
		return
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	switch {
	case err != nil:
		v.add("http.token_file", "%q: %v", path, pathErr(err))
	case strings.TrimSpace(string(b)) == "":
		v.add("http.token_file", "%q is empty", path)
	}
}
