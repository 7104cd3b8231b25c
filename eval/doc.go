// Package eval loads YOLO-format datasets and scores object detections with
// the detection metrics of Ultralytics YOLOv5 val.py (v6.x / v7.0).
//
// It is pure Go. The numerical protocol reproduces YOLOv5 step by step, so the
// figures it prints can be compared with `python val.py` output:
//
//   - per image, predictions are matched to labels at the ten IoU thresholds
//     0.50:0.05:0.95 exactly as val.py process_batch does (including its
//     sort / np.unique ordering, see [Accumulator.Add]);
//   - precision, recall and AP are computed as utils/metrics.py ap_per_class
//     and compute_ap do: 101-point interpolated AP integrated with the
//     trapezoidal rule, P and R read at the confidence that maximises the
//     box-filtered mean F1 curve, and means taken over the classes that have
//     labels. A consequence of that protocol is that a perfect detector
//     scores an AP of 0.995, not 1.
//
// Dataset side: [LoadDataset] reads images/, labels/ and data.yaml;
// [ReadLabels] and [ParseLabels] turn a label file into pixel boxes with the
// same checks, clipping and duplicate removal YOLOv5's dataloader applies.
//
// Typical use:
//
//	ds, err := eval.LoadDataset("datasets/coco-val128")
//	acc := eval.NewAccumulator()
//	for _, img := range ds.Images {
//		labels, err := eval.ReadLabels(eval.LabelPath(img), w, h)
//		acc.Add(predict(img), labels)
//	}
//	res := acc.Result(ds.Names)
//	res.WriteTable(os.Stdout)
package eval
