package plan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/ptq"
	"github.com/yedge/yedge/quant"
)

// EnsureInt8 returns the path of an int8 model quantized from fp32 with
// q, reusing the one in q.CacheDir when the FP32 model and the options are
// unchanged (the file name is a hash of both), and the calibration cache
// there when only the options changed. Calibration runs on the CPU.
func EnsureInt8(ctx context.Context, fp32 string, q Quantize, rt onnxrt.Options, log *slog.Logger) (string, error) {
	return ensureInt8(ctx, fp32, q, rt, log, nil)
}

// quantizeKey identifies an int8 model by the FP32 model's hash and the
// quantization options (the model store's made_from).
func quantizeKey(fp32SHA string, q Quantize) string {
	key, _ := json.Marshal(struct {
		Model   string
		Q       Quantize
		Version int
	}{fp32SHA, Quantize{Images: q.Images, Target: q.Target, Method: q.Method, KeepHead: q.KeepHead, Exclude: q.Exclude,
		Height: q.Height, Width: q.Width}, quant.CacheVersion})
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:])
}

// ensureInt8 is EnsureInt8 reporting calibration progress.
func ensureInt8(ctx context.Context, fp32 string, q Quantize, rt onnxrt.Options, log *slog.Logger, progress func(done, total int)) (string, error) {
	m, err := onnx.Load(fp32)
	if err != nil {
		return "", err
	}
	sum, _ := hex.DecodeString(quantizeKey(m.SHA256(), q))
	if err := os.MkdirAll(q.CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("model.quantize.cache_dir: %w", err)
	}
	out := filepath.Join(q.CacheDir, "int8-"+hex.EncodeToString(sum[:8])+".onnx")
	if _, err := onnx.Load(out); err == nil {
		log.Info("reusing the int8 model quantized earlier", "model", out)
		return out, nil
	}
	log.Info("quantizing at start-up", "fp32", fp32, "target", q.Target, "method", q.Method, "calib", q.Calib,
		"input", fmt.Sprintf("%dx%d", q.Height, q.Width))
	// The same recipe as `yedge quantize`, with the plan's resolved
	// options and a calibration cache per FP32 model in the cache folder.
	keepHead := q.KeepHead
	job, err := ptq.Open(ptq.Recipe{Model: fp32, Calib: q.Calib, Images: q.Images, Height: q.Height, Width: q.Width,
		Target: q.Target, Method: q.Method, KeepHead: &keepHead, Exclude: q.exclude,
		Cache: filepath.Join(q.CacheDir, "calib-"+m.SHA256()[:16]+".json"), Runtime: rt, Progress: progress, Logger: log})
	if err != nil {
		return "", err
	}
	defer job.Close()
	res, err := job.Run(ctx)
	if err != nil {
		return "", err
	}
	if err := res.Model.Save(out); err != nil {
		return "", err
	}
	log.Info("int8 model written", "model", out)
	return out, nil
}
