// Package quant is yedge's post-training int8 quantizer for ONNX models. It
// carries NVIDIA pytorch-quantization's concepts to Go — fake and real
// tensor quantization (fake_tensor_quant / tensor_quant), QuantDescriptor
// (8-bit per-tensor activations, per-channel axis-0 conv weights),
// TensorQuantizer state (amax, scale, zero point), max and histogram
// calibrators (entropy, MSE, percentile) — and, as onnxruntime's
// quantization tool does, keeps calibration separate from Q/DQ placement:
//
//	Analyze  -> which tensors each target quantizes (TensorRT or CPU rules)
//	Calibrate-> run the FP32 model with those tensors as extra outputs and
//	            collect streaming statistics (cache-able)
//	Place    -> compute amax per tensor with a calibrator, share scales
//	            where the target needs them, insert QuantizeLinear /
//	            DequantizeLinear and write the model atomically.
//
// The package works on ONNX graphs and calibration tensors only; it knows
// nothing about cameras or images (callers supply an InputSource).
package quant
