package eval

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand"
	"strings"
	"testing"
)

// seg is a box spanning x in [x1, x2] and y in [0, 1], so IoUs are 1-D ratios.
func seg(x1, x2 float64) Box { return Box{X1: x1, Y1: 0, X2: x2, Y2: 1} }

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9 }

func TestBoxIoU(t *testing.T) {
	tests := []struct {
		a, b Box
		want float64
	}{
		{Box{0, 0, 10, 10}, Box{0, 0, 10, 10}, 100 / (100 + 1e-7)},
		{Box{0, 0, 10, 10}, Box{5, 0, 15, 10}, 50 / (100 + 100 - 50 + 1e-7)},
		{Box{0, 0, 10, 10}, Box{10, 10, 20, 20}, 0},
		{Box{0, 0, 10, 10}, Box{20, 20, 30, 30}, 0},
		{Box{0, 0, 10, 10}, Box{2, 2, 4, 4}, 4 / (100 + 4 - 4 + 1e-7)},
		{Box{0, 0, 0, 0}, Box{0, 0, 0, 0}, 0}, // degenerate: never a match
	}
	for _, tc := range tests {
		if got := boxIoU(tc.a, tc.b); math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("boxIoU(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := boxIoU(tc.b, tc.a); math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("boxIoU(%v, %v) = %v, want %v (symmetry)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestProcessBatch(t *testing.T) {
	const all = 1<<numIoU - 1
	tests := []struct {
		name   string
		preds  []Prediction
		labels []Label
		want   []uint16
	}{
		{
			name:   "one exact match",
			preds:  []Prediction{{Box: seg(0, 10), Score: 0.9}},
			labels: []Label{{Box: seg(0, 10)}},
			want:   []uint16{all},
		},
		{
			name:   "class mismatch",
			preds:  []Prediction{{Box: seg(0, 10), Score: 0.9, Class: 1}},
			labels: []Label{{Box: seg(0, 10), Class: 0}},
			want:   []uint16{0},
		},
		{
			// IoU 0.72: true positive at 0.50 .. 0.70 only.
			name:   "partial IoU",
			preds:  []Prediction{{Box: seg(0, 7.2), Score: 0.9}},
			labels: []Label{{Box: seg(0, 10)}},
			want:   []uint16{0b11111},
		},
		{
			name:   "duplicate detection is a false positive",
			preds:  []Prediction{{Box: seg(0, 10), Score: 0.9}, {Box: seg(0, 10), Score: 0.8}},
			labels: []Label{{Box: seg(0, 10)}},
			want:   []uint16{all, 0},
		},
		{
			// L0=[0,10] L1=[2,12]; D0=[0,9]: IoU .9- with L0, .583 with L1;
			// D1=[0,10]: IoU 1 with L0, .667 with L1. Both detections pick
			// L0 (their best label); the label dedupe then keeps the
			// smallest detection index, D0, so D1 is a false positive even
			// though D1->L0, D0->L1 would match both. At 0.90 and 0.95
			// D0-L0 (9/(10+1e-7)) drops out and D1 gets L0.
			name:   "process_batch dedupe order: label keeps smallest det index",
			preds:  []Prediction{{Box: seg(0, 9), Score: 0.9}, {Box: seg(0, 10), Score: 0.8}},
			labels: []Label{{Box: seg(0, 10)}, {Box: seg(2, 12)}},
			want:   []uint16{0b0011111111, 0b1100000000},
		},
		{
			// D0=[1,11] has exactly equal IoU 9/11 with L0=[0,10] and
			// L1=[2,12]; D1=[0,10] has IoU 1 with L0. argsort()[::-1]
			// puts the tied rows in reverse torch.where order, so D0
			// takes L1 (the later row) and both detections are correct
			// up to 0.80. (A stable descending sort would give D0 L0,
			// and D1 would be a false positive.)
			name:   "equal IoUs: reversed ascending argsort",
			preds:  []Prediction{{Box: seg(1, 11), Score: 0.9}, {Box: seg(0, 10), Score: 0.8}},
			labels: []Label{{Box: seg(0, 10)}, {Box: seg(2, 12)}},
			want:   []uint16{0b0001111111, all},
		},
		{
			name:   "no labels",
			preds:  []Prediction{{Box: seg(0, 10), Score: 0.9}},
			labels: nil,
			want:   []uint16{0},
		},
		{
			name:   "no predictions",
			preds:  nil,
			labels: []Label{{Box: seg(0, 10)}},
			want:   []uint16{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := processBatch(tc.preds, tc.labels)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d rows, want %d", len(got), len(tc.want))
			}
			for d := range got {
				if got[d] != tc.want[d] {
					t.Errorf("det %d: correct = %010b, want %010b", d, got[d], tc.want[d])
				}
			}
		})
	}
}

func TestResultHandComputed(t *testing.T) {
	labels := []Label{{Box: Box{0, 0, 10, 10}}, {Box: Box{20, 20, 30, 30}}}
	preds := []Prediction{ // TP, FP, TP by descending score
		{Box: Box{0, 0, 10, 10}, Score: 0.9},
		{Box: Box{50, 50, 60, 60}, Score: 0.8},
		{Box: Box{20, 20, 30, 30}, Score: 0.7},
	}
	tests := []struct {
		name                  string
		add                   func(a *Accumulator)
		p, r, map50, map5095  float64
		images, nlabels, rows int
	}{
		{
			// recall [.5 .5 1], precision [1 .5 2/3] -> AP 497/600 at
			// every IoU. Max smoothed F1 is the plateau below conf 0.7
			// (P 2/3, R 1, F1 0.8), first reached at px = 0.
			name:    "tp fp tp",
			add:     func(a *Accumulator) { a.Add(preds, labels) },
			p:       2. / 3,
			r:       1,
			map50:   497. / 600,
			map5095: 497. / 600,
			images:  1, nlabels: 2, rows: 1,
		},
		{
			// A second labelled class without predictions counts as 0 in
			// every mean; an empty image still counts as seen.
			name: "plus an unpredicted class and an empty image",
			add: func(a *Accumulator) {
				a.Add(preds, labels)
				a.Add(nil, []Label{{Box: Box{0, 0, 5, 5}, Class: 3}})
				a.Add(nil, nil)
			},
			p:       1. / 3,
			r:       0.5,
			map50:   497. / 1200,
			map5095: 497. / 1200,
			images:  3, nlabels: 3, rows: 2,
		},
		{
			// IoU 0.72: AP 0.995 at 0.50..0.70, 0 above.
			name: "partial IoU",
			add: func(a *Accumulator) {
				a.Add([]Prediction{{Box: Box{0, 0, 10, 7.2}, Score: 0.5}}, []Label{{Box: Box{0, 0, 10, 10}}})
			},
			p: 1, r: 1, map50: 0.995, map5095: 0.995 * 5 / 10,
			images: 1, nlabels: 1, rows: 1,
		},
		{
			// A false positive from an image without labels, scored lower
			// than every true positive: AP is unchanged, and P/R are read
			// above its confidence.
			name: "false positive on an unlabelled image",
			add: func(a *Accumulator) {
				a.Add([]Prediction{{Box: Box{0, 0, 10, 10}, Score: 0.9}}, []Label{{Box: Box{0, 0, 10, 10}}})
				a.Add([]Prediction{{Box: Box{0, 0, 10, 10}, Score: 0.3}}, nil)
			},
			// Between the two confidences P is interpolated from 1 to 0.5,
			// so only R is fixed (1) at the max-F1 point.
			p: -1, r: 1, map50: 0.995, map5095: 0.995,
			images: 2, nlabels: 1, rows: 1,
		},
		{
			name: "all predictions have the wrong class",
			add: func(a *Accumulator) {
				a.Add([]Prediction{{Box: Box{0, 0, 10, 10}, Score: 0.9, Class: 1}, {Box: Box{20, 20, 30, 30}, Score: 0.8, Class: 2}}, labels)
				a.Add([]Prediction{{Box: Box{0, 0, 10, 10}, Score: 0.9, Class: 5}}, []Label{{Box: Box{0, 0, 10, 10}, Class: 4}})
			},
			images: 2, nlabels: 3, rows: 2,
		},
		{
			name:   "nothing at all",
			add:    func(a *Accumulator) { a.Add(nil, nil) },
			images: 1,
		},
		{
			name: "predictions but no labels anywhere",
			add: func(a *Accumulator) {
				a.Add([]Prediction{{Box: Box{0, 0, 10, 10}, Score: 0.9}}, nil)
			},
			images: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAccumulator()
			tc.add(a)
			res := a.Result(nil)
			if tc.p < 0 {
				if res.Precision <= 0.5 || res.Precision >= 1 {
					t.Errorf("P = %v, want in (0.5, 1)", res.Precision)
				}
				tc.p = res.Precision
			}
			if !near(res.Precision, tc.p) || !near(res.Recall, tc.r) || !near(res.MAP50, tc.map50) || !near(res.MAP50_95, tc.map5095) {
				t.Errorf("P %v R %v mAP50 %v mAP50-95 %v; want %v %v %v %v",
					res.Precision, res.Recall, res.MAP50, res.MAP50_95, tc.p, tc.r, tc.map50, tc.map5095)
			}
			if res.Images != tc.images || res.Labels != tc.nlabels || len(res.PerClass) != tc.rows {
				t.Errorf("images %d labels %d rows %d; want %d %d %d",
					res.Images, res.Labels, len(res.PerClass), tc.images, tc.nlabels, tc.rows)
			}
		})
	}
}

func TestResultPerClass(t *testing.T) {
	a := NewAccumulator()
	a.Add([]Prediction{
		{Box: Box{0, 0, 10, 10}, Score: 0.9, Class: 2},
		{Box: Box{0, 0, 10, 7.2}, Score: 0.8, Class: 7},
	}, []Label{
		{Box: Box{0, 0, 10, 10}, Class: 2},
		{Box: Box{0, 0, 10, 10}, Class: 7},
		{Box: Box{40, 40, 50, 50}, Class: 9},
		{Box: Box{60, 40, 70, 50}, Class: 9},
	})
	res := a.Result([]string{"a", "b", "person"})
	want := []ClassResult{
		{Class: 2, Name: "person", Labels: 1, Precision: 1, Recall: 1, AP50: 0.995, AP50_95: 0.995},
		{Class: 7, Name: "class7", Labels: 1, Precision: 1, Recall: 1, AP50: 0.995, AP50_95: 0.4975},
		{Class: 9, Name: "class9", Labels: 2},
	}
	if len(res.PerClass) != len(want) {
		t.Fatalf("per-class rows %+v, want %+v", res.PerClass, want)
	}
	for i, w := range want {
		g := res.PerClass[i]
		if g.Class != w.Class || g.Name != w.Name || g.Labels != w.Labels || !near(g.Precision, w.Precision) ||
			!near(g.Recall, w.Recall) || !near(g.AP50, w.AP50) || !near(g.AP50_95, w.AP50_95) {
			t.Errorf("row %d = %+v, want %+v", i, g, w)
		}
	}
	if !near(res.MAP50, 2*0.995/3) || !near(res.MAP50_95, (0.995+0.4975)/3) || !near(res.Precision, 2./3) {
		t.Errorf("means: %+v", res)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"precision"`, `"recall"`, `"map50"`, `"map50_95"`, `"images"`, `"labels"`, `"per_class"`, `"class"`, `"name"`, `"ap50"`, `"ap50_95"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
}

// TestGroundTruthAgainstItself scores random labels used as predictions
// (score 1). Under the YOLOv5 protocol that is P = R = 1 and an AP of
// 0.995 (not 1) at every IoU threshold, see computeAP.
func TestGroundTruthAgainstItself(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		a := NewAccumulator()
		nImages := 1 + rng.Intn(30)
		total := 0
		for range nImages {
			n := rng.Intn(12)
			labels := make([]Label, n)
			for i := range labels {
				x1, y1 := rng.Float64()*600, rng.Float64()*400
				labels[i] = Label{
					Box:   Box{x1, y1, x1 + 1 + rng.Float64()*200, y1 + 1 + rng.Float64()*200},
					Class: rng.Intn(5),
				}
			}
			preds := make([]Prediction, n)
			for i, j := range rng.Perm(n) {
				preds[i] = Prediction{Box: labels[j].Box, Score: 1, Class: labels[j].Class}
			}
			total += n
			a.Add(preds, labels)
		}
		res := a.Result(nil)
		if total == 0 {
			continue
		}
		if res.Labels != total || res.Images != nImages {
			t.Errorf("seed %d: labels %d images %d, want %d %d", seed, res.Labels, res.Images, total, nImages)
		}
		if !near(res.Precision, 1) || !near(res.Recall, 1) || !near(res.MAP50, 0.995) || !near(res.MAP50_95, 0.995) {
			t.Errorf("seed %d: P %v R %v mAP50 %v mAP50-95 %v, want 1 1 0.995 0.995",
				seed, res.Precision, res.Recall, res.MAP50, res.MAP50_95)
		}
		for _, c := range res.PerClass {
			if !near(c.AP50_95, 0.995) {
				t.Errorf("seed %d: class %d AP50-95 %v", seed, c.Class, c.AP50_95)
			}
		}
	}
}

func TestWriteTable(t *testing.T) {
	a := NewAccumulator()
	a.Add([]Prediction{{Box: Box{0, 0, 10, 10}, Score: 0.9}, {Box: Box{20, 0, 30, 10}, Score: 0.8, Class: 2}},
		[]Label{{Box: Box{0, 0, 10, 10}}, {Box: Box{0, 0, 1, 1}, Class: 1}, {Box: Box{20, 0, 30, 10}, Class: 2}})
	a.Add(nil, nil)
	var buf bytes.Buffer
	if err := a.Result([]string{"person", "bicycle"}).WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("table:\n%s", buf.String())
	}
	for i, fields := range [][]string{
		{"Class", "Images", "Labels", "P", "R", "mAP50", "mAP50-95"},
		{"all", "2", "3", "0.667", "0.667", "0.663", "0.663"},
		{"person", "2", "1", "1", "1", "0.995", "0.995"},
		{"bicycle", "2", "1", "0", "0", "0", "0"},
		{"class2", "2", "1", "1", "1", "0.995", "0.995"},
	} {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(fields, " ") {
			t.Errorf("line %d = %q, want fields %q", i, lines[i], fields)
		}
	}
}

func TestZeroAccumulator(t *testing.T) {
	var a Accumulator
	if res := a.Result(nil); res.Images != 0 || res.Labels != 0 || len(res.PerClass) != 0 || res.PerClass == nil {
		t.Errorf("empty result %+v", res)
	}
	a.Add([]Prediction{{Box: Box{0, 0, 10, 10}, Score: 0.5}}, []Label{{Box: Box{0, 0, 10, 10}}})
	if res := a.Result(nil); !near(res.MAP50, 0.995) || res.Images != 1 || res.Labels != 1 {
		t.Errorf("zero-value accumulator: %+v", res)
	}
}
