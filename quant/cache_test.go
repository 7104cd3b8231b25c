package quant

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	testSHA  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	otherSHA = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func testCache() *Cache {
	a := NewTensorStats(0)
	a.Collect(gaussianWithOutliers()[:50_000])
	a.Collect([]float32{float32(math.NaN()), 0.1, 1e-30})
	z := NewTensorStats(64)
	z.Collect([]float32{0, 0})
	return &Cache{
		Version: CacheVersion, ModelSHA256: testSHA, Images: 3, Preprocess: "letterbox 640x640",
		Tensors: map[string]*TensorStats{"images": a, "/model.0/act/Mul_output_0": z, "empty": NewTensorStats(16)},
		Amax:    map[string]float64{"images": 0.1 + 0.2, "/model.0/act/Mul_output_0": 0},
		Method:  "entropy",
	}
}

func TestCacheRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "calib.json")
	c := testCache()
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got, c)
	}
	// Deterministic: saving again writes the same bytes.
	b1, _ := os.ReadFile(path)
	if err := got.Save(path); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(path)
	if string(b1) != string(b2) {
		t.Error("second save differs")
	}
	// Atomic write leaves no temporary files.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only calib.json", names)
	}
	// The loaded statistics still compute the same amax.
	for _, m := range []CalibMethod{Entropy, MSE, Percentile} {
		x, _ := c.Tensors["images"].ComputeAmax(m, 0)
		y, _ := got.Tensors["images"].ComputeAmax(m, 0)
		if x != y {
			t.Errorf("%s amax %v after load, %v before", m, y, x)
		}
	}
}

func TestCacheSaveErrors(t *testing.T) {
	dir := t.TempDir()
	err := testCache().Save(filepath.Join(dir, "missing", "calib.json"))
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing dir: %v", err)
	}
	bad := testCache()
	bad.Tensors["images"].AbsMax = math.NaN()
	err = bad.Save(filepath.Join(dir, "c.json"))
	if err == nil || !strings.Contains(err.Error(), `tensor "images"`) {
		t.Errorf("NaN stats saved: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed saves left %d files", len(ents))
	}
}

func TestCacheCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "calib.json")
	if err := testCache().Save(path); err != nil {
		t.Fatal(err)
	}
	c, err := LoadCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(testSHA); err != nil {
		t.Error(err)
	}
	if err := c.Check(strings.ToUpper(testSHA)); err != nil {
		t.Errorf("upper-case hex: %v", err)
	}
	err = c.Check(otherSHA)
	want := `calibration cache "` + path + `" was made for model sha256 0123456789ab…, not fedcba987654…`
	if err == nil || err.Error() != want {
		t.Errorf("Check(other) = %v\nwant %s", err, want)
	}
	near := testSHA[:60] + "ffff"
	if err := c.Check(near); err == nil || !strings.Contains(err.Error(), near) {
		t.Errorf("same prefix: %v (want the full hashes)", err)
	}
}

func TestLoadCacheMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.json")
	_, err := LoadCache(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseCacheErrors(t *testing.T) {
	good := `"version":1,"model_sha256":"` + testSHA + `","images":2,"preprocess":"p"`
	st := `{"bins":4,"count":2,"min":0,"max":2,"abs_max":2,"hist":[1,1,0,0],"edges":[0,1,2,3,4]}`
	for _, tc := range []struct {
		name, data, err string
	}{
		{"ok", `{` + good + `,"tensors":{"a":` + st + `}}`, ""},
		{"ok no tensors data", `{` + good + `,"tensors":{}}`, ""},
		{"empty", ``, "bad JSON"},
		{"not json", `calib`, "bad JSON"},
		{"truncated", `{` + good, "bad JSON"},
		{"NaN", `{` + good + `,"tensors":{"a":{"bins":4,"count":1,"min":NaN}}}`, "bad JSON"},
		{"huge number", `{` + good + `,"tensors":{"a":{"bins":4,"count":1,"min":1e999}}}`, "bad JSON"},
		{"trailing", `{` + good + `,"tensors":{}} {}`, "bad JSON"},
		{"tiny range", `{` + good + `,"tensors":{"a":{"bins":1,"hist":[0],"edges":[0,1e-300]}}}`, "outside float32"},
		{"huge bins", `{` + good + `,"tensors":{"a":{"bins":1000000000}}}`, "bins 1000000000 out of range"},
		{"beyond float32", `{` + good + `,"tensors":{"a":{"bins":4,"count":1,"max":1e300,"abs_max":1e300}}}`, "beyond float32"},
		{"unknown field", `{` + good + `,"tensors":{},"colour":1}`, "unknown field"},
		{"no version", `{"model_sha256":"` + testSHA + `","images":1,"tensors":{}}`, "missing version"},
		{"wrong version", `{"version":2,"model_sha256":"` + testSHA + `","images":1,"tensors":{}}`, "version 2, this yedge reads version 1"},
		{"no sha", `{"version":1,"images":1,"tensors":{}}`, "missing model_sha256"},
		{"bad sha", `{"version":1,"model_sha256":"abc","images":1,"tensors":{}}`, "not 64 hex digits"},
		{"no images", `{"version":1,"model_sha256":"` + testSHA + `","tensors":{}}`, "images 0"},
		{"no tensors", `{` + good + `}`, "missing tensors"},
		{"null tensor", `{` + good + `,"tensors":{"a":null}}`, `tensor "a": null`},
		{"zero bins", `{` + good + `,"tensors":{"a":{"bins":0}}}`, "bins 0"},
		{"edges mismatch", `{` + good + `,"tensors":{"a":{"bins":4,"count":2,"max":2,"abs_max":2,"hist":[1,1],"edges":[0,1]}}}`, "2 histogram bins with 2 edges"},
		{"negative count", `{` + good + `,"tensors":{"a":{"bins":4,"count":2,"max":2,"abs_max":2,"hist":[3,-1],"edges":[0,1,2]}}}`, "bin 1 count -1"},
		{"nonuniform", `{` + good + `,"tensors":{"a":{"bins":4,"count":2,"max":2,"abs_max":2,"hist":[1,1],"edges":[0,1,3]}}}`, "uniform grid"},
		{"edge start", `{` + good + `,"tensors":{"a":{"bins":4,"count":2,"max":2,"abs_max":2,"hist":[1,1],"edges":[1,2,3]}}}`, "first histogram edge"},
		{"min>max", `{` + good + `,"tensors":{"a":{"bins":4,"count":2,"min":3,"max":2,"abs_max":3}}}`, "inconsistent"},
		{"bad method", `{` + good + `,"tensors":{},"method":"kl","amax":{"a":1}}`, `unknown method "kl"`},
		{"amax without method", `{` + good + `,"tensors":{},"amax":{"a":1}}`, "amax without method"},
		{"negative amax", `{` + good + `,"tensors":{},"method":"max","amax":{"a":-1}}`, `tensor "a": amax -1`},
	} {
		c, err := ParseCache([]byte(tc.data), "calib.json")
		if tc.err == "" {
			if err != nil || c == nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), `calibration cache "calib.json"`) {
			t.Errorf("%s: error %v, want %q naming the file", tc.name, err, tc.err)
		}
	}
}

func FuzzParseCache(f *testing.F) {
	c := testCache()
	c.Tensors["images"] = NewTensorStats(8)
	c.Tensors["images"].Collect([]float32{1, -2, 3.5})
	dir := f.TempDir()
	path := filepath.Join(dir, "c.json")
	if err := c.Save(path); err != nil {
		f.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	f.Add(data)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"model_sha256":"` + testSHA + `","images":1,"tensors":{"a":{"bins":1,"hist":[0],"edges":[0,1e308]}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCache(data, "fuzz")
		if err != nil {
			return
		}
		// Whatever parses must save, reload and keep computing amax.
		p := filepath.Join(t.TempDir(), "c.json")
		if err := c.Save(p); err != nil {
			t.Fatalf("parsed cache does not save: %v", err)
		}
		if _, err := LoadCache(p); err != nil {
			t.Fatalf("saved cache does not load: %v", err)
		}
		for _, s := range c.Tensors {
			for _, m := range calibMethods {
				// Errors are fine (no values, percentile 0); a NaN or
				// negative amax is not.
				if amax, err := s.ComputeAmax(m, 0); err == nil && (math.IsNaN(amax) || amax < 0) {
					t.Fatalf("%s amax = %v", m, amax)
				}
			}
			s.Collect([]float32{1, 1e30})
			if err := s.Merge(NewTensorStats(4)); err != nil {
				t.Fatalf("merging empty statistics: %v", err)
			}
		}
	})
}
