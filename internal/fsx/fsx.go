// Package fsx holds the one rule every yedge command follows before writing
// an output file: never overwrite or remove a file the user gave as input.
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

// RefuseInside returns an error when out lies inside the folder dir (at any
// depth, after resolving symbolic links of the existing part of the path),
// so that an output cannot land among input files such as a dataset.
func RefuseInside(out, dir string) error {
	if out == "" || dir == "" {
		return nil
	}
	di, err := os.Stat(dir)
	if err != nil || !di.IsDir() {
		return nil
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return nil
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && os.SameFile(st, di) {
			return fmt.Errorf("output %q is inside the input folder %q: %w; choose another output path", out, dir, ErrInputOverwrite)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}
