package eval

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadLabelsClasses(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.txt")
	if err := os.WriteFile(p, []byte("0 0.5 0.5 0.2 0.2\n\n500 0.5 0.5 0.2 0.2\n79 0.1 0.1 0.1 0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := ReadLabelsClasses(p, 640, 480, 80, false)
	var be *BadClassError
	if !errors.As(err, &be) || be.Line != 3 || be.Class != 500 || !strings.Contains(err.Error(), p+":3: class 500") {
		t.Fatalf("err = %v", err)
	}
	labels, bad, err := ReadLabelsClasses(p, 640, 480, 80, true)
	if err != nil || len(labels) != 2 || len(bad) != 1 || bad[0].Line != 3 {
		t.Fatalf("drop: %v %v %v", labels, bad, err)
	}
	if labels, _, err := ReadLabelsClasses(p, 640, 480, 0, false); err != nil || len(labels) != 3 {
		t.Fatalf("unchecked: %v %v", labels, err)
	}
}
