package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agnivade/levenshtein"

	"github.com/yedge/yedge/internal/fsx"
	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/quant"
	"github.com/yedge/yedge/source"
)

// Defaults that are not plain numbers in the schema's comments.
const (
	// DefaultListen is the default HTTP address (listen).
	DefaultListen = "127.0.0.1:9464"
	// DefaultMaxBatch caps the default model.batch (the number of streams).
	DefaultMaxBatch = 8
)

// Load reads the configuration file at path, parses it ([Parse]: strict,
// with defaults), resolves its relative paths against the file's directory,
// and validates it ([Config.Validate]).
func Load(path string) (*Config, error) {
	data, err := fsx.ReadFile(path, fsx.MaxConfigBytes)
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
	var empty []*Problem
	pos := positions{lines: map[string]int{}, tags: map[string]string{}, values: map[string]string{}, empty: &empty}
	pos.record(root, "", 0)
	// A key with no value is an error, not its default: a value lost in
	// an edit ("fps:") must not pass silently as the default.
	if len(empty) > 0 {
		errs := make([]error, len(empty))
		for i, p := range empty {
			p.File = file
			errs[i] = p
		}
		return nil, errors.Join(errs...)
	}
	// Strictness is yaml.v3's: unknown keys, duplicate keys and values of
	// the wrong type are its errors, rewritten to name the key path.
	if err := pos.fractions(file); err != nil {
		return nil, err
	}
	c = &Config{}
	if err := safeYAML(func() error {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		return dec.Decode(c)
	}); err != nil {
		return nil, pos.problems(file, err)
	}
	c.Path = name
	c.lines, c.tags = pos.lines, pos.tags
	c.resolvePaths(base)
	c.parseValues()
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

// positions are the line of every key path present in the file
// ("streams[1].fps") and the YAML tag of every scalar value, from the
// node tree: yaml.v3 decodes values, but only nodes know where they are.
type positions struct {
	lines  map[string]int
	tags   map[string]string
	values map[string]string
	// empty are the keys written with no value ("every_n:"), in order.
	empty *[]*Problem
}

// maxDepth bounds the recursion through aliases.
const maxDepth = 64

// record walks n at path.
func (p positions) record(n *yaml.Node, path string, depth int) {
	if depth > maxDepth || len(p.lines) > 100000 {
		return
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias != nil {
			p.record(n.Alias, path, depth+1)
		}
	case yaml.MappingNode:
		p.tags[path] = "!!map"
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				p.record(v, path, depth+1)
				continue
			}
			kp := join(path, k.Value)
			if _, seen := p.lines[kp]; !seen && !isNull(v) {
				p.lines[kp] = k.Line
			}
			if isNull(v) && v.Value == "" && p.empty != nil {
				*p.empty = append(*p.empty, &Problem{Line: k.Line, Path: kp,
					Msg: "has no value: give one, or leave the key out for its default"})
			}
			p.record(v, kp, depth+1)
		}
	case yaml.SequenceNode:
		p.tags[path] = "!!seq"
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			if !isNull(item) {
				p.lines[ip] = item.Line
			}
			p.record(item, ip, depth+1)
		}
	case yaml.ScalarNode:
		p.tags[path], p.values[path] = n.ShortTag(), n.Value
	}
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	typeErrLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)
	notFoundRE    = regexp.MustCompile(`^field (.*) not found in type`)
	unmarshalRE   = regexp.MustCompile("^cannot unmarshal (!!\\w+) (?:`(.*)` )?into (.*)$")
	duplicateRE   = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
)

