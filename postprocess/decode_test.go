package postprocess

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/yedge/yedge/preprocess"
)

// row builds one YOLOv5 output row.
func row(cx, cy, w, h, obj float32, cls ...float32) []float32 {
	return append([]float32{cx, cy, w, h, obj}, cls...)
}

func TestDecodeTable(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		rows [][]float32
		want []Detection
	}{
		{
			name: "below objectness is dropped",
			opts: DeployOptions(),
			rows: [][]float32{row(50, 50, 20, 20, 0.2, 0.99, 0.1)},
			want: nil,
		},
		{
			name: "score is obj x cls, best class",
			opts: DeployOptions(),
			rows: [][]float32{row(50, 50, 20, 20, 0.8, 0.5, 0.9)},
			want: []Detection{{Box{40, 40, 60, 60}, 0.8 * 0.9, 1}},
		},
		{
			name: "overlapping boxes of one class: keep the best",
			opts: DeployOptions(),
			rows: [][]float32{row(50, 50, 20, 20, 0.9, 0.9), row(51, 50, 20, 20, 0.95, 0.95)},
			want: []Detection{{Box{41, 40, 61, 60}, 0.95 * 0.95, 0}},
		},
		{
			name: "overlapping boxes of two classes both stay",
			opts: DeployOptions(),
			rows: [][]float32{row(50, 50, 20, 20, 0.9, 0.9, 0), row(51, 50, 20, 20, 0.95, 0, 0.95)},
			want: []Detection{{Box{41, 40, 61, 60}, 0.95 * 0.95, 1}, {Box{40, 40, 60, 60}, 0.9 * 0.9, 0}},
		},
		{
			name: "agnostic NMS merges classes",
			opts: Options{Conf: 0.25, IoU: 0.45, MaxDet: 10, Agnostic: true},
			rows: [][]float32{row(50, 50, 20, 20, 0.9, 0.9, 0), row(51, 50, 20, 20, 0.95, 0, 0.95)},
			want: []Detection{{Box{41, 40, 61, 60}, 0.95 * 0.95, 1}},
		},
		{
			name: "multi-label gives one candidate per class",
			opts: EvalOptions(),
			rows: [][]float32{row(50, 50, 20, 20, 0.5, 0.6, 0.4)},
			want: []Detection{{Box{40, 40, 60, 60}, 0.5 * 0.6, 0}, {Box{40, 40, 60, 60}, 0.5 * 0.4, 1}},
		},
		{
			name: "IoU just below the threshold is kept",
			opts: Options{Conf: 0.1, IoU: 0.5, MaxDet: 10},
			rows: [][]float32{row(5, 5, 10, 10, 0.9, 1), row(8.5, 5, 10, 10, 0.8, 1)}, // IoU 65/135
			want: []Detection{{Box{0, 0, 10, 10}, 0.9, 0}, {Box{3.5, 0, 13.5, 10}, 0.8, 0}},
		},
		{
			name: "IoU just above the threshold is dropped",
			opts: Options{Conf: 0.1, IoU: 0.5, MaxDet: 10},
			rows: [][]float32{row(5, 5, 10, 10, 0.9, 1), row(8.2, 5, 10, 10, 0.8, 1)}, // IoU 68/132
			want: []Detection{{Box{0, 0, 10, 10}, 0.9, 0}},
		},
		{
			name: "max detections caps best first",
			opts: Options{Conf: 0.1, IoU: 0.5, MaxDet: 1},
			rows: [][]float32{row(5, 5, 10, 10, 0.5, 1), row(100, 100, 10, 10, 0.8, 1)},
			want: []Detection{{Box{95, 95, 105, 105}, 0.8, 0}},
		},
		{
			name: "NaN, Inf and negative sizes are ignored",
			opts: DeployOptions(),
			rows: [][]float32{
				row(float32(math.NaN()), 5, 10, 10, 0.9, 1),
				row(5, 5, -10, 10, 0.9, 1),
				row(5, 5, float32(math.Inf(1)), 10, 0.9, 1),
				row(5, 5, 10, 10, float32(math.NaN()), 1),
				row(5, 5, 10, 10, 0.9, float32(math.NaN())),
			},
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var flat []float32
			for _, r := range tc.rows {
				flat = append(flat, r...)
			}
			classes := len(tc.rows[0]) - 5
			got := NewDecoder(tc.opts).Decode(flat, classes, nil)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d detections %+v, want %+v", len(got), got, tc.want)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.Class != w.Class || math.Abs(float64(g.Score-w.Score)) > 1e-6 ||
					math.Abs(float64(g.Box.X1-w.Box.X1)) > 1e-4 || math.Abs(float64(g.Box.X2-w.Box.X2)) > 1e-4 ||
					math.Abs(float64(g.Box.Y1-w.Box.Y1)) > 1e-4 || math.Abs(float64(g.Box.Y2-w.Box.Y2)) > 1e-4 {
					t.Errorf("det %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func randomRows(r *rand.Rand, n, classes int) []float32 {
	out := make([]float32, 0, n*(5+classes))
	for i := 0; i < n; i++ {
		cx, cy := r.Float32()*640, r.Float32()*640
		w, h := 5+r.Float32()*100, 5+r.Float32()*100
		out = append(out, cx, cy, w, h, r.Float32())
		for c := 0; c < classes; c++ {
			out = append(out, r.Float32())
		}
	}
	return out
}

// Properties: no two kept boxes of one class (of any class with Agnostic)
// overlap above the threshold,
// scores are sorted, and the result does not depend on input order (for
// distinct scores).
func TestNMSProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	for trial := 0; trial < 50; trial++ {
		classes := 1 + r.IntN(4)
		n := 20 + r.IntN(300)
		rows := randomRows(r, n, classes)
		agnostic := EvalOptions()
		agnostic.Agnostic = true
		for _, opts := range []Options{DeployOptions(), EvalOptions(), agnostic} {
			dets := NewDecoder(opts).Decode(rows, classes, nil)
			for i := range dets {
				if i > 0 && dets[i].Score > dets[i-1].Score {
					t.Fatalf("not sorted by score at %d", i)
				}
				for j := i + 1; j < len(dets); j++ {
					if (opts.Agnostic || dets[i].Class == dets[j].Class) && IoU(dets[i].Box, dets[j].Box) > opts.IoU+1e-5 {
						t.Fatalf("two %d boxes with IoU %.3f > %.2f kept", dets[i].Class, IoU(dets[i].Box, dets[j].Box), opts.IoU)
					}
				}
			}
			// Maximality: every candidate NMS dropped overlaps a kept box of
			// its class (any class with Agnostic) with a score at least as
			// high by more than the threshold, unless MaxDet capped the list.
			if len(dets) < opts.MaxDet {
				for _, c := range candidates(rows, classes, opts) {
					if slices.Contains(dets, c) {
						continue
					}
					covered := false
					for _, k := range dets {
						if (opts.Agnostic || k.Class == c.Class) && k.Score >= c.Score && IoU(k.Box, c.Box) > opts.IoU-1e-4 {
							covered = true
							break
						}
					}
					if !covered {
						t.Fatalf("trial %d: candidate %+v dropped with no better overlapping box kept", trial, c)
					}
				}
			}
			// Shuffle the rows and decode again.
			stride := 5 + classes
			perm := r.Perm(n)
			shuf := make([]float32, 0, len(rows))
			for _, p := range perm {
				shuf = append(shuf, rows[p*stride:(p+1)*stride]...)
			}
			again := NewDecoder(opts).Decode(shuf, classes, nil)
			key := func(d []Detection) []Detection {
				c := slices.Clone(d)
				slices.SortFunc(c, func(a, b Detection) int {
					if a.Score != b.Score {
						if a.Score > b.Score {
							return -1
						}
						return 1
					}
					return a.Class - b.Class
				})
				return c
			}
			if !slices.Equal(key(dets), key(again)) {
				t.Fatalf("trial %d: NMS depends on input order: %d vs %d detections", trial, len(dets), len(again))
			}
		}
	}
}

// candidates lists what enters NMS, independently of the decoder: every
// row's best class (every class with MultiLabel) whose obj x cls and obj
// are above Conf, with the box converted to corners.
func candidates(rows []float32, classes int, o Options) []Detection {
	var out []Detection
	stride := 5 + classes
	for r := 0; r+stride <= len(rows); r += stride {
		cx, cy, w, h, obj := rows[r], rows[r+1], rows[r+2], rows[r+3], rows[r+4]
		if !(obj > o.Conf) {
			continue
		}
		b := Box{cx - w/2, cy - h/2, cx + w/2, cy + h/2}
		best, bj := float32(-1), -1
		for j := 0; j < classes; j++ {
			s := rows[r+5+j] * obj
			if o.MultiLabel && s > o.Conf {
				out = append(out, Detection{b, s, j})
			}
			if s > best {
				best, bj = s, j
			}
		}
		if !o.MultiLabel && best > o.Conf {
			out = append(out, Detection{b, best, bj})
		}
	}
	return out
}

type fixedMapper struct{ gain, padX, padY, w, h float64 }

func (m fixedMapper) BoxToSource(x1, y1, x2, y2 float64) (float64, float64, float64, float64) {
	c := func(v, hi float64) float64 { return math.Min(math.Max(v, 0), hi) }
	return c((x1-m.padX)/m.gain, m.w), c((y1-m.padY)/m.gain, m.h), c((x2-m.padX)/m.gain, m.w), c((y2-m.padY)/m.gain, m.h)
}

func TestMapBackClips(t *testing.T) {
	dets := []Detection{{Box{-10, 70, 700, 600}, 0.9, 0}}
	got := MapBack(dets, fixedMapper{gain: 0.5, padX: 0, padY: 80, w: 1280, h: 960})
	want := Box{0, 0, 1280, 960}
	if got[0].Box != want {
		t.Errorf("got %+v, want %+v", got[0].Box, want)
	}
}

func TestParseLayout(t *testing.T) {
	for _, tc := range []struct {
		shape []int64
		ok    bool
	}{
		{[]int64{1, 25200, 85}, true},
		{[]int64{-1, -1, 85}, true},
		{[]int64{1, 84, 8400}, false},
		{[]int64{1, 25200, 5}, false},
		{[]int64{1, 1000}, false},
	} {
		_, err := ParseLayout(tc.shape)
		if (err == nil) != tc.ok {
			t.Errorf("%v: err = %v", tc.shape, err)
		}
	}
}

// FuzzDecode feeds arbitrary floats to the decoder under arbitrary options
// and letterbox geometries: no panic; no NaN or Inf in the output; at most
// MaxDet detections, best first, classes in range, scores above the
// threshold; and after MapBack (through the real preprocess.Transform and
// through a fixed mapper) no box outside the source image or inverted.
func FuzzDecode(f *testing.F) {
	one := []byte{0, 0, 0x80, 0x3f}
	ten := []byte{0, 0, 0x20, 0x41}
	nan := []byte{0, 0, 0xc0, 0x7f}
	inf := []byte{0, 0, 0x80, 0x7f}
	cat := func(vs ...[]byte) []byte { return slices.Concat(vs...) }
	f.Add(cat(ten, ten, ten, ten, one, one), uint8(0), uint8(0), uint16(767), uint16(575), uint16(0x1313))
	f.Add(cat(nan, inf, []byte{0, 0, 0x80, 0xff}, []byte{0xff, 0xff, 0x7f, 0x7f}, one, one), uint8(0), uint8(1), uint16(767), uint16(575), uint16(0x1313))
	f.Add(cat(ten, ten, ten, ten, one, one, one, ten, ten, ten, ten, one, one, one), uint8(1), uint8(2), uint16(0), uint16(65535), uint16(0))
	f.Add(cat([]byte{0xff, 0xff, 0x7f, 0x7f}, ten, []byte{0xff, 0xff, 0x7f, 0x7f}, ten, one, one), uint8(0), uint8(0), uint16(1), uint16(1), uint16(0xffff))
	f.Fuzz(func(t *testing.T, data []byte, classes, flags uint8, srcW, srcH, in uint16) {
		nc := int(classes%8) + 1
		vals := make([]float32, len(data)/4)
		for i := range vals {
			vals[i] = math.Float32frombits(uint32(data[4*i]) | uint32(data[4*i+1])<<8 | uint32(data[4*i+2])<<16 | uint32(data[4*i+3])<<24)
		}
		opts := DeployOptions()
		opts.MultiLabel = flags&1 != 0
		opts.Agnostic = flags&2 != 0
		opts.Conf = []float32{0, 0.001, 0.25, 1}[flags>>2&3]
		if m := int(flags >> 4); m > 0 {
			opts.MaxDet = m
		}
		dets := NewDecoder(opts).Decode(vals, nc, nil)
		if len(dets) > opts.MaxDet {
			t.Fatalf("%d detections, MaxDet %d", len(dets), opts.MaxDet)
		}
		for i, d := range dets {
			if i > 0 && d.Score > dets[i-1].Score {
				t.Fatalf("not best first at %d: %v after %v", i, d.Score, dets[i-1].Score)
			}
			if !(d.Score > opts.Conf) {
				t.Fatalf("score %v not above conf %v", d.Score, opts.Conf)
			}
			if d.Class < 0 || d.Class >= nc {
				t.Fatalf("class %d out of range", d.Class)
			}
			for _, v := range []float32{d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2, d.Score} {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("non-finite value in %+v", d)
				}
			}
			if d.Box.X1 > d.Box.X2 || d.Box.Y1 > d.Box.Y2 {
				t.Fatalf("inverted box %+v", d.Box)
			}
		}
		// The real letterbox geometry: a source of 1..65536 pixels a side
		// into an input of 32..768 pixels a side (Plan needs no Mats).
		l := &preprocess.Letterboxer{W: 32 * (1 + int(in&0xff)%24), H: 32 * (1 + int(in>>8)%24)}
		sw, sh := int(srcW)+1, int(srcH)+1
		_, _, _, _, _, _, xf := l.Plan(sw, sh)
		check := func(name string, m Mapper, w, h float32) {
			for _, d := range MapBack(slices.Clone(dets), m) {
				for _, v := range []float32{d.Box.X1, d.Box.Y1, d.Box.X2, d.Box.Y2, d.Score} {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("%s: non-finite value in %+v", name, d)
					}
				}
				if d.Box.X1 < 0 || d.Box.Y1 < 0 || d.Box.X2 > w || d.Box.Y2 > h {
					t.Fatalf("%s: box outside the %vx%v image: %+v", name, w, h, d)
				}
				if d.Box.X1 > d.Box.X2 || d.Box.Y1 > d.Box.Y2 {
					t.Fatalf("%s: inverted box %+v", name, d.Box)
				}
			}
		}
		check("letterbox", xf, float32(sw), float32(sh))
		check("fixed", fixedMapper{gain: 0.8, padX: 3, padY: 40, w: 768, h: 576}, 768, 576)
	})
}

func TestResolveNames(t *testing.T) {
	n, src, err := ResolveNames(map[string]string{}, "", 80)
	if err != nil || src != "COCO-80" || n[0] != "person" {
		t.Errorf("fallback: %v %s %v", n[:1], src, err)
	}
	n, src, _ = ResolveNames(map[string]string{}, "", 3)
	if src != "generic" || n[2] != "class2" {
		t.Errorf("generic: %v %s", n, src)
	}
}
