package preprocess

import (
	"image"
	"image/color"
	"io"
	"math"
	"math/rand/v2"
	"testing"

	"gocv.io/x/gocv"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name                      string
		dstW, dstH, srcW, srcH    int
		w1, h1, nw, nh, left, top int
		gain                      float64
	}{
		{"COCO 640x480 unchanged", 640, 640, 640, 480, 640, 480, 640, 480, 0, 80, 1},
		{"shrink 768x576", 640, 640, 768, 576, 640, 480, 640, 480, 0, 80, 640.0 / 768},
		{"enlarge 500x375", 640, 640, 500, 375, 640, 480, 640, 480, 0, 80, 480.0 / 375},
		{"portrait 480x640", 640, 640, 480, 640, 480, 640, 480, 640, 80, 0, 1},
		{"odd padding 640x427", 640, 640, 640, 427, 640, 427, 640, 427, 0, 106, 1},
		{"non-square input 640x320", 640, 320, 768, 576, 427, 320, 427, 320, 106, 0, 320.0 / 576},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(tc.dstW, tc.dstH)
			defer closeOK(t, l)
			w1, h1, nw, nh, left, top, xf := l.Plan(tc.srcW, tc.srcH)
			if w1 != tc.w1 || h1 != tc.h1 || nw != tc.nw || nh != tc.nh || left != tc.left || top != tc.top {
				t.Errorf("plan = %d %d %d %d %d %d, want %d %d %d %d %d %d", w1, h1, nw, nh, left, top, tc.w1, tc.h1, tc.nw, tc.nh, tc.left, tc.top)
			}
			if math.Abs(xf.Gain-tc.gain) > 1e-9 {
				t.Errorf("gain = %v, want %v", xf.Gain, tc.gain)
			}
		})
	}
}

// Property: a box mapped into the input and back returns within one pixel.
func TestTransformRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 1000; i++ {
		sw, sh := 16+r.IntN(2000), 16+r.IntN(2000)
		l := New(32*(5+r.IntN(16)), 32*(5+r.IntN(16)))
		_, _, _, _, _, _, xf := l.Plan(sw, sh)
		x1, y1 := r.Float64()*float64(sw), r.Float64()*float64(sh)
		x2, y2 := x1+r.Float64()*(float64(sw)-x1), y1+r.Float64()*(float64(sh)-y1)
		ix1, iy1 := xf.ToInput(x1, y1)
		ix2, iy2 := xf.ToInput(x2, y2)
		bx1, by1, bx2, by2 := xf.BoxToSource(ix1, iy1, ix2, iy2)
		for _, d := range []float64{bx1 - x1, by1 - y1, bx2 - x2, by2 - y2} {
			if math.Abs(d) > 1 {
				t.Fatalf("src %dx%d input %dx%d: box %v,%v,%v,%v came back as %v,%v,%v,%v", sw, sh, l.W, l.H, x1, y1, x2, y2, bx1, by1, bx2, by2)
			}
		}
		closeOK(t, l)
	}
}

