package pipeline

import (
	"context"
	"errors"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/postprocess"
	"github.com/yedge/yedge/source"
)

// countReader yields n frames of 64x48 whose pixels hold the frame index
// (mod 256), each read taking delay; frames listed in empty are empty
// Mats (a frame that cannot be preprocessed).
type countReader struct {
	n     int64
	delay time.Duration
	empty map[int64]bool
	next  atomic.Int64 // index of the next frame to read
}

func (r *countReader) Read(ctx context.Context, dst *gocv.Mat) (source.Frame, error) {
	if err := ctx.Err(); err != nil {
		return source.Frame{}, err
	}
	i := r.next.Load()
	if i >= r.n {
		return source.Frame{}, io.EOF
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	if r.empty[i] {
		dst.Close()
		*dst = gocv.NewMat()
	} else {
		m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(float64(i%256), float64(i%256), float64(i%256), 0), 48, 64, gocv.MatTypeCV8UC3)
		m.CopyTo(dst)
		m.Close()
	}
	r.next.Store(i + 1)
	return source.Frame{Index: i, Time: time.Now()}, nil
}

func nullDetector(t *testing.T) *Detector {
	t.Helper()
	d, err := New(Config{Model: NullModel, Height: 64, Width: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeOK(t, d) })
	return d
}

// runFeed runs every frame of a Feed over src through d's stages and
// returns the delivered frame indexes (each checked against its pixels)
// and the failed ones.
func runFeed(t *testing.T, ctx context.Context, d *Detector, src FrameReader, live bool, stats *StageStats, slow time.Duration) (delivered, failed []int64, err error) {
	t.Helper()
	feed := NewFeed(ctx, src, live, stats)
	defer func() {
		if cerr := feed.Close(); cerr != nil {
			t.Error(cerr)
		}
	}()
	var mu sync.Mutex
	var released atomic.Int64
	var taken int64
	err = Stages{
		Stats: stats,
		Next: func(ctx context.Context) (*Job, error) {
			fr, err := feed.Next(ctx)
			if err != nil {
				return nil, err
			}
			taken++
			fr.Job.Det = d
			return &fr.Job, nil
		},
		Deliver: func(j *Job, i int, dets []postprocess.Detection) error {
			fr := j.Tag.(*FeedFrame)
			if got, want := fr.Img.GetUCharAt(10, 10), uint8(fr.Frame.Index%256); got != want {
				t.Errorf("frame %d delivered with the pixels of frame %d", fr.Frame.Index, got)
			}
			if len(dets) != 0 {
				t.Errorf("the null model found %d objects", len(dets))
			}
			if slow > 0 {
				time.Sleep(slow)
			}
			mu.Lock()
			delivered = append(delivered, fr.Frame.Index)
			mu.Unlock()
			return nil
		},
		Fail: func(j *Job, _ int, stage string, err error) {
			if stage != StagePreprocess {
				t.Errorf("frame failed at %s: %v", stage, err)
			}
			mu.Lock()
			failed = append(failed, j.Tag.(*FeedFrame).Frame.Index)
			mu.Unlock()
		},
		Done: func(j *Job) {
			released.Add(1)
			feed.Release(j.Tag.(*FeedFrame))
		},
	}.Run(ctx)
	if released.Load() != taken {
		t.Errorf("%d frames taken, %d given back", taken, released.Load())
	}
	return delivered, failed, err
}

