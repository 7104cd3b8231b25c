package postprocess

import (
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"
)

// palette is the Ultralytics colour palette (RGB hex).
var palette = []uint32{0xFF3838, 0xFF9D97, 0xFF701F, 0xFFB21D, 0xCFD231, 0x48F90A, 0x92CC17, 0x3DDB86,
	0x1A9334, 0x00D4BB, 0x2C99A8, 0x00C2FF, 0x344593, 0x6473FF, 0x0018EC, 0x8438FF, 0x520085, 0xCB38FF,
	0xFF95C8, 0xFF37C7}

// ClassColor returns the drawing colour of a class.
func ClassColor(c int) color.RGBA {
	if c < 0 {
		c = -c
	}
	h := palette[c%len(palette)]
	return color.RGBA{R: uint8(h >> 16), G: uint8(h >> 8), B: uint8(h), A: 255}
}

// Draw annotates img in place with boxes and "name score" labels.
func Draw(img *gocv.Mat, dets []Detection, names []string) {
	thick := max(1, (img.Cols()+img.Rows())/600)
	for _, d := range dets {
		col := ClassColor(d.Class)
		r := image.Rect(int(d.Box.X1), int(d.Box.Y1), int(d.Box.X2), int(d.Box.Y2))
		gocv.Rectangle(img, r, col, thick)
		label := fmt.Sprintf("%s %.2f", Name(names, d.Class), d.Score)
		scale := float64(thick) / 3
		sz := gocv.GetTextSize(label, gocv.FontHersheySimplex, scale, max(1, thick-1))
		y := r.Min.Y
		if y-sz.Y-3 < 0 {
			y = r.Min.Y + sz.Y + 3
		}
		gocv.Rectangle(img, image.Rect(r.Min.X, y-sz.Y-3, r.Min.X+sz.X, y), col, -1)
		gocv.PutText(img, label, image.Pt(r.Min.X, y-2), gocv.FontHersheySimplex, scale,
			color.RGBA{255, 255, 255, 255}, max(1, thick-1))
	}
}
