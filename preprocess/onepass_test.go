package preprocess

import (
	"fmt"
	"image"
	"math"
	"testing"

	"gocv.io/x/gocv"
)

// frame returns a random image of w x h pixels of type typ; with roi set,
// a non-continuous region of a larger random image.
func frame(w, h int, typ gocv.MatType, roi bool) (img gocv.Mat, parent gocv.Mat) {
	hi := gocv.NewScalar(256, 256, 256, 256)
	if !roi {
		img = gocv.NewMatWithSize(h, w, typ)
		gocv.RandU(&img, gocv.NewScalar(0, 0, 0, 0), hi)
		return img, gocv.NewMat()
	}
	parent = gocv.NewMatWithSize(h+7, w+13, typ)
	gocv.RandU(&parent, gocv.NewScalar(0, 0, 0, 0), hi)
	return parent.Region(image.Rect(5, 3, 5+w, 3+h)), parent
}

// TestApplyMatchesReference: the one-pass Apply writes exactly what the
// former resize-then-fill implementation wrote, bit for bit, for either
// interpolation, over frame sizes that shrink, enlarge, fit exactly or take
// the two-step geometry, gray and BGRA frames, and regions of larger images.
// Each Letterboxer is reused across the cases, so that a change of
// geometry (and repainting of the padding) is covered too.
func TestApplyMatchesReference(t *testing.T) {
	tests := []struct {
		name       string
		srcW, srcH int
		typ        gocv.MatType
		roi        bool
	}{
		{"shrink 1920x1080", 1920, 1080, gocv.MatTypeCV8UC3, false},
		{"shrink 768x576", 768, 576, gocv.MatTypeCV8UC3, false},
		{"enlarge 500x375", 500, 375, gocv.MatTypeCV8UC3, false},
		{"enlarge tiny 37x23", 37, 23, gocv.MatTypeCV8UC3, false},
		{"exact 640x480", 640, 480, gocv.MatTypeCV8UC3, false},
		{"exact 640x640", 640, 640, gocv.MatTypeCV8UC3, false},
		{"exact portrait 480x640", 480, 640, gocv.MatTypeCV8UC3, false},
		{"odd 641x427", 641, 427, gocv.MatTypeCV8UC3, false},
		{"odd 333x1001", 333, 1001, gocv.MatTypeCV8UC3, false},
		{"two-step 1581x38", 1581, 38, gocv.MatTypeCV8UC3, false},
		{"gray 768x576", 768, 576, gocv.MatTypeCV8UC1, false},
		{"gray exact 640x480", 640, 480, gocv.MatTypeCV8UC1, false},
		{"BGRA 1280x720", 1280, 720, gocv.MatTypeCV8UC4, false},
		{"BGRA enlarge 300x200", 300, 200, gocv.MatTypeCV8UC4, false},
		{"ROI shrink 1000x700", 1000, 700, gocv.MatTypeCV8UC3, true},
		{"ROI exact 640x480", 640, 480, gocv.MatTypeCV8UC3, true},
		{"ROI exact 480x640", 480, 640, gocv.MatTypeCV8UC3, true},
		{"ROI enlarge 320x240", 320, 240, gocv.MatTypeCV8UC3, true},
		{"ROI gray 800x600", 800, 600, gocv.MatTypeCV8UC1, true},
		{"ROI BGRA 640x480", 640, 480, gocv.MatTypeCV8UC4, true},
	}
	for _, in := range [][2]int{{640, 640}, {480, 640}, {640, 352}} {
		for _, interp := range []Interp{InterpReference, InterpLinear} {
			l := New(in[0], in[1])
			l.Interp = interp
			ref := newRef(in[0], in[1], interp == InterpLinear)
			got := make([]float32, 3*in[0]*in[1])
			want := make([]float32, len(got))
			for _, tc := range tests {
				t.Run(fmt.Sprintf("%dx%d/%v/%s", in[0], in[1], interp, tc.name), func(t *testing.T) {
					img, parent := frame(tc.srcW, tc.srcH, tc.typ, tc.roi)
					defer parent.Close()
					defer img.Close()
					if tc.roi == img.IsContinuous() {
						t.Fatalf("frame continuous = %v, want %v", img.IsContinuous(), !tc.roi)
					}
					for i := range got {
						got[i], want[i] = -1, -2 // every value must be written
					}
					xf, err := l.Apply(img, got)
					if err != nil {
						t.Fatal(err)
					}
					// The former code refused non-continuous frames it did
					// not resize: give it a continuous copy.
					c := img.Clone()
					defer c.Close()
					wxf, err := ref.Apply(c, want)
					if err != nil {
						t.Fatal(err)
					}
					if xf != wxf {
						t.Errorf("transform %+v, want %+v", xf, wxf)
					}
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							p := in[0] * in[1]
							t.Fatalf("value %d (plane %d, y %d, x %d) = %v, want %v", i, i/p, i%p/in[0], i%in[0], got[i], want[i])
						}
					}
				})
			}
			closeOK(t, l)
			closeOK(t, ref)
		}
	}
}

// TestInterpParse: names round-trip and bad names are errors.
func TestInterpParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Interp
		wantErr bool
	}{
		{"area", InterpReference, false},
		{"linear", InterpLinear, false},
		{"LINEAR", InterpLinear, false},
		{"auto", InterpAuto, false},
		{"", 0, true},
		{"cubic", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseInterp(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseInterp(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && got.String() != InterpNames[got] {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if s := Interp(7).String(); s != "Interp(7)" {
		t.Errorf("Interp(7).String() = %q", s)
	}
}

// TestInterpFlag: which OpenCV interpolation each choice uses for a
// resize: auto is linear up to a 2x shrink and area beyond.
func TestInterpFlag(t *testing.T) {
	area, linear := gocv.InterpolationArea, gocv.InterpolationLinear
	tests := []struct {
		srcW, srcH, w, h   int
		ref, lin, autoWant gocv.InterpolationFlags
	}{
		{768, 576, 640, 480, area, linear, linear},   // vtest into 640: 1.2x
		{1280, 720, 640, 360, area, linear, linear},  // exactly 2x
		{1920, 1080, 640, 360, area, linear, area},   // 1080p: 3x
		{1282, 400, 640, 200, area, linear, area},    // just over 2x on one side
		{320, 240, 640, 480, linear, linear, linear}, // enlarging
		{640, 480, 640, 480, area, linear, linear},   // same size
	}
	for _, tc := range tests {
		for _, c := range []struct {
			i    Interp
			want gocv.InterpolationFlags
		}{{InterpReference, tc.ref}, {InterpLinear, tc.lin}, {InterpAuto, tc.autoWant}} {
			if got := c.i.flag(tc.srcW, tc.srcH, tc.w, tc.h); got != c.want {
				t.Errorf("%v from %dx%d to %dx%d: %v, want %v", c.i, tc.srcW, tc.srcH, tc.w, tc.h, got, c.want)
			}
		}
	}
}
