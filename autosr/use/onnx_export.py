"""ONNX export with dynamic batch, height and width (fp32 or fp16, opset ≥ 17)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, *, opset: int = OPSET, in_chans: int = 3,
                static: tuple[int, int] | None = None, fp16: bool = False) -> Path:
    """Write `model` (LR → SR) to `path` as ONNX with input "input" and output "output".

    Uses the TorchScript-based exporter: it needs no onnxscript and records the shape arithmetic
    (window padding, reshapes) symbolically, so one export serves every input size. With
    ``static=(h, w)`` the graph takes only 1×in_chans×h×w (what some TensorRT setups want). With
    ``fp16`` weights, input and output are float16 (half the file; what chaiNNer and TensorRT take
    as an fp16 model); the caller's model is left as it is.
    """
    path = Path(path)
    if fp16:
        model = copy.deepcopy(model).half()
    was_training = model.training
    model.eval()
    # An odd, non-multiple-of-8 size so no shape-dependent branch is specialised away.
    h, w = static or (19, 23)
    param = next(model.parameters())
    example = torch.rand(1, in_chans, h, w, device=param.device, dtype=param.dtype)
    dims: dict[int, str] = {0: "batch", 2: "height", 3: "width"}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["output"],
                dynamic_axes=None if static else {"input": dims, "output": dims},
            )
    finally:
        model.train(was_training)
    return path
