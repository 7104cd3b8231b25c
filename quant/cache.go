package quant

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/yedge/yedge/internal/fsx"
)

// CacheVersion is the calibration cache format version written by Save
// and the only one LoadCache accepts.
const CacheVersion = 1

// Cache is a calibration cache: the statistics collected per tensor over
// the calibration inputs, stored as JSON so that changing the calibration
// method, percentile or exclusions reuses them without rerunning the model
// (pytorch-quantization keeps the same state in its calibrators between
// collect and compute_amax).
type Cache struct {
	Version     int    `json:"version"`
	ModelSHA256 string `json:"model_sha256"`
	Images      int    `json:"images"`
	// Preprocess describes the calibration preprocessing, e.g.
	// "letterbox 640x640".
	Preprocess string                  `json:"preprocess"`
	Tensors    map[string]*TensorStats `json:"tensors"`
	// Amax holds the amax per tensor for Method, the method last computed.
	Amax   map[string]float64 `json:"amax,omitempty"`
	Method string             `json:"method,omitempty"`

	name string // file it was read from or written to, for messages
}

// LoadCache reads and validates the calibration cache at path. Errors name
// the file; a missing file's error wraps fs.ErrNotExist.
func LoadCache(path string) (*Cache, error) {
	data, err := fsx.ReadFile(path, fsx.MaxCacheBytes)
	if err != nil {
		return nil, fmt.Errorf("calibration cache: %w", err)
	}
	return ParseCache(data, path)
}

// ParseCache decodes and validates a calibration cache; name identifies it
// in errors. It rejects bad JSON, unknown fields, a version other than
// CacheVersion, missing fields (version, model_sha256, images, tensors)
// and inconsistent or non-finite statistics.
func ParseCache(data []byte, name string) (*Cache, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("calibration cache %q: %s", name, fmt.Sprintf(format, a...))
	}
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fail("bad JSON: %v", err)
	}
	if head.Version == nil {
		return nil, fail("missing version")
	}
	if *head.Version != CacheVersion {
		return nil, fail("version %d, this yedge reads version %d (delete the cache to recalibrate)", *head.Version, CacheVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	c := &Cache{}
	if err := dec.Decode(c); err != nil {
		return nil, fail("bad JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail("bad JSON: data after the cache object")
	}
	if err := c.validate(); err != nil {
		return nil, fail("%v", err)
	}
	c.name = name
	return c, nil
}

// validate reports the first missing field or bad value.
func (c *Cache) validate() error {
	switch {
	case c.Version != CacheVersion:
		return fmt.Errorf("version %d, want %d", c.Version, CacheVersion)
	case c.ModelSHA256 == "":
		return errors.New("missing model_sha256")
	case !isSHA256(c.ModelSHA256):
		return fmt.Errorf("model_sha256 %q is not 64 hex digits", c.ModelSHA256)
	case c.Images <= 0:
		return fmt.Errorf("images %d: want at least 1", c.Images)
	case c.Tensors == nil:
		return errors.New("missing tensors")
	}
	for name, t := range c.Tensors {
		if t == nil {
			return fmt.Errorf("tensor %q: null statistics", name)
		}
		if err := t.validate(); err != nil {
			return fmt.Errorf("tensor %q: %v", name, err)
		}
	}
	if c.Method != "" {
		if !CalibMethod(c.Method).valid() {
			return fmt.Errorf("unknown method %q (choose max, entropy, mse or percentile)", c.Method)
		}
	} else if len(c.Amax) > 0 {
		return errors.New("amax without method")
	}
	for name, a := range c.Amax {
		if math.IsNaN(a) || math.IsInf(a, 0) || a < 0 {
			return fmt.Errorf("tensor %q: amax %v is not a non-negative number", name, a)
		}
	}
	return nil
}

// isSHA256 reports whether s is 64 hex digits.
func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		switch {
		case '0' <= r && r <= '9', 'a' <= r && r <= 'f', 'A' <= r && r <= 'F':
		default:
			return false
		}
	}
	return true
}

// Check returns an error unless the cache was made for the model whose
// SHA-256 (hex) is modelSHA256, so that statistics of another model are
// never reused.
func (c *Cache) Check(modelSHA256 string) error {
	if strings.EqualFold(c.ModelSHA256, modelSHA256) {
		return nil
	}
	a, b := shortSHA(c.ModelSHA256), shortSHA(modelSHA256)
	if a == b {
		a, b = c.ModelSHA256, modelSHA256
	}
	name := c.name
	if name == "" {
		name = "(unsaved)"
	}
	return fmt.Errorf("calibration cache %q was made for model sha256 %s…, not %s…", name, a, b)
}

// shortSHA is the first 12 hex digits of a SHA-256, for messages.
func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// Save validates the cache and writes it to path as JSON (compact, keys
// sorted, float64 values exact) atomically: a temporary file in the same
// directory is written, synced and renamed over path, so a reader sees the
// old or the new cache, never a partial one.
func (c *Cache) Save(path string) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("calibration cache %q: %v", path, err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("calibration cache %q: %w", path, err)
	}
	data = append(data, '\n')
	if err := writeFileAtomic(path, data, 0o644); err != nil {
		return fmt.Errorf("calibration cache: %w", err)
	}
	c.name = path
	return nil
}

// writeFileAtomic writes data to path via a synced temporary file in the
// same directory and a rename, then syncs the directory (best effort).
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err == nil {
			return
		}
		if !closed {
			err = errors.Join(err, f.Close())
		}
		if rerr := os.Remove(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing the temporary file: %w", rerr))
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	closed = true
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	// Best effort: the file is complete, synced and in place; a failed
	// directory sync only leaves the rename less durable across a power cut,
	// and some file systems refuse fsync on a directory (EINVAL).
	_ = syncDir(dir)
	return nil
}

// syncDir fsyncs the directory dir, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
