//go:generate protoc --go_out=. --go_opt=paths=source_relative "--go_opt=Monnx.proto=github.com/yedge/yedge/onnx/onnxpb;onnxpb" onnx.proto

package onnxpb
