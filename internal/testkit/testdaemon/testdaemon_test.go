package testdaemon

import "testing"

func TestParseMetrics(t *testing.T) {
	body := `# HELP yedge_stream_up Whether the stream is up.
# TYPE yedge_stream_up gauge
yedge_stream_up{stream="a,b"} 1
yedge_stream_up{stream="web"} 0
yedge_frames_inferred_total{precision="int8",stream="web"} 42
yedge_ready 1
broken{stream="x" 
`
	m := ParseMetrics(body)
	if len(m) != 4 {
		t.Fatalf("%d samples, want 4: %+v", len(m), m)
	}
	for _, c := range []struct {
		name string
		kv   []string
		want float64
		ok   bool
	}{
		{"yedge_stream_up", []string{"stream", "a,b"}, 1, true},
		{"yedge_stream_up", []string{"stream", "web"}, 0, true},
		{"yedge_frames_inferred_total", []string{"stream", "web", "precision", "int8"}, 42, true},
		{"yedge_frames_inferred_total", []string{"precision", "fp32"}, 0, false},
		{"yedge_ready", nil, 1, true},
		{"missing", nil, 0, false},
	} {
		if v, ok := m.Value(c.name, c.kv...); v != c.want || ok != c.ok {
			t.Errorf("Value(%s, %v) = %v, %v; want %v, %v", c.name, c.kv, v, ok, c.want, c.ok)
		}
	}
}
