package serve

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/source"
)

func basePlan() Plan {
	stream := func(name, uri string) StreamPlan {
		return StreamPlan{Name: name, Source: source.Spec{URI: uri, Kind: source.Video, Camera: -1}}
	}
	return Plan{
		Listen:  "127.0.0.1:9464",
		Runtime: onnxrt.Options{Provider: "cpu", Threads: 2},
		Models: ModelsPlan{FP32: ModelFile{Path: "fp32.onnx", SHA256: "aa"}, Int8: ModelFile{Path: "int8.onnx", SHA256: "bb"},
			Batch: 2},
		Post:    postprocess.DeployOptions(),
		Streams: []StreamPlan{stream("a", "a.avi"), stream("b", "b.avi")},
		Shadow:  ShadowPlan{Enabled: true, EveryN: 10, IoU: 0.5, Window: 200},
		Sinks:   []SinkPlan{{Type: "jsonl", Path: "d.jsonl", MaxBytes: 1 << 20, MaxFiles: 5, FlushInterval: time.Second}},
		HTTP:    HTTPPlan{MaxBodyBytes: 4096, ReadTimeout: 5 * time.Second, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second},
	}
}

func TestPlanDiff(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *Plan)
		want Change
	}{
		{"nothing", func(p *Plan) {}, Change{}},
		{"stream added", func(p *Plan) {
			p.Streams = append(p.Streams, StreamPlan{Name: "c", Source: source.Spec{URI: "c.avi"}})
		}, Change{Added: []string{"c"}}},
		{"stream removed", func(p *Plan) { p.Streams = p.Streams[:1] }, Change{Removed: []string{"b"}}},
		{"stream changed", func(p *Plan) { p.Streams[1].FPS = 5 }, Change{Restarted: []string{"b"}}},
		{"stream reconnect changed", func(p *Plan) { p.Streams[0].Source.MaxRetries = 3 }, Change{Restarted: []string{"a"}}},
		{"streams reordered", func(p *Plan) { p.Streams[0], p.Streams[1] = p.Streams[1], p.Streams[0] }, Change{}},
		{"model replaced in place", func(p *Plan) { p.Models.Int8.SHA256 = "cc" }, Change{Int8: true}},
		{"int8 and fp32 both new", func(p *Plan) { p.Models.Int8.SHA256, p.Models.FP32.SHA256 = "cc", "dd" }, Change{Models: true, Int8: true}},
		{"fp32 replaced in place", func(p *Plan) { p.Models.FP32.SHA256 = "cc" }, Change{Models: true}},
		{"model path", func(p *Plan) { p.Models.FP32.Path = "other.onnx" }, Change{Models: true}},
		{"threads", func(p *Plan) { p.Runtime.Threads = 1 }, Change{Models: true}},
		{"provider", func(p *Plan) { p.Runtime.Provider = "cuda" }, Change{Models: true}},
		{"conf", func(p *Plan) { p.Post.Conf = 0.5 }, Change{Models: true}},
		{"imgsz", func(p *Plan) { p.Models.Height, p.Models.Width = 320, 320 }, Change{Models: true}},
		{"interp", func(p *Plan) { p.Models.Interp = preprocess.InterpLinear }, Change{Models: true}},
		{"sink", func(p *Plan) { p.Sinks[0].MaxFiles = 2 }, Change{Sinks: true}},
		{"sink removed", func(p *Plan) { p.Sinks = nil }, Change{Sinks: true}},
		{"listen", func(p *Plan) { p.Listen = "127.0.0.1:9000" }, Change{Restart: true}},
		{"write timeout", func(p *Plan) { p.HTTP.WriteTimeout = time.Minute }, Change{Restart: true}},
		{"token", func(p *Plan) { p.HTTP.Token = "t" }, Change{Settings: true}},
		{"web view", func(p *Plan) { p.HTTP.UI = !p.HTTP.UI }, Change{Settings: true}},
		{"shadow", func(p *Plan) { p.Shadow.EveryN = 5 }, Change{Settings: true}},
		{"eval", func(p *Plan) { p.Eval.Data = "ds" }, Change{Settings: true}},
		{"device label", func(p *Plan) { p.Device.Labels = map[string]string{"site": "b"} }, Change{Settings: true}},
		{"streams and models", func(p *Plan) { p.Streams = p.Streams[1:]; p.Models.Batch = 1 }, Change{Removed: []string{"a"}, Models: true}},
	} {
		old, next := basePlan(), basePlan()
		tc.edit(&next)
		got := old.Diff(next)
		if !slices.Equal(got.Added, tc.want.Added) || !slices.Equal(got.Removed, tc.want.Removed) || !slices.Equal(got.Restarted, tc.want.Restarted) ||
			got.Models != tc.want.Models || got.Int8 != tc.want.Int8 || got.Sinks != tc.want.Sinks || got.Restart != tc.want.Restart || got.Settings != tc.want.Settings {
			t.Errorf("%s: Diff = %+v, want %+v", tc.name, got, tc.want)
		}
		if got.None() != (tc.name == "nothing" || tc.name == "streams reordered") {
			t.Errorf("%s: None() = %v", tc.name, got.None())
		}
		if onlyStreams := !tc.want.Models && !tc.want.Int8 && !tc.want.Sinks && !tc.want.Restart && !tc.want.Settings; got.StreamsOnly() != onlyStreams {
			t.Errorf("%s: StreamsOnly() = %v", tc.name, got.StreamsOnly())
		}
	}
}

