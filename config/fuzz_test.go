package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse (or Validate on what it
// accepts) panic, and that errors never lose
// the file name.
func FuzzParse(f *testing.F) {
	for _, name := range []string{shippedConfig("yedge.yaml"), shippedConfig("jetson.yaml"), shippedConfig(filepath.Join("testdata", "dev.yaml"))} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "~", "---\n", "[]", "42", "\"x\"", "listen: [\n", "\tlisten: x\n",
		baseYAML,
		"streams:\n  - name: a\n    uri: rtsp://u:p@h/x\n    fps: -1\n",
		"a: &a {listen: x}\nb: *a\n",
		"<<: {listen: 'h:1'}\nlog_level: debug\n",
		"<<: [*x]\n",
		"model: &m {fp32: a}\nprovider: *m\n",
		"streams: {name: a}\n", "streams: [[1]]\n", "shadow: {every_n: 1.5}\n",
		"shutdown_timeout: {a: 1}\n", "? [a]\n: b\n", "x: !!binary aGVsbG8=\n",
		"thresholds: {conf: .nan, iou: .inf}\n", "listen: x\nlisten: y\n",
		"a: &a [*a]\n", "--- a\n--- b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if c == nil {
			t.Fatal("nil config without an error")
		}
		_ = c.Validate()
	})
}
