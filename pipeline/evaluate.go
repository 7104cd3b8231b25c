package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/eval"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/source"
)

// Progress is called after each image with the number done and the total.
type Progress func(done, total int)

// EvalStats counts what an evaluation run saw besides the metrics.
type EvalStats struct {
	// Skipped counts unreadable images (the decoder failed), skipped with a
	// warning.
	Skipped int
	// Corrupt counts images whose data is corrupt (source.CheckImage: a
	// truncated JPEG or PNG that a decoder would half-read), skipped with a
	// warning and not scored.
	Corrupt int
	// BadLabels counts labels whose class is outside the model's classes,
	// dropped with a warning (EvalOptions.IgnoreBadLabels only; otherwise
	// such a label is an error).
	BadLabels int
}

// EvalOptions are the options of EvaluateWith.
type EvalOptions struct {
	// Post are the postprocess options (postprocess.EvalOptions() for the
	// YOLOv5 protocol).
	Post postprocess.Options
	// IgnoreBadLabels drops labels whose class is outside the model's
	// classes, counting them in EvalStats.BadLabels, instead of failing.
	IgnoreBadLabels bool
	// Progress, if set, is called after each image.
	Progress Progress
	// Logger receives warnings; nil means slog.Default().
	Logger *slog.Logger
}

// Evaluate runs the detector over every image of ds with the evaluation
// postprocess options (conf 0.001, IoU 0.6, multi-label, 300 detections)
// and scores the detections against the labels with the YOLOv5 protocol.
// Unreadable and corrupt images are skipped with a warning and counted; a
// label whose class the model does not have is an error naming the file
// and line. The detector's postprocess options are restored afterwards.
func Evaluate(ctx context.Context, d *Detector, ds *eval.Dataset, post postprocess.Options, progress Progress, log *slog.Logger) (eval.Result, EvalStats, error) {
	return EvaluateWith(ctx, d, ds, EvalOptions{Post: post, Progress: progress, Logger: log})
}

// EvaluateWith is Evaluate with options.
func EvaluateWith(ctx context.Context, d *Detector, ds *eval.Dataset, o EvalOptions) (eval.Result, EvalStats, error) {
	post, progress, log := o.Post, o.Progress, o.Logger
	if log == nil {
		log = slog.Default()
	}
	var st EvalStats
	prev := d.post
	if err := d.SetPostprocess(post); err != nil {
		return eval.Result{}, st, err
	}
	defer func() { _ = d.SetPostprocess(prev) }() // prev was valid
	acc := eval.NewAccumulator()
	img := gocv.NewMat()
	defer img.Close()
	preds := make([]eval.Prediction, 0, post.MaxDet)
	for i, path := range ds.Images {
		if err := ctx.Err(); err != nil {
			return eval.Result{}, st, err
		}
		if err := source.CheckImage(path); errors.Is(err, source.ErrCorruptImage) {
			st.Corrupt++
			log.Warn("skipping corrupt image", "image", path, "err", err)
			if progress != nil {
				progress(i+1, len(ds.Images))
			}
			continue
		}
		m := gocv.IMRead(path, gocv.IMReadColor)
		if m.Empty() {
			m.Close()
			st.Skipped++
			log.Warn("skipping unreadable image", "image", path)
			if progress != nil {
				progress(i+1, len(ds.Images))
			}
			continue
		}
		img.Close()
		img = m
		labels, bad, err := eval.ReadLabelsClasses(eval.LabelPath(path), img.Cols(), img.Rows(), d.Layout.Classes, o.IgnoreBadLabels)
		if err != nil {
			return eval.Result{}, st, err
		}
		for _, b := range bad {
			st.BadLabels++
			log.Warn("ignoring label with a class the model does not have", "label", fmt.Sprintf("%s:%d", b.File, b.Line), "class", b.Class, "classes", b.Classes)
		}
		dets, _, err := d.Detect(ctx, img)
		if err != nil {
			return eval.Result{}, st, fmt.Errorf("image %q: %w", path, err)
		}
		preds = preds[:0]
		for _, x := range dets {
			preds = append(preds, eval.Prediction{
				Box:   eval.Box{X1: float64(x.Box.X1), Y1: float64(x.Box.Y1), X2: float64(x.Box.X2), Y2: float64(x.Box.Y2)},
				Score: float64(x.Score), Class: x.Class,
			})
		}
		acc.Add(preds, labels)
		if progress != nil {
			progress(i+1, len(ds.Images))
		}
	}
	if st.Skipped+st.Corrupt == len(ds.Images) {
		return eval.Result{}, st, fmt.Errorf("dataset %q: no image could be read", ds.Root)
	}
	names := ds.Names
	if len(names) == 0 {
		names = d.Names
	}
	return acc.Result(names), st, nil
}
