package fsx

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Size limits of the files yedge reads whole: each kind's one home.
const (
	// MaxNamesBytes bounds a class names file (10,000 names fit easily).
	MaxNamesBytes = 1 << 20
	// MaxConfigBytes bounds a configuration file.
	MaxConfigBytes = 1 << 20
	// MaxLabelBytes bounds one label file of a dataset, or its data.yaml.
	MaxLabelBytes = 1 << 20
	// MaxSecretBytes bounds a token or password file.
	MaxSecretBytes = 64 << 10
	// MaxCacheBytes bounds a calibration cache (JSON of one range per
	// tensor: a few hundred KiB for YOLOv5).
	MaxCacheBytes = 64 << 20
	// MaxIndexBytes bounds the model store's index.
	MaxIndexBytes = 64 << 20
	// MaxModelBytes bounds an ONNX model read whole: protobuf's own limit
	// for one message.
	MaxModelBytes = 2 << 30
)

// ErrNotRegular is wrapped by ReadFile's error for a path that is not a
// regular file (a FIFO, a device, a socket, a folder).
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by ReadFile's error for a file over its limit.
var ErrTooLarge = errors.New("too large")

// ReadFile reads the regular file at path whole, as os.ReadFile does, but
// refuses, before opening it, what is not a regular file (a FIFO would
// block until a writer came, deaf to signals; /dev/zero never ends), and
// any file larger than limit bytes. Errors are one line, start with the
// path, and wrap ErrNotRegular, ErrTooLarge or the os error
// (fs.ErrNotExist for a missing file).
func ReadFile(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := regular(path, fi); err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than the %s allowed", path, ErrTooLarge, fi.Size(), bytesText(limit))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file may grow after Stat: read at most limit+1 bytes.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than the %s allowed", path, ErrTooLarge, bytesText(limit))
	}
	return b, nil
}

// regular refuses a file that is not a regular one, naming its type.
func regular(path string, fi fs.FileInfo) error {
	if fi.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, fileType(fi.Mode()))
}

// fileType names the type of a file that is not a regular one.
func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "an irregular file"
}

// bytesText renders a limit for messages: "1 MiB", "64 KiB".
func bytesText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
