package preprocess

import (
	"errors"
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// refLetterboxer is the letterbox as it was before the one-pass rewrite
// (resize into a scratch image, then fill), kept as the reference that the
// tests compare Apply with, bit for bit. It supports the reference
// interpolation and, with linear set, INTER_LINEAR for every resize.
type refLetterboxer struct {
	l       *Letterboxer
	linear  bool
	resized gocv.Mat
	second  gocv.Mat
	bgr     gocv.Mat
}

func newRef(w, h int, linear bool) *refLetterboxer {
	return &refLetterboxer{l: &Letterboxer{W: w, H: h}, linear: linear,
		resized: gocv.NewMat(), second: gocv.NewMat(), bgr: gocv.NewMat()}
}

func (r *refLetterboxer) Close() error {
	r.resized.Close()
	r.second.Close()
	r.bgr.Close()
	return nil
}

func (r *refLetterboxer) Apply(src gocv.Mat, dst []float32) (Transform, error) {
	if src.Empty() {
		return Transform{}, ErrEmptyImage
	}
	plane := r.l.W * r.l.H
	if len(dst) < 3*plane {
		return Transform{}, fmt.Errorf("letterbox: buffer holds %d values, need %d", len(dst), 3*plane)
	}
	img := src
	switch src.Type() {
	case gocv.MatTypeCV8UC3:
	case gocv.MatTypeCV8UC1:
		gocv.CvtColor(src, &r.bgr, gocv.ColorGrayToBGR)
		img = r.bgr
	case gocv.MatTypeCV8UC4:
		gocv.CvtColor(src, &r.bgr, gocv.ColorBGRAToBGR)
		img = r.bgr
	default:
		return Transform{}, fmt.Errorf("letterbox: unsupported image type %v (want 8-bit BGR)", src.Type())
	}
	srcW, srcH := img.Cols(), img.Rows()
	w1, h1, nw, nh, left, top, t := r.l.Plan(srcW, srcH)
	if w1 != srcW || h1 != srcH {
		interp := gocv.InterpolationArea
		if r.linear || w1 > srcW || h1 > srcH {
			interp = gocv.InterpolationLinear
		}
		gocv.Resize(img, &r.resized, image.Pt(w1, h1), 0, 0, interp)
		img = r.resized
	}
	if nw != w1 || nh != h1 {
		gocv.Resize(img, &r.second, image.Pt(nw, nh), 0, 0, gocv.InterpolationLinear)
		img = r.second
	}
	if !img.IsContinuous() {
		return Transform{}, errors.New("letterbox: image memory is not continuous")
	}
	data, err := img.DataPtrUint8()
	if err != nil {
		return Transform{}, fmt.Errorf("letterbox: %w", err)
	}
	refFill(dst[:3*plane], r.l.W, r.l.H, data, nw, nh, left, top)
	return t, nil
}

// refFill writes the padded, channel-swapped, scaled image into dst.
func refFill(dst []float32, W, H int, bgr []uint8, nw, nh, left, top int) {
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
