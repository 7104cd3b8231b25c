//go:build matprofile

// gocv counts live Mats only when built with -tags matprofile (make soak):
//
//	go test -tags matprofile -run TestLetterboxerMats -count=1 ./preprocess

package preprocess

import (
	"testing"

	"gocv.io/x/gocv"
)

// TestLetterboxerMats: a Letterboxer that has gone through every path and
// changes of geometry leaves no Mat once closed.
func TestLetterboxerMats(t *testing.T) {
	before := gocv.MatProfile.Count()
	frames := []struct {
		w, h int
		typ  gocv.MatType
		roi  bool
	}{
		{1920, 1080, gocv.MatTypeCV8UC3, false},
		{768, 576, gocv.MatTypeCV8UC1, false},
		{1581, 38, gocv.MatTypeCV8UC4, false},
		{640, 480, gocv.MatTypeCV8UC3, true},
		{640, 480, gocv.MatTypeCV8UC3, false},
		{320, 240, gocv.MatTypeCV8UC3, true},
	}
	buf := make([]float32, 3*640*640)
	for _, interp := range []Interp{InterpReference, InterpLinear} {
		l := New(640, 640)
		l.Interp = interp
		for _, f := range frames {
			img, parent := frame(f.w, f.h, f.typ, f.roi)
			if _, err := l.Apply(img, buf); err != nil {
				t.Fatal(err)
			}
			img.Close()
			parent.Close()
		}
		closeOK(t, l)
	}
	if n := gocv.MatProfile.Count() - before; n != 0 {
		t.Errorf("%d Mats left", n)
	}
}