// TestDetectorConfigInterp: the serving models and the shadow letterbox
// with the plan's interpolation.
func TestDetectorConfigInterp(t *testing.T) {
	for _, want := range []preprocess.Interp{preprocess.InterpReference, preprocess.InterpLinear} {
		p := basePlan()
		p.Models.Interp = want
		if got := detectorConfig(p, "m.onnx", nil).Interp; got != want {
			t.Errorf("detectorConfig Interp = %v, want %v", got, want)
		}
	}
}

func TestPlanDiffIgnoresLogger(t *testing.T) {
	old, next := basePlan(), basePlan()
	next.Runtime.Logger = nil
	old.Runtime.Logger = nil
	if c := old.Diff(next); !c.None() {
		t.Errorf("Diff = %+v, want none", c)
	}
}

// TestRestartKeys: exactly the restart-only keys that differ are listed,
// and state_dir is one of them (not a setting a reload applies).
func TestRestartKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *Plan)
		want []string
	}{
		{"nothing", func(p *Plan) {}, nil},
		{"listen only", func(p *Plan) { p.Listen = "127.0.0.1:9465" }, []string{"listen"}},
		{"read timeout", func(p *Plan) { p.HTTP.ReadTimeout = time.Minute }, []string{"http.read_timeout"}},
		{"write timeout", func(p *Plan) { p.HTTP.WriteTimeout = time.Minute }, []string{"http.write_timeout"}},
		{"state_dir", func(p *Plan) { p.Lifecycle.StateDir = "/var/lib/other" }, []string{"state_dir"}},
		{"listen and state_dir", func(p *Plan) { p.Listen = ":1"; p.Lifecycle.StateDir = "/x" }, []string{"listen", "state_dir"}},
		{"store limits", func(p *Plan) { p.Lifecycle.Keep, p.Lifecycle.MaxBytes = 9, 1<<20 }, []string{"store.keep", "store.max_size_mb"}},
		{"a setting", func(p *Plan) { p.Shadow.EveryN = 3 }, nil},
		{"log level (applied)", func(p *Plan) { p.Process.LogLevel = slog.LevelDebug }, nil},
		{"log format", func(p *Plan) { p.Process.LogFormat = "json" }, []string{"log_format"}},
		{"onnxruntime library", func(p *Plan) { p.Process.Library = "/opt/ort/libonnxruntime.so" }, []string{"onnxruntime.library"}},
		{"quantize at start-up", func(p *Plan) { p.Process.Quantize = "{Calib:/calib Images:64}" }, []string{"model.quantize"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := basePlan()
			tc.edit(&next)
			if got := RestartKeys(basePlan(), next); !slices.Equal(got, tc.want) {
				t.Errorf("RestartKeys = %v, want %v", got, tc.want)
			}
			ch := basePlan().Diff(next)
			if ch.Restart != (len(tc.want) > 0) {
				t.Errorf("Diff.Restart = %v", ch.Restart)
			}
			if tc.name == "state_dir" && ch.Settings {
				t.Error("a changed state_dir counted as a setting the reload applies")
			}
			if strings.HasPrefix(tc.name, "log level") && !ch.Settings {
				t.Error("a changed log level is not a setting the reload applies")
			}
		})
	}
}
