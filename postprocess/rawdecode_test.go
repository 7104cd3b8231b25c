package postprocess

import (
	"math"
	"testing"
)

// logit is the inverse of sigmoid.
func logit(p float64) float32 { return float32(math.Log(p / (1 - p))) }

// rawLevel builds a level with na anchors, nc classes on an ny x nx grid,
// every logit at -20 (probability ~2e-9), and a setter for one cell.
func rawLevel(na, nc, ny, nx int, stride float32) (RawLevel, []float32, func(a, y, x, ch int, v float32)) {
	lv := RawLevel{NA: na, NO: 5 + nc, NY: ny, NX: nx, Stride: stride, GridOffset: -0.5}
	for a := 0; a < na; a++ {
		lv.Anchors = append(lv.Anchors, [2]float32{float32(10 * (a + 1)), float32(20 * (a + 1))})
	}
	data := make([]float32, lv.Len())
	for i := range data {
		data[i] = -20
	}
	set := func(a, y, x, ch int, v float32) { data[((a*lv.NO+ch)*ny+y)*nx+x] = v }
	return lv, data, set
}

// rowsOf decodes a level the way the exported graph does, into rows
// [cx, cy, w, h, obj, cls...] in the graph's row order, for Decode.
func rowsOf(lv RawLevel, data []float32) []float32 {
	var rows []float32
	cells := lv.NY * lv.NX
	for a := 0; a < lv.NA; a++ {
		for i := 0; i < cells; i++ {
			row := make([]float32, lv.NO)
			(&Decoder{}).rawRow(row, data[a*lv.NO*cells:(a+1)*lv.NO*cells], cells, i, lv, a)
			rows = append(rows, row...)
		}
	}
	return rows
}

func TestDecodeRaw(t *testing.T) {
	lv, data, set := rawLevel(2, 3, 4, 5, 8)
	// Cell (y 1, x 2), anchor 1: obj 0.8, class 2 at 0.9, centred offsets.
	set(1, 1, 2, 4, logit(0.8))
	set(1, 1, 2, 7, logit(0.9))
	for ch := 0; ch < 4; ch++ {
		set(1, 1, 2, ch, 0) // sigmoid 0.5: xy at the cell + 0.5, wh = anchor
	}
	// Cell (0, 0), anchor 0: obj exactly 0.5 (logit 0), class 0 at 0.5:
	// score 0.25, on the threshold of the deploy options.
	set(0, 0, 0, 4, 0)
	set(0, 0, 0, 5, 0)
	empty, edata, _ := rawLevel(1, 3, 2, 2, 32)
	tests := []struct {
		name   string
		conf   float32
		levels []RawLevel
		data   [][]float32
		want   int // detections
	}{
		{"deploy threshold: the score equal to conf is dropped", 0.25, []RawLevel{lv}, [][]float32{data}, 1},
		{"just under the tie: both kept", 0.2499, []RawLevel{lv}, [][]float32{data}, 2},
		{"conf 0: every cell is a candidate", 0, []RawLevel{lv}, [][]float32{data}, 2 + 0},
		{"conf 1: nothing", 1, []RawLevel{lv}, [][]float32{data}, 0},
		{"an empty level among others", 0.25, []RawLevel{empty, lv}, [][]float32{edata, data}, 1},
		{"a level with too little data is skipped", 0.25, []RawLevel{lv}, [][]float32{data[:10]}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := DeployOptions()
			o.Conf = tc.conf
			o.Agnostic = false
			d := NewDecoder(o)
			got := d.DecodeRaw(tc.levels, tc.data, nil)
			// The reference: the graph's decode followed by Decode.
			var want []Detection
			for k, l := range tc.levels {
				if len(tc.data[k]) < l.Len() {
					continue
				}
				want = append(want, NewDecoder(o).Decode(rowsOf(l, tc.data[k]), l.NO-5, nil)...)
			}
			if tc.conf == 0 {
				// Every one of the 40 x 2 rows is a candidate; NMS keeps
				// the two real ones and the near-zero boxes that do not
				// overlap them enough, exactly as Decode does.
				ref := NewDecoder(o).Decode(rowsOf(lv, data), 3, nil)
				if len(got) != len(ref) || len(got) < 2 {
					t.Fatalf("conf 0: %d detections, Decode on the graph's rows gives %d", len(got), len(ref))
				}
				return
			}
			if len(got) != tc.want || len(want) != tc.want {
				t.Fatalf("%d detections (graph rows + Decode: %d), want %d: %+v", len(got), len(want), tc.want, got)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("detection %d = %+v, graph rows give %+v", i, got[i], want[i])
				}
			}
			if tc.want >= 1 {
				// Anchor 1 (20x40) centred on cell (2, 1) at stride 8.
				wantBox := Box{(2.5 * 8) - 10, (1.5 * 8) - 20, (2.5 * 8) + 10, (1.5 * 8) + 20}
				if got[0].Class != 2 || got[0].Box != wantBox || math.Abs(float64(got[0].Score)-0.72) > 1e-6 {
					t.Errorf("best detection %+v, want class 2 box %+v score 0.72", got[0], wantBox)
				}
			}
		})
	}
}

// Rejected cells cost no sigmoid: the objectness pre-test works on logits
// and never rejects a cell the exact test would keep.
func TestObjLogitThreshold(t *testing.T) {
	for _, conf := range []float32{1e-6, 0.001, 0.1, 0.25, 0.5, 0.9, 0.999} {
		thr := objLogitThreshold(conf)
		for _, l := range []float32{thr, thr + 1e-3, logit(float64(conf)), math.Nextafter32(logit(float64(conf)), 100)} {
			if sigmoid(l) > conf && !(l >= thr) {
				t.Errorf("conf %v: logit %v passes obj > conf but is pre-rejected (thr %v)", conf, l, thr)
			}
		}
		if s := sigmoid(thr - 1e-2); s > conf {
			t.Errorf("conf %v: threshold %v is too loose", conf, thr)
		}
	}
	if !math.IsInf(float64(objLogitThreshold(0)), -1) || !math.IsInf(float64(objLogitThreshold(1)), 1) {
		t.Error("conf 0 and 1 must give -Inf and +Inf")
	}
}

// Decoding the raw head allocates nothing once warm.
func TestDecodeRawAllocs(t *testing.T) {
	lv, data, set := rawLevel(3, 80, 20, 20, 32)
	for y := 0; y < 20; y += 3 {
		set(0, y, y, 4, 2)
		set(0, y, y, 6, 2)
	}
	d := NewDecoder(EvalOptions())
	levels, views := []RawLevel{lv}, [][]float32{data}
	dst := d.DecodeRaw(levels, views, nil)
	if len(dst) == 0 {
		t.Fatal("no detections")
	}
	if n := testing.AllocsPerRun(20, func() { dst = d.DecodeRaw(levels, views, dst[:0]) }); n != 0 {
		t.Errorf("%v allocations per DecodeRaw", n)
	}
}
