"""Export stage: policy bundles for ONNX, Lava and NIR, with parity checks."""
