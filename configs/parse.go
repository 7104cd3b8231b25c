package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/yedge/yedge/source"
)

// Defaults that are not plain numbers in the schema's comments.
const (
	// DefaultListen is the default HTTP address (listen).
	DefaultListen = "127.0.0.1:9464"
	// DefaultShutdownTimeout is the default shutdown_timeout.
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultStreamTimeout is the default read_timeout of live sources.
	DefaultStreamTimeout = 10 * time.Second
	// DefaultMaxBatch caps the default model.batch (the number of streams).
	DefaultMaxBatch = 8
)

// Load reads the configuration file at path, parses it ([Parse]: strict,
// with defaults), resolves its relative paths against the file's directory,
// and validates it ([Config.Validate]).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	base := filepath.Dir(path)
	if abs, err := filepath.Abs(path); err == nil {
		base = filepath.Dir(abs)
	}
	c, err := parse(data, path, base)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// Parse decodes a configuration strictly and applies the defaults. name
// (usually the file's path) prefixes error messages, becomes Config.Path,
// and its directory is the base of relative paths in the file. Unknown
// keys, duplicate keys, values of the wrong type, an empty document, several
// documents, or a top level that is not a mapping are errors naming the
// line and the key. Parse checks no file (stream URIs are classified, as
// live or not, for the read_timeout default); [Config.Validate] does.
func Parse(data []byte, name string) (*Config, error) {
	return parse(data, name, filepath.Dir(name))
}

func parse(data []byte, name, base string) (c *Config, err error) {
	file := name
	if file == "" {
		file = "config"
	}
	root, err := parseNode(data, file)
	if err != nil {
		return nil, err
	}
	w := &walker{file: file, lines: map[string]int{}}
	w.walk(root, reflect.TypeOf(Config{}), "", 0)
	if len(w.problems) > 0 {
		return nil, joinProblems(w.problems)
	}
	// Strict decoding proper (a backstop to the walk: the same checks,
	// by yaml itself).
	c = &Config{}
	if err := safeYAML(func() error {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		return dec.Decode(c)
	}); err != nil {
		return nil, w.rewrite(err)
	}
	c.Path = name
	c.lines = w.lines
	c.resolvePaths(base)
	c.applyDefaults()
	return c, nil
}

// safeYAML runs f, turning a panic of the yaml package into an error.
func safeYAML(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal error: %v", r)
		}
	}()
	return f()
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseNode decodes data into a node tree and returns its top-level mapping.
func parseNode(data []byte, file string) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := safeYAML(func() error { return dec.Decode(&doc) })
	if errors.Is(err, io.EOF) {
		return nil, &Problem{File: file, Msg: "empty configuration (want a YAML mapping of keys such as model and streams)"}
	}
	if err != nil {
		return nil, syntaxProblem(file, data, err)
	}
	var next yaml.Node
	switch err := safeYAML(func() error { return dec.Decode(&next) }); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxProblem(file, data, err)
	default:
		return nil, &Problem{File: file, Line: next.Line, Msg: "several YAML documents (\"---\"): want one"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, &Problem{File: file, Msg: "empty configuration"}
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, &Problem{File: file, Line: root.Line, Msg: "empty configuration (want a YAML mapping of keys such as model and streams)"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Problem{File: file, Line: root.Line, Msg: fmt.Sprintf("the top level must be a mapping of keys (listen, model, streams, ...), got a %s", kindName(root))}
	}
	return root, nil
}

// syntaxProblem rewrites a YAML syntax error ("yaml: line 3: ...").
func syntaxProblem(file string, data []byte, err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		text := "invalid YAML: " + m[2]
		if strings.Contains(m[2], "cannot start any token") && lineStartsWithTab(data, line) {
			text += " (tabs are not allowed for indentation)"
		}
		return &Problem{File: file, Line: line, Msg: text}
	}
	return &Problem{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

func lineStartsWithTab(data []byte, line int) bool {
	lines := bytes.Split(data, []byte("\n"))
	for _, l := range []int{line - 1, line} { // yaml counts from 1, sometimes one off
		if l >= 0 && l < len(lines) && bytes.HasPrefix(bytes.TrimLeft(lines[l], " "), []byte("\t")) {
			return true
		}
	}
	return false
}

// kindName names the kind of a node for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.DocumentNode:
		return "document"
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!bool":
		return "boolean " + n.Value
	case "!!int", "!!float":
		return "number " + n.Value
	}
	return "string " + quoteValue(n.Value)
}

// quoteValue quotes a scalar for a message: redacted, and shortened.
func quoteValue(s string) string {
	s = source.Redact(s)
	if r := []rune(s); len(r) > 60 {
		s = string(r[:57]) + "..."
	}
	return strconv.Quote(s)
}

