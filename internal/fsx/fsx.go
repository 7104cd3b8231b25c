// Package fsx holds the rules every yedge command follows around files:
// before writing an output file, never overwrite or remove a file the user
// gave as input, nor open a FIFO; and read a file whole only when it is a
// regular file within its kind's size limit (ReadFile).
// Files are compared by identity (device and inode, after following
// symbolic links), not by spelling, so "m.onnx", "./m.onnx",
// "sub/../m.onnx", an absolute path, a symbolic link and a hard link to the
// same file are all recognised as the same file.
package fsx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SameFile reports whether paths a and b name the same existing file (the
// same device and inode). Paths that do not exist are never the same file;
// when both fail to stat, the cleaned absolute paths are compared.
func SameFile(a, b string) bool {
	sa, ea := os.Stat(a)
	sb, eb := os.Stat(b)
	if ea == nil && eb == nil {
		return os.SameFile(sa, sb)
	}
	if ea != nil && eb != nil {
		aa, err1 := filepath.Abs(a)
		bb, err2 := filepath.Abs(b)
		return err1 == nil && err2 == nil && aa == bb
	}
	return false
}

// ErrInputOverwrite is wrapped by the error RefuseOverwrite returns.
var ErrInputOverwrite = errors.New("would overwrite an input")

// RefuseOverwrite returns an error wrapping ErrInputOverwrite when out names
// the same file as one of inputs (an output equal to an input folder is
// refused too). Empty strings are ignored. The error names both paths as
// given.
func RefuseOverwrite(out string, inputs ...string) error {
	if out == "" {
		return nil
	}
	// An existing FIFO or socket would block the open until a reader
	// came, deaf to signals; a character device (/dev/null) is fine.
	if fi, err := os.Stat(out); err == nil && (fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) != 0) {
		return fmt.Errorf("output %q: %w (%s)", out, ErrNotRegular, fileType(fi.Mode()))
	}
	for _, in := range inputs {
		if in == "" {
			continue
		}
		if SameFile(out, in) {
			return fmt.Errorf("output %q is the input %q: %w; choose another output path", out, in, ErrInputOverwrite)
		}
	}
	return nil
}

// Within reports whether path is dir itself or lies under it. Both are
// compared as absolute paths with the symbolic links of their existing
// parts resolved, so a path that does not exist yet (a sink's file) is
// placed where it would be made.
func Within(path, dir string) bool {
	p, d := resolve(path), resolve(dir)
	if p == "" || d == "" {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// resolve returns path made absolute, with the symbolic links of its
// longest existing prefix resolved; "" when it cannot be made absolute.
func resolve(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	rest := ""
	for cur := abs; ; cur = filepath.Dir(cur) {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		if cur == filepath.Dir(cur) {
			return abs
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}
