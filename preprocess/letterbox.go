// Package preprocess turns a BGR image into a YOLOv5 input tensor: the
// letterbox of the Ultralytics reference (long side resized to the input
// size, INTER_AREA when shrinking and INTER_LINEAR when enlarging, padding
// 114 split evenly, BGR to RGB, scaled to 0..1, NCHW float32), written
// straight into a caller's buffer, plus the Transform that maps boxes back
// to source pixels. The same code serves detect, eval, calibration and serve.
package preprocess

import (
	"errors"
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// PadValue is the grey used for letterbox padding, as in YOLOv5.
const PadValue = 114

// lut maps a byte to float32(b)/255, bit-identical to torch's uint8->float /255.
var lut = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return
}()

// Transform records how a source image was placed in the network input, so
// that boxes can be mapped back. Gain is input pixels per source pixel; PadX
// and PadY are the left and top padding in input pixels.
type Transform struct {
	SrcW, SrcH int
	Gain       float64
	PadX, PadY float64
}

// ToSource maps a point from input pixels to source pixels (not clipped).
func (t Transform) ToSource(x, y float64) (float64, float64) {
	return (x - t.PadX) / t.Gain, (y - t.PadY) / t.Gain
}

// ToInput maps a point from source pixels to input pixels.
func (t Transform) ToInput(x, y float64) (float64, float64) {
	return x*t.Gain + t.PadX, y*t.Gain + t.PadY
}

// BoxToSource maps an x1,y1,x2,y2 box from input pixels to source pixels and
// clips it to the source image.
func (t Transform) BoxToSource(x1, y1, x2, y2 float64) (float64, float64, float64, float64) {
	x1, y1 = t.ToSource(x1, y1)
	x2, y2 = t.ToSource(x2, y2)
	w, h := float64(t.SrcW), float64(t.SrcH)
	return clip(x1, w), clip(y1, h), clip(x2, w), clip(y2, h)
}

func clip(v, hi float64) float64 {
	if !(v >= 0) { // also NaN
		return 0
	}
	if v > hi {
		return hi
	}
	return v
}

// Letterboxer holds the scratch images for one input size, so that per-frame
// preprocessing allocates nothing after the first frame of a given size. It
// is not safe for concurrent use; use one per goroutine.
type Letterboxer struct {
	W, H    int
	resized gocv.Mat
	second  gocv.Mat
	bgr     gocv.Mat
}

// New returns a Letterboxer for a network input of w x h pixels.
func New(w, h int) *Letterboxer {
	return &Letterboxer{W: w, H: h, resized: gocv.NewMat(), second: gocv.NewMat(), bgr: gocv.NewMat()}
}

// Close releases the scratch images.
func (l *Letterboxer) Close() error {
	l.resized.Close()
	l.second.Close()
	l.bgr.Close()
	return nil
}

// ErrEmptyImage is returned for an empty frame.
var ErrEmptyImage = errors.New("empty image")

// Plan computes the letterbox geometry for a src image of srcW x srcH, as
// YOLOv5's dataloader does: a first resize to ceil(side*r) with r = the
// input size over the long side, then the letterbox (no upscaling) with
// its own rounding. It returns the size of the first resize, the size of
// the image placed in the input (usually the same), the padding and the
// transform.
func (l *Letterboxer) Plan(srcW, srcH int) (w1, h1, nw, nh, left, top int, t Transform) {
	r := math.Min(float64(l.H)/float64(srcH), float64(l.W)/float64(srcW))
	w1, h1 = srcW, srcH
	if r != 1 {
		w1 = int(math.Ceil(float64(srcW) * r))
		h1 = int(math.Ceil(float64(srcH) * r))
	}
	r2 := math.Min(math.Min(float64(l.H)/float64(h1), float64(l.W)/float64(w1)), 1)
	nw = int(math.RoundToEven(float64(w1) * r2))
	nh = int(math.RoundToEven(float64(h1) * r2))
	dw := float64(l.W-nw) / 2
	dh := float64(l.H-nh) / 2
	top = int(math.RoundToEven(dh - 0.1))
	left = int(math.RoundToEven(dw - 0.1))
	t = Transform{SrcW: srcW, SrcH: srcH,
		Gain: float64(h1) / float64(srcH), PadX: dw, PadY: dh}
	return
}

// Apply letterboxes src (8-bit BGR, gray or BGRA) into dst, a CHW float32
// buffer of 3*H*W values (one image of a batch), and returns the transform.
func (l *Letterboxer) Apply(src gocv.Mat, dst []float32) (Transform, error) {
	if src.Empty() {
		return Transform{}, ErrEmptyImage
	}
	plane := l.W * l.H
	if len(dst) < 3*plane {
		return Transform{}, fmt.Errorf("letterbox: buffer holds %d values, need %d", len(dst), 3*plane)
	}
	img := src
	switch src.Type() {
	case gocv.MatTypeCV8UC3:
	case gocv.MatTypeCV8UC1:
		gocv.CvtColor(src, &l.bgr, gocv.ColorGrayToBGR)
		img = l.bgr
	case gocv.MatTypeCV8UC4:
		gocv.CvtColor(src, &l.bgr, gocv.ColorBGRAToBGR)
		img = l.bgr
	default:
		return Transform{}, fmt.Errorf("letterbox: unsupported image type %v (want 8-bit BGR)", src.Type())
	}
	srcW, srcH := img.Cols(), img.Rows()
	w1, h1, nw, nh, left, top, t := l.Plan(srcW, srcH)
	if w1 != srcW || h1 != srcH {
		interp := gocv.InterpolationArea
		if w1 > srcW || h1 > srcH {
			interp = gocv.InterpolationLinear
		}
		gocv.Resize(img, &l.resized, image.Pt(w1, h1), 0, 0, interp)
		img = l.resized
	}
	if nw != w1 || nh != h1 {
		gocv.Resize(img, &l.second, image.Pt(nw, nh), 0, 0, gocv.InterpolationLinear)
		img = l.second
	}
	if !img.IsContinuous() {
		return Transform{}, errors.New("letterbox: image memory is not continuous")
	}
	data, err := img.DataPtrUint8()
	if err != nil {
		return Transform{}, fmt.Errorf("letterbox: %w", err)
	}
	fill(dst[:3*plane], l.W, l.H, data, nw, nh, left, top)
	return t, nil
}

// fill writes the padded, channel-swapped, scaled image into dst.
func fill(dst []float32, W, H int, bgr []uint8, nw, nh, left, top int) {
	plane := W * H
	pad := lut[PadValue]
	r, g, b := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	for y := 0; y < H; y++ {
		row := y * W
		sy := y - top
		if sy < 0 || sy >= nh {
			for x := row; x < row+W; x++ {
				r[x], g[x], b[x] = pad, pad, pad
			}
			continue
		}
		for x := row; x < row+left; x++ {
			r[x], g[x], b[x] = pad, pad, pad
		}
		src := bgr[sy*nw*3 : (sy+1)*nw*3]
		rr := r[row+left : row+left+nw]
		gg := g[row+left : row+left+nw]
		bb := b[row+left : row+left+nw]
		for i := range rr {
			p := src[3*i : 3*i+3 : 3*i+3]
			bb[i] = lut[p[0]]
			gg[i] = lut[p[1]]
			rr[i] = lut[p[2]]
		}
		for x := row + left + nw; x < row+W; x++ {
			r[x], g[x], b[x] = pad, pad, pad
		}
	}
}