func TestStagesFileKeepsEveryFrameInOrder(t *testing.T) {
	d := nullDetector(t)
	src := &countReader{n: 300, empty: map[int64]bool{7: true, 150: true}}
	stats := NewStageStats()
	delivered, failed, err := runFeed(t, context.Background(), d, src, false, stats, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for i := range int64(300) {
		if !src.empty[i] {
			want = append(want, i)
		}
	}
	if !slices.Equal(delivered, want) {
		t.Errorf("delivered %d frames %v..., want every readable frame in order", len(delivered), delivered[:min(10, len(delivered))])
	}
	if !slices.Equal(failed, []int64{7, 150}) {
		t.Errorf("failed frames %v, want [7 150] (empty images)", failed)
	}
	fig, order := stats.Figures()
	if fig[StageRead].Dropped != 0 {
		t.Errorf("a file source dropped %d frames", fig[StageRead].Dropped)
	}
	for _, st := range []string{StageRead, StagePreprocess, StageInfer, StagePostprocess, StageSink} {
		if !slices.Contains(order, st) {
			t.Errorf("stage %s missing from %v", st, order)
		}
	}
	if got := fig[StageSink].Frames; got != int64(len(want)) {
		t.Errorf("sink saw %d frames, want %d", got, len(want))
	}
}

func TestStagesLiveKeepsLatestFrame(t *testing.T) {
	d := nullDetector(t)
	// A camera at ~500 fps and outputs that take 10 ms a frame: most
	// frames must be dropped at the reader, never queued.
	src := &countReader{n: 400, delay: 2 * time.Millisecond}
	stats := NewStageStats()
	feed := NewFeed(context.Background(), src, true, stats)
	defer func() {
		if err := feed.Close(); err != nil {
			t.Error(err)
		}
	}()
	var got []int64
	err := Stages{
		Stats: stats,
		Next: func(ctx context.Context) (*Job, error) {
			fr, err := feed.Next(ctx)
			if err != nil {
				return nil, err
			}
			// The frame handed on is the newest read (the reader may
			// have finished one more meanwhile).
			if newest := src.next.Load() - 1; fr.Frame.Index < newest-1 {
				t.Errorf("stale frame %d taken while %d was read", fr.Frame.Index, newest)
			}
			fr.Job.Det = d
			return &fr.Job, nil
		},
		Deliver: func(j *Job, _ int, _ []postprocess.Detection) error {
			got = append(got, j.Tag.(*FeedFrame).Frame.Index)
			time.Sleep(10 * time.Millisecond)
			return nil
		},
		Done: func(j *Job) { feed.Release(j.Tag.(*FeedFrame)) },
	}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Errorf("live frames not delivered in increasing order: %v", got)
	}
	fig, _ := stats.Figures()
	dropped := fig[StageRead].Dropped
	if dropped == 0 || int64(len(got))+dropped > 400 || len(got) >= 200 {
		t.Errorf("delivered %d, dropped %d of 400: the reader must drop frames the stages cannot take", len(got), dropped)
	}
	if last := got[len(got)-1]; last < 395 {
		t.Errorf("last delivered frame %d: the newest frame (399) must not be lost behind stale ones", last)
	}
	t.Logf("live: %d of 400 frames delivered, %d dropped", len(got), dropped)
}

func TestStagesStopOnDeliverError(t *testing.T) {
	d := nullDetector(t)
	src := &countReader{n: 1000}
	feed := NewFeed(context.Background(), src, false, nil)
	defer feed.Close()
	boom := errors.New("disk full")
	n := 0
	err := Stages{
		Next: feed.Jobs(d, 0),
		Deliver: func(*Job, int, []postprocess.Detection) error {
			if n++; n == 5 {
				return boom
			}
			return nil
		},
		Done: feed.Done,
	}.Run(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the Deliver error", err)
	}
	if n != 5 {
		t.Errorf("Deliver called %d times, want 5 (nothing after the error)", n)
	}
}

