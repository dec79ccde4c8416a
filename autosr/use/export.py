"""`autosr export`: a run's model (or a model file) as ONNX, verified with onnxruntime, and/or as a
standalone, shareably named safetensors file with its metadata."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.fsutil import check_creatable
from autosr.safetensors_io import save_safetensors
from autosr.use.model_file import ModelInfo, load_model, model_metadata
from autosr.use.upscale import find_model

TOLERANCE = 1e-4  # fp32 ONNX Runtime vs PyTorch, max abs difference on [0, 1] images
FP16_TOLERANCE = 1 / 255  # fp16 ONNX vs fp32 PyTorch: within one level of an 8-bit image
CHECK_SIZES = ((24, 31), (41, 36))  # two LR sizes, neither a multiple of the attention window


@dataclass
class ExportResult:
    info: ModelInfo
    onnx: Path | None = None
    safetensors: Path | None = None
    checks: list[tuple[tuple[int, int], float]] = field(default_factory=list)  # (LR h×w, max abs diff)


def model_name(target: Path, info: ModelInfo) -> str:
    """The run's name: the run folder, or the folder above models/, else the file's stem."""
    if target.is_dir():
        raw = target.resolve().name
    elif info.path.parent.name == "models":
        raw = info.path.resolve().parent.parent.name
    else:
        raw = info.path.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_") or "model"


def default_file_name(info: ModelInfo, name: str) -> str:
    """`{scale}x_{name}_{variant}_{iter//1000}k.safetensors`, the names people share."""
    return f"{info.scale}x_{name}_{info.variant}_{(info.iteration or 0) // 1000}k.safetensors"


def write_standalone(model: nn.Module, info: ModelInfo, dest: Path, name: str) -> Path:
    """A copy of the weights (the alpha buffer included) with complete metadata under ``dest``
    (a folder, or a .safetensors path)."""
    path = dest / default_file_name(info, name) if dest.is_dir() or not dest.suffix else dest
    if path.suffix != ".safetensors":
        raise AutosrError(f"--safetensors {dest}: the file must end in .safetensors", "or pass a folder")
    if path.exists() and path.resolve() == info.path.resolve():
        raise AutosrError(f"--safetensors {path} is the model being exported", "write the copy elsewhere")
    meta = model_metadata(info.network_opts, iteration=info.iteration or 0, metrics=info.metrics or None,
                          training=info.training or None)
    meta["name"] = name
    save_safetensors(model.state_dict(), path, meta)
    return path


def verify_onnx(model: nn.Module, path: Path, in_chans: int, sizes: tuple[tuple[int, int], ...]) -> list[tuple[tuple[int, int], float]]:
    """Max abs difference between onnxruntime (CPU) and PyTorch (fp32, CPU) at each LR size. An fp16 graph
    gets the same input rounded to float16."""
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError:
        raise AutosrRuntimeError(f"{path} was written but not verified: onnxruntime is not installed",
                                 "pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: fp16 graphs log a warning per node the CPU cannot pre-compute
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    half = session.get_inputs()[0].type == "tensor(float16)"
    rng = np.random.default_rng(0)
    checks = []
    model = model.float().cpu().eval()
    for h, w in sizes:
        x = rng.random((1, in_chans, h, w), dtype=np.float32)
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        got = session.run(["output"], {"input": x.astype(np.float16) if half else x})[0].astype(np.float32)
        if got.shape != want.shape:
            raise AutosrRuntimeError(f"{path}: ONNX gives {got.shape} for a {h}×{w} input, PyTorch {want.shape}")
        checks.append(((h, w), float(np.abs(got - want).max())))
    return checks


def _require_onnx_packages() -> None:
    """ONNX export writes with `onnx` and checks with `onnxruntime`: both optional extras. Refuse before
    anything is written rather than fail inside the exporter."""
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise AutosrError(f"--onnx needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
                          'pip install "autosr[onnx]" (or: pip install onnx onnxruntime)')


def export(target: Path, *, onnx_path: Path | None = None, opset: int = 17, static: tuple[int, int] | None = None,
           safetensors_path: Path | None = None, name: str | None = None, fp16: bool = False,
           say: Callable[[str], None] = print) -> ExportResult:
    """Export; raises AutosrRuntimeError (exit 1) when ONNX and PyTorch differ by more than TOLERANCE
    (FP16_TOLERANCE for an fp16 graph)."""
    from autosr.use.onnx_export import export_onnx

    if onnx_path is None and safetensors_path is None:
        raise AutosrError("nothing to export", "pass --onnx PATH and/or --safetensors PATH")
    if fp16 and onnx_path is None:
        raise AutosrError("--fp16 is for the ONNX file", "pass --onnx PATH with it (model files keep fp32 weights)")
    if static is not None and min(static) < 1:
        raise AutosrError(f"--static {static[0]} {static[1]}: sizes must be ≥ 1")
    if opset < 17:
        raise AutosrError(f"--opset {opset} is too old", "ParagonSR2 needs opset 17 or newer")
    if onnx_path is not None:
        _require_onnx_packages()
    for path, flag in ((onnx_path, "--onnx"), (safetensors_path, "--safetensors")):
        if path is not None:
            check_creatable(path.parent, flag)  # one line before the export's work
    src, fallback = find_model(target)
    model, info = load_model(src, network_opts=fallback)
    for note in info.notes:
        say(f"note: {note}")
    result = ExportResult(info)
    run_name = name or model_name(target, info)
    if safetensors_path is not None:
        result.safetensors = write_standalone(model, info, safetensors_path, run_name)
        say(f"wrote {result.safetensors}")
    if onnx_path is not None:
        if onnx_path.exists() and onnx_path.resolve() == info.path.resolve():
            raise AutosrError(f"--onnx {onnx_path} is the model being exported", "write the ONNX file elsewhere")
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, onnx_path, opset=opset, in_chans=info.in_chans, static=static, fp16=fp16)
        result.onnx = onnx_path
        shape = f"static 1×{info.in_chans}×{static[0]}×{static[1]}" if static else "dynamic batch, height and width"
        say(f"wrote {onnx_path} ({'fp16' if fp16 else 'fp32'}, opset {opset}, {shape}, ×{info.scale})")
        result.checks = verify_onnx(model, onnx_path, info.in_chans, (static,) if static else CHECK_SIZES)
        for (h, w), diff in result.checks:
            say(f"  onnxruntime vs PyTorch at {h}×{w}: max abs difference {diff:.2e}")
        worst, limit = max(d for _, d in result.checks), FP16_TOLERANCE if fp16 else TOLERANCE
        if not worst <= limit:
            raise AutosrRuntimeError(f"{onnx_path}: ONNX differs from PyTorch by {worst:.2e} (> {limit:.2g})",
                                     "try another --opset, or report it")
    return result
