package config

import (
	"strconv"
	"strings"
	"testing"

	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/quant"
	"github.com/yedge/yedge/source"
)

// TestParsedOnce: the string keys are parsed when the file is read, their
// defaults carry typed values too, and a value that does not parse is a
// problem at its line (Validate) and refuses the plan (ParseErr).
func TestParsedOnce(t *testing.T) {
	dir := testDir(t)
	quantize := strings.Replace(baseYAML, "  int8: {{dir}}/int8.onnx",
		"  imgsz: 480x640\n  interp: area\n  quantize:\n    calib: {{dir}}/out\n    cache_dir: {{dir}}/q\n    target: cpu\n    exclude: 'model\\.24'", 1)
	cfg, err := Load(writeConfig(t, dir, quantize))
	if err != nil {
		t.Fatal(err)
	}
	h, w := cfg.InputSize()
	if h != 480 || w != 640 || cfg.Interp() != preprocess.InterpReference || cfg.Source(0).Kind != source.Video ||
		!cfg.Source(1).Kind.Live() || cfg.QuantizeTarget() != quant.TargetCPU || cfg.ParseErr() != nil {
		t.Errorf("parsed %dx%d %v %v %v %v, err %v", h, w, cfg.Interp(), cfg.Source(0).Kind, cfg.Source(1).Kind, cfg.QuantizeTarget(), cfg.ParseErr())
	}
	if m, _ := quant.ParseCalibMethod(cfg.Model.Quantize.Method); cfg.QuantizeMethod() != m || m != quant.DefaultMethod(quant.TargetCPU) {
		t.Errorf("method default: %q, typed %v", cfg.Model.Quantize.Method, cfg.QuantizeMethod())
	}
	if re := cfg.QuantizeExclude(); re == nil || !re.MatchString("/model.24/m.0/Conv") {
		t.Errorf("exclude: %v", re)
	}
	// Defaults: the typed value of a default is the default's.
	cfg, err = Load(writeConfig(t, dir, strings.Replace(baseYAML, "  int8: {{dir}}/int8.onnx",
		"  quantize:\n    calib: {{dir}}/out\n    cache_dir: {{dir}}/q", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Interp() != preprocess.DeployInterp || cfg.QuantizeTarget() != quant.TargetTensorRT || cfg.QuantizeMethod() != quant.DefaultMethod(quant.TargetTensorRT) {
		t.Errorf("defaults: %v %v %v", cfg.Interp(), cfg.QuantizeTarget(), cfg.QuantizeMethod())
	}
	for _, tc := range []struct{ key, from, to string }{
		{"model.interp", "  interp: area", "  interp: cubic"},
		{"model.imgsz", "  imgsz: 480x640", "  imgsz: 480x"},
		{"model.quantize.target", "    target: cpu", "    target: gpu"},
		{"model.quantize.exclude", `'model\.24'`, `'('`},
		{"streams[1].uri", "rtsp://cam.local/stream", "gopher://cam.local/stream"},
	} {
		text := strings.Replace(quantize, tc.from, tc.to, 1)
		if text == quantize {
			t.Fatalf("%s: %q not in the config", tc.key, tc.from)
		}
		c, err := Load(writeConfig(t, dir, text))
		want := ":" + strconv.Itoa(lineOf(t, strings.ReplaceAll(text, "{{dir}}", dir), strings.TrimSpace(tc.to))) + ": " + tc.key + ": "
		if err == nil || !strings.Contains(err.Error(), want) || c == nil || c.ParseErr() == nil {
			t.Errorf("%s: error %v, want one with %q and a ParseErr", tc.key, err, want)
		}
	}
}
