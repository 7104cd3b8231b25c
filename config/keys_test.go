package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestRangesNameKeys: every key of the range table is a numeric field of
// Config, found by its yaml tags, and each is declared once.
func TestRangesNameKeys(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range ranges {
		if seen[r.Key] {
			t.Errorf("%s is declared twice", r.Key)
		}
		seen[r.Key] = true
		typ := typeAt(strings.ReplaceAll(r.Key, "[]", ""))
		for typ != nil && typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ == nil {
			t.Errorf("%s: no such key in Config", r.Key)
			continue
		}
		switch typ.Kind() {
		case reflect.Int, reflect.Int64, reflect.Float64:
		default:
			t.Errorf("%s: a %s, not a number", r.Key, typ)
		}
		if r.Duration != (typ == reflect.TypeFor[Duration]()) {
			t.Errorf("%s: Duration %v for a %s", r.Key, r.Duration, typ)
		}
		if !r.Computed && !r.contains(r.Default) {
			t.Errorf("%s: default %v outside its own range %s", r.Key, r.Default, r)
		}
	}
}

// TestDefaultsAsDeclared: a key the file leaves out takes its declared
// default, in every list item too; and the shipped yedge.yaml, which
// shows the defaults, agrees with the declarations.
func TestDefaultsAsDeclared(t *testing.T) {
	c, err := Parse([]byte(`model: {fp32: m.onnx, quantize: {calib: c}}
streams:
  - {name: a, uri: a.mp4}
  - {name: b, uri: b.mp4}
sinks: [{type: jsonl, path: a.jsonl}, {type: stdout}]
`), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		if r.Computed {
			continue
		}
		n := 0
		c.values(r.Key, func(path string, v reflect.Value) {
			n++
			if got := number(v, r.Duration); got != r.Default {
				t.Errorf("%s = %v, want the declared default %v", path, got, r.Default)
			}
		})
		want := 1 // two list items in the file
		if strings.Contains(r.Key, "[]") {
			want = 2
		}
		if n != want && r.Key != "provider.tensorrt.dla_core" {
			t.Errorf("%s: %d values, want %d", r.Key, n, want)
		}
	}

	text := mustRead(t, shippedConfig("yedge.yaml"))
	shipped, err := Parse(text, "yedge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(text), "\n")
	for _, r := range ranges {
		if r.Computed || strings.Contains(r.Key, "[]") || !shipped.has(r.Key) {
			continue
		}
		shipped.values(r.Key, func(path string, v reflect.Value) {
			// A value other than the default says so in its comment.
			l := shipped.lines[path]
			if got := number(v, r.Duration); got != r.Default && (l < 2 || !strings.Contains(lines[l-2], "not the value shown")) {
				t.Errorf("yedge.yaml:%d shows %s: %v, but its declared default is %v", l, path, got, r.Default)
			}
		})
	}
}
