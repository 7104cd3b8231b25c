//go:build !linux || !cgo

package onnxrt

// TrimNative gives the C allocator's free memory back to the OS where the
// C library can (glibc's malloc_trim); elsewhere it does nothing.
func TrimNative() {}
