"""Prediction: the result types and the code both engines share (results), PyTorch predictors
(predict), the same on ONNX Runtime without torch (onnx_predict), folders of videos (batch),
annotated videos (render) and ONNX export (export). Imports data and models, never training."""
