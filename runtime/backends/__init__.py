"""Policy backends (ONNX Runtime, Lava), each imported lazily on first use."""
