// Package onnx reads, inspects, edits and atomically writes ONNX models.
//
// It is pure Go: models are decoded with google.golang.org/protobuf into the
// generated types of package [github.com/yedge/yedge/onnx/onnxpb], so no
// ONNX Runtime or cgo is needed.
//
// The main entry points are:
//
//   - [Load] and [Parse] decode and sanity-check a model; [Model.Save] writes
//     it back deterministically and atomically (temp file, fsync, rename) via
//     [WriteFileAtomic].
//   - [Graph] wraps a GraphProto with producer/consumer/initializer indexes and
//     editing helpers ([Graph.TopoSort], [Graph.UniqueName],
//     [Graph.ReplaceInput], [Graph.ConstTensor]) used when inserting
//     QuantizeLinear/DequantizeLinear nodes.
//   - [FloatData], [Int8Data], [Uint8Data] and the New*Tensor constructors
//     convert between TensorProto and Go slices.
//   - [Inspect] summarises a model (I/O, op counts, parameters and the
//     quantization scheme) as a JSON-friendly [Report].
//
// Errors name the file (or, for [Parse], the caller-supplied name) at fault.
package onnx
