"""The networks: frame backbones (backbones/, one registry), how they run (runtime: PyTorch
precisions or ONNX Runtime), the temporal heads with their padding and test-crop ops (heads), the
feature cache (cache) and checkpoints (checkpoint). Imports data, never training or inference."""
