// Package postprocess turns raw YOLOv5 output rows [cx, cy, w, h, obj,
// class scores...] into detections: confidence filtering with score = obj x
// cls, class-aware non-maximum suppression, a cap on detections, and mapping
// boxes back to source pixels. It follows the Ultralytics YOLOv5
// non_max_suppression so that accuracy matches the reference, and never
// returns NaN or a box outside the image, whatever the tensor holds.
package postprocess

import (
	"fmt"
	"math"
	"slices"
)

// Box is an axis-aligned box, x1 <= x2 and y1 <= y2.
type Box struct{ X1, Y1, X2, Y2 float32 }

// Area returns the box area (0 for degenerate boxes).
func (b Box) Area() float32 {
	w, h := b.X2-b.X1, b.Y2-b.Y1
	if w <= 0 || h <= 0 {
		return 0
	}
	return w * h
}

// IoU returns the intersection over union of two boxes.
func IoU(a, b Box) float32 {
	w := min(a.X2, b.X2) - max(a.X1, b.X1)
	h := min(a.Y2, b.Y2) - max(a.Y1, b.Y1)
	if w <= 0 || h <= 0 {
		return 0
	}
	inter := w * h
	u := a.Area() + b.Area() - inter
	if u <= 0 {
		return 0
	}
	return inter / u
}

// Detection is one detected object.
type Detection struct {
	Box   Box
	Score float32
	Class int
}

// Options controls decoding and NMS.
type Options struct {
	Conf       float32 // minimum objectness and minimum obj x cls
	IoU        float32 // NMS IoU threshold: a box overlapping a better one of its class by more is dropped
	MaxDet     int     // detections kept per image after NMS
	MultiLabel bool    // one candidate per class above Conf (evaluation) instead of the best class
	MaxNMS     int     // candidates entering NMS, best first
	Agnostic   bool    // NMS across classes
}

// MaxDetections bounds Options.MaxDet for every front end: no more
// candidates than DeployOptions' MaxNMS enter NMS.
const MaxDetections = 30000

// DeployOptions are the defaults for detection on streams: conf 0.25, IoU
// 0.45, best class per box, at most 300 detections.
func DeployOptions() Options {
	return Options{Conf: 0.25, IoU: 0.45, MaxDet: 300, MaxNMS: MaxDetections}
}

// EvalOptions are the reference evaluation settings: conf 0.001, IoU 0.6,
// multi-label, at most 300 detections.
func EvalOptions() Options {
	return Options{Conf: 0.001, IoU: 0.6, MaxDet: 300, MultiLabel: true, MaxNMS: MaxDetections}
}

// Validate checks the options.
func (o Options) Validate() error {
	switch {
	case !(o.Conf >= 0 && o.Conf <= 1):
		return fmt.Errorf("confidence threshold %v outside [0,1]", o.Conf)
	case !(o.IoU > 0 && o.IoU <= 1):
		return fmt.Errorf("IoU threshold %v outside (0,1]", o.IoU)
	case o.MaxDet <= 0:
		return fmt.Errorf("max detections %d must be positive", o.MaxDet)
	}
	return nil
}

// Layout describes a YOLOv5 output tensor [batch, rows, 5+classes] (the
// batch size is the detector's).
type Layout struct {
	Rows, Classes int
}

// ParseLayout validates a YOLOv5 output shape (rank 3, last dimension 5 +
// at least one class). Dynamic dimensions (<0) are accepted where allowed.
func ParseLayout(shape []int64) (Layout, error) {
	if len(shape) != 3 {
		return Layout{}, fmt.Errorf("output shape %v is not YOLOv5-shaped: want [batch, boxes, 5+classes]", shape)
	}
	if shape[2] < 6 {
		return Layout{}, fmt.Errorf("output shape %v is not YOLOv5-shaped: last dimension must be 5+classes (>= 6)", shape)
	}
	if shape[1] >= 0 && shape[1] < shape[2] && shape[1] > 0 {
		return Layout{}, fmt.Errorf("output shape %v looks transposed ([batch, 4+classes, boxes], YOLOv8 style); yedge expects YOLOv5 [batch, boxes, 5+classes]", shape)
	}
	return Layout{Rows: int(shape[1]), Classes: int(shape[2]) - 5}, nil
}

const maxWH = 7680 // class offset for batched NMS, as in YOLOv5

type candidate struct {
	box   Box
	score float32
	class int32
}

// Decoder decodes output rows into detections, reusing its buffers between
// calls. It is not safe for concurrent use.
type Decoder struct {
	Opts  Options
	cands []candidate
	order []int32
	keep  []int32
	byCls [][]int32
	rank  []int32
	row   []float32 // DecodeRaw's decoded row
}

