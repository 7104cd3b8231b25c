//go:build linux && cgo

package onnxrt

/*
#include <malloc.h>

// malloc_trim is glibc's; other C libraries on Linux (musl) have none.
#ifdef __GLIBC__
static int yedge_trim(void) { return malloc_trim(0); }
#else
static int yedge_trim(void) { return 0; }
#endif
*/
import "C"

// TrimNative gives the C allocator's free memory back to the OS
// (malloc_trim(0) with glibc: free pages in every malloc arena, not only
// at their tops). onnxruntime allocates its sessions with malloc, from
// one arena per OS thread that calls it; a closed session or the garbage
// of loading a model otherwise stays resident in those arenas. It takes a
// few milliseconds: call it after loading or closing models, not per
// frame.
func TrimNative() { C.yedge_trim() }
