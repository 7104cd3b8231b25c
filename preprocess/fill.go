package preprocess

// fill writes the letterboxed input into dst (3 planes of W x H float32,
// RGB): the nw x nh BGR image, whose row y starts at img[y*step], placed at
// left, top, scaled to 0..1 through lut, and PadValue around it. It is the
// one pass over the output: padding rows and columns are copied from
// padRow (W values of lut[PadValue]), image pixels go through the table.
func fill(dst, padRow []float32, W, H int, img []uint8, step, nw, nh, left, top int) {
	plane := W * H
	var pads [3][]float32
	for c := range pads {
		pads[c] = dst[c*plane : (c+1)*plane]
	}
	for y := 0; y < H; y++ {
		row := y * W
		sy := y - top
		if sy < 0 || sy >= nh {
			for _, p := range pads {
				copy(p[row:row+W], padRow)
			}
			continue
		}
		for _, p := range pads {
			copy(p[row:row+left], padRow)
			copy(p[row+left+nw:row+W], padRow)
		}
		o := row + left
		pixels(pads[0][o:o+nw], pads[1][o:o+nw], pads[2][o:o+nw], img[sy*step:sy*step+3*nw])
	}
}

// pixels converts one row of BGR bytes into the R, G and B planes (all of
// len(r) values), four pixels at a time with bounds checks hoisted.
func pixels(r, g, b []float32, src []uint8) {
	n := len(r)
	g, b, src = g[:n], b[:n], src[:3*n]
	i := 0
	for ; i+4 <= n; i += 4 {
		s := src[3*i : 3*i+12 : 3*i+12]
		rr, gg, bb := r[i:i+4:i+4], g[i:i+4:i+4], b[i:i+4:i+4]
		bb[0], gg[0], rr[0] = lut[s[0]], lut[s[1]], lut[s[2]]
		bb[1], gg[1], rr[1] = lut[s[3]], lut[s[4]], lut[s[5]]
		bb[2], gg[2], rr[2] = lut[s[6]], lut[s[7]], lut[s[8]]
		bb[3], gg[3], rr[3] = lut[s[9]], lut[s[10]], lut[s[11]]
	}
	for ; i < n; i++ {
		s := src[3*i : 3*i+3 : 3*i+3]
		b[i], g[i], r[i] = lut[s[0]], lut[s[1]], lut[s[2]]
	}
}
