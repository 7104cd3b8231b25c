package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/yedge/yedge/internal/testkit/fixtures"
)

func TestBenchJSON(t *testing.T) {
	fp32 := fixtures.Model(t, "yolov5n.onnx")
	int8 := fixtures.Model(t, "yolov5n-qdq-torch.onnx")
	r := yedge(t, nil, "bench", "--model", fp32, "--model", int8, "--runs", "3", "--warmup", "1",
		"--frames", "2", "--json", "--threads", "1", "--provider", "cpu")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out struct {
		Threads int `json:"threads"`
		Frames  int `json:"frames"`
		Results []struct {
			Model    string `json:"model"`
			Provider string `json:"provider"`
			Threads  int    `json:"threads"`
			Input    [2]int `json:"input_hw"`
			Infer    struct {
				Median float64 `json:"median_ms"`
				P95    float64 `json:"p95_ms"`
				Runs   int     `json:"runs"`
			} `json:"infer"`
			EndToEnd struct {
				Median float64 `json:"median_ms"`
				P95    float64 `json:"p95_ms"`
				Runs   int     `json:"runs"`
			} `json:"end_to_end"`
		} `json:"results"`
		SpeedupInfer    float64 `json:"speedup_infer"`
		SpeedupEndToEnd float64 `json:"speedup_end_to_end"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if out.Threads != 1 || out.Frames != 2 || len(out.Results) != 2 {
		t.Fatalf("threads %d, frames %d, %d results:\n%s", out.Threads, out.Frames, len(out.Results), r.stdout)
	}
	for i, want := range []string{fp32, int8} {
		x := out.Results[i]
		if x.Model != want || x.Provider != "cpu" || x.Threads != 1 || x.Input != [2]int{640, 640} ||
			x.Infer.Runs != 3 || x.EndToEnd.Runs != 3 || x.Infer.Median <= 0 || x.EndToEnd.Median <= 0 ||
			x.Infer.P95 < x.Infer.Median || x.EndToEnd.P95 < x.EndToEnd.Median {
			t.Errorf("result %d: %+v", i, x)
		}
	}
	if out.SpeedupInfer <= 0 || out.SpeedupEndToEnd <= 0 {
		t.Errorf("speed-ups %v, %v", out.SpeedupInfer, out.SpeedupEndToEnd)
	}
}

// The table names both models and prints the speed-up lines; the frames come
// from a video source.
func TestBenchTableVideo(t *testing.T) {
	fp32 := fixtures.Model(t, "yolov5n.onnx")
	video := fixtures.Path(t, "media", "vtest.avi")
	r := yedge(t, nil, "bench", "--models", fp32+","+fp32, "--source", video, "--frames", "2",
		"--runs", "2", "--warmup", "0", "--threads", "1", "--provider", "cpu")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"infer median ms", "end-to-end p95 ms", "768x576", "speed-up of " + fp32 + " (raw-head) vs " + fp32 + " (raw-head) (inference)", "(end to end)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestBenchBadInput(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no model", []string{"bench"}, exitUsage, "--model"},
		{"zero runs", []string{"bench", "--model", model, "--runs", "0"}, exitUsage, "--runs"},
		{"missing model", []string{"bench", "--model", "/nonexistent/m.onnx", "--runs", "1"}, exitModel, "m.onnx"},
		{"missing source", []string{"bench", "--model", model, "--source", "/nonexistent/v.avi", "--runs", "1"}, exitSource, "v.avi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := yedge(t, nil, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr:\n%s", r.code, tc.code, r.stderr)
			}
		})
	}
}

func TestBenchPipelineJSON(t *testing.T) {
	fp32 := fixtures.Model(t, "yolov5n.onnx")
	video := fixtures.Path(t, "media", "vtest.avi")
	r := yedge(t, nil, "bench", "--pipeline", "--model", "null", "--model", fp32, "--source", video,
		"--frames", "20", "--warmup", "2", "--json", "--threads", "1", "--provider", "cpu")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	type stage struct {
		Median *float64 `json:"median_ms"`
		Busy   *float64 `json:"busy"`
	}
	var out struct {
		PipelineFPS   float64          `json:"pipeline_fps"`
		InferMedianMs *float64         `json:"infer_median_ms"`
		Stages        map[string]stage `json:"stages"`
		Results       []struct {
			Model         string           `json:"model"`
			Frames        int              `json:"frames"`
			PipelineFPS   float64          `json:"pipeline_fps"`
			InferMedianMs float64          `json:"infer_median_ms"`
			Stages        map[string]stage `json:"stages"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if out.PipelineFPS <= 0 || out.InferMedianMs == nil || len(out.Results) != 2 {
		t.Fatalf("report:\n%s", r.stdout)
	}
	for _, name := range []string{"read", "preprocess", "infer", "postprocess"} {
		s, ok := out.Stages[name]
		if !ok || s.Median == nil || s.Busy == nil || *s.Busy < 0 {
			t.Errorf("stage %s: %+v in\n%s", name, s, r.stdout)
		}
	}
	null, real := out.Results[0], out.Results[1]
	if null.Model != "null" || real.Model != fp32 || null.Frames != 20 || real.Frames != 20 {
		t.Errorf("results %+v", out.Results)
	}
	// The null model's inference takes no time; the real one's does.
	if null.InferMedianMs > 0.05 || real.InferMedianMs < 1 {
		t.Errorf("infer median: null %.3f ms, yolov5n %.3f ms", null.InferMedianMs, real.InferMedianMs)
	}
	if r := yedge(t, nil, "bench", "--pipeline", "--model", "null"); r.code != exitUsage || !strings.Contains(r.stderr, "--source") {
		t.Errorf("--pipeline without --source: exit %d, %s", r.code, r.stderr)
	}
}
