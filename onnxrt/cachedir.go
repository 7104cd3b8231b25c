package onnxrt

import (
	"os"
	"path/filepath"
	"strings"
)

// DefaultTensorRTCacheDir is the one rule for where TensorRT engine and
// timing caches go when none is configured: systemd's CacheDirectory
// ($CACHE_DIRECTORY, first entry)/tensorrt under a service, else the
// user cache folder (~/.cache/yedge/tensorrt), else a folder in the
// system temp dir.
func DefaultTensorRTCacheDir() string {
	if d := os.Getenv("CACHE_DIRECTORY"); d != "" {
		return filepath.Join(strings.Split(d, ":")[0], "tensorrt")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "yedge", "tensorrt")
	}
	return filepath.Join(os.TempDir(), "yedge-tensorrt")
}
