package postprocess

import (
	"math"
)

// RawLevel describes one YOLOv5 Detect level's raw head tensor, the head
// convolution's output [batch, NA*NO, NY, NX] before the graph's decode.
type RawLevel struct {
	// NA anchors of NO values each (5 + classes), on an NY x NX grid.
	NA, NO, NY, NX int
	// Anchors are the anchor sizes (width, height) in input pixels.
	Anchors [][2]float32
	// Stride is the level's stride in input pixels.
	Stride float32
	// GridOffset is added to a cell's index in the grid (-0.5 in YOLOv5
	// v6.1 and later): cx = (sigmoid*2 + x + GridOffset) * Stride.
	GridOffset float32
}

// Len returns the number of values of one image's tensor at this level.
func (l RawLevel) Len() int { return l.NA * l.NO * l.NY * l.NX }

// logitMargin widens the objectness pre-test so that float rounding in the
// sigmoid never rejects a cell the exact test (obj > Conf) would keep.
const logitMargin = 1e-3

// objLogitThreshold returns the logit below which a cell's objectness
// cannot pass obj > conf: -Inf for conf 0 (every cell is tested), +Inf for
// conf 1 (no cell passes).
func objLogitThreshold(conf float32) float32 {
	switch {
	case conf <= 0:
		return float32(math.Inf(-1))
	case conf >= 1:
		return float32(math.Inf(1))
	}
	c := float64(conf)
	return float32(math.Log(c/(1-c)) - logitMargin)
}

// sigmoid is the logistic function, rounded to float32.
func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// DecodeRaw decodes one image's raw head tensors (data[i] holds level i's
// values for this image, levels[i].Len() of them, channel-major) and
// appends the kept detections, best first, to dst, as Decode does for the
// graph's decoded rows: the same candidates, NMS and limits, in the same
// row order (level, anchor, y, x). A cell is skipped on its objectness
// logit alone, before any sigmoid, when it is below logit(Conf); the
// survivors are decoded as the graph does (xy = (sig*2 + grid) * stride,
// wh = (sig*2)^2 * anchor) and tested exactly as in Decode. A level whose
// data is shorter than its shape is skipped.
func (d *Decoder) DecodeRaw(levels []RawLevel, data [][]float32, dst []Detection) []Detection {
	d.cands = d.cands[:0]
	thr := objLogitThreshold(d.Opts.Conf)
	for li, lv := range levels {
		if li >= len(data) || lv.NO < 6 || len(lv.Anchors) < lv.NA || len(data[li]) < lv.Len() {
			continue
		}
		x := data[li]
		cells := lv.NY * lv.NX
		if cap(d.row) < lv.NO {
			d.row = make([]float32, lv.NO)
		}
		row := d.row[:lv.NO]
		for a := 0; a < lv.NA; a++ {
			plane := x[a*lv.NO*cells : (a+1)*lv.NO*cells]
			obj := plane[4*cells : 5*cells]
			for i, l := range obj {
				if !(l >= thr) { // also skips NaN
					continue
				}
				d.rawRow(row, plane, cells, i, lv, a)
				d.addRow(row)
			}
		}
	}
	return d.finish(dst)
}

// rawRow fills row with the decoded values of cell i, anchor a: the
// arithmetic of YOLOv5's exported Detect head, one rounding per operation
// (the explicit conversions stop fused multiply-adds).
func (d *Decoder) rawRow(row, plane []float32, cells, i int, lv RawLevel, a int) {
	gx := float32(i%lv.NX) + lv.GridOffset
	gy := float32(i/lv.NX) + lv.GridOffset
	sx := float32(sigmoid(plane[i]) * 2)
	sy := float32(sigmoid(plane[cells+i]) * 2)
	row[0] = float32(sx+gx) * lv.Stride
	row[1] = float32(sy+gy) * lv.Stride
	sw := float32(sigmoid(plane[2*cells+i]) * 2)
	sh := float32(sigmoid(plane[3*cells+i]) * 2)
	row[2] = float32(sw*sw) * lv.Anchors[a][0]
	row[3] = float32(sh*sh) * lv.Anchors[a][1]
	for c := 4; c < lv.NO; c++ {
		row[c] = sigmoid(plane[c*cells+i])
	}
}
