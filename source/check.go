package source

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrCorruptImage is wrapped by CheckImage's error for an image file whose
// data is incomplete (truncated) although a decoder might still accept it.
var ErrCorruptImage = errors.New("corrupt image")

// checkTail is how many bytes at the end of a file CheckImage reads.
const checkTail = 64 << 10

// CheckImage checks that the image file at path is complete: a JPEG must end
// with the EOI marker (FF D9, after trailing zero padding), a PNG with the
// IEND chunk. Decoders such as libjpeg only warn on truncated data and
// return a partly grey image; CheckImage is how yedge notices. Other formats
// are not checked (nil). The error wraps ErrCorruptImage and names the file.
func CheckImage(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 8)
	if _, err := io.ReadFull(f, head); err != nil {
		return fmt.Errorf("image %q: %w: file too short", path, ErrCorruptImage)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	off := max(0, size-checkTail)
	tail := make([]byte, size-off)
	if _, err := f.ReadAt(tail, off); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	switch {
	case head[0] == 0xFF && head[1] == 0xD8: // JPEG SOI
		t := bytes.TrimRight(tail, "\x00")
		if !bytes.HasSuffix(t, []byte{0xFF, 0xD9}) {
			return fmt.Errorf("image %q: %w: JPEG data ends without the end-of-image marker (truncated file?)", path, ErrCorruptImage)
		}
	case bytes.Equal(head, []byte("\x89PNG\r\n\x1a\n")):
		// The IEND chunk: length 0, "IEND", CRC AE 42 60 82.
		if !bytes.Contains(tail, []byte("IEND\xae\x42\x60\x82")) {
			return fmt.Errorf("image %q: %w: PNG data ends without the IEND chunk (truncated file?)", path, ErrCorruptImage)
		}
	}
	return nil
}
