package source

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"gocv.io/x/gocv"
)

// fileSource reads a single image or a folder of images.
type fileSource struct {
	base
	paths      []string
	next       int      // index in paths of the next image
	passFrames int64    // images delivered in the current pass over paths
	img        gocv.Mat // the decoded single image (Kind Image)
	hasImg     bool
	imgCorrupt bool  // the single image failed CheckImage
	err        error // sticky terminal error
}

var _ Source = (*fileSource)(nil)

// openFiles opens an Image (decoding it now, so that a bad file fails
// here) or a Folder (listing its images in name order).
func openFiles(spec Spec, name string, log *slog.Logger) (*fileSource, error) {
	s := &fileSource{base: newBase(spec, name, log)}
	path := s.spec.URI
	if err := checkPath(s.name, path); err != nil {
		return nil, err
	}
	if s.spec.Kind == Image {
		m := gocv.IMRead(path, gocv.IMReadColor)
		if m.Empty() {
			m.Close()
			return nil, s.errorf("cannot decode image (corrupt or unsupported file?)")
		}
		s.img, s.hasImg = m, true
		s.imgCorrupt = s.checkImage(path)
		s.paths = []string{path}
		s.setSize(m.Cols(), m.Rows())
		return s, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, s.errorf("%w", redactPathError(err))
	}
	for _, e := range entries { // sorted by name
		n := e.Name()
		if strings.HasPrefix(n, ".") || !IsImageFile(n) {
			continue
		}
		p := filepath.Join(path, n)
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		s.paths = append(s.paths, p)
	}
	if len(s.paths) == 0 {
		return nil, s.errorf("no images (jpg, jpeg, png, bmp, webp, tif, tiff) in folder")
	}
	return s, nil
}

// Read implements Source.
func (s *fileSource) Read(ctx context.Context, dst *gocv.Mat) (Frame, error) {
	switch {
	case dst == nil:
		return Frame{}, s.errorf("nil destination Mat")
	case s.closed:
		return Frame{}, s.errorf("%w", ErrClosed)
	case s.err != nil:
		return Frame{}, s.err
	}
	for {
		if err := ctx.Err(); err != nil {
			return Frame{}, err
		}
		if s.next >= len(s.paths) {
			if s.passFrames == 0 {
				s.err = s.errorf("none of the %d images could be read", len(s.paths))
				return Frame{}, s.err
			}
			if !s.spec.Loop {
				return Frame{}, io.EOF
			}
			s.next, s.passFrames = 0, 0
		}
		p := s.paths[s.next]
		s.next++
		corrupt := s.imgCorrupt
		if s.hasImg {
			s.img.CopyTo(dst)
		} else {
			m := gocv.IMRead(p, gocv.IMReadColor)
			if m.Empty() {
				m.Close()
				s.skipped.Add(1)
				s.log.Warn("source: skipping unreadable image", "file", Redact(p))
				continue
			}
			m.CopyTo(dst)
			m.Close()
			corrupt = s.checkImage(p)
		}
		s.passFrames++
		f := s.frame(dst, -1, p)
		f.Corrupt = corrupt
		return f, nil
	}
}

// checkImage runs CheckImage on a decoded file and reports (with a
// warning) whether its data is corrupt.
func (s *fileSource) checkImage(p string) bool {
	err := CheckImage(p)
	if err == nil {
		return false
	}
	s.log.Warn("source: image data is corrupt; the frame is flagged", "file", Redact(p), "err", err)
	return true
}

// Close implements Source.
func (s *fileSource) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.hasImg {
		s.img.Close()
		s.hasImg = false
	}
	return nil
}