// walkBudget bounds the nodes visited (aliases can multiply them).
const walkBudget = 200000

var durationType = reflect.TypeOf(Duration(0))

// walker checks a node tree against the Config type: unknown and duplicate
// keys, wrong types; and records the line of every key path.
type walker struct {
	file     string
	lines    map[string]int
	problems []*Problem
	visited  int
}

func (w *walker) add(line int, path, msg string) {
	w.problems = append(w.problems, newProblem(w.file, line, path, msg))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// walk checks n against type t at path; depth bounds alias recursion.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string, depth int) {
	w.visited++
	if w.visited > walkBudget || depth > 100 {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		w.walk(n.Alias, t, path, depth+1)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Map:
		w.stringMap(n, path)
	case t == durationType || t.Kind() != reflect.Struct && t.Kind() != reflect.Slice:
		w.scalar(n, t, path)
	case t.Kind() == reflect.Struct:
		w.mapping(n, t, path, depth)
	default: // slice
		if n.Kind != yaml.SequenceNode {
			w.add(n.Line, path, fmt.Sprintf("want a list, got a %s", kindName(n)))
			return
		}
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if !(item.Kind == yaml.ScalarNode && item.ShortTag() == "!!null") {
				w.lines[p] = item.Line
			}
			w.walk(item, t.Elem(), p, depth)
		}
	}
}

// scalar decodes a scalar node into a fresh value of type t.
func (w *walker) scalar(n *yaml.Node, t reflect.Type, path string) {
	want := map[reflect.Kind]string{
		reflect.String: "a string", reflect.Bool: "true or false",
		reflect.Float32: "a number", reflect.Float64: "a number",
	}[t.Kind()]
	if want == "" {
		want = "an integer"
	}
	if t == durationType {
		want = "a duration such as 500ms or 10s"
	}
	if n.Kind != yaml.ScalarNode {
		w.add(n.Line, path, fmt.Sprintf("want %s, got a %s", want, kindName(n)))
		return
	}
	if want == "an integer" && n.ShortTag() == "!!float" {
		// yaml.v3 would truncate 1.5 to 1.
		w.add(n.Line, path, fmt.Sprintf("want %s, got %s", want, kindName(n)))
		return
	}
	v := reflect.New(t)
	err := safeYAML(func() error { return n.Decode(v.Interface()) })
	if err == nil {
		if f := v.Elem(); (f.Kind() == reflect.Float64 || f.Kind() == reflect.Float32) && (f.Float() != f.Float()) {
			w.add(n.Line, path, "want a number, got NaN")
		}
		return
	}
	var te *yaml.TypeError
	if errors.As(err, &te) || t != durationType {
		w.add(n.Line, path, fmt.Sprintf("want %s, got %s", want, kindName(n)))
		return
	}
	w.add(n.Line, path, err.Error())
}

// fields returns the yaml keys of struct type t, in order, with their types.
func fields(t reflect.Type) ([]string, map[string]reflect.Type) {
	var keys []string
	types := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" || tag == "" {
			continue
		}
		keys = append(keys, tag)
		types[tag] = f.Type
	}
	return keys, types
}

// mapping checks a mapping node against struct type t.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string, depth int) {
	keys, types := fields(t)
	if n.Kind != yaml.MappingNode {
		w.add(n.Line, path, fmt.Sprintf("want a mapping (keys %s), got a %s", strings.Join(keys, ", "), kindName(n)))
		return
	}
	seen := map[string]int{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			w.add(k.Line, path, fmt.Sprintf("keys must be plain names, got a %s", kindName(k)))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		key := k.Value
		if first, dup := seen[key]; dup {
			w.add(k.Line, join(path, key), fmt.Sprintf("duplicate key %q (first at line %d)", key, first))
			continue
		}
		seen[key] = k.Line
		ft, ok := types[key]
		if !ok {
			w.unknown(k, key, keys, path)
			continue
		}
		p := join(path, key)
		if !(v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null") {
			w.lines[p] = k.Line
		}
		w.walk(v, ft, p, depth)
	}
	// Merge keys ("<<: *defaults"): the merged mappings' keys, where the
	// mapping itself does not set them.
	for _, m := range merges {
		var srcs []*yaml.Node
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		} else {
			srcs = []*yaml.Node{m}
		}
		for _, s := range srcs {
			if s.Kind == yaml.AliasNode && s.Alias != nil {
				s = s.Alias
			}
			if s.Kind != yaml.MappingNode {
				w.add(s.Line, path, fmt.Sprintf("a merge (<<) wants a mapping, got a %s", kindName(s)))
				continue
			}
			for i := 0; i+1 < len(s.Content); i += 2 {
				k := s.Content[i]
				if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
					continue
				}
				if _, set := seen[k.Value]; set {
					continue
				}
				seen[k.Value] = k.Line
				ft, ok := types[k.Value]
				if !ok {
					w.unknown(k, k.Value, keys, path)
					continue
				}
				p := join(path, k.Value)
				if v := s.Content[i+1]; !(v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null") {
					w.lines[p] = k.Line
				}
				w.walk(s.Content[i+1], ft, p, depth+1)
			}
		}
	}
}