// problems rewrites an error of the strict decoder into problems naming
// the key path, with "did you mean" for unknown keys.
func (p positions) problems(file string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &Problem{File: file, Msg: "invalid configuration: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var ps []*Problem
	for _, e := range te.Errors {
		m := typeErrLineRE.FindStringSubmatch(e)
		if m == nil {
			ps = append(ps, newProblem(file, 0, "", e))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		if nf := notFoundRE.FindStringSubmatch(msg); nf != nil {
			ps = append(ps, unknownKey(file, line, nf[1], p.pathAt(line, nf[1])))
			continue
		}
		path := p.pathAt(line, "")
		switch u, d := unmarshalRE.FindStringSubmatch(msg), duplicateRE.FindStringSubmatch(msg); {
		case u != nil:
			path = p.pathTagged(line, u[1])
			want := wantOf(u[3])
			if keys := keysAt(path); want == "a mapping" && len(keys) > 0 {
				want += " (keys " + strings.Join(keys, ", ") + ")"
			}
			msg = fmt.Sprintf("want %s, got %s", want, typeName(u[1]))
			if u[2] != "" {
				msg += " " + quoteValue(u[2])
			}
		case d != nil:
			first, _ := strconv.Atoi(d[2])
			path = p.pathAt(first, d[1])
			msg = fmt.Sprintf("duplicate key %q (first at line %d)", d[1], first)
		}
		ps = append(ps, newProblem(file, line, path, msg))
	}
	return joinProblems(ps)
}

// pathAt returns the key path at line (ending in key when given): the
// longest, preferring a key to a list item.
func (p positions) pathAt(line int, key string) string {
	var best string
	better := func(a, b string) bool {
		ai, bi := strings.HasSuffix(a, "]"), strings.HasSuffix(b, "]")
		if ai != bi {
			return bi
		}
		return len(a) > len(b)
	}
	for path, l := range p.lines {
		if l != line || (key != "" && path != key && !strings.HasSuffix(path, "."+key)) {
			continue
		}
		if best == "" || better(path, best) {
			best = path
		}
	}
	return best
}

// pathTagged returns the longest key path at line whose value has tag.
func (p positions) pathTagged(line int, tag string) string {
	var best string
	for path, l := range p.lines {
		if l == line && p.tags[path] == tag && len(path) > len(best) {
			best = path
		}
	}
	if best == "" {
		return p.pathAt(line, "")
	}
	return best
}

// fractions reports numbers with a fraction given for integer keys, which
// yaml.v3 would truncate (every_n: 2.5 becomes 2).
func (p positions) fractions(file string) error {
	var ps []*Problem
	for path, tag := range p.tags {
		if tag != "!!float" {
			continue
		}
		if t := typeAt(path); t != nil && t != durationType && t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64 {
			ps = append(ps, newProblem(file, p.lines[path], path, "want an integer, got number "+p.values[path]))
		}
	}
	return joinProblems(ps)
}

// wantOf names a Go type of the schema for a message.
func wantOf(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map"), strings.HasPrefix(goType, "config."):
		return "a mapping"
	}
	return goType
}

// typeName names a YAML tag for a message.
func typeName(tag string) string {
	switch strings.TrimPrefix(tag, "!!") {
	case "str":
		return "string"
	case "int", "float":
		return "number"
	case "bool":
		return "boolean"
	case "map":
		return "a mapping"
	case "seq":
		return "a list"
	}
	return tag
}

// unknownKey reports an unknown key with the closest valid one.
func unknownKey(file string, line int, key, path string) *Problem {
	parent := parentPath(path)
	if path == "" || !strings.HasSuffix(path, key) {
		parent = ""
	}
	keys := keysAt(parent)
	where := "at the top level"
	if parent != "" {
		where = "in " + parent
	}
	msg := fmt.Sprintf("unknown key %s %s", quoteValue(key), where)
	if s := closest(key, keys); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else if len(keys) > 0 {
		msg += " (valid keys: " + strings.Join(keys, ", ") + ")"
	}
	pr := newProblem(file, line, join(parent, key), msg)
	pr.bare = true
	return pr
}

// keysAt lists the keys the schema allows at a key path ("model",
// "streams[0].reconnect"), from the yaml tags of the Config types.
func keysAt(path string) []string {
	t := typeAt(path)
	if t == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	var keys []string
	if t.Kind() != reflect.Struct {
		return nil
	}
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

var durationType = reflect.TypeOf(Duration(0))

// typeAt is the schema's type at a key path, from the yaml tags of the
// Config types; nil when the path is not in the schema.
func typeAt(path string) reflect.Type {
	t := reflect.TypeOf(Config{})
	for _, part := range strings.Split(path, ".") {
		if part == "" {
			continue
		}
		name, _, _ := strings.Cut(part, "[")
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		f, ok := fieldByTag(t, name)
		if !ok {
			return nil
		}
		t = f.Type
	}
	return t
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name == tag {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// closest returns the key nearest to s by edit distance, if near enough.
func closest(s string, keys []string) string {
	best, bestD := "", 1<<30
	ls := strings.ToLower(s)
	for _, k := range keys {
		if d := levenshtein.ComputeDistance(ls, k); d < bestD {
			best, bestD = k, d
		}
	}
	limit := max(2, len([]rune(best))/3)
	if bestD <= limit && bestD < len([]rune(best)) {
		return best
	}
	return ""
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
	r(&c.StateDir)
	for i := range c.Sinks {
		r(&c.Sinks[i].Path)
	}
	for i := range c.Streams {
		s := &c.Streams[i]
		if p, ok := source.LocalPath(s.URI); ok && !filepath.IsAbs(p) {
			s.URI = filepath.Join(base, p)
		}
	}
}

// has reports whether the key path was set (non-null) in the file.
func (c *Config) has(path string) bool {
	_, ok := c.lines[path]
	return ok
}

func boolPtr(b bool) *bool { return &b }

// applyDefaults fills in the defaults of the keys the file leaves out.
func (c *Config) applyDefaults() {
	// setS sets a string key's default; it reports whether it did.
	setS := func(p *string, path, v string) bool {
		if !c.has(path) && *p == "" {
			*p = v
			return true
		}
		return false
	}
	setB := func(p **bool, v bool) {
		if *p == nil {
			*p = boolPtr(v)
		}
	}
	c.numericDefaults()
	setS(&c.Listen, "listen", DefaultListen)
	setS(&c.LogLevel, "log_level", "info")
	setS(&c.LogFormat, "log_format", "text")
	setS(&c.Device.ID, "device.id", DefaultDeviceID())

	pv := &c.parsed
	if q := c.Model.Quantize; q != nil {
		if setS(&q.Target, "model.quantize.target", string(quant.TargetTensorRT)) {
			pv.target = quant.TargetTensorRT
		}
		if _, bad := pv.errs["model.quantize.target"]; !bad {
			if setS(&q.Method, "model.quantize.method", string(quant.DefaultMethod(pv.target))) {
				pv.method = quant.DefaultMethod(pv.target)
			}
			setB(&q.KeepHead, quant.DefaultKeepHead(pv.target))
		}
	}
	if setS(&c.Model.Interp, "model.interp", preprocess.DeployInterp.String()) {
		pv.interp = preprocess.DeployInterp
	}
	if !c.has("model.batch") {
		c.Model.Batch = max(1, min(len(c.Streams), DefaultMaxBatch))
	}
	setS(&c.Provider.Name, "provider.name", "auto")
	setB(&c.Provider.TensorRT.FP16, true)
	setB(&c.Provider.TensorRT.INT8, true)

	for i := range c.Streams {
		s := &c.Streams[i]
		setB(&s.Reconnect.Enabled, true)
		if pv.sources[i].Kind.Live() && !c.has(fmt.Sprintf("streams[%d].read_timeout", i)) {
			s.ReadTimeout = Duration(source.DefaultLiveReadTimeout)
		}
	}
	setB(&c.Shadow.Enabled, true)
	if c.Eval.OnStart == nil {
		c.Eval.OnStart = boolPtr(c.Eval.Data != "")
	}
	setB(&c.HTTP.EnablePost, true)
	setB(&c.HTTP.UI, true)
}
