package preprocess

import (
	"image"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"gocv.io/x/gocv"
)

// Single-core figures (the targets of issue 13):
//
//	taskset -c 0 env GOMAXPROCS=1 go test -run XXX -bench . ./preprocess
//
// taskset leaves OpenCV one CPU, so its resize runs on one thread too.

// benchFrame returns the first frame of a ../shared/media video, or a
// random frame of the same size where the media are absent.
func benchFrame(b *testing.B, file string, w, h int) gocv.Mat {
	b.Helper()
	if vc, err := gocv.VideoCaptureFile(filepath.Join("..", "..", "shared", "media", file)); err == nil {
		img := gocv.NewMat()
		ok := vc.Read(&img)
		if err := vc.Close(); err != nil {
			b.Fatal(err)
		}
		if ok && img.Cols() == w && img.Rows() == h {
			return img
		}
		img.Close()
	}
	if _, err := os.Stat(filepath.Join("..", "..", "shared")); err == nil {
		b.Fatalf("cannot read %s", file)
	}
	img := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	gocv.RandU(&img, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(256, 256, 256, 0))
	return img
}

var benchFrames = []struct {
	name, file string
	w, h       int
}{
	{"1920x1080", "vtest-1080p.mp4", 1920, 1080},
	{"768x576", "vtest.avi", 768, 576},
}

// BenchmarkResize is OpenCV's resize alone to the letterboxed size (640 on
// the long side), the floor for Apply.
func BenchmarkResize(b *testing.B) {
	for _, f := range benchFrames {
		for _, interp := range []gocv.InterpolationFlags{gocv.InterpolationArea, gocv.InterpolationLinear} {
			name := map[gocv.InterpolationFlags]string{gocv.InterpolationArea: "area", gocv.InterpolationLinear: "linear"}[interp]
			b.Run(f.name+"/"+name, func(b *testing.B) {
				img := benchFrame(b, f.file, f.w, f.h)
				defer img.Close()
				l := Letterboxer{W: 640, H: 640}
				_, _, nw, nh, _, _, _ := l.Plan(f.w, f.h)
				dst := gocv.NewMatWithSize(nh, nw, gocv.MatTypeCV8UC3)
				defer dst.Close()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					gocv.Resize(img, &dst, image.Pt(nw, nh), 0, 0, interp)
				}
			})
		}
	}
}

// BenchmarkApply is the whole letterbox of a frame into a 640x640 input.
func BenchmarkApply(b *testing.B) {
	for _, f := range benchFrames {
		for _, interp := range []Interp{InterpReference, InterpLinear} {
			b.Run(f.name+"/"+interp.String(), func(b *testing.B) {
				img := benchFrame(b, f.file, f.w, f.h)
				defer img.Close()
				l := New(640, 640)
				l.Interp = interp
				defer closeOK(b, l)
				buf := make([]float32, 3*640*640)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := l.Apply(img, buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkReferenceApply is the former resize-then-fill letterbox
// (reference_test.go), for comparison with BenchmarkApply.
func BenchmarkReferenceApply(b *testing.B) {
	for _, f := range benchFrames {
		for _, linear := range []bool{false, true} {
			name := map[bool]string{false: "area", true: "linear"}[linear]
			b.Run(f.name+"/"+name, func(b *testing.B) {
				img := benchFrame(b, f.file, f.w, f.h)
				defer img.Close()
				r := newRef(640, 640, linear)
				defer closeOK(b, r)
				buf := make([]float32, 3*640*640)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := r.Apply(img, buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkConvert compares the conversion of a letterboxed 640x640 canvas
// (a 640x480 image, 80 rows of padding above and below) into the CHW float
// input: the Go pass that Apply uses, and OpenCV's vectorised split and
// convertTo into Mats over the destination planes.
func BenchmarkConvert(b *testing.B) {
	const W, H, nw, nh, left, top = 640, 640, 640, 480, 0, 80
	canvas := gocv.NewMatWithSize(H, W, gocv.MatTypeCV8UC3)
	defer canvas.Close()
	gocv.RandU(&canvas, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(256, 256, 256, 0))
	data, err := canvas.DataPtrUint8()
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, 3*W*H)
	b.Run("go", func(b *testing.B) {
		l := Letterboxer{W: W, H: H}
		for i := 0; i < b.N; i++ {
			fill(dst, l.padRow(), W, H, data[3*(top*W+left):], 3*W, nw, nh, left, top)
		}
	})
	b.Run("opencv-split-convertTo", func(b *testing.B) {
		bytes := unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*len(dst))
		var planes [3]gocv.Mat
		for c := range planes {
			m, err := gocv.NewMatFromBytes(H, W, gocv.MatTypeCV32F, bytes[4*c*W*H:4*(c+1)*W*H])
			if err != nil {
				b.Fatal(err)
			}
			planes[c] = m
			defer planes[c].Close()
		}
		for i := 0; i < b.N; i++ {
			bgr := gocv.Split(canvas)
			for c := range bgr {
				bgr[c].ConvertToWithParams(&planes[2-c], gocv.MatTypeCV32F, 1.0/255, 0)
				bgr[c].Close()
			}
		}
	})
	b.Run("opencv-blobFromImage-copy", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			blob := gocv.BlobFromImage(canvas, 1.0/255, image.Pt(W, H), gocv.NewScalar(0, 0, 0, 0), true, false)
			f, err := blob.DataPtrFloat32()
			if err != nil {
				b.Fatal(err)
			}
			copy(dst, f)
			blob.Close()
		}
	})
}
