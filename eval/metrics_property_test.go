package eval

import (
	"math"
	"math/rand"
	"testing"
)

// protocolMaxAP is the largest AP the YOLOv5/Ultralytics protocol can
// give: compute_ap on a perfect precision-recall curve (one true positive,
// recall 1 at precision 1).
//
// Why 0.995 and not 1.0: compute_ap appends a sentinel point (recall 1,
// precision 0) to every curve — mrec = [0, r..., 1], mpre = [1, p..., 0] —
// and integrates the precision envelope, interpolated at the 101 recall
// points np.linspace(0, 1, 101), with np.trapz. np.interp at recall 1
// returns the value of the LAST sample with recall <= 1, the sentinel, so
// the envelope is 1 on [0, 0.99] and falls to 0 at 1.00: the last
// trapezoid contributes 0.01*(1+0)/2 = 0.005 instead of 0.01, and the best
// AP is 0.99 + 0.005 = 0.995. The reference figures in ../shared/README.md
// are computed with this protocol, so yedge must be too; a perfect detector
// scores 0.995 on mAP50 and mAP50-95, and P = R = 1.
var protocolMaxAP = computeAP([]float64{1}, []float64{1})

func TestProtocolMaxAP(t *testing.T) {
	if !near(protocolMaxAP, 0.995) {
		t.Fatalf("compute_ap on a perfect curve = %v, want 0.995 (0.99 + 0.01*(1+0)/2)", protocolMaxAP)
	}
	// Any curve that reaches recall 1 at precision 1, however many points,
	// gives the same maximum.
	for _, n := range []int{2, 5, 100, 1000} {
		rec, pre := make([]float64, n), make([]float64, n)
		for i := range rec {
			rec[i], pre[i] = float64(i+1)/float64(n), 1
		}
		if got := computeAP(rec, pre); !near(got, protocolMaxAP) {
			t.Errorf("perfect curve of %d points: AP %v, want %v", n, got, protocolMaxAP)
		}
	}
}

// Property: the ground truth scored against itself — every label predicted
// once with its exact box and class, any confidence, any order, over many
// images and classes — gives P = R = 1 and mAP50 = mAP50-95 = the
// protocol's maximum, for the dataset and for every class.
func TestGroundTruthScoresProtocolMaximum(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for trial := 0; trial < 100; trial++ {
		a := NewAccumulator()
		nImages := 1 + rng.Intn(20)
		classes := 1 + rng.Intn(10)
		total := 0
		for range nImages {
			n := rng.Intn(15)
			labels := make([]Label, n)
			for i := range labels {
				x1, y1 := rng.Float64()*1000, rng.Float64()*1000
				labels[i] = Label{Box: Box{x1, y1, x1 + 0.5 + rng.Float64()*300, y1 + 0.5 + rng.Float64()*300}, Class: rng.Intn(classes)}
			}
			preds := make([]Prediction, n)
			for i, j := range rng.Perm(n) {
				score := 1.0
				if trial%2 == 1 {
					score = 0.001 + rng.Float64()*0.999
				}
				preds[i] = Prediction{Box: labels[j].Box, Score: score, Class: labels[j].Class}
			}
			total += n
			a.Add(preds, labels)
		}
		if total == 0 {
			continue
		}
		res := a.Result(nil)
		if !near(res.Precision, 1) || !near(res.Recall, 1) || !near(res.MAP50, protocolMaxAP) || !near(res.MAP50_95, protocolMaxAP) {
			t.Fatalf("trial %d: P %v R %v mAP50 %v mAP50-95 %v, want 1 1 %v %v",
				trial, res.Precision, res.Recall, res.MAP50, res.MAP50_95, protocolMaxAP, protocolMaxAP)
		}
		for _, c := range res.PerClass {
			if !near(c.Precision, 1) || !near(c.Recall, 1) || !near(c.AP50, protocolMaxAP) || !near(c.AP50_95, protocolMaxAP) {
				t.Fatalf("trial %d class %d: %+v, want P R 1 and AP %v", trial, c.Class, c, protocolMaxAP)
			}
		}
	}
}

// Property: no set of predictions scores above the protocol's maximum, and
// every figure stays in [0, 1] (noisy boxes, wrong classes, duplicates,
// misses and random confidences).
func TestMetricsBoundedByProtocolMaximum(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for trial := 0; trial < 100; trial++ {
		a := NewAccumulator()
		classes := 1 + rng.Intn(5)
		for range 1 + rng.Intn(10) {
			labels := make([]Label, rng.Intn(10))
			for i := range labels {
				x1, y1 := rng.Float64()*500, rng.Float64()*500
				labels[i] = Label{Box: Box{x1, y1, x1 + 1 + rng.Float64()*100, y1 + 1 + rng.Float64()*100}, Class: rng.Intn(classes)}
			}
			var preds []Prediction
			for _, l := range labels {
				for range rng.Intn(3) { // 0 (a miss), 1, or 2 (a duplicate)
					j := func() float64 { return (rng.Float64() - 0.5) * 20 }
					b := Box{l.Box.X1 + j(), l.Box.Y1 + j(), l.Box.X2 + j(), l.Box.Y2 + j()}
					c := l.Class
					if rng.Intn(5) == 0 {
						c = rng.Intn(classes)
					}
					preds = append(preds, Prediction{Box: b, Score: rng.Float64(), Class: c})
				}
			}
			a.Add(preds, labels)
		}
		res := a.Result(nil)
		figs := []float64{res.Precision, res.Recall, res.MAP50, res.MAP50_95}
		for _, c := range res.PerClass {
			figs = append(figs, c.Precision, c.Recall, c.AP50, c.AP50_95)
		}
		for _, v := range figs {
			if math.IsNaN(v) || v < 0 || v > 1 {
				t.Fatalf("trial %d: figure %v outside [0, 1] in %+v", trial, v, res)
			}
		}
		if res.MAP50 > protocolMaxAP+1e-12 || res.MAP50_95 > protocolMaxAP+1e-12 {
			t.Fatalf("trial %d: mAP50 %v mAP50-95 %v above the protocol maximum %v", trial, res.MAP50, res.MAP50_95, protocolMaxAP)
		}
	}
}
