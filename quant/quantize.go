package quant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/yedge/yedge/onnx"
)

// MetadataKey is the model metadata key under which the quantizer records
// how a model was quantized.
const MetadataKey = "yedge_quantization"

// Options controls Quantize.
type Options struct {
	Target     Target
	Method     CalibMethod // activation calibrator
	Percentile float64     // for the percentile method (default 99.99)
	Exclude    *regexp.Regexp
	// ExcludeNodes are node names kept in float (e.g. from sensitivity).
	ExcludeNodes []string
	// KeepHead keeps the Detect-head Convs in float.
	KeepHead bool
	// CachePath, when set, is read if it exists (and matches the model) and
	// written after calibration.
	CachePath string
	// Preprocess describes the calibration preprocessing, recorded in the
	// cache so that a cache made at another input size is not reused.
	Preprocess string
	Calibrate  CalibrateOptions
	Logger     *slog.Logger
}

// Result is a quantized model and how it was made.
type Result struct {
	Model    *onnx.Model
	Analysis *Analysis
	Ranges   map[string]Range // per calibrated tensor, before scale sharing
	Cache    *Cache
	CacheHit bool
	Images   int
}

// Info is recorded in the quantized model's metadata.
type Info struct {
	Target     Target      `json:"target"`
	Method     CalibMethod `json:"method"`
	Percentile float64     `json:"percentile,omitempty"`
	Images     int         `json:"calibration_images"`
	Excluded   []string    `json:"excluded,omitempty"`
	Source     string      `json:"source_sha256"`
}

// allTensors is the union of the tensors either target would calibrate
// with nothing excluded, so that one calibration cache serves any target,
// method or exclusion.
func allTensors(m *onnx.Model) ([]string, error) {
	set := map[string]bool{}
	for _, t := range []Target{TargetTensorRT, TargetCPU} {
		p, err := Analyze(m, AnalyzeOptions{Target: t})
		if err != nil {
			return nil, err
		}
		for _, x := range p.Tensors {
			set[x] = true
		}
	}
	return slices.Sorted(mapsKeys(set)), nil
}

// Statistics returns calibration statistics for every tensor either target
// may quantize: from o.CachePath when it exists and was made for this model
// and preprocessing, else by running the model over the inputs (and then
// written to o.CachePath when set). It reports whether the cache was used.
func Statistics(ctx context.Context, m *onnx.Model, in InputSource, o Options) (*Cache, bool, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	sha := m.SHA256()
	if o.CachePath != "" {
		c, err := LoadCache(o.CachePath)
		switch {
		case err == nil:
			if err := c.Check(sha); err != nil {
				return nil, false, err
			}
			if o.Preprocess != "" && c.Preprocess != "" && c.Preprocess != o.Preprocess {
				return nil, false, fmt.Errorf("calibration cache %q was made with %s, not %s", o.CachePath, c.Preprocess, o.Preprocess)
			}
			log.Info("calibration cache reused", "cache", o.CachePath, "images", c.Images)
			return c, true, nil
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, false, err
		}
	}
	if in == nil || in.Len() == 0 {
		return nil, false, errors.New("no calibration inputs (give --calib DIR with images, or an existing --calib-cache)")
	}
	tensors, err := allTensors(m)
	if err != nil {
		return nil, false, err
	}
	stats, used, err := Calibrate(ctx, m, tensors, in, o.Calibrate)
	if err != nil {
		return nil, false, err
	}
	c := &Cache{Version: CacheVersion, ModelSHA256: sha, Images: used, Preprocess: o.Preprocess, Tensors: stats}
	if o.CachePath != "" {
		if err := c.Save(o.CachePath); err != nil {
			return nil, false, err
		}
		log.Info("calibration cache written", "cache", o.CachePath)
	}
	return c, false, nil
}

// Quantize calibrates m on the inputs (or reuses a matching cache), places
// Q/DQ nodes for the target and returns the quantized model (not yet
// written).
func Quantize(ctx context.Context, m *onnx.Model, in InputSource, o Options) (*Result, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.Percentile == 0 {
		o.Percentile = 99.99
	}
	an, err := Analyze(m, AnalyzeOptions{Target: o.Target, Exclude: o.Exclude, ExcludeNodes: o.ExcludeNodes, KeepHead: o.KeepHead})
	if err != nil {
		return nil, err
	}
	for _, w := range an.Warnings {
		log.Warn(w)
	}
	log.Info("quantization analysis", "summary", an.Summary())
	res := &Result{Analysis: an}
	res.Cache, res.CacheHit, err = Statistics(ctx, m, in, o)
	if err != nil {
		return nil, err
	}
	res.Images = res.Cache.Images
	for _, t := range an.Tensors {
		if res.Cache.Tensors[t] == nil {
			return nil, fmt.Errorf("calibration cache lacks tensor %s; delete it to recalibrate", t)
		}
	}
	res.Ranges = map[string]Range{}
	amax := map[string]float64{}
	for _, t := range an.Tensors {
		st := res.Cache.Tensors[t]
		a, err := st.ComputeAmax(o.Method, o.Percentile)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", t, err)
		}
		res.Ranges[t] = Range{Amax: a, Min: st.Min}
		amax[t] = a
	}
	res.Cache.Method = string(o.Method)
	res.Cache.Amax = amax
	q, err := Place(m, an, res.Ranges)
	if err != nil {
		return nil, err
	}
	info := Info{Target: o.Target, Method: o.Method, Images: res.Images, Source: m.SHA256()}
	if o.Method == Percentile {
		info.Percentile = o.Percentile
	}
	for name := range an.Excluded {
		info.Excluded = append(info.Excluded, name)
	}
	slices.Sort(info.Excluded)
	b, _ := json.Marshal(info)
	q.SetMetadata(MetadataKey, string(b))
	if q.Proto.ProducerName != "" && !strings.Contains(q.Proto.ProducerName, "yedge") {
		q.Proto.ProducerName += " + yedge quantize"
	}
	res.Model = q
	return res, nil
}

// WriteTRTTable writes the TensorRT calibration table for the analysis's
// tensors (implicit quantization), atomically.
func (r *Result) WriteTRTTable(path string) error {
	var sb strings.Builder
	if err := WriteTRTCalibTable(&sb, r.Cache.Amax, ""); err != nil {
		return err
	}
	return onnx.WriteFileAtomic(path, []byte(sb.String()), 0o644)
}

// DefaultMethod is the calibrator used for a target when none is asked
// for: histogram MSE for both layouts, chosen by the accuracy table in
// README.md (scripts/calib-table.sh reruns it).
func DefaultMethod(Target) CalibMethod { return MSE }

// DefaultKeepHead reports whether the Detect-head convolutions stay in
// float for a target when not asked: yes for both layouts (same table).
func DefaultKeepHead(Target) bool { return true }
