package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/yedge/yedge/onnx/onnxpb"
)

// elemTypeNames maps TensorProto.DataType values to the names used in reports.
var elemTypeNames = map[onnxpb.TensorProto_DataType]string{
	onnxpb.TensorProto_UNDEFINED:  "undefined",
	onnxpb.TensorProto_FLOAT:      "float32",
	onnxpb.TensorProto_UINT8:      "uint8",
	onnxpb.TensorProto_INT8:       "int8",
	onnxpb.TensorProto_UINT16:     "uint16",
	onnxpb.TensorProto_INT16:      "int16",
	onnxpb.TensorProto_INT32:      "int32",
	onnxpb.TensorProto_INT64:      "int64",
	onnxpb.TensorProto_STRING:     "string",
	onnxpb.TensorProto_BOOL:       "bool",
	onnxpb.TensorProto_FLOAT16:    "float16",
	onnxpb.TensorProto_DOUBLE:     "float64",
	onnxpb.TensorProto_UINT32:     "uint32",
	onnxpb.TensorProto_UINT64:     "uint64",
	onnxpb.TensorProto_COMPLEX64:  "complex64",
	onnxpb.TensorProto_COMPLEX128: "complex128",
	onnxpb.TensorProto_BFLOAT16:   "bfloat16",
}

// ElemTypeName returns a Go-style name for an ONNX TensorProto data type
// ("float32", "uint8", "int8", "float16", ...), or "type(N)" for values this
// package does not know.
func ElemTypeName(dataType int32) string {
	if s, ok := elemTypeNames[onnxpb.TensorProto_DataType(dataType)]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", dataType)
}

// NumElements returns the number of elements of t implied by its dims (1 for
// a scalar). It fails on negative dims or if the count overflows int64.
func NumElements(t *onnxpb.TensorProto) (int64, error) {
	return numElements(t.GetName(), t.GetDims())
}

func numElements(name string, dims []int64) (int64, error) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("tensor %q: negative dimension %d in %v", name, d, dims)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("tensor %q: element count of %v overflows", name, dims)
		}
		n *= d
	}
	return n, nil
}

// checkTensor verifies that t is present, stored inline and of type want, and
// returns its element count.
func checkTensor(t *onnxpb.TensorProto, want onnxpb.TensorProto_DataType) (int64, error) {
	if t == nil {
		return 0, errors.New("tensor is nil")
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return 0, fmt.Errorf("tensor %q: data is stored in an external file", t.GetName())
	}
	if got := onnxpb.TensorProto_DataType(t.GetDataType()); got != want {
		return 0, fmt.Errorf("tensor %q: data type is %s, want %s",
			t.GetName(), ElemTypeName(int32(got)), ElemTypeName(int32(want)))
	}
	return NumElements(t)
}

// countError reports a mismatch between a tensor's dims and its data.
func countError(t *onnxpb.TensorProto, field string, got int, want int64) error {
	return fmt.Errorf("tensor %q: %s holds %d elements, dims %v need %d",
		t.GetName(), field, got, t.GetDims(), want)
}

