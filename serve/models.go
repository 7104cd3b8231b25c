package serve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/quant"
)

// QuantizeSpec asks for the int8 model to be made at start-up.
type QuantizeSpec struct {
	Calib    string
	Images   int
	Target   string
	Method   string
	KeepHead bool
	Exclude  string
	CacheDir string
	Height   int
	Width    int
}

// EnsureInt8 returns the path of an int8 model quantized from fp32 with the
// given options, reusing the one in CacheDir when the FP32 model and the
// options are unchanged (the file name is a hash of both), and the
// calibration cache there when only the options changed.
func EnsureInt8(ctx context.Context, fp32 string, q QuantizeSpec, rt pipeline.Config, log *slog.Logger) (string, error) {
	m, err := onnx.Load(fp32)
	if err != nil {
		return "", err
	}
	target, err := quant.ParseTarget(q.Target)
	if err != nil {
		return "", err
	}
	method, err := quant.ParseCalibMethod(q.Method)
	if err != nil {
		return "", err
	}
	var exclude *regexp.Regexp
	if q.Exclude != "" {
		if exclude, err = regexp.Compile(q.Exclude); err != nil {
			return "", fmt.Errorf("quantize.exclude: %w", err)
		}
	}
	key, _ := json.Marshal(struct {
		Model   string
		Q       QuantizeSpec
		Version int
	}{m.SHA256(), QuantizeSpec{Images: q.Images, Target: q.Target, Method: q.Method, KeepHead: q.KeepHead, Exclude: q.Exclude, Height: q.Height, Width: q.Width}, quant.CacheVersion})
	sum := sha256.Sum256(key)
	if err := os.MkdirAll(q.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("quantize.cache_dir: %w", err)
	}
	out := filepath.Join(q.CacheDir, "int8-"+hex.EncodeToString(sum[:8])+".onnx")
	if _, err := onnx.Load(out); err == nil {
		log.Info("reusing the int8 model quantized earlier", "model", out)
		return out, nil
	}
	log.Info("quantizing at start-up", "fp32", fp32, "target", target, "method", method, "calib", q.Calib)
	inputs, err := pipeline.NewImageInputs(q.Calib, q.Images, q.Height, q.Width)
	if err != nil {
		return "", err
	}
	defer inputs.Close()
	o := quant.Options{Target: target, Method: method, Exclude: exclude, KeepHead: q.KeepHead,
		CachePath: filepath.Join(q.CacheDir, "calib-"+m.SHA256()[:16]+".json"), Preprocess: inputs.Describe(), Logger: log}
	o.Calibrate.Runtime = rt.Runtime
	o.Calibrate.Runtime.Provider = "cpu"
	o.Calibrate.Logger = log
	res, err := quant.Quantize(ctx, m, inputs, o)
	if err != nil {
		return "", err
	}
	if err := res.Model.Save(out); err != nil {
		return "", err
	}
	log.Info("int8 model written", "model", out)
	return out, nil
}