func TestStagesCancel(t *testing.T) {
	d := nullDetector(t)
	ctx, cancel := context.WithCancel(context.Background())
	src := &countReader{n: 1 << 40, delay: time.Millisecond}
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	delivered, failed, err := runFeed(t, ctx, d, src, false, nil, 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if len(delivered) == 0 || len(failed) != 0 {
		t.Errorf("delivered %d, failed %d", len(delivered), len(failed))
	}
}

// TestStagesMatchDetect runs the real model pipelined and checks that
// every frame's detections are those of the one-frame-at-a-time Detect:
// the slots share nothing.
func TestStagesMatchDetect(t *testing.T) {
	video := fixtures.Path(t, "media", "vtest.avi")
	d := cpuDetector(t, "yolov5n.onnx")
	open := func() source.Source {
		s, err := source.Open(context.Background(), source.Spec{URI: video}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const n = 12
	src := open()
	var want [][]postprocess.Detection
	img := gocv.NewMat()
	defer img.Close()
	for range n {
		if _, err := src.Read(context.Background(), &img); err != nil {
			t.Fatal(err)
		}
		dets, _, err := d.Detect(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, slices.Clone(dets))
	}
	src.Close()
	src = open()
	defer src.Close()
	feed := NewFeed(context.Background(), src, false, nil)
	defer feed.Close()
	var got [][]postprocess.Detection
	err := Stages{
		Next: feed.Jobs(d, n),
		Deliver: func(_ *Job, _ int, dets []postprocess.Detection) error {
			got = append(got, slices.Clone(dets))
			return nil
		},
		Done: feed.Done,
	}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d frames delivered, want %d", len(got), n)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("frame %d: pipelined %d detections differ from Detect's %d", i, len(got[i]), len(want[i]))
		}
	}
}

func TestBenchPipelineNullModel(t *testing.T) {
	d := nullDetector(t)
	open := func(context.Context) (FrameReader, func() error, error) {
		return &countReader{n: 100}, func() error { return nil }, nil
	}
	r, err := BenchPipeline(context.Background(), d, open, false, 5, 60)
	if err != nil {
		t.Fatal(err)
	}
	if r.Frames != 60 || r.PipelineFPS <= 0 || r.Model != NullModel || r.InferMedianMs > 0.05 {
		t.Errorf("result %+v", r)
	}
	for _, st := range []string{StageRead, StagePreprocess, StageInfer, StagePostprocess} {
		if f, ok := r.Stages[st]; !ok || f.Frames == 0 || f.Busy < 0 || f.Busy > 1.5 {
			t.Errorf("stage %s: %+v", st, f)
		}
	}
	open = func(context.Context) (FrameReader, func() error, error) {
		return &countReader{n: 10}, func() error { return nil }, nil
	}
	if _, err := BenchPipeline(context.Background(), d, open, false, 0, 60); err == nil {
		t.Error("a source shorter than --frames: no error")
	}
}

// BenchmarkStagesNull runs b.N frames of 768x576 through the null model's
// stages: the CPU cost of the pipeline around inference, and its
// allocations per frame (images and tensors are recycled).
func BenchmarkStagesNull(b *testing.B) {
	d, err := New(Config{Model: NullModel})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	img := gocv.NewMatWithSize(576, 768, gocv.MatTypeCV8UC3)
	defer img.Close()
	src := readerFunc(func(_ context.Context, dst *gocv.Mat) (source.Frame, error) {
		img.CopyTo(dst)
		return source.Frame{}, nil
	})
	feed := NewFeed(context.Background(), src, false, nil)
	defer feed.Close()
	b.ReportAllocs()
	b.ResetTimer()
	err = Stages{
		Next:    feed.Jobs(d, int64(b.N)),
		Deliver: func(*Job, int, []postprocess.Detection) error { return nil },
		Done:    feed.Done,
	}.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
}

type readerFunc func(context.Context, *gocv.Mat) (source.Frame, error)

func (f readerFunc) Read(ctx context.Context, dst *gocv.Mat) (source.Frame, error) {
	return f(ctx, dst)
}

// TestStagesBatch runs jobs of two frames (and a last one of one) on a
// batch-2 detector and checks each frame's detections against Detect on
// a batch-1 detector of the same model: batch positions do not mix.
func TestStagesBatch(t *testing.T) {
	initORT(t)
	model := fixtures.Model(t, "yolov5n-dynamic.onnx")
	video := fixtures.Path(t, "media", "vtest.avi")
	one := cpuDetector(t, "yolov5n-dynamic.onnx")
	two, err := New(Config{Model: model, Batch: 2, Runtime: onnxrt.Options{Provider: "cpu", Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, two)
	src, err := source.Open(context.Background(), source.Spec{URI: video}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const n = 7
	frames := make([]gocv.Mat, n)
	var want [][]postprocess.Detection
	for i := range frames {
		frames[i] = gocv.NewMat()
		defer frames[i].Close()
		if _, err := src.Read(context.Background(), &frames[i]); err != nil {
			t.Fatal(err)
		}
		dets, _, err := one.Detect(context.Background(), frames[i])
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, slices.Clone(dets))
	}
	next := 0
	got := make([][]postprocess.Detection, n)
	err = Stages{
		Next: func(context.Context) (*Job, error) {
			if next >= n {
				return nil, io.EOF
			}
			k := min(2, n-next)
			j := &Job{Det: two, Frames: frames[next : next+k], Tag: next}
			next += k
			return j, nil
		},
		Deliver: func(j *Job, i int, dets []postprocess.Detection) error {
			got[j.Tag.(int)+i] = slices.Clone(dets)
			return nil
		},
	}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Errorf("frame %d: %d detections in a batch of 2, %d alone", i, len(got[i]), len(want[i]))
			continue
		}
		for k := range want[i] {
			a, b := got[i][k], want[i][k]
			if a.Class != b.Class || math.Abs(float64(a.Score-b.Score)) > 1e-4 || math.Abs(float64(a.Box.X1-b.Box.X1)) > 0.01 || math.Abs(float64(a.Box.Y2-b.Box.Y2)) > 0.01 {
				t.Errorf("frame %d detection %d: %+v in a batch, %+v alone", i, k, a, b)
			}
		}
	}
}
