package sinks

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestMulti(t *testing.T) {
	var a, b lockedBuffer
	m := Multi{NewWriter("a", &a), nil, NewWriter("bad", failWriter{syscall.ENOSPC}), NewWriter("b", &b)}
	if got := m.Name(); got != "multi(a,bad,b)" {
		t.Errorf("Name %q", got)
	}
	err := m.Write(rec("cam0", 0))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "bad: ") {
		t.Errorf("Write: %v, want ENOSPC from bad", err)
	}
	for _, buf := range []*lockedBuffer{&a, &b} {
		if n := len(parseLines(t, "buffer", buf.Bytes())); n != 1 {
			t.Errorf("%d records, want 1 in every working sink", n)
		}
	}
	if err := m.Flush(); err != nil {
		t.Errorf("Flush: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := m.Write(rec("cam0", 1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := (Multi{}).Write(rec("cam0", 0)); err != nil {
		t.Errorf("empty Multi: %v", err)
	}
}
