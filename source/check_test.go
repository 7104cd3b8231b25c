package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
)

func TestCheckImage(t *testing.T) {
	imgs, _ := filepath.Glob(filepath.Join(fixtures.Path(t, "datasets", "coco-val128", "images"), "*.jpg"))
	if len(imgs) == 0 {
		t.Fatal("no images in coco-val128")
	}
	jpg, err := os.ReadFile(imgs[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m := gocv.IMRead(imgs[0], gocv.IMReadColor)
	defer m.Close()
	png, err := gocv.IMEncode(gocv.PNGFileExt, m)
	if err != nil {
		t.Fatal(err)
	}
	defer png.Close()
	pngb := append([]byte{}, png.GetBytes()...)
	for _, tc := range []struct {
		name    string
		data    []byte
		corrupt bool
	}{
		{"whole.jpg", jpg, false},
		{"padded.jpg", append(append([]byte{}, jpg...), 0, 0, 0), false},
		{"half.jpg", jpg[:len(jpg)/2], true},
		{"cut2.jpg", jpg[:len(jpg)-2], true},
		{"whole.png", pngb, false},
		{"half.png", pngb[:len(pngb)/2], true},
		{"tiny.jpg", []byte{0xFF, 0xD8}, true},
		{"other.bmp", []byte("BM not checked here"), false},
	} {
		err := CheckImage(write(tc.name, tc.data))
		if got := errors.Is(err, ErrCorruptImage); got != tc.corrupt {
			t.Errorf("%s: err = %v, want corrupt %v", tc.name, err, tc.corrupt)
		}
	}
	// The folder source delivers the truncated JPEG (libjpeg decodes it
	// with a warning) flagged Corrupt, and the whole one not.
	folder := filepath.Join(dir, "folder")
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, "a.jpg"), jpg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, "b.jpg"), jpg[:len(jpg)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := Open(context.Background(), Spec{URI: folder}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	img := gocv.NewMat()
	defer img.Close()
	for _, want := range []bool{false, true} {
		fr, err := src.Read(context.Background(), &img)
		if err != nil {
			t.Fatal(err)
		}
		if fr.Corrupt != want {
			t.Errorf("%s: Corrupt %v, want %v", fr.Name, fr.Corrupt, want)
		}
	}
}
