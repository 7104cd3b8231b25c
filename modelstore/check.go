package modelstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CheckDir reports whether dir can hold a model store as Open would use
// it, without writing anything: an existing folder (not a file) that this
// process may write into, or, when it does not exist yet, one that Open
// could make (its nearest existing parent is a writable folder). A
// read-only mount fails even for root.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(dir)
		for parent != filepath.Dir(parent) {
			if _, err := os.Stat(parent); err == nil {
				break
			}
			parent = filepath.Dir(parent)
		}
		if err := writableDir(parent); err != nil {
			return fmt.Errorf("state_dir %q does not exist and cannot be made: %w", dir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("state_dir %q: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("state_dir %q is a file, not a folder", dir)
	}
	if err := writableDir(dir); err != nil {
		return fmt.Errorf("state_dir %q: %w", dir, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "models")); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("state_dir %q: models is a file, not a folder", dir)
		}
		if err := writableDir(filepath.Join(dir, "models")); err != nil {
			return fmt.Errorf("state_dir %q: models: %w", dir, err)
		}
	}
	return nil
}

// writableDir reports whether dir is a folder this process may create
// files in.
func writableDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a folder", dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		if errors.Is(err, unix.EROFS) {
			return fmt.Errorf("%s is on a read-only file system", dir)
		}
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	return nil
}
