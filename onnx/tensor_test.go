package onnx

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/yedge/yedge/onnx/onnxpb"
)

// fmtSlice renders a slice like fmt's %v.
func fmtSlice[T any](v []T) string { return fmt.Sprint(v) }

func TestFloatData(t *testing.T) {
	vals := []float32{0, -1.5, float32(math.Inf(1)), 3.25e-8, 1e30, -0}
	rt := NewFloatTensor("w", []int64{2, 3}, vals)
	if len(rt.RawData) != 24 || rt.RawData[4+3] != 0xbf { // -1.5 = 0xbfc00000, little endian
		t.Errorf("raw_data not little-endian float32: % x", rt.RawData)
	}
	tests := []struct {
		name    string
		t       *onnxpb.TensorProto
		want    []float32
		wantErr string
	}{
		{"raw", rt, vals, ""},
		{"float_data", &onnxpb.TensorProto{Name: "f", DataType: 1, Dims: []int64{3}, FloatData: []float32{1, 2, 3}}, []float32{1, 2, 3}, ""},
		{"scalar", NewFloatTensor("s", nil, []float32{7}), []float32{7}, ""},
		{"empty", NewFloatTensor("e", []int64{0, 4}, nil), []float32{}, ""},
		{"wrong type", NewInt8Tensor("i", []int64{1}, []int8{1}), nil, "data type is int8, want float32"},
		{"short raw", &onnxpb.TensorProto{Name: "r", DataType: 1, Dims: []int64{2}, RawData: []byte{0, 0, 0, 0}}, nil, "raw_data has 4 bytes"},
		{"ragged raw", &onnxpb.TensorProto{Name: "r", DataType: 1, Dims: []int64{1}, RawData: []byte{0, 0, 0, 0, 0}}, nil, "raw_data has 5 bytes"},
		{"short float_data", &onnxpb.TensorProto{Name: "f", DataType: 1, Dims: []int64{4}, FloatData: []float32{1}}, nil, "float_data holds 1 elements"},
		{"negative dim", &onnxpb.TensorProto{Name: "n", DataType: 1, Dims: []int64{-1}}, nil, "negative dimension"},
		{"overflow", &onnxpb.TensorProto{Name: "o", DataType: 1, Dims: []int64{1 << 40, 1 << 40}}, nil, "overflows"},
		{"external", &onnxpb.TensorProto{Name: "x", DataType: 1, Dims: []int64{1}, DataLocation: onnxpb.TensorProto_EXTERNAL}, nil, "external file"},
		{"nil", nil, nil, "nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FloatData(tt.t)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if tt.t != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.t.Name)) {
					t.Errorf("error %q does not name tensor %q", err, tt.t.Name)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(tt.want[i]) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestIntData(t *testing.T) {
	i8 := []int8{-128, -1, 0, 1, 127}
	if got, err := Int8Data(NewInt8Tensor("a", []int64{5}, i8)); err != nil || !slices.Equal(got, i8) {
		t.Errorf("Int8Data(raw) = %v, %v", got, err)
	}
	if got, err := Int8Data(&onnxpb.TensorProto{Name: "b", DataType: 3, Dims: []int64{5}, Int32Data: []int32{-128, -1, 0, 1, 127}}); err != nil || !slices.Equal(got, i8) {
		t.Errorf("Int8Data(int32_data) = %v, %v", got, err)
	}
	u8 := []uint8{0, 1, 128, 255}
	if got, err := Uint8Data(NewUint8Tensor("c", []int64{2, 2}, u8)); err != nil || !slices.Equal(got, u8) {
		t.Errorf("Uint8Data(raw) = %v, %v", got, err)
	}
	if got, err := Uint8Data(&onnxpb.TensorProto{Name: "d", DataType: 2, Dims: []int64{4}, Int32Data: []int32{0, 1, 128, 255}}); err != nil || !slices.Equal(got, u8) {
		t.Errorf("Uint8Data(int32_data) = %v, %v", got, err)
	}
	if got, err := Int8Data(NewInt8Tensor("s", nil, []int8{0})); err != nil || len(got) != 1 {
		t.Errorf("Int8Data(scalar) = %v, %v", got, err)
	}
	errs := []struct {
		name string
		f    func() error
		want string
	}{
		{"int8 out of range", func() error {
			_, err := Int8Data(&onnxpb.TensorProto{Name: "e", DataType: 3, Dims: []int64{1}, Int32Data: []int32{128}})
			return err
		}, "out of int8 range"},
		{"uint8 out of range", func() error {
			_, err := Uint8Data(&onnxpb.TensorProto{Name: "e", DataType: 2, Dims: []int64{1}, Int32Data: []int32{-1}})
			return err
		}, "out of uint8 range"},
		{"int8 wrong type", func() error { _, err := Int8Data(NewUint8Tensor("u", nil, []uint8{1})); return err }, "data type is uint8, want int8"},
		{"uint8 wrong type", func() error { _, err := Uint8Data(NewInt8Tensor("i", nil, []int8{1})); return err }, "data type is int8, want uint8"},
		{"int8 count", func() error {
			_, err := Int8Data(&onnxpb.TensorProto{Name: "c", DataType: 3, Dims: []int64{3}, RawData: []byte{1, 2}})
			return err
		}, "raw_data holds 2 elements"},
		{"uint8 count", func() error {
			_, err := Uint8Data(&onnxpb.TensorProto{Name: "c", DataType: 2, Dims: []int64{3}, Int32Data: []int32{1}})
			return err
		}, "int32_data holds 1 elements"},
	}
	for _, e := range errs {
		if err := e.f(); err == nil || !strings.Contains(err.Error(), e.want) {
			t.Errorf("%s: err = %v, want one containing %q", e.name, err, e.want)
		}
	}
}

func TestNewTensorPanics(t *testing.T) {
	cases := map[string]func(){
		"float count": func() { NewFloatTensor("f", []int64{2, 2}, []float32{1, 2, 3}) },
		"int8 scalar": func() { NewInt8Tensor("i", nil, []int8{1, 2}) },
		"uint8 neg":   func() { NewUint8Tensor("u", []int64{-1}, nil) },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
	dims := []int64{1, 2}
	data := []uint8{1, 2}
	tp := NewUint8Tensor("copy", dims, data)
	dims[0], data[0] = 9, 9
	if tp.Dims[0] != 1 || tp.RawData[0] != 1 {
		t.Error("NewUint8Tensor does not copy dims and data")
	}
}

func TestElemTypeName(t *testing.T) {
	for dt, want := range map[int32]string{1: "float32", 2: "uint8", 3: "int8", 7: "int64", 10: "float16", 11: "float64", 16: "bfloat16", 99: "type(99)"} {
		if got := ElemTypeName(dt); got != want {
			t.Errorf("ElemTypeName(%d) = %q, want %q", dt, got, want)
		}
	}
}
