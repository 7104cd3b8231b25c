package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/yedge/yedge/internal/fsx"
	"github.com/yedge/yedge/onnxrt"
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
	v.streams()
	v.eval()
	v.sinks()
	v.http()
	v.numbers()
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
		v.parsed("model.quantize.target")
		v.parsed("model.quantize.method")
		v.parsed("model.quantize.exclude")
		if q.CacheDir == "" {
			v.add("model.quantize.cache_dir", "required when model.quantize is set: the folder of the calibration cache and the produced int8 model")
		} else {
			v.notFile("model.quantize.cache_dir", q.CacheDir)
			v.outsideState("model.quantize.cache_dir", q.CacheDir)
		}
	}
	v.parsed("model.imgsz")
	v.parsed("model.interp")
	if m.Names != "" {
		v.file("model.names", m.Names)
	}
}

func (v *validator) provider() {
	p := &v.c.Provider
	if !slices.Contains(onnxrt.Providers, p.Name) {
		v.add("provider.name", "want one of %s, got %q", strings.Join(onnxrt.Providers, ", "), p.Name)
	}
	t := &p.TensorRT
	if t.CacheDir != "" {
		v.notFile("provider.tensorrt.cache_dir", t.CacheDir)
		v.outsideState("provider.tensorrt.cache_dir", t.CacheDir)
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
		r := &s.Reconnect
		// The range of max_backoff is checked with the others (numbers).
		if r.MaxBackoff < r.MinBackoff && rangeOf("streams[].reconnect.max_backoff").contains(r.MaxBackoff.Std().Seconds()) {
			v.add(p+".reconnect.max_backoff", "must be >= min_backoff (%s), got %s", r.MinBackoff, r.MaxBackoff)
		}
	}
}

// parsed reports the parse error of a string key (parseValues), if any.
func (v *validator) parsed(key string) {
	if err := v.c.parsed.errs[key]; err != nil {
		v.add(key, "%v", err)
	}
}

// uri reports a stream URI that is empty, or that source.Parse refused
// when the file was read (parseValues).
func (v *validator) uri(key, uri string) {
	if strings.TrimSpace(uri) == "" {
		v.add(key, "required: a video file, camera index, camera:N, /dev/videoN, rtsp/http/rtmp/... URL or GStreamer pipeline")
		return
	}
	if err := v.c.parsed.errs[key]; err != nil {
		msg := err.Error()
		if strings.Contains(msg, "unsupported URL scheme") {
			msg += " (want rtsp, rtsps, http, https, rtmp, rtmps, udp, tcp, srt or file)"
		}
		v.add(key, "%s", msg)
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
}

// outsideState refuses a folder the daemon writes into (a cache) inside
// state_dir, the model store's folder, which only the store writes.
func (v *validator) outsideState(key, dir string) {
	if sd := v.c.StateDir; sd != "" && fsx.Within(dir, sd) {
		v.add(key, "%q is inside state_dir %q (the model store's folder): use another folder", dir, sd)
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
			// The model store's folder is the daemon's alone: a sink there
			// would overwrite its index or a model.
			if sd := v.c.StateDir; sd != "" && fsx.Within(s.Path, sd) {
				v.add(p+".path", "%q is inside state_dir %q (the model store's folder): write detections elsewhere", s.Path, sd)
			}
			// A sink rotates and truncates its file: never one the daemon reads.
			for _, in := range v.c.inputs() {
				if fsx.SameFile(s.Path, in.path) {
					v.add(p+".path", "%q is %s, an input the sink would overwrite", s.Path, in.key)
				}
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
	}
}

// input is a file the daemon reads, by its key.
type input struct{ key, path string }

// inputs lists the files the configuration names as inputs.
func (c *Config) inputs() []input {
	list := []input{{"model.fp32", c.Model.FP32}, {"model.int8", c.Model.INT8}, {"model.names", c.Model.Names},
		{"http.token_file", c.HTTP.TokenFile}, {"onnxruntime.library", c.ONNXRuntime.Library}}
	for i, s := range c.Streams {
		list = append(list, input{fmt.Sprintf("streams[%d].uri", i), s.URI})
	}
	return slices.DeleteFunc(list, func(in input) bool { return in.path == "" })
}

func (v *validator) http() {
	h := &v.c.HTTP
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
