"""ONNX models read and written with numpy and our own protobuf wire-format code (no onnx)."""
