package preprocess

import (
	"math"
	"unsafe"
)

// fill writes the letterboxed input into dst (3 planes of W x H float32,
// RGB): the nw x nh BGR image, whose row y starts at img[y*step], placed at
// left, top, scaled to 0..1 through lut, and PadValue around it. It is the
// one pass over the output: padding rows and columns are copied from
// padRow (W values of lut[PadValue]), image pixels go through the table.
func fill(dst, padRow []float32, W, H int, img []uint8, step, nw, nh, left, top int) {
	plane := W * H
	var planes [3][]float32
	for c := range planes {
		planes[c] = dst[c*plane : (c+1)*plane]
	}
	for y := 0; y < H; y++ {
		row := y * W
		sy := y - top
		if sy < 0 || sy >= nh {
			for _, p := range planes {
				copy(p[row:row+W], padRow)
			}
			continue
		}
		for _, p := range planes {
			copy(p[row:row+left], padRow)
			copy(p[row+left+nw:row+W], padRow)
		}
		o := row + left
		pixels(planes[0][o:o+nw], planes[1][o:o+nw], planes[2][o:o+nw], img[sy*step:sy*step+3*nw])
	}
}

// pixels converts one row of BGR bytes into the R, G and B planes (all of
// len(r) values). Two pixels of a plane are written with one 8-byte store
// of their table entries (the pass is bound by stores, not by the lookups);
// bounds are checked once per pair.
func pixels(r, g, b []float32, src []uint8) {
	n := len(r)
	g, b, src = g[:n], b[:n], src[:3*n]
	i := 0
	for ; i+2 <= n; i += 2 {
		s := src[3*i : 3*i+6 : 3*i+6]
		rr, gg, bb := r[i:i+2:i+2], g[i:i+2:i+2], b[i:i+2:i+2]
		*(*uint64)(unsafe.Pointer(&bb[0])) = lutPair(s[0], s[3])
		*(*uint64)(unsafe.Pointer(&gg[0])) = lutPair(s[1], s[4])
		*(*uint64)(unsafe.Pointer(&rr[0])) = lutPair(s[2], s[5])
	}
	for ; i < n; i++ {
		s := src[3*i : 3*i+3 : 3*i+3]
		b[i], g[i], r[i] = lut[s[0]], lut[s[1]], lut[s[2]]
	}
}

// lutBits holds the bits of lut, widened for lutPair.
var lutBits = func() (t [256]uint64) {
	for i := range t {
		t[i] = uint64(math.Float32bits(lut[i]))
	}
	return
}()

// lutPair returns lut[a] and lut[b] as the 8 bytes of two consecutive
// float32 values (little-endian, as on every platform gocv builds for).
func lutPair(a, b uint8) uint64 { return lutBits[a] | lutBits[b]<<32 }
