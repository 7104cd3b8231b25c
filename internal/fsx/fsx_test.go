package fsx

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRefuseOverwrite(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll("sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("m.onnx", []byte("model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "m.onnx"), "link.onnx"); err != nil {
		t.Fatal(err)
	}
	if err := os.Link("m.onnx", "hard.onnx"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("other.onnx", []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{"m.onnx", "./m.onnx", "sub/../m.onnx", filepath.Join(dir, "m.onnx"), "link.onnx", "hard.onnx"} {
		if err := RefuseOverwrite(out, "", "m.onnx"); !errors.Is(err, ErrInputOverwrite) {
			t.Errorf("%s: err = %v, want ErrInputOverwrite", out, err)
		}
	}
	for _, out := range []string{"", "other.onnx", "new.onnx", "sub/m.onnx"} {
		if err := RefuseOverwrite(out, "m.onnx"); err != nil {
			t.Errorf("%s: %v", out, err)
		}
	}
}