// unknown reports an unknown key with the closest valid one.
func (w *walker) unknown(k *yaml.Node, key string, keys []string, path string) {
	w.problems = append(w.problems, unknownKey(w.file, k.Line, key, keys, path))
}

func unknownKey(file string, line int, key string, keys []string, path string) *Problem {
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	msg := fmt.Sprintf("unknown key %s %s", quoteValue(key), where)
	if s := closest(key, keys); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else if len(keys) > 0 {
		msg += " (valid keys: " + strings.Join(keys, ", ") + ")"
	}
	p := newProblem(file, line, join(path, key), msg)
	p.bare = true
	return p
}

// closest returns the key nearest to s by edit distance, if near enough.
func closest(s string, keys []string) string {
	best, bestD := "", 1<<30
	ls := strings.ToLower(s)
	for _, k := range keys {
		if d := editDistance(ls, k); d < bestD {
			best, bestD = k, d
		}
	}
	limit := max(2, len([]rune(best))/3)
	if bestD <= limit && bestD < len([]rune(best)) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b (capped inputs).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 {
		return len(ra)
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

var (
	typeErrLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)
	notFoundRE    = regexp.MustCompile(`^field (.*) not found in type (.*)$`)
)

// rewrite turns an error of the strict yaml decoder into problems naming the
// key paths (the walk should have caught them first; this is a backstop).
func (w *walker) rewrite(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &Problem{File: w.file, Msg: "invalid configuration: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	byLine := map[int][]string{}
	for p, l := range w.lines {
		byLine[l] = append(byLine[l], p)
	}
	var ps []*Problem
	for _, e := range te.Errors {
		m := typeErrLineRE.FindStringSubmatch(e)
		if m == nil {
			ps = append(ps, newProblem(w.file, 0, "", e))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		path := ""
		if cands := byLine[line]; len(cands) > 0 {
			sort.Strings(cands)
			path = cands[len(cands)-1]
		}
		msg := m[2]
		if nf := notFoundRE.FindStringSubmatch(msg); nf != nil {
			msg = fmt.Sprintf("unknown key %s", quoteValue(nf[1]))
			path = ""
		}
		ps = append(ps, newProblem(w.file, line, path, msg))
	}
	return joinProblems(ps)
}

// resolvePaths makes the relative paths of the file relative to base.
func (c *Config) resolvePaths(base string) {
	if base == "" || base == "." {
		return
	}
	r := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	if strings.Contains(c.ONNXRuntime.Library, "/") {
		r(&c.ONNXRuntime.Library)
	}
	r(&c.Model.FP32)
	r(&c.Model.INT8)
	r(&c.Model.Names)
	if q := c.Model.Quantize; q != nil {
		r(&q.Calib)
		r(&q.CacheDir)
	}
	r(&c.Provider.TensorRT.CacheDir)
	r(&c.Eval.Data)
	r(&c.HTTP.TokenFile)
	for i := range c.Sinks {
		r(&c.Sinks[i].Path)
	}
	for i := range c.Streams {
		s := &c.Streams[i]
		if isPlainPath(s.URI) {
			s.URI = strings.TrimSpace(s.URI)
			r(&s.URI)
		} else if rest, ok := strings.CutPrefix(s.URI, "file://"); ok && rest != "" && !filepath.IsAbs(rest) {
			s.URI = "file://" + filepath.Join(base, rest)
		}
	}
}

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*://`)

// gstElements are the GStreamer source elements that source.Parse takes as
// the start of a pipeline (kept in step with package source).
var gstElements = []string{
	"nvarguscamerasrc", "v4l2src", "videotestsrc", "filesrc", "rtspsrc",
	"uridecodebin", "urisourcebin", "souphttpsrc", "libcamerasrc", "udpsrc",
	"appsrc", "playbin", "decodebin",
}

// isPlainPath reports whether a stream URI is a file path (not a URL, a
// pipeline, a device, a camera index or "camera:N"), by the rules of
// source.Parse but without reading the file system.
func isPlainPath(uri string) bool {
	uri = strings.TrimSpace(uri)
	if uri == "" || schemeRE.MatchString(uri) || strings.HasPrefix(uri, "/dev/") ||
		strings.HasPrefix(uri, "camera:") || strings.Contains(uri, " ! ") || strings.Contains(uri, "\t!") {
		return false
	}
	if _, err := strconv.Atoi(uri); err == nil {
		return false
	}
	first := uri
	if i := strings.IndexAny(uri, " \t"); i >= 0 {
		first = uri[:i]
	}
	return !slices.Contains(gstElements, first)
}

// cameraIndex parses "camera:N".
func cameraIndex(uri string) (int, bool, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(uri), "camera:")
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strings.HasPrefix(rest, "+") {
		return 0, true, fmt.Errorf("want camera:N with N a camera index (0, 1, ...), got %s", quoteValue(uri))
	}
	return n, true, nil
}

// isLive reports whether a stream URI names a live source (camera, device,
// network stream, pipeline), as source.Parse classifies it.
func isLive(uri string) bool {
	if _, ok, _ := cameraIndex(uri); ok {
		return true
	}
	spec, err := source.Parse(uri)
	return err == nil && spec.Kind.Live()
}

// has reports whether the key path was set (non-null) in the file.
func (c *Config) has(path string) bool {
	_, ok := c.lines[path]
	return ok
}

func boolPtr(b bool) *bool { return &b }

// applyDefaults fills in the defaults of the keys the file leaves out.
func (c *Config) applyDefaults() {
	setS := func(p *string, path, v string) {
		if !c.has(path) && *p == "" {
			*p = v
		}
	}
	setI := func(p *int, path string, v int) {
		if !c.has(path) {
			*p = v
		}
	}
	setF := func(p *float64, path string, v float64) {
		if !c.has(path) {
			*p = v
		}
	}
	setD := func(p *Duration, path string, v time.Duration) {
		if !c.has(path) {
			*p = Duration(v)
		}
	}
	setB := func(p **bool, v bool) {
		if *p == nil {
			*p = boolPtr(v)
		}
	}
	setS(&c.Listen, "listen", DefaultListen)
	setS(&c.LogLevel, "log_level", "info")
	setS(&c.LogFormat, "log_format", "text")
	setS(&c.Device.ID, "device.id", DefaultDeviceID())
	setD(&c.ShutdownTimeout, "shutdown_timeout", DefaultShutdownTimeout)

	if q := c.Model.Quantize; q != nil {
		setI(&q.Images, "model.quantize.images", 128)
		setS(&q.Target, "model.quantize.target", "tensorrt")
		setS(&q.Method, "model.quantize.method", "mse")
		setB(&q.KeepHead, true)
	}
	if !c.has("model.batch") {
		c.Model.Batch = max(1, min(len(c.Streams), DefaultMaxBatch))
	}
	setS(&c.Provider.Name, "provider.name", "auto")
	setB(&c.Provider.TensorRT.FP16, true)
	setB(&c.Provider.TensorRT.INT8, true)

	setF(&c.Thresholds.Conf, "thresholds.conf", 0.25)
	setF(&c.Thresholds.IoU, "thresholds.iou", 0.45)
	setI(&c.Thresholds.MaxDet, "thresholds.max_det", 300)

	for i := range c.Streams {
		s := &c.Streams[i]
		p := fmt.Sprintf("streams[%d].", i)
		setB(&s.Reconnect.Enabled, true)
		setD(&s.Reconnect.MinBackoff, p+"reconnect.min_backoff", source.DefaultMinBackoff)
		setD(&s.Reconnect.MaxBackoff, p+"reconnect.max_backoff", source.DefaultMaxBackoff)
		if !c.has(p+"read_timeout") && isLive(s.URI) {
			s.ReadTimeout = Duration(DefaultStreamTimeout)
		}
	}

	setB(&c.Shadow.Enabled, true)
	setI(&c.Shadow.EveryN, "shadow.every_n", 10)
	setF(&c.Shadow.IoU, "shadow.iou", 0.5)
	setI(&c.Shadow.Window, "shadow.window", 200)

	if c.Eval.OnStart == nil {
		c.Eval.OnStart = boolPtr(c.Eval.Data != "")
	}

	for i := range c.Sinks {
		s := &c.Sinks[i]
		p := fmt.Sprintf("sinks[%d].", i)
		setI(&s.MaxSizeMB, p+"max_size_mb", 100)
		setI(&s.MaxFiles, p+"max_files", 5)
		setD(&s.FlushInterval, p+"flush_interval", time.Second)
	}

	if !c.has("http.max_body_bytes") {
		c.HTTP.MaxBodyBytes = 4096
	}
	setD(&c.HTTP.ReadTimeout, "http.read_timeout", 5*time.Second)
	setD(&c.HTTP.WriteTimeout, "http.write_timeout", 30*time.Second)
	setB(&c.HTTP.EnablePost, true)
}