// FloatData returns the values of a FLOAT tensor, decoded from raw_data
// (little endian) or float_data. It fails for other data types, external
// data, or when the amount of data does not match the dims.
func FloatData(t *onnxpb.TensorProto) ([]float32, error) {
	n, err := checkTensor(t, onnxpb.TensorProto_FLOAT)
	if err != nil {
		return nil, err
	}
	if raw := t.GetRawData(); len(raw) > 0 {
		if len(raw)%4 != 0 || int64(len(raw)/4) != n {
			return nil, fmt.Errorf("tensor %q: raw_data has %d bytes, dims %v need %d float32s",
				t.GetName(), len(raw), t.GetDims(), n)
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return out, nil
	}
	if int64(len(t.GetFloatData())) != n {
		return nil, countError(t, "float_data", len(t.GetFloatData()), n)
	}
	return slices.Clone(t.GetFloatData()), nil
}

// Int8Data returns the values of an INT8 tensor, decoded from raw_data or
// int32_data. It fails for other data types, external data, out-of-range
// int32_data values, or when the amount of data does not match the dims.
func Int8Data(t *onnxpb.TensorProto) ([]int8, error) {
	n, err := checkTensor(t, onnxpb.TensorProto_INT8)
	if err != nil {
		return nil, err
	}
	if raw := t.GetRawData(); len(raw) > 0 {
		if int64(len(raw)) != n {
			return nil, countError(t, "raw_data", len(raw), n)
		}
		out := make([]int8, n)
		for i, b := range raw {
			out[i] = int8(b)
		}
		return out, nil
	}
	vals := t.GetInt32Data()
	if int64(len(vals)) != n {
		return nil, countError(t, "int32_data", len(vals), n)
	}
	out := make([]int8, n)
	for i, v := range vals {
		if v < math.MinInt8 || v > math.MaxInt8 {
			return nil, fmt.Errorf("tensor %q: int32_data[%d] = %d is out of int8 range", t.GetName(), i, v)
		}
		out[i] = int8(v)
	}
	return out, nil
}

// Uint8Data returns the values of a UINT8 tensor, decoded from raw_data or
// int32_data. It fails for other data types, external data, out-of-range
// int32_data values, or when the amount of data does not match the dims.
func Uint8Data(t *onnxpb.TensorProto) ([]uint8, error) {
	n, err := checkTensor(t, onnxpb.TensorProto_UINT8)
	if err != nil {
		return nil, err
	}
	if raw := t.GetRawData(); len(raw) > 0 {
		if int64(len(raw)) != n {
			return nil, countError(t, "raw_data", len(raw), n)
		}
		return slices.Clone(raw), nil
	}
	vals := t.GetInt32Data()
	if int64(len(vals)) != n {
		return nil, countError(t, "int32_data", len(vals), n)
	}
	out := make([]uint8, n)
	for i, v := range vals {
		if v < 0 || v > math.MaxUint8 {
			return nil, fmt.Errorf("tensor %q: int32_data[%d] = %d is out of uint8 range", t.GetName(), i, v)
		}
		out[i] = uint8(v)
	}
	return out, nil
}

// mustMatch panics when len(data) does not fit dims; constructing a tensor
// whose data disagrees with its shape is a programming error.
func mustMatch(name string, dims []int64, count int) {
	n, err := numElements(name, dims)
	if err != nil {
		panic("onnx: " + err.Error())
	}
	if n != int64(count) {
		panic(fmt.Sprintf("onnx: tensor %q: %d values do not fit dims %v (%d elements)", name, count, dims, n))
	}
}

// NewFloatTensor returns a FLOAT tensor with the given dims (nil or empty for
// a scalar) holding data as little-endian raw_data. It panics if len(data) is
// not the product of dims. dims and data are copied.
func NewFloatTensor(name string, dims []int64, data []float32) *onnxpb.TensorProto {
	mustMatch(name, dims, len(data))
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &onnxpb.TensorProto{Name: name, Dims: slices.Clone(dims),
		DataType: int32(onnxpb.TensorProto_FLOAT), RawData: raw}
}

// NewInt8Tensor returns an INT8 tensor with the given dims (nil or empty for
// a scalar) holding data as raw_data. It panics if len(data) is not the
// product of dims. dims and data are copied.
func NewInt8Tensor(name string, dims []int64, data []int8) *onnxpb.TensorProto {
	mustMatch(name, dims, len(data))
	raw := make([]byte, len(data))
	for i, v := range data {
		raw[i] = byte(v)
	}
	return &onnxpb.TensorProto{Name: name, Dims: slices.Clone(dims),
		DataType: int32(onnxpb.TensorProto_INT8), RawData: raw}
}

// NewUint8Tensor returns a UINT8 tensor with the given dims (nil or empty for
// a scalar) holding data as raw_data. It panics if len(data) is not the
// product of dims. dims and data are copied.
func NewUint8Tensor(name string, dims []int64, data []uint8) *onnxpb.TensorProto {
	mustMatch(name, dims, len(data))
	return &onnxpb.TensorProto{Name: name, Dims: slices.Clone(dims),
		DataType: int32(onnxpb.TensorProto_UINT8), RawData: slices.Clone(data)}
}
