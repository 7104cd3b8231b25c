package fsx

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small.txt")
	if err := os.WriteFile(small, []byte("person\ncar\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(big, make([]byte, 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "names.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		is         error
		text       string
	}{
		{"regular", small, nil, ""},
		{"missing", filepath.Join(dir, "none"), fs.ErrNotExist, "no such file"},
		{"too large", big, ErrTooLarge, "2048 bytes, more than the 1 KiB allowed"},
		{"/dev/zero", "/dev/zero", ErrNotRegular, "(a character device)"},
		{"FIFO", fifo, ErrNotRegular, "(a FIFO)"},
		{"folder", dir, ErrNotRegular, "(a folder)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ReadFile(tc.path, 1024)
			if tc.is == nil {
				if err != nil || string(b) != "person\ncar\n" {
					t.Fatalf("ReadFile = %q, %v", b, err)
				}
				return
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.text) || strings.Contains(err.Error(), "\n") {
				t.Errorf("ReadFile error %q, want one line wrapping %v and saying %q", err, tc.is, tc.text)
			}
		})
	}
}

func TestRefuseOverwriteFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "out.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RefuseOverwrite(fifo); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a FIFO") {
		t.Errorf("RefuseOverwrite(FIFO) = %v", err)
	}
	if err := RefuseOverwrite("/dev/null"); err != nil {
		t.Errorf("RefuseOverwrite(/dev/null) = %v, want nil", err)
	}
}

func TestWithin(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(state, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(state, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{filepath.Join(state, "index.json"), true},
		{filepath.Join(state, "models", "a.onnx"), true},
		{state, true},
		{filepath.Join(link, "index.json"), true},                  // through a symlink
		{filepath.Join(dir, "x", "..", "state", "new", "a"), true}, // not yet made, spelled with ..
		{filepath.Join(dir, "state-other", "det.jsonl"), false},    // a sibling with the same prefix
		{filepath.Join(dir, "det.jsonl"), false},
	} {
		if got := Within(tc.path, state); got != tc.want {
			t.Errorf("Within(%q, state) = %v, want %v", tc.path, got, tc.want)
		}
	}
}
