//go:build unix

package onnxrt

import (
	"fmt"
	"log/slog"
	"unsafe"

	"golang.org/x/sys/unix"
)

// allocFloats returns n zeroed float32 values in an anonymous mapping of
// their own, outside the Go heap, and the mapping to give to freeFloats.
// A Binding's tensors are large (13 MB for a 640x640 YOLOv5 input and its
// head) and live as long as the model: in the Go heap they would count as
// live heap, which the collector lets grow by GOGC percent of it before it
// collects, so every megabyte of tensor would keep about another of
// garbage resident. Outside it they take their own size only.
func allocFloats(n int) ([]float32, []byte, error) {
	if n <= 0 {
		return nil, nil, nil
	}
	b, err := unix.Mmap(-1, 0, n*4, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("mapping %d bytes for a tensor: %w", n*4, err)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n), b, nil
}

// freeFloats releases a mapping of allocFloats; the values must no longer
// be used. Unmapping a mapping of allocFloats fails only for a bug here: it
// is logged, as release does.
func freeFloats(b []byte) {
	if b == nil {
		return
	}
	if err := unix.Munmap(b); err != nil {
		slog.Error("runtime: unmapping tensor memory", "bytes", len(b), "err", err)
	}
}
