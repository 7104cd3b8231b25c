package pipeline

import (
	"context"
	"image"
	"slices"
	"testing"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/preprocess"
)

// TestDetectorInterp: Config.Interp reaches the detector's letterbox (its
// input is the letterbox of that interpolation), and the two differ on a
// frame that is shrunk; the zero value is the reference protocol.
func TestDetectorInterp(t *testing.T) {
	initORT(t)
	model := fixtures.Model(t, "yolov5n.onnx")
	img := gocv.IMRead(fixtures.Path(t, "datasets", "coco-val128", "images", "000000000139.jpg"), gocv.IMReadColor)
	defer img.Close()
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(img, &small, image.Pt(768, 576), 0, 0, gocv.InterpolationLinear)
	inputs := map[preprocess.Interp][]float32{}
	for _, tc := range []struct {
		name   string
		interp preprocess.Interp
	}{
		{"zero value", 0},
		{"area", preprocess.InterpReference},
		{"linear", preprocess.InterpLinear},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Config{Model: model, Runtime: onnxrt.Options{Provider: "cpu", Threads: 1}, Interp: tc.interp})
			if err != nil {
				t.Fatal(err)
			}
			defer closeOK(t, d)
			if _, err := d.Preprocess(small, 0); err != nil {
				t.Fatal(err)
			}
			l := preprocess.New(d.Width, d.Height)
			defer closeOK(t, l)
			l.Interp = tc.interp
			want := make([]float32, 3*d.Width*d.Height)
			if _, err := l.Apply(small, want); err != nil {
				t.Fatal(err)
			}
			sl0, err := d.ownSlot()
			if err != nil {
				t.Fatal(err)
			}
			got := sl0.t.Input()
			if !slices.Equal(got, want) {
				t.Errorf("detector input is not the %v letterbox", tc.interp)
			}
			// The pipelined stages' slots letterbox alike.
			sl, err := d.AcquireSlot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sl.Preprocess(small, 0); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sl.t.Input(), want) {
				t.Errorf("slot input is not the %v letterbox", tc.interp)
			}
			d.ReleaseSlot(sl)
			inputs[tc.interp] = slices.Clone(got)
		})
	}
	if slices.Equal(inputs[preprocess.InterpReference], inputs[preprocess.InterpLinear]) {
		t.Error("area and linear letterbox a shrunk frame alike")
	}
}
