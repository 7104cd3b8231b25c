package eval

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLabels(t *testing.T) {
	const w, h = 200, 100
	tests := []struct {
		name    string
		in      string
		want    []Label
		wantErr string // substring; "" means success
	}{
		{
			name: "good file with blank lines, CRLF and BOM",
			in:   "\xef\xbb\xbf0 0.5 0.5 0.2 0.4\r\n\r\n   \n7 0.25 0.75 0.1 0.2\n",
			want: []Label{
				{Box: Box{80, 30, 120, 70}, Class: 0},
				{Box: Box{40, 65, 60, 85}, Class: 7},
			},
		},
		{
			name: "no trailing newline, float class",
			in:   "2.0 0.5 0.5 1 1",
			want: []Label{{Box: Box{0, 0, 200, 100}, Class: 2}},
		},
		{
			name: "box past the edge is clipped to the image",
			in:   "3 0.05 0.95 0.2 0.2\n",
			want: []Label{{Box: Box{0, 85, 30, 100}, Class: 3}},
		},
		{
			name: "exact duplicates are removed, rows then sorted",
			in:   "5 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n",
			want: []Label{
				{Box: Box{80, 40, 120, 60}, Class: 1},
				{Box: Box{80, 40, 120, 60}, Class: 5},
			},
		},
		{
			name: "order kept without duplicates",
			in:   "5 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n",
			want: []Label{
				{Box: Box{80, 40, 120, 60}, Class: 5},
				{Box: Box{80, 40, 120, 60}, Class: 1},
			},
		},
		{name: "empty", in: "", want: nil},
		{name: "only blank lines", in: "\n \n\t\n", want: nil},
		{name: "too few columns", in: "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n", wantErr: "line 2: want 5 columns"},
		{name: "segment columns", in: "0 0.1 0.1 0.2 0.1 0.2 0.2\n", wantErr: "line 1: want 5 columns"},
		{name: "not a number", in: "\n\n0 0.5 abc 0.2 0.2\n", wantErr: `line 3: cy: "abc" is not a number`},
		{name: "NaN", in: "0 NaN 0.5 0.2 0.2\n", wantErr: "line 1: cx"},
		{name: "Inf", in: "0 0.5 0.5 +Inf 0.2\n", wantErr: "line 1: w"},
		{name: "negative width", in: "0 0.5 0.5 -0.2 0.2\n", wantErr: "line 1: w: negative"},
		{name: "negative height", in: "0 0.5 0.5 0.2 -0.01\n", wantErr: "line 1: h: negative"},
		{name: "negative class", in: "-1 0.5 0.5 0.2 0.2\n", wantErr: "line 1: class: negative"},
		{name: "fractional class", in: "1.5 0.5 0.5 0.2 0.2\n", wantErr: "line 1: class"},
		{name: "huge class", in: "1e30 0.5 0.5 0.2 0.2\n", wantErr: "line 1: class"},
		{name: "not normalized", in: "0 1.5 0.5 0.2 0.2\n", wantErr: "line 1: cx"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLabels(strings.NewReader(tc.in), w, h)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.Class != w.Class || !near(g.Box.X1, w.Box.X1) || !near(g.Box.Y1, w.Box.Y1) ||
					!near(g.Box.X2, w.Box.X2) || !near(g.Box.Y2, w.Box.Y2) {
					t.Errorf("label %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
	if _, err := ParseLabels(strings.NewReader("0 0.5 0.5 0.2 0.2\n"), 0, 100); err == nil {
		t.Error("zero width: want an error")
	}
}

func TestReadLabels(t *testing.T) {
	dir := t.TempDir()
	labels, err := ReadLabels(filepath.Join(dir, "missing.txt"), 640, 480)
	if labels != nil || err != nil {
		t.Errorf("missing file: got %v, %v; want nil, nil", labels, err)
	}
	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte("0 0.5 0.5 0.1 0.1\n0 0.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadLabels(bad, 640, 480)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad file: err = %v, want the path and line 2", err)
	}
	good := filepath.Join(dir, "good.txt")
	if err := os.WriteFile(good, []byte("4 0.5 0.5 0.5 0.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	labels, err = ReadLabels(good, 640, 480)
	if err != nil || len(labels) != 1 || labels[0] != (Label{Box: Box{160, 120, 480, 360}, Class: 4}) {
		t.Errorf("good file: got %+v, %v", labels, err)
	}
	if _, err := ReadLabels(dir, 640, 480); err == nil {
		t.Error("directory: want an error")
	}
}

func TestLabelPath(t *testing.T) {
	sep := string(filepath.Separator)
	j := func(s string) string { return strings.ReplaceAll(s, "/", sep) }
	tests := []struct{ in, want string }{
		{"/data/coco/images/000000000139.jpg", "/data/coco/labels/000000000139.txt"},
		{"/data/images/coco/images/a.b.png", "/data/images/coco/labels/a.b.txt"},
		{"/data/images/train/x.JPEG", "/data/labels/train/x.txt"},
		{"images/x.webp", "labels/x.txt"},
		{"/data/myimages/x.jpg", "/data/myimages/x.txt"},
		{"/data/images/noext", "/data/labels/noext.txt"},
	}
	for _, tc := range tests {
		if got := LabelPath(j(tc.in)); got != j(tc.want) {
			t.Errorf("LabelPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// makeDataset writes a small dataset folder and returns its path.
func makeDataset(t *testing.T, images []string, dataYAML string) string {
	t.Helper()
	dir := t.TempDir()
	if images != nil {
		if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range images {
		if err := os.WriteFile(filepath.Join(dir, "images", name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if dataYAML != "" {
		if err := os.WriteFile(filepath.Join(dir, "data.yaml"), []byte(dataYAML), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadDataset(t *testing.T) {
	imgs := []string{"b.png", "a.jpg", "c.JPEG", "notes.txt", "d.webp", "e.bmp"}
	tests := []struct {
		name      string
		images    []string
		yaml      string
		wantNames []string
		wantErr   string
	}{
		{name: "no data.yaml", images: imgs, wantNames: nil},
		{name: "names list", images: imgs, yaml: "names: [person, bicycle]\n", wantNames: []string{"person", "bicycle"}},
		{name: "names map", images: imgs, yaml: "nc: 3\nnames:\n  0: person\n  2: car\n  1: bicycle\n", wantNames: []string{"person", "bicycle", "car"}},
		{name: "names map with a gap", images: imgs, yaml: "names: {0: person, 2: car}\n", wantNames: []string{"person", "class1", "car"}},
		{name: "nc only", images: imgs, yaml: "nc: 2\n", wantNames: []string{"class0", "class1"}},
		{name: "numeric name", images: imgs, yaml: "names: [1, two]\n", wantNames: []string{"1", "two"}},
		{name: "invalid yaml", images: imgs, yaml: "names: [a, b\n", wantErr: "data.yaml: invalid YAML"},
		{name: "nc mismatch", images: imgs, yaml: "nc: 3\nnames: [a, b]\n", wantErr: "data.yaml: nc is 3"},
		{name: "bad map key", images: imgs, yaml: "names: {zero: a}\n", wantErr: "data.yaml: line 1: names key"},
		{name: "bad nc", images: imgs, yaml: "nc: many\n", wantErr: "data.yaml: line 1: nc"},
		{name: "names scalar", images: imgs, yaml: "names: person\n", wantErr: "data.yaml: line 1: names must be"},
		{name: "nothing useful", images: imgs, yaml: "path: .\n", wantErr: "data.yaml: neither names nor nc"},
		{name: "no images folder", images: nil, wantErr: "no images/ folder"},
		{name: "no images", images: []string{"readme.txt"}, wantErr: "no images"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := makeDataset(t, tc.images, tc.yaml)
			ds, err := LoadDataset(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var base []string
			for _, p := range ds.Images {
				if !filepath.IsAbs(p) {
					t.Errorf("image path %q is not absolute", p)
				}
				base = append(base, filepath.Base(p))
			}
			if got, want := strings.Join(base, ","), "a.jpg,b.png,c.JPEG,d.webp,e.bmp"; got != want {
				t.Errorf("images %s, want %s", got, want)
			}
			if strings.Join(ds.Names, ",") != strings.Join(tc.wantNames, ",") || (ds.Names == nil) != (tc.wantNames == nil) {
				t.Errorf("names %q, want %q", ds.Names, tc.wantNames)
			}
			if !filepath.IsAbs(ds.Root) {
				t.Errorf("root %q is not absolute", ds.Root)
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := LoadDataset(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing dir: err = %v, want one naming %s", err, missing)
	}
}

// TestLoadDatasetCOCOVal128 checks the shared 128-image COCO val subset.
func TestLoadDatasetCOCOVal128(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "datasets", "coco-val128")
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dataset %s is missing: %v", dir, err)
		}
		t.Skipf("dataset %s not available (%v); set CI=true to make this fatal", dir, err)
	}
	ds, err := LoadDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Images) != 128 {
		t.Errorf("%d images, want 128", len(ds.Images))
	}
	if len(ds.Names) != 80 || ds.Names[0] != "person" || ds.Names[79] != "toothbrush" {
		t.Errorf("names: %d, want the 80 COCO classes", len(ds.Names))
	}
	total := 0
	for _, img := range ds.Images {
		labels, err := ReadLabels(LabelPath(img), 640, 480)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range labels {
			if l.Class < 0 || l.Class >= len(ds.Names) {
				t.Errorf("%s: class %d out of range", img, l.Class)
			}
		}
		total += len(labels)
	}
	if total != 898 {
		t.Errorf("%d labels, want 898", total)
	}
}

func FuzzParseLabels(f *testing.F) {
	f.Add([]byte("0 0.5 0.5 0.2 0.4\n7 0.25 0.75 0.1 0.2\n"), 640, 480)
	f.Add([]byte("\n\n3 0.05 0.95 0.2 0.2\r\n"), 10, 10)
	f.Add([]byte("0 NaN 0.5 0.2 0.2"), 1, 1)
	f.Add([]byte("1 0.5 0.5 -1 0.2 9"), 100, 0)
	f.Add([]byte("5 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n"), 1<<30, 7)
	f.Add([]byte("\xef\xbb\xbf2.0 1 1 1 1"), 3, -4)
	f.Fuzz(func(t *testing.T, data []byte, width, height int) {
		labels, err := ParseLabels(strings.NewReader(string(data)), width, height)
		if err != nil {
			return
		}
		for _, l := range labels {
			b := l.Box
			for _, v := range []float64{b.X1, b.Y1, b.X2, b.Y2} {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("non-finite box %+v from %q", b, data)
				}
			}
			if l.Class < 0 || b.X1 > b.X2 || b.Y1 > b.Y2 || b.X1 < 0 || b.Y1 < 0 ||
				b.X2 > float64(width) || b.Y2 > float64(height) {
				t.Fatalf("bad label %+v for %dx%d from %q", l, width, height, data)
			}
		}
	})
}
