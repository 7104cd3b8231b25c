package testdaemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// defaultClient is the client of Get and the functions built on it when
// they are passed a nil client.
var defaultClient = &http.Client{Timeout: 10 * time.Second}

// Get fetches http://addr+path with c (nil: a client with a 10s timeout)
// and returns the status code and the body.
func Get(c *http.Client, addr, path string) (int, string, error) {
	if c == nil {
		c = defaultClient
	}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// GetStatus fetches /status with c (nil as for Get), decodes it into v
// (the part of /status a test reads) and returns the body. It is an error
// when the request fails, the answer is not 200 or the body is not JSON.
func GetStatus(c *http.Client, addr string, v any) (string, error) {
	code, body, err := Get(c, addr, "/status")
	if err != nil {
		return body, err
	}
	if code != http.StatusOK {
		return body, fmt.Errorf("/status: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		return body, fmt.Errorf("/status: %v: %s", err, body)
	}
	return body, nil
}

// MetricsText is the body of /metrics, fetched with c (nil as for Get);
// "" when the request fails.
func MetricsText(c *http.Client, addr string) string {
	_, body, _ := Get(c, addr, "/metrics")
	return body
}

// Scrape fetches and parses /metrics with c (nil as for Get); nil when the
// request fails or the answer is not 200.
func Scrape(c *http.Client, addr string) Samples {
	code, body, err := Get(c, addr, "/metrics")
	if err != nil || code != http.StatusOK {
		return nil
	}
	return ParseMetrics(body)
}

// Sample is one line of the Prometheus text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Samples are the samples of one scrape, in the order of the exposition.
type Samples []Sample

// Value is the value of the first sample of name whose labels include the
// given ones (pairs: key, value, ...); false when there is none.
func (ss Samples) Value(name string, kv ...string) (float64, bool) {
next:
	for _, s := range ss {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.Labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		return s.Value, true
	}
	return 0, false
}

// Series is Value for a series written as in the exposition format:
// name{k="v",...} (labels in any order, a subset of the sample's).
func (ss Samples) Series(series string) (float64, bool) {
	name, labels, _ := strings.Cut(series, "{")
	var kv []string
	for _, p := range splitLabels(strings.TrimSuffix(labels, "}")) {
		if k, v, ok := strings.Cut(p, "="); ok {
			kv = append(kv, k, strings.Trim(v, `"`))
		}
	}
	return ss.Value(name, kv...)
}

// ParseMetrics parses the Prometheus text exposition format (enough of it
// for yedge's metrics: no escaped quotes in label values). Comments and
// lines it cannot read are skipped.
func ParseMetrics(body string) Samples {
	var out Samples
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := Sample{Labels: map[string]string{}}
		var rest string
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.Name = line[:i]
			j := strings.LastIndex(line, "}")
			if j < i {
				continue
			}
			for _, kv := range splitLabels(line[i+1 : j]) {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					s.Labels[k] = strings.Trim(v, `"`)
				}
			}
			rest = strings.TrimSpace(line[j+1:])
		} else if i >= 0 {
			s.Name = line[:i]
			rest = strings.TrimSpace(line[i+1:])
		} else {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.Value = v
		out = append(out, s)
	}
	return out
}

// splitLabels splits `a="x",b="y,z"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
