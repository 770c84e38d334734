"""Deployment: the streaming CTC model as one ONNX step that sherpa-onnx runs (docs/deploy.md)."""
