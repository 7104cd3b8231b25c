package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/quant"
	"github.com/yedge/yedge/source"
)

// parsed are the string keys parsed once, when the file is read: the
// defaults that depend on them, Validate (which reports their errors at
// the key's line) and the plan builder use these values, and nobody parses
// the strings again.
type parsed struct {
	sources       []source.Spec // per stream; the zero Spec when its URI did not parse
	height, width int
	interp        preprocess.Interp
	target        quant.Target
	method        quant.CalibMethod
	exclude       *regexp.Regexp
	// errs are the parse errors by key path.
	errs map[string]error
}

// parseValues parses the string keys the file sets (after resolvePaths,
// before applyDefaults, which fills the typed values of the defaults it
// sets).
func (c *Config) parseValues() {
	p := &c.parsed
	p.errs = map[string]error{}
	fail := func(key string, err error) { p.errs[key] = err }
	p.sources = make([]source.Spec, len(c.Streams))
	for i, s := range c.Streams {
		if strings.TrimSpace(s.URI) == "" {
			continue // required: Validate says so
		}
		spec, err := source.Parse(s.URI)
		if err != nil {
			fail(fmt.Sprintf("streams[%d].uri", i), err)
			continue
		}
		p.sources[i] = spec
	}
	var err error
	if p.height, p.width, err = pipeline.ParseSize(c.Model.ImgSize); err != nil {
		fail("model.imgsz", err)
	}
	if c.Model.Interp != "" || c.has("model.interp") {
		if p.interp, err = preprocess.ParseInterp(c.Model.Interp); err != nil {
			fail("model.interp", err)
		}
	}
	q := c.Model.Quantize
	if q == nil {
		return
	}
	if q.Target != "" || c.has("model.quantize.target") {
		if p.target, err = quant.ParseTarget(q.Target); err != nil {
			fail("model.quantize.target", err)
		}
	}
	if q.Method != "" || c.has("model.quantize.method") {
		if p.method, err = quant.ParseCalibMethod(q.Method); err != nil {
			fail("model.quantize.method", err)
		}
	}
	if q.Exclude != "" {
		if p.exclude, err = regexp.Compile(q.Exclude); err != nil {
			fail("model.quantize.exclude", fmt.Errorf("not a regular expression: %w", err))
		}
	}
}

// ParseErr joins the errors of the string keys that did not parse (nil
// when all did); Validate reports each at its line.
func (c *Config) ParseErr() error {
	keys := slices.Sorted(maps.Keys(c.parsed.errs))
	errs := make([]error, 0, len(keys))
	for _, k := range keys {
		errs = append(errs, fmt.Errorf("%s: %w", k, c.parsed.errs[k]))
	}
	return errors.Join(errs...)
}

// Source is the parsed source of stream i (as source.Parse gives it; the
// stream's other keys are not applied).
func (c *Config) Source(i int) source.Spec { return c.parsed.sources[i] }

// InputSize is model.imgsz parsed (0, 0: the model's).
func (c *Config) InputSize() (h, w int) { return c.parsed.height, c.parsed.width }

// Interp is model.interp parsed.
func (c *Config) Interp() preprocess.Interp { return c.parsed.interp }

// QuantizeTarget, QuantizeMethod and QuantizeExclude are model.quantize's
// target, method and exclude parsed (their defaults applied).
func (c *Config) QuantizeTarget() quant.Target { return c.parsed.target }

// QuantizeMethod is model.quantize.method parsed.
func (c *Config) QuantizeMethod() quant.CalibMethod { return c.parsed.method }

// QuantizeExclude is model.quantize.exclude compiled (nil: none).
func (c *Config) QuantizeExclude() *regexp.Regexp { return c.parsed.exclude }
