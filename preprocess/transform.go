// Package preprocess turns a BGR image into a YOLOv5 input tensor: the
// letterbox of the Ultralytics reference (long side resized to the input
// size, INTER_AREA when shrinking and INTER_LINEAR when enlarging, padding
// 114 split evenly, BGR to RGB, scaled to 0..1, NCHW float32), written
// straight into a caller's buffer, plus the Transform that maps boxes back
// to source pixels. The same code serves detect, eval, calibration and serve;
// detect and serve default to InterpAuto (INTER_LINEAR up to a 2x shrink)
// and may choose InterpLinear (INTER_LINEAR always, as Ultralytics
// detect.py does); eval and calibration keep the reference.
package preprocess

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
