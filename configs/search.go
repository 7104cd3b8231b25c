package configs

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"strings"

	"github.com/yedge/yedge/source"
)

// searchPaths are the places Search tries, in order, without --config.
var searchPaths = []string{"/etc/yedge/yedge.yaml", "configs/yedge.yaml"}

// SearchPaths returns the places [Search] tries, in order, when no file is
// given: /etc/yedge/yedge.yaml, then ./configs/yedge.yaml.
func SearchPaths() []string { return append([]string(nil), searchPaths...) }

// Search finds the configuration file: explicit (the --config flag) when
// given, which must then exist; else the first of /etc/yedge/yedge.yaml and
// ./configs/yedge.yaml that exists. The error lists the places tried.
func Search(explicit string) (string, error) {
	if explicit != "" {
		st, err := os.Stat(explicit)
		switch {
		case err != nil:
			return "", fmt.Errorf("config %s: %w", explicit, pathErr(err))
		case st.IsDir():
			return "", fmt.Errorf("config %s: is a folder, want a YAML file", explicit)
		}
		return explicit, nil
	}
	var tried []string
	for _, p := range searchPaths {
		st, err := os.Stat(p)
		if err == nil && !st.IsDir() {
			return p, nil
		}
		why := "not found"
		if err == nil {
			why = "a folder"
		} else if !errors.Is(err, os.ErrNotExist) {
			why = pathErr(err).Error()
		}
		tried = append(tried, p+" ("+why+")")
	}
	return "", fmt.Errorf("no configuration file: tried %s; give one with --config FILE", strings.Join(tried, ", "))
}

// StreamsEqual reports whether c and o have the same streams, in order
// (nil and empty lists are equal).
func (c *Config) StreamsEqual(o *Config) bool {
	if len(c.Streams) == 0 && len(o.Streams) == 0 {
		return true
	}
	return reflect.DeepEqual(c.Streams, o.Streams)
}

// OnlyStreamsChanged reports whether c and o are equal in everything but
// their streams (and the file they were read from), so that a reload
// (SIGHUP) can restart the streams alone: true means any difference is in
// Streams; use StreamsEqual to tell whether there is one. A model.batch
// that both leave to its default (which follows the number of streams) does
// not count.
func (c *Config) OnlyStreamsChanged(o *Config) bool {
	a, b := c.clone(), o.clone()
	a.Streams, b.Streams = nil, nil
	a.Path, b.Path = "", ""
	if c.lines != nil && o.lines != nil && !c.has("model.batch") && !o.has("model.batch") {
		a.Model.Batch, b.Model.Batch = 0, 0
	}
	a.lines, b.lines = nil, nil
	return reflect.DeepEqual(a, b)
}

// Redacted returns a deep copy of c with the credentials of stream URIs
// hidden (source.Redact), to show in /status or logs.
func (c *Config) Redacted() *Config {
	r := c.clone()
	for i := range r.Streams {
		r.Streams[i].URI = source.Redact(r.Streams[i].URI)
	}
	return r
}

// clone returns a deep copy of c.
func (c *Config) clone() *Config {
	r := *c
	cb := func(p *bool) *bool {
		if p == nil {
			return nil
		}
		v := *p
		return &v
	}
	if q := c.Model.Quantize; q != nil {
		qc := *q
		qc.KeepHead = cb(q.KeepHead)
		r.Model.Quantize = &qc
	}
	r.Provider.TensorRT.FP16 = cb(c.Provider.TensorRT.FP16)
	r.Provider.TensorRT.INT8 = cb(c.Provider.TensorRT.INT8)
	if d := c.Provider.TensorRT.DLACore; d != nil {
		v := *d
		r.Provider.TensorRT.DLACore = &v
	}
	if c.Streams != nil {
		r.Streams = make([]StreamConfig, len(c.Streams))
		for i, s := range c.Streams {
			s.Reconnect.Enabled = cb(s.Reconnect.Enabled)
			r.Streams[i] = s
		}
	}
	if c.Sinks != nil {
		r.Sinks = append([]SinkConfig(nil), c.Sinks...)
	}
	r.Device.Labels = maps.Clone(c.Device.Labels)
	r.Shadow.Enabled = cb(c.Shadow.Enabled)
	r.Eval.OnStart = cb(c.Eval.OnStart)
	r.HTTP.EnablePost = cb(c.HTTP.EnablePost)
	if c.lines != nil {
		r.lines = make(map[string]int, len(c.lines))
		for k, v := range c.lines {
			r.lines[k] = v
		}
	}
	return &r
}
