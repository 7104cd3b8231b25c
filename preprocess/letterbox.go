package preprocess

import (
	"errors"
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// Letterboxer holds the scratch images for one input size, so that per-frame
// preprocessing allocates nothing after the first frame of a given size. The
// resize writes straight into the image region of a W x H canvas whose
// padding (PadValue) is written only when the geometry changes; one pass
// then swaps BGR to RGB, scales and writes the CHW planes. It is not safe
// for concurrent use; use one per goroutine.
type Letterboxer struct {
	// W and H are the network input size in pixels.
	W, H int
	// Interp is the resize interpolation; the zero value is the reference
	// protocol. Set it before the first Apply.
	Interp Interp
	canvas gocv.Mat        // W x H 8UC3, padding PadValue
	region gocv.Mat        // the image region of canvas, at geom
	geom   image.Rectangle // placement of region in canvas; empty: none yet
	first  gocv.Mat        // first resize of the two-step geometry
	bgr    gocv.Mat        // gray or BGRA input converted to BGR
	pad    []float32       // W values of lut[PadValue]
}

// New returns a Letterboxer for a network input of w x h pixels with the
// reference interpolation.
func New(w, h int) *Letterboxer {
	return &Letterboxer{W: w, H: h, canvas: gocv.NewMat(), region: gocv.NewMat(), first: gocv.NewMat(), bgr: gocv.NewMat()}
}

// Close releases the scratch images.
func (l *Letterboxer) Close() error {
	l.region.Close()
	l.canvas.Close()
	l.first.Close()
	l.bgr.Close()
	l.geom = image.Rectangle{}
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

// Apply letterboxes src (8-bit BGR, gray or BGRA; continuous or not) into
// dst, a CHW float32 buffer of 3*H*W values (one image of a batch), and
// returns the transform.
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
	if l.Interp < InterpReference || l.Interp > InterpAuto {
		return Transform{}, fmt.Errorf("letterbox: unknown interpolation %v", l.Interp)
	}
	srcW, srcH := img.Cols(), img.Rows()
	w1, h1, nw, nh, left, top, t := l.Plan(srcW, srcH)
	asIs := w1 == srcW && h1 == srcH && nw == w1 && nh == h1
	if asIs && img.IsContinuous() {
		// Placed as it is: read the frame itself, no copy.
		data, err := img.DataPtrUint8()
		if err != nil {
			return Transform{}, fmt.Errorf("letterbox: %w", err)
		}
		fill(dst[:3*plane], l.padRow(), l.W, l.H, data, 3*nw, nw, nh, left, top)
		return t, nil
	}
	l.place(image.Rect(left, top, left+nw, top+nh))
	switch {
	case asIs:
		img.CopyTo(&l.region) // a non-continuous frame placed as it is
	case nw == w1 && nh == h1:
		gocv.Resize(img, &l.region, image.Pt(nw, nh), 0, 0, l.Interp.flag(srcW, srcH, nw, nh))
	default: // the reference's two-step geometry: ceil(side*r), then RoundToEven
		if w1 != srcW || h1 != srcH {
			gocv.Resize(img, &l.first, image.Pt(w1, h1), 0, 0, l.Interp.flag(srcW, srcH, w1, h1))
			img = l.first
		}
		gocv.Resize(img, &l.region, image.Pt(nw, nh), 0, 0, gocv.InterpolationLinear)
	}
	data, err := l.canvas.DataPtrUint8()
	if err != nil {
		return Transform{}, fmt.Errorf("letterbox: %w", err)
	}
	off := 3 * (top*l.W + left)
	fill(dst[:3*plane], l.padRow(), l.W, l.H, data[off:], 3*l.W, nw, nh, left, top)
	return t, nil
}

// place makes region the r part of a canvas padded with PadValue, creating
// or repainting the canvas only when r changes.
func (l *Letterboxer) place(r image.Rectangle) {
	sized := l.canvas.Rows() == l.H && l.canvas.Cols() == l.W && l.canvas.Type() == gocv.MatTypeCV8UC3
	if r == l.geom && sized {
		return
	}
	if !sized {
		l.canvas.Close()
		l.canvas = gocv.NewMatWithSize(l.H, l.W, gocv.MatTypeCV8UC3)
	}
	l.canvas.SetTo(gocv.NewScalar(PadValue, PadValue, PadValue, 0))
	l.region.Close()
	l.region = l.canvas.Region(r)
	l.geom = r
}

// padRow returns a row of W padding values, made once.
func (l *Letterboxer) padRow() []float32 {
	if len(l.pad) != l.W {
		l.pad = make([]float32, l.W)
		for i := range l.pad {
			l.pad[i] = lut[PadValue]
		}
	}
	return l.pad
}
