// Package yolohead recognises the YOLOv5 Detect head of an ONNX model by
// its structure (not by node names) and cuts the model before the head's
// decode arithmetic, so that the runtime returns the head convolutions' raw
// outputs and the decode (sigmoid, grid, stride, anchors) runs in Go on the
// cells that pass the objectness test only.
//
// The decode YOLOv5 v6.x exports, per level i, is:
//
//	Reshape(conv_i, [b, na, no, ny, nx]) -> Transpose(0,1,3,4,2) -> Sigmoid
//	  -> Split(axis -1, [2, 2, no-4]) -> xy: (s*2 + grid) * stride
//	                                    wh: (s*2)^2 * anchor_grid
//	                                    conf: s
//	  -> Concat(axis -1) -> Reshape([b, -1, no])
//
// and the levels are concatenated on axis 1 into the [b, N, no] output.
package yolohead
