package sinks

import (
	"io"
	"sync"
)

// Writer is a synchronous sink over an io.Writer such as os.Stdout. Each
// record is encoded and written with a single Write call of one whole line
// (line buffering: nothing is held back between records), under a mutex, so
// lines from concurrent Writes never interleave. Write blocks while the
// underlying writer does; use JSONL where the destination may be slow.
type Writer struct {
	name   string
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

// NewWriter returns a sink named name that writes JSON lines to w.
func NewWriter(name string, w io.Writer) *Writer {
	return &Writer{name: name, w: w}
}

// Name returns the name given to NewWriter.
func (s *Writer) Name() string { return s.name }

// Write encodes r and writes it as one line.
func (s *Writer) Write(r *Record) error {
	line, err := encodeLine(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	_, err = s.w.Write(line)
	return err
}

// Flush calls the underlying writer's Flush method if it has one; records
// are otherwise already written.
func (s *Writer) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.flushLocked()
}

func (s *Writer) flushLocked() error {
	if f, ok := s.w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// Close flushes and marks the sink closed. It does not close the underlying
// writer (which is usually os.Stdout). Closing twice returns nil.
func (s *Writer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.flushLocked()
}
