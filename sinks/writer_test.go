package sinks

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a bytes.Buffer safe for the test to read while sinks write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int // Write calls
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

type failWriter struct{ err error }

func (w failWriter) Write(p []byte) (int, error) { return 0, w.err }

type flushWriter struct {
	bytes.Buffer
	flushes int
}

func (w *flushWriter) Flush() error { w.flushes++; return nil }

func TestWriterConcurrent(t *testing.T) {
	const goroutines, per = 8, 100
	var buf lockedBuffer
	s := NewWriter("stdout", &buf)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := s.Write(rec(fmt.Sprint("cam", g), i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(parseLines(t, "buffer", buf.Bytes())); got != goroutines*per {
		t.Errorf("%d records, want %d", got, goroutines*per)
	}
	if buf.n != goroutines*per {
		t.Errorf("%d Write calls for %d records, want one per record", buf.n, goroutines*per)
	}
}

func TestWriterErrorsAndClose(t *testing.T) {
	boom := errors.New("boom")
	if err := NewWriter("x", failWriter{boom}).Write(rec("cam0", 0)); !errors.Is(err, boom) {
		t.Errorf("Write: %v, want boom", err)
	}
	var fw flushWriter
	s := NewWriter("stdout", &fw)
	if s.Name() != "stdout" {
		t.Errorf("Name %q", s.Name())
	}
	if err := s.Write(rec("cam0", 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil || fw.flushes != 1 {
		t.Errorf("Flush: %v, %d flushes", err, fw.flushes)
	}
	if err := s.Close(); err != nil || fw.flushes != 2 {
		t.Errorf("Close: %v, %d flushes", err, fw.flushes)
	}
	if err := s.Write(rec("cam0", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := strings.Count(fw.String(), "\n"); n != 1 {
		t.Errorf("%d lines, want 1", n)
	}
}
