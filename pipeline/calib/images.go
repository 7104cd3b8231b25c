// Package calib feeds the quantizer (package quant) with calibration
// inputs: images from a folder, letterboxed exactly as at inference. It
// lives apart from pipeline so that the daemon, which imports pipeline,
// does not link the quantizer.
package calib

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/preprocess"
	"github.com/yedge/yedge/quant"
	"github.com/yedge/yedge/source"
)

// ImageInputs feeds a folder of images to the quantizer through the same
// letterbox as inference. It implements quant.InputSource.
type ImageInputs struct {
	paths []string
	lb    *preprocess.Letterboxer
	h, w  int
}

// NewImageInputs lists up to limit images (sorted by name; 0 = all) in dir
// for a network input of h x w. An empty or missing folder is an error.
func NewImageInputs(dir string, limit, h, w int) (*ImageInputs, error) {
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
	return &ImageInputs{paths: paths, lb: preprocess.New(w, h), h: h, w: w}, nil
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
	img := gocv.IMRead(s.paths[i], gocv.IMReadColor)
	defer img.Close()
	if img.Empty() {
		return fmt.Errorf("image %q cannot be read: %w", s.paths[i], quant.ErrSkipInput)
	}
	_, err := s.lb.Apply(img, dst)
	return err
}

// Close releases the letterbox buffers.
func (s *ImageInputs) Close() error { return s.lb.Close() }
