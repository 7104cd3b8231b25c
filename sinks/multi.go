package sinks

import (
	"errors"
	"fmt"
	"strings"
)

// Multi fans records out to several sinks. Each operation is applied to
// every sink, even after a failure, and the failures are returned joined
// with errors.Join, each prefixed with the failing sink's name. Nil entries
// are skipped.
type Multi []Sink

// Name returns "multi(" followed by the member names joined by "," and ")".
func (m Multi) Name() string {
	names := make([]string, 0, len(m))
	for _, s := range m {
		if s != nil {
			names = append(names, s.Name())
		}
	}
	return "multi(" + strings.Join(names, ",") + ")"
}

// Write writes r to every sink.
func (m Multi) Write(r *Record) error {
	return m.each(func(s Sink) error { return s.Write(r) })
}

// Flush flushes every sink.
func (m Multi) Flush() error {
	return m.each(Sink.Flush)
}

// Close closes every sink.
func (m Multi) Close() error {
	return m.each(Sink.Close)
}

func (m Multi) each(f func(Sink) error) error {
	var errs []error
	for _, s := range m {
		if s == nil {
			continue
		}
		if err := f(s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
		}
	}
	return errors.Join(errs...)
}