// Property: a box drawn in a real source image of random size and type,
// letterboxed by Apply, lands where Transform.ToInput says (the bounding
// box of its pixels in the input tensor, found at half intensity) and maps
// back with BoxToSource to the drawn box, within one input pixel.
//
// Two terms of the YOLOv5 protocol are added to that pixel, both exactly
// zero when the first resize is exact (r = 1, or 1920x1080, 1280x720,
// 768x576, 640x480 into 640): Gain is h1/srcH for both axes (scale_boxes
// uses ratio_pad[0][0] = h/h0) while the image is resized to
// ceil(srcW*r) wide, so x drifts by |nw - Gain*srcW| pixels across the
// image; and the image sits at the integer left/top offsets while Pad is
// the float (dW/2, dH/2). For extreme aspect ratios the first term is
// large (a 1580x38 strip into 512x288 is 26 pixels off at its right edge);
// that is the reference's behaviour, kept for mAP parity.
func TestApplyRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	type tc struct{ sw, sh, w, h int }
	var cases []tc
	for _, s := range [][2]int{{640, 480}, {768, 576}, {1280, 720}, {1920, 1080}, {480, 640}, {320, 240}} {
		cases = append(cases, tc{s[0], s[1], 640, 640})
	}
	for len(cases) < 200 {
		cases = append(cases, tc{16 + r.IntN(1500), 16 + r.IntN(1500), 32 * (5 + r.IntN(16)), 32 * (5 + r.IntN(16))})
	}
	for i, c := range cases {
		l := New(c.w, c.h)
		_, h1, nw, nh, left, top, plan := l.Plan(c.sw, c.sh)
		// The protocol's geometry, derived here rather than read from the
		// Transform under test: gain h1/srcH, padding half the free space.
		gain := float64(h1) / float64(c.sh)
		padX, padY := float64(c.w-nw)/2, float64(c.h-nh)/2
		// A box at least 4 input pixels wide and high, anywhere in the image.
		minSide := int(math.Ceil(4 / gain))
		if minSide > c.sw || minSide > c.sh {
			closeOK(t, l)
			continue
		}
		bw, bh := minSide+r.IntN(c.sw-minSide+1), minSide+r.IntN(c.sh-minSide+1)
		x1, y1 := r.IntN(c.sw-bw+1), r.IntN(c.sh-bh+1)
		x2, y2 := x1+bw, y1+bh
		typ := []gocv.MatType{gocv.MatTypeCV8UC3, gocv.MatTypeCV8UC1, gocv.MatTypeCV8UC4}[r.IntN(3)]
		img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(0, 0, 0, 0), c.sh, c.sw, typ)
		roi := img.Region(image.Rect(x1, y1, x2, y2))
		roi.SetTo(gocv.NewScalar(255, 255, 255, 255))
		roi.Close()
		buf := make([]float32, 3*c.w*c.h)
		xf, err := l.Apply(img, buf)
		img.Close()
		closeOK(t, l)
		if err != nil {
			t.Fatalf("case %d %+v: %v", i, c, err)
		}
		if xf != plan {
			t.Fatalf("case %d: Apply transform %+v, Plan %+v", i, xf, plan)
		}
		// Bounding box of the drawn pixels in every channel; background is
		// 0 and padding 114/255 < 0.5.
		fx1, fy1, fx2, fy2 := c.w, c.h, 0, 0
		for ch := 0; ch < 3; ch++ {
			for y := 0; y < c.h; y++ {
				for x := 0; x < c.w; x++ {
					if buf[ch*c.w*c.h+y*c.w+x] >= 0.5 {
						fx1, fy1, fx2, fy2 = min(fx1, x), min(fy1, y), max(fx2, x+1), max(fy2, y+1)
					}
				}
			}
		}
		if fx2 == 0 {
			t.Fatalf("case %d %+v: box %d,%d,%d,%d not found in the input", i, c, x1, y1, x2, y2)
		}
		tolX := 1 + math.Abs(float64(nw)-gain*float64(c.sw)) + math.Abs(float64(left)-padX)
		tolY := 1 + math.Abs(float64(nh)-gain*float64(c.sh)) + math.Abs(float64(top)-padY)
		ix1, iy1 := xf.ToInput(float64(x1), float64(y1))
		ix2, iy2 := xf.ToInput(float64(x2), float64(y2))
		if math.Abs(ix1-float64(fx1)) > tolX || math.Abs(ix2-float64(fx2)) > tolX ||
			math.Abs(iy1-float64(fy1)) > tolY || math.Abs(iy2-float64(fy2)) > tolY {
			t.Fatalf("case %d src %dx%d input %dx%d: box %d,%d,%d,%d is at %d,%d,%d,%d in the input, ToInput says %.2f,%.2f,%.2f,%.2f (tolerance %.2f, %.2f)",
				i, c.sw, c.sh, c.w, c.h, x1, y1, x2, y2, fx1, fy1, fx2, fy2, ix1, iy1, ix2, iy2, tolX, tolY)
		}
		// Back to the source: the same tolerance, in source pixels.
		bx1, by1, bx2, by2 := xf.BoxToSource(float64(fx1), float64(fy1), float64(fx2), float64(fy2))
		sx, sy := tolX/gain+1e-9, tolY/gain+1e-9
		if math.Abs(bx1-float64(x1)) > sx || math.Abs(bx2-float64(x2)) > sx ||
			math.Abs(by1-float64(y1)) > sy || math.Abs(by2-float64(y2)) > sy {
			t.Fatalf("case %d src %dx%d input %dx%d: box %d,%d,%d,%d came back as %.2f,%.2f,%.2f,%.2f (tolerance %.2f, %.2f source pixels)",
				i, c.sw, c.sh, c.w, c.h, x1, y1, x2, y2, bx1, by1, bx2, by2, sx, sy)
		}
		if i < 6 && (tolX > 1.5 || tolY > 1.5) {
			t.Errorf("%dx%d into %dx%d: protocol terms %.2f, %.2f, want exact (<= 0.5 padding)", c.sw, c.sh, c.w, c.h, tolX-1, tolY-1)
		}
	}
}

