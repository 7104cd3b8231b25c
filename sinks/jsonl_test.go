package sinks

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func newTestJSONL(t *testing.T, o JSONLOptions, wrap func(io.Writer) io.Writer) *JSONL {
	t.Helper()
	s, err := newJSONL(o, wrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Tests that expect a clean close check Close themselves; the
		// failure-injection tests may end with an error here.
		if err := s.Close(); err != nil {
			t.Logf("Close: %v", err)
		}
	})
	return s
}

func TestRoundTrip(t *testing.T) {
	records := []*Record{
		rec("cam0", 0),
		{Stream: "empty", Frame: 1}, // nil Ms, nil Detections, zero time
		{
			Stream: "späti <&> \"quoted\"", Frame: math.MaxInt64, Time: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC),
			Precision: "fp32", Width: 1920, Height: 1080, Ms: map[string]float64{},
			Detections: []Detection{{Class: 79, Name: "toothbrush ü", Score: 1, Box: [4]float32{-1.5, 0, 1e6, 3.25}}},
		},
		bigRec(3),
	}
	type opened struct {
		sink Sink
		read func(t *testing.T) []Record
	}
	cases := []struct {
		name string
		open func(t *testing.T) opened
	}{
		{"writer", func(t *testing.T) opened {
			var buf lockedBuffer
			return opened{NewWriter("stdout", &buf), func(t *testing.T) []Record { return parseLines(t, "buffer", buf.Bytes()) }}
		}},
		{"jsonl", func(t *testing.T) opened {
			path := filepath.Join(t.TempDir(), "d.jsonl")
			return opened{newTestJSONL(t, JSONLOptions{Path: path}, nil), func(t *testing.T) []Record { return readRecords(t, path) }}
		}},
		{"multi", func(t *testing.T) opened {
			path := filepath.Join(t.TempDir(), "d.jsonl")
			var buf lockedBuffer
			m := Multi{NewWriter("stdout", &buf), newTestJSONL(t, JSONLOptions{Path: path}, nil)}
			return opened{m, func(t *testing.T) []Record {
				a, b := parseLines(t, "buffer", buf.Bytes()), readRecords(t, path)
				if !reflect.DeepEqual(a, b) {
					t.Errorf("multi members disagree:\n%v\n%v", a, b)
				}
				return a
			}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.open(t)
			for _, r := range records {
				if err := o.sink.Write(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := o.sink.Close(); err != nil {
				t.Fatal(err)
			}
			got := o.read(t)
			if len(got) != len(records) {
				t.Fatalf("got %d records, want %d", len(got), len(records))
			}
			for i, r := range records {
				want := *r
				if want.Detections == nil {
					want.Detections = []Detection{} // written as [], never null
				}
				if !reflect.DeepEqual(got[i], want) {
					t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], want)
				}
			}
		})
	}
}

