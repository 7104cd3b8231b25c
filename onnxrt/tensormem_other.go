//go:build !unix

package onnxrt

// allocFloats returns n zeroed float32 values from the Go heap (the unix
// version maps them outside it).
func allocFloats(n int) ([]float32, []byte, error) {
	if n <= 0 {
		return nil, nil, nil
	}
	return make([]float32, n), nil, nil
}

// freeFloats does nothing: the Go heap's values are collected.
func freeFloats([]byte) {}