func TestApplyPixels(t *testing.T) {
	// A 64x32 BGR image: left half pure blue, right half pure red.
	img := gocv.NewMatWithSize(32, 64, gocv.MatTypeCV8UC3)
	defer img.Close()
	gocv.Rectangle(&img, image.Rect(0, 0, 32, 32), color.RGBA{0, 0, 255, 0}, -1)
	gocv.Rectangle(&img, image.Rect(32, 0, 64, 32), color.RGBA{255, 0, 0, 0}, -1)
	l := New(64, 64)
	defer closeOK(t, l)
	buf := make([]float32, 3*64*64)
	xf, err := l.Apply(img, buf)
	if err != nil {
		t.Fatal(err)
	}
	if xf.PadY != 16 || xf.PadX != 0 || xf.Gain != 1 {
		t.Fatalf("transform %+v", xf)
	}
	at := func(c, y, x int) float32 { return buf[c*64*64+y*64+x] }
	pad := float32(114) / 255
	if at(0, 0, 0) != pad || at(1, 63, 63) != pad || at(2, 15, 10) != pad {
		t.Error("padding is not 114/255")
	}
	// RGB planes: blue pixel -> R=0, B=1; red pixel -> R=1, B=0.
	if at(0, 20, 5) != 0 || at(2, 20, 5) != 1 || at(0, 20, 60) != 1 || at(2, 20, 60) != 0 {
		t.Errorf("channels not swapped to RGB: %v %v %v %v", at(0, 20, 5), at(2, 20, 5), at(0, 20, 60), at(2, 20, 60))
	}
	if _, err := l.Apply(gocv.NewMat(), buf); err == nil {
		t.Error("empty image: want an error")
	}
	if _, err := l.Apply(img, buf[:10]); err == nil {
		t.Error("short buffer: want an error")
	}
	l.Interp = Interp(7)
	if _, err := l.Apply(img, buf); err == nil {
		t.Error("unknown interpolation: want an error")
	}
	l.Interp = InterpReference
	gray := gocv.NewMatWithSize(10, 10, gocv.MatTypeCV8UC1)
	defer gray.Close()
	if _, err := l.Apply(gray, buf); err != nil {
		t.Errorf("gray image: %v", err)
	}
}

// TestApplyNoAllocs: after the first frame of a geometry, Apply allocates
// nothing, whatever the path (resize, two-step, exact fit, gray, region).
func TestApplyNoAllocs(t *testing.T) {
	tests := []struct {
		name       string
		srcW, srcH int
		typ        gocv.MatType
		roi        bool
	}{
		{"shrink 768x576", 768, 576, gocv.MatTypeCV8UC3, false},
		{"shrink 1920x1080", 1920, 1080, gocv.MatTypeCV8UC3, false},
		{"enlarge 320x240", 320, 240, gocv.MatTypeCV8UC3, false},
		{"two-step 1581x38", 1581, 38, gocv.MatTypeCV8UC3, false},
		{"exact 640x480", 640, 480, gocv.MatTypeCV8UC3, false},
		{"gray 768x576", 768, 576, gocv.MatTypeCV8UC1, false},
		{"BGRA 768x576", 768, 576, gocv.MatTypeCV8UC4, false},
		{"ROI exact 640x480", 640, 480, gocv.MatTypeCV8UC3, true},
	}
	buf := make([]float32, 3*640*640)
	for _, interp := range []Interp{InterpReference, InterpLinear} {
		for _, tc := range tests {
			t.Run(interp.String()+"/"+tc.name, func(t *testing.T) {
				img, parent := frame(tc.srcW, tc.srcH, tc.typ, tc.roi)
				defer parent.Close()
				defer img.Close()
				l := New(640, 640)
				l.Interp = interp
				defer closeOK(t, l)
				if _, err := l.Apply(img, buf); err != nil {
					t.Fatal(err)
				}
				allocs := testing.AllocsPerRun(5, func() {
					if _, err := l.Apply(img, buf); err != nil {
						t.Error(err)
					}
				})
				if allocs != 0 {
					t.Errorf("Apply allocates %.0f times per frame, want 0", allocs)
				}
			})
		}
	}
}

func BenchmarkLetterbox768x576(b *testing.B) {
	img := gocv.NewMatWithSize(576, 768, gocv.MatTypeCV8UC3)
	defer img.Close()
	gocv.RandU(&img, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(255, 255, 255, 0))
	l := New(640, 640)
	defer closeOK(b, l)
	buf := make([]float32, 3*640*640)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.Apply(img, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// closeOK closes c and fails the test if that fails.
func closeOK(tb testing.TB, c io.Closer) {
	tb.Helper()
	if err := c.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
}