func TestRecordJSONFieldNames(t *testing.T) {
	line, err := encodeLine(&Record{Stream: "s"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"stream":"s","frame":0,"time":"0001-01-01T00:00:00Z","precision":"","width":0,"height":0,"ms":null,"detections":[]}` + "\n"
	if string(line) != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
	line, _ = encodeLine(&Record{Detections: []Detection{{Class: 1, Name: "n", Score: 0.5, Box: [4]float32{1, 2, 3, 4}}}})
	if !strings.Contains(string(line), `"detections":[{"class":1,"name":"n","score":0.5,"box":[1,2,3,4]}]`) {
		t.Errorf("detection encoding: %s", line)
	}
}

func TestJSONLRotation(t *testing.T) {
	const maxBytes = 4000
	lineLen := int64(len(mustEncode(t, rec("cam0", 100))))
	cases := []struct {
		name     string
		maxFiles int
		n        int
		sync     bool
		existing int // records already in the file before the sink opens it
	}{
		{"one file", 1, 120, true, 0},
		{"two files", 2, 120, false, 0},
		{"three files", 3, 150, true, 0},
		{"five files", 5, 200, false, 0},
		{"appends to existing file", 3, 150, false, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "d.jsonl")
			if c.existing > 0 {
				var pre []byte
				for i := 0; i < c.existing; i++ {
					pre = append(pre, mustEncode(t, rec("cam0", 100+i))...)
				}
				if err := os.WriteFile(path, pre, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var log errLog
			s := newTestJSONL(t, JSONLOptions{Path: path, MaxBytes: maxBytes, MaxFiles: c.maxFiles,
				SyncOnFlush: boolp(c.sync), OnError: log.add}, nil)
			for i := 0; i < c.n; i++ {
				if err := s.Write(rec("cam0", 100+c.existing+i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st != (Stats{Written: int64(c.n)}) {
				t.Errorf("stats %+v, want Written %d only", st, c.n)
			}
			if errs := log.get(); len(errs) > 0 {
				t.Errorf("OnError: %v", errs)
			}

			// Exactly path, path.1 ... path.<maxFiles-1>.
			entries, _ := os.ReadDir(dir)
			if len(entries) != c.maxFiles {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Fatalf("files %v, want %d", names, c.maxFiles)
			}
			var all []Record
			for i := c.maxFiles - 1; i >= 0; i-- { // oldest first
				name := path
				if i > 0 {
					name = fmt.Sprintf("%s.%d", path, i)
				}
				fi, err := os.Stat(name)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > maxBytes {
					t.Errorf("%s: %d bytes > MaxBytes %d", name, fi.Size(), maxBytes)
				}
				if i > 0 && fi.Size()+lineLen <= maxBytes {
					t.Errorf("%s: rotated early at %d bytes", name, fi.Size())
				}
				all = append(all, readRecords(t, name)...)
			}
			// The kept records are the newest ones, in order: total kept =
			// written - those in deleted files.
			total := c.existing + c.n
			if len(all) == 0 || len(all) >= total {
				t.Fatalf("kept %d of %d records: rotation did not delete old files", len(all), total)
			}
			if want := seq(100+total-len(all), 100+total); !equalFrames(frames(all), want) {
				t.Errorf("frames %v, want %v", frames(all), want)
			}
		})
	}
}

func TestJSONLLineLongerThanMaxBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.jsonl")
	s := newTestJSONL(t, JSONLOptions{Path: path, MaxBytes: 100, MaxFiles: 3}, nil)
	for i := 0; i < 4; i++ {
		if err := s.Write(rec("cam0", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{path + ".2", path + ".1", path} {
		if got := frames(readRecords(t, name)); !equalFrames(got, []int64{int64(i + 1)}) {
			t.Errorf("%s: frames %v, want one record %d", name, got, i+1)
		}
	}
}

func TestJSONLCloseFlushesEverything(t *testing.T) {
	for _, n := range []int{0, 1, 500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.jsonl")
			s := newTestJSONL(t, JSONLOptions{Path: path, FlushInterval: time.Hour}, nil)
			for i := 0; i < n; i++ {
				if err := s.Write(rec("cam0", i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := frames(readRecords(t, path)); !equalFrames(got, seq(0, n)) {
				t.Errorf("after Close: frames %v, want 0..%d", got, n-1)
			}
			if err := s.Write(rec("cam0", n)); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Close: %v, want ErrClosed", err)
			}
			if err := s.Flush(); !errors.Is(err, ErrClosed) {
				t.Errorf("Flush after Close: %v, want ErrClosed", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestJSONLFlushInterval(t *testing.T) {
	const interval = 50 * time.Millisecond
	path := filepath.Join(t.TempDir(), "d.jsonl")
	s := newTestJSONL(t, JSONLOptions{Path: path, FlushInterval: interval}, nil)
	if err := s.Write(rec("cam0", 7)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * interval)
	if got := frames(readRecords(t, path)); !equalFrames(got, []int64{7}) {
		t.Errorf("after %v without Close: frames %v, want [7]", 6*interval, got)
	}
	if st := s.Stats(); st.Written != 1 {
		t.Errorf("Written %d, want 1", st.Written)
	}
}

func TestJSONLFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.jsonl")
	s := newTestJSONL(t, JSONLOptions{Path: path, FlushInterval: time.Hour}, nil)
	for i := 0; i < 3; i++ {
		if err := s.Write(rec("cam0", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := frames(readRecords(t, path)); !equalFrames(got, seq(0, 3)) {
		t.Errorf("after Flush: frames %v, want [0 1 2]", got)
	}
}

func TestJSONLConcurrentWrites(t *testing.T) {
	const goroutines, per = 8, 250
	path := filepath.Join(t.TempDir(), "d.jsonl")
	s := newTestJSONL(t, JSONLOptions{Path: path, MaxBytes: 64 << 10, MaxFiles: 100,
		FlushInterval: time.Millisecond, SyncOnFlush: boolp(false)}, nil)
	var wg sync.WaitGroup
	var refused atomic.Int64
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rec(fmt.Sprint("cam", g), 0)
			for i := 0; i < per; i++ {
				r.Frame = int64(i) // the sink must not retain r
				r.Ms["infer"] = float64(i)
				if err := s.Write(r); errors.Is(err, ErrQueueFull) {
					refused.Add(1)
				} else if err != nil {
					t.Error(err)
				}
				if i%50 == 0 {
					if err := s.Flush(); err != nil {
						t.Error(err)
					}
					_ = s.Stats()
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Written+st.Dropped != goroutines*per || st.Dropped != refused.Load() || st.Errors != 0 {
		t.Errorf("stats %+v, %d refused, want Written+Dropped = %d", st, refused.Load(), goroutines*per)
	}
	matches, _ := filepath.Glob(path + "*")
	seen := map[string]bool{}
	for _, m := range matches {
		for _, r := range readRecords(t, m) {
			key := fmt.Sprint(r.Stream, "/", r.Frame)
			if seen[key] || r.Ms["infer"] != float64(r.Frame) {
				t.Errorf("duplicate or corrupted record %+v", r)
			}
			seen[key] = true
		}
	}
	if int64(len(seen)) != st.Written {
		t.Errorf("%d records in files, Written %d", len(seen), st.Written)
	}
}

// blockingWriter simulates a disk that hangs on the first write until
// released.
type blockingWriter struct {
	w        io.Writer
	entered  chan struct{}
	release  chan struct{}
	once     sync.Once
	released atomic.Bool
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	if !b.released.Load() {
		b.once.Do(func() { close(b.entered) })
		<-b.release
	}
	return b.w.Write(p)
}

func TestJSONLQueueFullDrops(t *testing.T) {
	const queue, extra = 4, 10
	path := filepath.Join(t.TempDir(), "d.jsonl")
	bw := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	s := newTestJSONL(t, JSONLOptions{Path: path, QueueSize: queue, FlushInterval: 5 * time.Millisecond},
		func(w io.Writer) io.Writer { bw.w = w; return bw })
	if err := s.Write(rec("cam0", 0)); err != nil {
		t.Fatal(err)
	}
	select { // the periodic flush hangs in the "disk"
	case <-bw.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("writer goroutine never wrote")
	}
	var errs []error
	start := time.Now()
	within(t, 5*time.Second, "Write with a hung disk", func() {
		for i := 1; i <= queue+extra; i++ {
			errs = append(errs, s.Write(rec("cam0", i)))
		}
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("%d Writes took %v with a hung disk", queue+extra, d)
	}
	for i, err := range errs {
		if want := error(nil); i >= queue {
			want = ErrQueueFull
			if !errors.Is(err, want) {
				t.Errorf("Write %d: %v, want %v", i+1, err, want)
			}
		} else if err != nil {
			t.Errorf("Write %d: %v", i+1, err)
		}
	}
	if st := s.Stats(); st.Dropped != extra || st.Written != 0 {
		t.Errorf("stats %+v, want Dropped %d, Written 0", st, extra)
	}
	bw.released.Store(true)
	close(bw.release)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st != (Stats{Written: 1 + queue, Dropped: extra}) {
		t.Errorf("after Close: stats %+v", st)
	}
	if got := frames(readRecords(t, path)); !equalFrames(got, seq(0, 1+queue)) {
		t.Errorf("frames %v, want 0..%d", got, queue)
	}
}

// fullDisk simulates ENOSPC: while failing, every write stores half of its
// bytes (a short write) and fails.
type fullDisk struct {
	failing atomic.Bool
	opens   atomic.Int64
}

func (d *fullDisk) wrap(w io.Writer) io.Writer {
	d.opens.Add(1)
	return fullDiskWriter{d, w}
}

type fullDiskWriter struct {
	d *fullDisk
	w io.Writer
}

func (w fullDiskWriter) Write(p []byte) (int, error) {
	if !w.d.failing.Load() {
		return w.w.Write(p)
	}
	n, err := w.w.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	return n, &fs.PathError{Op: "write", Path: "fake", Err: syscall.ENOSPC}
}

func TestJSONLDiskFull(t *testing.T) {
	cases := []struct {
		name string
		rec  func(i int) *Record
	}{
		{"buffered lines", func(i int) *Record { return rec("cam0", i) }},
		// Lines larger than the buffer are written as soon as they are
		// dequeued, so their errors may come before Flush (only OnError
		// sees them).
		{"lines larger than the buffer", bigRec},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.jsonl")
			var disk fullDisk
			var log errLog
			s := newTestJSONL(t, JSONLOptions{Path: path, FlushInterval: time.Hour, OnError: log.add}, disk.wrap)
			write := func(from, to int) {
				t.Helper()
				for i := from; i < to; i++ {
					if err := s.Write(c.rec(i)); err != nil {
						t.Fatal(err)
					}
				}
			}
			write(0, 3)
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}

			disk.failing.Store(true)
			write(3, 6)
			err := s.Flush()
			big := c.name != "buffered lines"
			if ok := errors.Is(err, syscall.ENOSPC) || big && err == nil; !ok {
				t.Fatalf("Flush on a full disk: %v, want ENOSPC", err)
			}
			st := s.Stats()
			if st.Errors == 0 || st.Dropped != 3 || st.Written != 3 {
				t.Errorf("stats %+v, want Errors > 0, Dropped 3, Written 3", st)
			}
			errs := log.get()
			if len(errs) != int(st.Errors) || !errors.Is(errs[0], syscall.ENOSPC) {
				t.Errorf("OnError got %v, want %d ENOSPC errors", errs, st.Errors)
			}
			// No partial line is left behind.
			if got := frames(readRecords(t, path)); !equalFrames(got, seq(0, 3)) {
				t.Errorf("on a full disk: frames %v, want [0 1 2]", got)
			}

			before := s.Stats().Errors
			write(6, 7) // still full: retried, fails again
			if err := s.Flush(); err != nil && !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("second Flush on a full disk: %v, want ENOSPC", err)
			}
			if s.Stats().Errors == before {
				t.Error("retry on a full disk: no error counted")
			}

			disk.failing.Store(false) // space freed: the next records go through
			write(7, 10)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := frames(readRecords(t, path)), []int64{0, 1, 2, 7, 8, 9}; !equalFrames(got, want) {
				t.Errorf("frames %v, want %v", got, want)
			}
			st = s.Stats()
			if st.Written != 6 || st.Dropped != 4 || int(st.Errors) != len(log.get()) {
				t.Errorf("final stats %+v, want Written 6, Dropped 4, Errors = %d OnError calls", st, len(log.get()))
			}
			if disk.opens.Load() < 2 {
				t.Errorf("file opened %d times, want a reopen after the error", disk.opens.Load())
			}
		})
	}
}

// TestJSONLDevFull uses a real ENOSPC: writes to /dev/full fail with it.
func TestJSONLDevFull(t *testing.T) {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no writable /dev/full:", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Through a symlink, so that the sink can never rename or remove the
	// device itself.
	path := filepath.Join(t.TempDir(), "full.jsonl")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Skip(err)
	}
	var log errLog
	s := newTestJSONL(t, JSONLOptions{Path: path, FlushInterval: time.Hour, OnError: log.add}, nil)
	for i := 0; i < 2; i++ {
		if err := s.Write(rec("cam0", i)); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Flush %d: %v, want ENOSPC", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v (the failed records were reported by Flush)", err)
	}
	st := s.Stats()
	if st.Written != 0 || st.Dropped != 2 || st.Errors < 2 {
		t.Errorf("stats %+v, want Dropped 2, Errors >= 2", st)
	}
	if errs := log.get(); len(errs) != int(st.Errors) || !errors.Is(errs[0], syscall.ENOSPC) {
		t.Errorf("OnError got %v", errs)
	}
}

func TestJSONLTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.jsonl")
	first := mustEncode(t, rec("cam0", 0))
	torn := append(first, first[:20]...) // a crash mid-line
	if err := os.WriteFile(path, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newTestJSONL(t, JSONLOptions{Path: path}, nil)
	if err := s.Write(rec("cam0", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[1] != string(first[:20]) {
		t.Fatalf("lines %q, want the torn line on its own", lines)
	}
	if got := frames(parseLines(t, "last line", []byte(lines[2]+"\n"))); !equalFrames(got, []int64{1}) {
		t.Errorf("new record %v", got)
	}
}

func TestJSONLWriteEncodeError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.jsonl")
	s := newTestJSONL(t, JSONLOptions{Path: path}, nil)
	r := rec("cam0", 0)
	r.Ms["infer"] = math.NaN()
	if err := s.Write(r); err == nil {
		t.Fatal("Write of a NaN: no error")
	}
	if err := s.Write(nil); err == nil {
		t.Fatal("Write(nil): no error")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if st := s.Stats(); st != (Stats{Dropped: 1}) {
		t.Errorf("stats %+v, want Dropped 1", st)
	}
	if data, _ := os.ReadFile(path); len(data) != 0 {
		t.Errorf("file holds %q", data)
	}
}

func TestNewJSONLErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		o       JSONLOptions
		root    bool // whether the case also fails for root
		is      error
		mention []string
	}{
		{"missing directory", JSONLOptions{Path: filepath.Join(dir, "nope", "d.jsonl")}, true, fs.ErrNotExist,
			[]string{filepath.Join(dir, "nope", "d.jsonl"), filepath.Join(dir, "nope")}},
		{"parent is a file", JSONLOptions{Path: filepath.Join(file, "d.jsonl")}, true, nil, []string{file}},
		{"path is a directory", JSONLOptions{Path: dir}, true, nil, []string{dir}},
		{"read-only directory", JSONLOptions{Path: filepath.Join(ro, "d.jsonl")}, false, fs.ErrPermission,
			[]string{filepath.Join(ro, "d.jsonl"), "not writable"}},
		{"empty path", JSONLOptions{}, true, nil, []string{"empty path"}},
		{"negative MaxBytes", JSONLOptions{Path: file, MaxBytes: -1}, true, nil, []string{"MaxBytes"}},
		{"negative QueueSize", JSONLOptions{Path: file, QueueSize: -1}, true, nil, []string{"QueueSize"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !c.root && os.Geteuid() == 0 {
				t.Skip("root may write anywhere")
			}
			s, err := NewJSONL(c.o)
			if err == nil {
				t.Fatalf("no error (Close: %v)", s.Close())
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v, want %v", err, c.is)
			}
			for _, m := range c.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestJSONLName(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.jsonl")
	s := newTestJSONL(t, JSONLOptions{Path: path}, nil)
	if got, want := s.Name(), "jsonl:"+path; got != want {
		t.Errorf("Name %q, want %q", got, want)
	}
}

func mustEncode(t *testing.T, r *Record) []byte {
	t.Helper()
	b, err := encodeLine(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
