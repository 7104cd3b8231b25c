// Package calib feeds the quantizer (package quant) with calibration
// inputs: images from a folder, letterboxed exactly as at inference. It
// lives apart from pipeline so that the daemon, which imports pipeline,
// does not link the quantizer.
package calib

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/quant"
	"github.com/yedge/yedge/source"
)

// ImageInputs feeds a folder of images to the quantizer through the same
// letterbox as inference. It implements quant.InputSource.
type ImageInputs struct {
	paths   []string
	lb      *preprocess.Letterboxer
	h, w    int
	corrupt map[int]bool // images skipped as corrupt, by index
	skipped map[int]bool // images skipped as undecodable, by index
}

// NewImageInputs lists up to limit images (sorted by name; 0 = all) in dir
// for a network input of h x w. An empty or missing folder, a negative limit
// or an input size beyond MaxImageSize is an error.
func NewImageInputs(dir string, limit, h, w int) (*ImageInputs, error) {
	if limit < 0 {
		return nil, fmt.Errorf("calibration image count %d: must be >= 0 (0: all)", limit)
	}
	if err := pipeline.CheckInputSize(1, h, w); err != nil {
		return nil, err
	}
	paths, err := ImagePaths(dir, limit)
	if err != nil {
		return nil, err
	}
	return &ImageInputs{paths: paths, lb: preprocess.New(w, h), h: h, w: w, corrupt: map[int]bool{}, skipped: map[int]bool{}}, nil
}

// ImagePaths lists the calibration images of dir, sorted, at most limit
// of them (0: all): the images NewImageInputs reads. A folder that cannot
// be read, or has no image, is an error naming it.
func ImagePaths(dir string, limit int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("calibration folder %q: %w", dir, err)
	}
	var paths []string
	for _, e := range entries {
		if !e.IsDir() && source.IsImageFile(e.Name()) {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(paths)
	if len(paths) == 0 {
		return nil, fmt.Errorf("calibration folder %q has no images (jpg, png, bmp, webp, tif)", dir)
	}
	if limit > 0 && len(paths) > limit {
		paths = paths[:limit]
	}
	return paths, nil
}

// Len returns the number of images.
func (s *ImageInputs) Len() int { return len(s.paths) }

// Shape returns [1,3,h,w].
func (s *ImageInputs) Shape() []int64 { return []int64{1, 3, int64(s.h), int64(s.w)} }

// Name returns the path of image i.
func (s *ImageInputs) Name(i int) string { return s.paths[i] }

// Describe names the preprocessing, for calibration caches.
func (s *ImageInputs) Describe() string { return fmt.Sprintf("letterbox %dx%d", s.h, s.w) }

// Fill reads and letterboxes image i into dst.
func (s *ImageInputs) Fill(ctx context.Context, i int, dst []float32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := source.CheckImage(s.paths[i]); errors.Is(err, source.ErrCorruptImage) {
		s.corrupt[i] = true
		return fmt.Errorf("%w: %w", err, quant.ErrSkipInput)
	}
	img := gocv.IMRead(s.paths[i], gocv.IMReadColor)
	defer img.Close()
	if img.Empty() {
		s.skipped[i] = true
		return fmt.Errorf("image %q cannot be read: %w", s.paths[i], quant.ErrSkipInput)
	}
	_, err := s.lb.Apply(img, dst)
	return err
}

// Corrupt returns how many images Fill skipped as corrupt (truncated data,
// see source.CheckImage) and Unreadable how many it skipped because they
// could not be decoded.
func (s *ImageInputs) Corrupt() int { return len(s.corrupt) }

// Unreadable returns how many images Fill skipped as undecodable.
func (s *ImageInputs) Unreadable() int { return len(s.skipped) }

// Close releases the letterbox buffers.
func (s *ImageInputs) Close() error { return s.lb.Close() }