// NewDecoder returns a decoder with the given options.
func NewDecoder(o Options) *Decoder {
	if o.MaxNMS <= 0 {
		o.MaxNMS = MaxDetections
	}
	return &Decoder{Opts: o}
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// Decode reads rows of one image (rows*(5+classes) values) in input pixels
// and appends the kept detections, best first, to dst. Boxes are in input
// pixel coordinates; use MapBack to bring them to the source image. Rows
// with NaN, infinite or negative sizes are ignored.
func (d *Decoder) Decode(rows []float32, classes int, dst []Detection) []Detection {
	stride := 5 + classes
	n := len(rows) / stride
	d.cands = d.cands[:0]
	for r := 0; r < n; r++ {
		d.addRow(rows[r*stride : (r+1)*stride : (r+1)*stride])
	}
	return d.finish(dst)
}

// addRow adds the candidates of one row [cx, cy, w, h, obj, class
// scores...] in input pixels: nothing unless obj > Conf, then one per class
// with obj x cls > Conf (MultiLabel) or the best class if above Conf.
func (d *Decoder) addRow(row []float32) {
	o := d.Opts
	obj := row[4]
	if !(obj > o.Conf) { // also drops NaN
		return
	}
	cx, cy, w, h := row[0], row[1], row[2], row[3]
	if !finite(cx) || !finite(cy) || !(w >= 0) || !(h >= 0) || !finite(w) || !finite(h) {
		return
	}
	b := Box{cx - w/2, cy - h/2, cx + w/2, cy + h/2}
	if !finite(b.X1) || !finite(b.X2) || !finite(b.Y1) || !finite(b.Y2) {
		return
	}
	cls := row[5:]
	if o.MultiLabel {
		for j, c := range cls {
			s := c * obj
			if s > o.Conf && finite(s) {
				d.cands = append(d.cands, candidate{b, s, int32(j)})
			}
		}
		return
	}
	best, bj := float32(math.Inf(-1)), -1
	for j, c := range cls {
		s := c * obj
		if s > best {
			best, bj = s, j
		}
	}
	if bj >= 0 && best > o.Conf && finite(best) {
		d.cands = append(d.cands, candidate{b, best, int32(bj)})
	}
}

// finish sorts d.cands best first, runs NMS and appends the kept
// detections to dst. Both Decode and DecodeRaw end here.
func (d *Decoder) finish(dst []Detection) []Detection {
	o := d.Opts
	if len(d.cands) == 0 {
		return dst
	}
	// Sort best first (stable, so equal scores keep row order).
	d.order = d.order[:0]
	for i := range d.cands {
		d.order = append(d.order, int32(i))
	}
	slices.SortStableFunc(d.order, func(a, b int32) int {
		sa, sb := d.cands[a].score, d.cands[b].score
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	if len(d.order) > o.MaxNMS {
		d.order = d.order[:o.MaxNMS]
	}
	d.keep = d.nms(d.keep[:0])
	for _, i := range d.keep {
		c := d.cands[i]
		dst = append(dst, Detection{Box: c.box, Score: c.score, Class: int(c.class)})
	}
	return dst
}

// nms runs greedy NMS per class on d.order (sorted best first) and returns
// kept candidate indices best first, at most MaxDet.
func (d *Decoder) nms(keep []int32) []int32 {
	o := d.Opts
	if o.Agnostic {
		keep = greedy(d.cands, d.order, o.IoU, keep, 0)
		if len(keep) > o.MaxDet {
			keep = keep[:o.MaxDet]
		}
		return keep
	}
	// Group by class in score order, then merge kept indices by rank.
	for i := range d.byCls {
		d.byCls[i] = d.byCls[i][:0]
	}
	for _, i := range d.order {
		c := int(d.cands[i].class)
		for c >= len(d.byCls) {
			d.byCls = append(d.byCls, nil)
		}
		d.byCls[c] = append(d.byCls[c], i)
	}
	for c, idx := range d.byCls {
		if len(idx) > 0 {
			keep = greedy(d.cands, idx, o.IoU, keep, float32(c)*maxWH)
		}
	}
	// Restore global best-first order; candidates with equal score keep their
	// sorted rank, as torchvision's nms returns indices in score order.
	d.rank = slices.Grow(d.rank[:0], len(d.cands))[:len(d.cands)]
	for r, i := range d.order {
		d.rank[i] = int32(r)
	}
	slices.SortFunc(keep, func(a, b int32) int { return int(d.rank[a] - d.rank[b]) })
	if len(keep) > o.MaxDet {
		keep = keep[:o.MaxDet]
	}
	return keep
}

// greedy is torchvision's CPU nms on boxes shifted by off (float32, like
// YOLOv5's class offset): a box is dropped when its IoU with a kept,
// better box is above thr.
func greedy(c []candidate, order []int32, thr float32, keep []int32, off float32) []int32 {
	start := len(keep)
	for _, i := range order {
		bi := c[i].box
		bi = Box{bi.X1 + off, bi.Y1 + off, bi.X2 + off, bi.Y2 + off}
		ai := (bi.X2 - bi.X1) * (bi.Y2 - bi.Y1)
		ok := true
		for _, k := range keep[start:] {
			bk := c[k].box
			bk = Box{bk.X1 + off, bk.Y1 + off, bk.X2 + off, bk.Y2 + off}
			w := min(bi.X2, bk.X2) - max(bi.X1, bk.X1)
			h := min(bi.Y2, bk.Y2) - max(bi.Y1, bk.Y1)
			if w <= 0 || h <= 0 {
				continue
			}
			inter := w * h
			ak := (bk.X2 - bk.X1) * (bk.Y2 - bk.Y1)
			if inter/(ai+ak-inter) > thr {
				ok = false
				break
			}
		}
		if ok {
			keep = append(keep, i)
		}
	}
	return keep
}

// Mapper converts a box from input pixels to source pixels, clipped to the
// source image. preprocess.Transform.BoxToSource satisfies it.
type Mapper interface {
	BoxToSource(x1, y1, x2, y2 float64) (float64, float64, float64, float64)
}

// MapBack maps every detection from input pixels to source pixels in place,
// clipping to the source image (as YOLOv5's scale_boxes does, boxes that
// become degenerate are kept).
func MapBack(dets []Detection, m Mapper) []Detection {
	out := dets[:0]
	for _, d := range dets {
		x1, y1, x2, y2 := m.BoxToSource(float64(d.Box.X1), float64(d.Box.Y1), float64(d.Box.X2), float64(d.Box.Y2))
		d.Box = Box{float32(x1), float32(y1), float32(x2), float32(y2)}
		out = append(out, d)
	}
	return out
}
