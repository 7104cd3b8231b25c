package sinks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// rec returns a small record for frame i.
func rec(stream string, i int) *Record {
	return &Record{
		Stream:    stream,
		Frame:     int64(i),
		Time:      time.Date(2024, 5, 1, 12, 0, 0, i*1000, time.UTC),
		Precision: "int8",
		Width:     640,
		Height:    480,
		Ms:        map[string]float64{"pre": 1.25, "infer": 7.5, "post": 0.5},
		Detections: []Detection{
			{Class: 0, Name: "person", Score: 0.91, Box: [4]float32{10, 20, 110, 220}},
			{Class: 2, Name: "car", Score: 0.55, Box: [4]float32{300, 200, 420, 260}},
		},
	}
}

// bigRec returns a record whose JSON line is larger than the 64 KiB buffer.
func bigRec(i int) *Record {
	r := rec("big", i)
	r.Detections = make([]Detection, 2000)
	for k := range r.Detections {
		r.Detections[k] = Detection{Class: k % 80, Name: "thing", Score: 0.5, Box: [4]float32{1, 2, 3, 4}}
	}
	return r
}

// parseLines parses JSON lines strictly, failing on a partial last line or
// any line that is not a valid Record.
func parseLines(t *testing.T, name string, data []byte) []Record {
	t.Helper()
	if len(data) == 0 {
		return nil
	}
	if data[len(data)-1] != '\n' {
		t.Fatalf("%s: does not end in a newline (partial line): ...%q", name, tail(data))
	}
	var out []Record
	for n, line := range bytes.Split(data[:len(data)-1], []byte("\n")) {
		d := json.NewDecoder(bytes.NewReader(line))
		d.DisallowUnknownFields()
		var r Record
		if err := d.Decode(&r); err != nil {
			t.Fatalf("%s line %d: invalid JSON %q: %v", name, n+1, tail(line), err)
		}
		out = append(out, r)
	}
	return out
}

func tail(b []byte) []byte {
	if len(b) > 80 {
		return b[len(b)-80:]
	}
	return b
}

// readRecords reads and strictly parses a JSON lines file.
func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseLines(t, path, data)
}

// frames returns the frame numbers of rs.
func frames(rs []Record) []int64 {
	f := make([]int64, len(rs))
	for i, r := range rs {
		f[i] = r.Frame
	}
	return f
}

// seq returns the frames from..to-1.
func seq(from, to int) []int64 {
	f := []int64{}
	for i := from; i < to; i++ {
		f = append(f, int64(i))
	}
	return f
}

func equalFrames(a, b []int64) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// errLog collects OnError calls.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) add(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errLog) get() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

func boolp(b bool) *bool { return &b }

// within fails the test if f does not return within d (a blocked Write or
// Flush would otherwise hang the test).
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}
