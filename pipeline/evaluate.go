package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/eval"
	"github.com/yedge/yedge/postprocess"
)

// Progress is called after each image with the number done and the total.
type Progress func(done, total int)

// EvalStats counts what an evaluation run saw besides the metrics.
type EvalStats struct {
	Skipped int // unreadable images, skipped with a warning
}

// Evaluate runs the detector over every image of ds with the evaluation
// postprocess options (conf 0.001, IoU 0.6, multi-label, 300 detections)
// and scores the detections against the labels with the YOLOv5 protocol.
// Unreadable images are skipped with a warning and counted. The detector's
// postprocess options are restored afterwards.
func Evaluate(ctx context.Context, d *Detector, ds *eval.Dataset, post postprocess.Options, progress Progress, log *slog.Logger) (eval.Result, EvalStats, error) {
	if log == nil {
		log = slog.Default()
	}
	var st EvalStats
	prev := d.dec
	if err := d.SetPostprocess(post); err != nil {
		return eval.Result{}, st, err
	}
	defer func() { d.dec = prev }()
	acc := eval.NewAccumulator()
	img := gocv.NewMat()
	defer img.Close()
	preds := make([]eval.Prediction, 0, post.MaxDet)
	for i, path := range ds.Images {
		if err := ctx.Err(); err != nil {
			return eval.Result{}, st, err
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
		labels, err := eval.ReadLabels(eval.LabelPath(path), img.Cols(), img.Rows())
		if err != nil {
			return eval.Result{}, st, err
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
	if st.Skipped == len(ds.Images) {
		return eval.Result{}, st, fmt.Errorf("dataset %q: no image could be read", ds.Root)
	}
	names := ds.Names
	if len(names) == 0 {
		names = d.Names
	}
	return acc.Result(names), st, nil
}
