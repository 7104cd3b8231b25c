package eval

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// numIoU is the number of IoU thresholds of mAP@0.5:0.95.
const numIoU = 10

// iouv holds the IoU thresholds, linspace(0.5, 0.95, 10) as in val.py.
var iouv = linspace(0.5, 0.95, numIoU)

// eps is the epsilon of ap_per_class.
const eps = 1e-16

// boxIoU is utils/metrics.py box_iou for one pair: plain areas (no +1) and
// an epsilon of 1e-7 in the denominator.
func boxIoU(a, b Box) float64 {
	iw := math.Max(math.Min(a.X2, b.X2)-math.Max(a.X1, b.X1), 0)
	ih := math.Max(math.Min(a.Y2, b.Y2)-math.Max(a.Y1, b.Y1), 0)
	inter := iw * ih
	return inter / ((a.X2-a.X1)*(a.Y2-a.Y1) + (b.X2-b.X1)*(b.Y2-b.Y1) - inter + 1e-7)
}

// match is one [label, detection, iou] row of val.py process_batch.
type match struct {
	l, d int
	iou  float64
}

// processBatch is val.py process_batch (v7.0): bit t of the result for
// detection d is set when d is a true positive at IoU threshold iouv[t].
//
// For each threshold, the candidate (label, detection) pairs with
// iou >= t and equal classes are taken in torch.where order (row-major over
// the labels x detections IoU matrix) and then, as NumPy does:
//
//	matches = matches[matches[:, 2].argsort()[::-1]]  // by IoU, descending
//	matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
//	matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
//
// argsort is taken as stable ascending (NumPy's quicksort is an insertion
// sort, hence stable, on the short arrays val.py sees) and then reversed, so
// equal IoUs end up in reverse torch.where order. The first np.unique keeps,
// for each detection, its first (highest-IoU) row and returns the rows
// ordered by detection index; the second keeps, for each label, the first of
// those rows, i.e. the one with the smallest detection index, not the one
// with the highest IoU.
func processBatch(preds []Prediction, labels []Label) []uint16 {
	correct := make([]uint16, len(preds))
	if len(preds) == 0 || len(labels) == 0 {
		return correct
	}
	var cand []match
	for l, lab := range labels {
		for d, p := range preds {
			if lab.Class != p.Class {
				continue
			}
			if iou := boxIoU(lab.Box, p.Box); iou >= iouv[0] {
				cand = append(cand, match{l, d, iou})
			}
		}
	}
	if len(cand) == 0 {
		return correct
	}
	// Sorting once is enough: a stable sort restricted to the rows above a
	// higher threshold orders them as sorting that subset would.
	sort.SliceStable(cand, func(i, j int) bool { return cand[i].iou < cand[j].iou })
	slices.Reverse(cand)

	firstByDet := make([]int, len(preds))
	labelUsed := make([]bool, len(labels))
	rows := make([]match, 0, len(cand))
	for t, thr := range iouv {
		rows = rows[:0]
		for _, m := range cand {
			if m.iou >= thr {
				rows = append(rows, m)
			}
		}
		if len(rows) == 0 {
			break // thresholds increase
		}
		for d := range firstByDet {
			firstByDet[d] = -1
		}
		for i, m := range rows {
			if firstByDet[m.d] < 0 {
				firstByDet[m.d] = i
			}
		}
		clear(labelUsed)
		for d, i := range firstByDet { // ascending detection index
			if i < 0 {
				continue
			}
			if l := rows[i].l; !labelUsed[l] {
				labelUsed[l] = true
				correct[d] |= 1 << t
			}
		}
	}
	return correct
}

// Accumulator gathers the per-image statistics of val.py (correct matrix,
// confidences, predicted and target classes) one image at a time. Its memory
// is O(number of predictions). The zero value is an empty Accumulator, like
// the one [NewAccumulator] returns. It is not safe for concurrent use.
type Accumulator struct {
	images  int
	conf    []float64
	cls     []int
	correct []uint16
	nLabels int
	perCls  map[int]int // labels per class
}

// NewAccumulator returns an empty Accumulator.
func NewAccumulator() *Accumulator {
	return &Accumulator{perCls: map[int]int{}}
}

// Add records one image: its predictions, in the order the detector emits
// them (NMS output, by descending score; the order decides ties as in
// val.py), and its ground-truth labels. Boxes are in the original image's
// pixels; predictions should already be clipped to the image as YOLOv5's
// scale_coords does. Either slice may be empty: labels without predictions
// are misses, predictions without labels are false positives.
func (a *Accumulator) Add(preds []Prediction, labels []Label) {
	if a.perCls == nil {
		a.perCls = map[int]int{}
	}
	a.images++
	a.nLabels += len(labels)
	for _, l := range labels {
		a.perCls[l.Class]++
	}
	if len(preds) == 0 {
		return
	}
	a.correct = append(a.correct, processBatch(preds, labels)...)
	for _, p := range preds {
		a.conf = append(a.conf, p.Score)
		a.cls = append(a.cls, p.Class)
	}
}

// Result holds dataset-level detection metrics, as printed on the "all" row
// of YOLOv5 val.py, and one [ClassResult] per class that has labels.
type Result struct {
	// Precision and Recall are the means over the labelled classes of the
	// per-class values at the confidence of maximal mean F1.
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	// MAP50 is the mean AP at IoU 0.5; MAP50_95 the mean AP over IoU
	// thresholds 0.50:0.05:0.95.
	MAP50    float64 `json:"map50"`
	MAP50_95 float64 `json:"map50_95"`
	// Images is the number of images added; Labels the number of labels.
	Images int `json:"images"`
	Labels int `json:"labels"`
	// PerClass lists the classes present in the labels, by class id.
	PerClass []ClassResult `json:"per_class"`
}

