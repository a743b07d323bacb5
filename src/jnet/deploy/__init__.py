"""Deployment: what a model costs and how it runs on a device.

``profile`` (parameters, MACs, memory), ``timing`` (medians, alternated pairs, the machine),
``onnxrt`` (ONNX Runtime sessions), ``export`` (ONNX fp32/fp16/int8 with parity checks),
``benchmark`` (latency on PyTorch or ONNX Runtime), ``plan`` (the quality-latency front),
``predict`` (NIfTI and PNG files in, masks out), ``contract`` (what ``predict`` does before
and after the network, written into every export's metadata). Imports point one way:
benchmark -> export -> contract, onnxrt, timing; predict -> contract.
"""