// ClassResult holds the metrics of one class.
type ClassResult struct {
	// Class is the class id; Name its name, or "class<N>" when unknown.
	Class int    `json:"class"`
	Name  string `json:"name"`
	// Labels is the number of labels of this class.
	Labels int `json:"labels"`
	// Precision and Recall are read at the dataset's max-mean-F1 confidence.
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	// AP50 is the AP at IoU 0.5; AP50_95 the mean AP over 0.50:0.05:0.95.
	AP50    float64 `json:"ap50"`
	AP50_95 float64 `json:"ap50_95"`
}

// Result computes the metrics of everything added so far, following
// val.py and utils/metrics.py ap_per_class. names maps class ids to names;
// it may be nil or shorter than the largest class id, in which case the name
// is "class<N>". Means run over the classes that have labels; a class with
// labels but no predictions counts as zero. As in val.py, when no prediction
// is a true positive at any threshold every figure is zero (PerClass still
// lists the labelled classes, with their label counts and zero metrics,
// where val.py prints no class rows).
func (a *Accumulator) Result(names []string) Result {
	res := Result{Images: a.images, Labels: a.nLabels, PerClass: []ClassResult{}}
	classes := make([]int, 0, len(a.perCls))
	for c, n := range a.perCls {
		if n > 0 {
			classes = append(classes, c)
		}
	}
	sort.Ints(classes)
	for _, c := range classes {
		res.PerClass = append(res.PerClass, ClassResult{Class: c, Name: className(names, c), Labels: a.perCls[c]})
	}
	anyTP := false
	for _, c := range a.correct {
		if c != 0 {
			anyTP = true
			break
		}
	}
	if !anyTP || len(classes) == 0 { // val.py: if len(stats) and stats[0].any()
		return res
	}
	p, r, ap := apPerClass(a.correct, a.conf, a.cls, classes, a.perCls)
	nc := float64(len(classes))
	for ci := range res.PerClass {
		cr := &res.PerClass[ci]
		cr.Precision, cr.Recall = p[ci], r[ci]
		cr.AP50 = ap[ci][0]
		s := 0.0
		for _, v := range ap[ci] {
			s += v
		}
		cr.AP50_95 = s / numIoU
	}
	var sp, sr, s50, s5095 float64
	for _, cr := range res.PerClass {
		sp += cr.Precision
		sr += cr.Recall
		s50 += cr.AP50
		s5095 += cr.AP50_95
	}
	res.Precision, res.Recall = sp/nc, sr/nc
	res.MAP50, res.MAP50_95 = s50/nc, s5095/nc
	return res
}

// className returns names[c], or "class<c>" when it is missing or empty.
func className(names []string, c int) string {
	if c >= 0 && c < len(names) && names[c] != "" {
		return names[c]
	}
	return fmt.Sprintf("class%d", c)
}

// apPerClass is utils/metrics.py ap_per_class. It returns, for each class of
// classes (those with labels, ascending), the precision and recall at the
// max-F1 confidence and the AP at each IoU threshold.
func apPerClass(correct []uint16, conf []float64, cls []int, classes []int, nLabels map[int]int) (p, r []float64, ap [][numIoU]float64) {
	// i = np.argsort(-conf): stable by descending confidence, NaN last.
	order := make([]int, len(conf))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := conf[order[i]], conf[order[j]]
		if math.IsNaN(b) {
			return !math.IsNaN(a)
		}
		return a > b
	})
	byClass := map[int][]int{}
	for _, i := range order {
		if _, ok := nLabels[cls[i]]; ok {
			byClass[cls[i]] = append(byClass[cls[i]], i)
		}
	}

	const npx = 1000
	px := linspace(0, 1, npx)
	nc := len(classes)
	pc := make([][]float64, nc) // p[ci] over px
	rc := make([][]float64, nc)
	ap = make([][numIoU]float64, nc)
	for ci, c := range classes {
		pc[ci] = make([]float64, npx)
		rc[ci] = make([]float64, npx)
		idx := byClass[c]
		nl := nLabels[c]
		if len(idx) == 0 || nl == 0 {
			continue
		}
		n := len(idx)
		negConf := make([]float64, n)
		for k, i := range idx {
			negConf[k] = -conf[i]
		}
		recall := make([]float64, n)
		precision := make([]float64, n)
		for j := range numIoU {
			tpc := 0
			for k, i := range idx {
				if correct[i]&(1<<j) != 0 {
					tpc++
				}
				fpc := k + 1 - tpc
				recall[k] = float64(tpc) / (float64(nl) + eps)
				precision[k] = float64(tpc) / float64(tpc+fpc)
			}
			if j == 0 {
				for k, x := range px {
					rc[ci][k] = interp(-x, negConf, recall, 0, recall[n-1])
					pc[ci][k] = interp(-x, negConf, precision, 1, precision[n-1])
				}
			}
			ap[ci][j] = computeAP(recall, precision)
		}
	}

	// f1 = 2*p*r/(p+r+eps); i = smooth(f1.mean(0), 0.1).argmax()
	f1mean := make([]float64, npx)
	for k := range npx {
		s := 0.0
		for ci := range nc {
			s += 2 * pc[ci][k] * rc[ci][k] / (pc[ci][k] + rc[ci][k] + eps)
		}
		f1mean[k] = s / float64(nc)
	}
	best := argmax(smooth(f1mean, 0.1))
	p = make([]float64, nc)
	r = make([]float64, nc)
	for ci := range nc {
		p[ci], r[ci] = pc[ci][best], rc[ci][best]
	}
	return p, r, ap
}
