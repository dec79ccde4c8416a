"""Inference speed: autosr's upscale path in PyTorch (fp32 / fp16 / bf16) vs ONNX Runtime, in one run.

On the device machine (repository root; takes about 3 minutes on an H100 with the defaults):

    PYTHONPATH=. python3 benchmarks/upscale_speed.py --out $OUT/upscale_speed.jsonl
    PYTHONPATH=. python3 benchmarks/upscale_speed.py --compile --out $OUT/upscale_speed_compile.jsonl

Check it on a CPU with tiny sizes: `--height 64 --width 96 --seconds 0.5 --variants nano`.

What is timed, per variant (default nano and s, ×2, one 1920×1080 frame repeated: speed does not
depend on the pixels):

- `pytorch` / `autosr`: `autosr.use.upscale.upscale_tensor` with the tile `auto_tile` picks for that
  dtype (`--tile` forces one), under `torch.inference_mode` and autocast, output cast to float —
  exactly the tensor part of `upscale_picture` (no PNG decode/encode, no host↔device copies).
  autosr's upscale does not use channels_last, cudnn.benchmark or TF32 settings of its own, so
  neither does this by default (`--channels-last`, `--cudnn-benchmark` add/change that).
- `pytorch` / `whole`: the plain `model(x)` forward on the whole frame, no tiling (an OOM is
  reported as a result line with "error", not a crash).
- `onnxruntime` / `whole`: the same weights exported with `autosr.use.onnx_export.export_onnx`
  (fp32, and fp16 with fp16=True) to a temp folder; CUDAExecutionProvider when ORT lists it
  (input and output bound to CUDA tensors with IO binding: no host copies), else
  CPUExecutionProvider with a plain `session.run` on numpy arrays. Each line says which.
- `--compile`: `torch.compile(model)` whole-frame per dtype; the first call (compile + warm-up) is
  reported as compile_s, apart from the timed frames.

dtypes: fp32, fp16, bf16 on CUDA; fp32 and bf16 on CPU (`autosr upscale` itself refuses --bf16 on
the CPU; autocast allows it, so it is measured here anyway).

Weights are random (a fresh `build_network`): speed does not depend on weight values. `--model
PATH` times a real autosr .safetensors file instead (loaded with autosr.use.model_file.load_model).

Each measurement: warm-up calls, then timed repeats of k frames each (k chosen so a repeat takes
about --seconds/--repeats) until --seconds have passed; ms/frame is the median repeat (CUDA events
for PyTorch on CUDA; wall clock around synchronize otherwise), frames/s = 1000 / that median. Peak
memory is torch's max_memory_allocated (PyTorch only; for ORT on CUDA the growth of the device's
used memory is reported instead, as device_used_delta_mib). Output: one JSON line per result on
stdout (and in --out), then ratios measured in this run (one JSON line per variant), then a
Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosr.archs import build_network  # noqa: E402
from autosr.use.model_file import ModelInfo, describe, load_model  # noqa: E402
from autosr.use.onnx_export import export_onnx  # noqa: E402
from autosr.use.upscale import auto_tile, upscale_tensor  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MIB = 1024 * 1024
OVERHEAD_S = 1.5  # per measurement on a GPU: warm-up calls, cuDNN / ORT first-call setup (for the estimate)
EXPORT_S = 10.0  # per variant: two ONNX exports and their sessions (for the estimate)
COMPILE_S = 40.0  # per compiled dtype (for the estimate)


# ---------------------------------------------------------------- setup


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def models(args: argparse.Namespace) -> Iterator[tuple[str, nn.Module, ModelInfo, str]]:
    """(label, model on CPU in eval mode, its ModelInfo, where the weights came from)."""
    if args.model is not None:
        model, info = load_model(args.model)
        yield info.variant, model, info, str(args.model)
        return
    for variant in args.variants.split(","):
        opts = {"type": f"paragonsr2_{variant.strip()}", "scale": args.scale}
        model = build_network(opts).eval()
        yield variant.strip(), model, describe("(random weights)", {}, opts), "random"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def free_memory(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


# ---------------------------------------------------------------- timing


def measure(fn: Callable[[], Any], dev: torch.device, seconds: float, repeats: int, events: bool) -> dict[str, Any]:
    """Median ms/frame over timed repeats of k frames, after warm-up. `events`: CUDA events on
    torch's current stream (PyTorch work); else wall clock with a synchronize at both ends."""
    t0 = time.perf_counter()
    fn()
    sync(dev)
    first = time.perf_counter() - t0
    one = first
    for _ in range(2 if first < seconds / 4 else 1):  # a second warm-up call unless one call is a large share of the budget
        t0 = time.perf_counter()
        fn()
        sync(dev)
        one = min(one, time.perf_counter() - t0)  # the fastest, so one slow call on a busy host does not shrink the repeats
    one = max(one, 1e-6)
    k = max(1, round(seconds / repeats / one))
    per_frame: list[float] = []
    start_all = time.perf_counter()
    least = 3 if 3 * k * one <= 1.5 * seconds else 1  # a frame slower than the budget: one repeat
    while len(per_frame) < least or (time.perf_counter() - start_all < seconds and len(per_frame) < 10 * repeats):
        if events and dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(k):
                fn()
            end.record()
            end.synchronize()
            per_frame.append(start.elapsed_time(end) / k)
        else:
            sync(dev)
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            sync(dev)
            per_frame.append((time.perf_counter() - t0) * 1000 / k)
    med = statistics.median(per_frame)
    return {
        "frames_per_s": round(1000 / med, 3), "ms_per_frame": round(med, 3),
        "ms_min": round(min(per_frame), 3), "ms_max": round(max(per_frame), 3),
        "repeats": len(per_frame), "frames_per_repeat": k, "frames_timed": k * len(per_frame),
        "first_call_s": round(first, 3),
    }


@contextlib.contextmanager
def precision(dev: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """What upscale_picture enters: inference mode and autocast (off for fp32)."""
    with torch.inference_mode(), torch.autocast(device_type=dev.type, dtype=dtype, enabled=dtype != torch.float32):
        yield


# ---------------------------------------------------------------- the backends


def pytorch_results(label: str, model: nn.Module, info: ModelInfo, x: Tensor, dev: torch.device,
                    args: argparse.Namespace, dtypes: list[str]) -> Iterator[dict[str, Any]]:
    h, w = x.shape[-2:]
    layouts = [("pytorch", model, x)]
    if args.channels_last:
        layouts.append(("pytorch+channels_last", copy.deepcopy(model).to(memory_format=torch.channels_last),
                        x.contiguous(memory_format=torch.channels_last)))
    for backend, net, inp in layouts:
        for name in dtypes:
            dtype = DTYPES[name]
            free_memory(dev)
            tile = args.tile or auto_tile(info, dev, dtype)
            tiles = math.ceil(h / tile) * math.ceil(w / tile)

            def autosr_path(net: nn.Module = net, inp: Tensor = inp, dtype: torch.dtype = dtype, tile: int = tile) -> Tensor:
                with precision(dev, dtype):
                    return upscale_tensor(net, inp, info.scale, tile=tile).float()

            def whole(net: nn.Module = net, inp: Tensor = inp, dtype: torch.dtype = dtype) -> Tensor:
                with precision(dev, dtype):
                    return net(inp).float()

            yield run_one(label, backend, "autosr", name, dev, args, autosr_path, events=True,
                          tile=f"{tile} ({tiles} tile{'s' if tiles > 1 else ''})" + (" forced" if args.tile else ""))
            yield run_one(label, backend, "whole", name, dev, args, whole, events=True, tile="none")


def compile_results(label: str, model: nn.Module, x: Tensor, dev: torch.device, args: argparse.Namespace,
                    dtypes: list[str]) -> Iterator[dict[str, Any]]:
    compiled = torch.compile(model)
    for name in dtypes:
        dtype = DTYPES[name]
        free_memory(dev)

        def whole(dtype: torch.dtype = dtype) -> Tensor:
            with precision(dev, dtype):
                return compiled(x).float()

        extra: dict[str, Any] = {}
        try:
            t0 = time.perf_counter()
            whole()
            sync(dev)
            extra["compile_s"] = round(time.perf_counter() - t0, 2)
        except Exception as e:  # noqa: BLE001 - report the failure as a result line and go on
            yield {**base_line(label, "pytorch+compile", "whole", name, dev, "none"), "error": one_line(e)}
            continue
        yield {**run_one(label, "pytorch+compile", "whole", name, dev, args, whole, events=True, tile="none"), **extra}


def onnx_results(label: str, model: nn.Module, info: ModelInfo, x: Tensor, dev: torch.device,
                 args: argparse.Namespace, folder: Path) -> Iterator[dict[str, Any]]:
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError:
        yield {**base_line(label, "onnxruntime", "whole", "fp32", dev, "none"), "error": "onnxruntime is not installed"}
        return
    available = ort.get_available_providers()
    want_cuda = dev.type == "cuda" and "CUDAExecutionProvider" in available
    if want_cuda and hasattr(ort, "preload_dlls"):
        with contextlib.suppress(Exception):
            ort.preload_dlls()  # the CUDA / cuDNN libraries of the installed torch, where ORT looks for them
    providers: list[Any] = ["CPUExecutionProvider"]
    if want_cuda:
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": dev.index or 0}))
    _, _, h, w = x.shape
    for name, half in (("fp32", False), ("fp16", True)):
        path = folder / f"{label}_{name}.onnx"
        free_memory(dev)
        used_before = used_mib(dev)
        try:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx(model, path, in_chans=info.in_chans, fp16=half)
            export_s = time.perf_counter() - t0
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # noqa: BLE001 - report the failure as a result line and go on
            yield {**base_line(label, "onnxruntime", "whole", name, dev, "none"), "error": one_line(e)}
            continue
        used = session.get_providers()[0]
        np_dtype = np.float16 if half else np.float32
        torch_dtype = torch.float16 if half else torch.float32
        if used == "CUDAExecutionProvider":
            xin = x.to(torch_dtype).contiguous()
            yout = torch.empty((1, info.in_chans, h * info.scale, w * info.scale), dtype=torch_dtype, device=dev)
            binding = session.io_binding()
            binding.bind_input("input", "cuda", dev.index or 0, np_dtype, tuple(xin.shape), xin.data_ptr())
            binding.bind_output("output", "cuda", dev.index or 0, np_dtype, tuple(yout.shape), yout.data_ptr())
            torch.cuda.synchronize(dev)  # xin is written on torch's stream; ORT reads it on its own

            def fn(session: Any = session, binding: Any = binding) -> None:
                session.run_with_iobinding(binding)

            how = "io_binding (input and output on the GPU)"
        else:
            arr = x.to(torch_dtype).cpu().numpy()

            def fn(session: Any = session, arr: np.ndarray = arr) -> None:
                session.run(None, {"input": arr})

            how = "plain session.run (numpy in and out)"
        line = run_one(label, "onnxruntime", "whole", name, dev, args, fn, events=False, tile="none", peak=False)
        if used == "CUDAExecutionProvider":
            note = ""
        elif dev.type != "cuda":
            note = "ran on the CPU: the device is the CPU"
        else:
            note = ("ran on the CPU: CUDAExecutionProvider " + ("failed to load" if want_cuda else f"is not in {available}")
                    + " (onnxruntime-gpu missing?)")
        line.update(provider=used, binding=how, export_s=round(export_s, 2), onnx_mib=round(path.stat().st_size / MIB, 3),
                    onnxruntime=ort.__version__)
        if dev.type == "cuda":
            line["device_used_delta_mib"] = round(used_mib(dev) - used_before, 1)
        if note:
            line["note"] = note
        yield line
        del session
        path.unlink(missing_ok=True)


def used_mib(dev: torch.device) -> float:
    if dev.type != "cuda":
        return 0.0
    free, total = torch.cuda.mem_get_info(dev)
    return (total - free) / MIB


# ---------------------------------------------------------------- lines


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def base_line(label: str, backend: str, path: str, dtype: str, dev: torch.device, tile: str) -> dict[str, Any]:
    return {
        "kind": "result", "variant": label, "backend": backend, "path": path, "dtype": dtype, "tile": tile,
        "frames_per_s": None, "ms_per_frame": None, "peak_mib": None,
        "device": DEVICE_NAME, "torch": torch.__version__,
    }


def run_one(label: str, backend: str, path: str, dtype: str, dev: torch.device, args: argparse.Namespace,
            fn: Callable[[], Any], *, events: bool, tile: str, peak: bool = True) -> dict[str, Any]:
    line = base_line(label, backend, path, dtype, dev, tile)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        line.update(measure(fn, dev, args.seconds, args.repeats, events))
    except torch.cuda.OutOfMemoryError as e:
        line["error"] = "out of memory: " + one_line(e)
    except Exception as e:  # noqa: BLE001 - one failing config must not lose the others
        line["error"] = one_line(e)
    if peak and dev.type == "cuda":
        line["peak_mib"] = round(torch.cuda.max_memory_allocated(dev) / MIB, 1)
    free_memory(dev)
    return line


DEVICE_NAME = "?"


def ratios(label: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """frames/s of one config over another, both from this run; null where either is missing."""
    fps = {(r["backend"], r["path"], r["dtype"]): r["frames_per_s"] for r in lines
           if r.get("kind") == "result" and r["variant"] == label}

    def ratio(a: tuple[str, str, str], b: tuple[str, str, str]) -> float | None:
        x, y = fps.get(a), fps.get(b)
        return round(x / y, 3) if x and y else None

    out: dict[str, Any] = {"kind": "ratios", "variant": label, "of": "frames/s, numerator over denominator"}
    for d in ("fp16", "bf16"):
        out[f"pytorch_autosr_{d}_over_fp32"] = ratio(("pytorch", "autosr", d), ("pytorch", "autosr", "fp32"))
        out[f"pytorch_whole_{d}_over_fp32"] = ratio(("pytorch", "whole", d), ("pytorch", "whole", "fp32"))
    for d in DTYPES:
        out[f"pytorch_whole_over_autosr_{d}"] = ratio(("pytorch", "whole", d), ("pytorch", "autosr", d))
        out[f"compile_over_eager_whole_{d}"] = ratio(("pytorch+compile", "whole", d), ("pytorch", "whole", d))
        out[f"channels_last_over_contiguous_autosr_{d}"] = ratio(("pytorch+channels_last", "autosr", d), ("pytorch", "autosr", d))
    for d in ("fp32", "fp16"):
        out[f"onnx_{d}_over_pytorch_whole_{d}"] = ratio(("onnxruntime", "whole", d), ("pytorch", "whole", d))
        out[f"onnx_{d}_over_pytorch_autosr_{d}"] = ratio(("onnxruntime", "whole", d), ("pytorch", "autosr", d))
    out["onnx_fp16_over_fp32"] = ratio(("onnxruntime", "whole", "fp16"), ("onnxruntime", "whole", "fp32"))
    return {k: v for k, v in out.items() if v is not None}


def table(lines: list[dict[str, Any]]) -> str:
    rows = ["| variant | backend | path | dtype | tile | frames/s | ms/frame | peak MiB | note |",
            "|---|---|---|---|---|---:|---:|---:|---|"]
    for r in lines:
        if r.get("kind") != "result":
            continue
        note = r.get("error") or r.get("note") or ""
        if r["backend"] == "onnxruntime" and not r.get("error"):
            note = f"{r.get('provider', '')}, {r.get('binding', '').split(' ')[0]}" + (f"; {note}" if note else "")
        if r.get("compile_s") is not None:
            note = f"compile {r['compile_s']} s"
        fps = "—" if r["frames_per_s"] is None else f"{r['frames_per_s']:.2f}"
        ms = "—" if r["ms_per_frame"] is None else f"{r['ms_per_frame']:.2f}"
        peak = "—" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        rows.append(f"| {r['variant']} | {r['backend']} | {r['path']} | {r['dtype']} | {r['tile']} | {fps} | {ms} | {peak} | {note} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- main


def main() -> None:
    global DEVICE_NAME
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="nano,s", help="comma list of ParagonSR2 variants (random weights)")
    parser.add_argument("--model", type=Path, help="an autosr .safetensors model file instead of --variants")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--height", type=int, default=1080, help="LR frame height")
    parser.add_argument("--width", type=int, default=1920, help="LR frame width")
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available)")
    parser.add_argument("--dtypes", default=None, help="comma list of fp32,fp16,bf16 (default: all on CUDA, fp32,bf16 on CPU)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per measurement (default 5 on GPU, 2 on CPU)")
    parser.add_argument("--repeats", type=int, default=20, help="aimed-at number of timed repeats per measurement")
    parser.add_argument("--tile", type=int, default=None, help="force the LR tile of the autosr path (default: auto_tile)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile(model), whole frame, per dtype")
    parser.add_argument("--channels-last", action="store_true", help="also the PyTorch runs with channels_last model and input")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True (autosr upscale leaves it off)")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--out", type=Path, help="also write the JSON lines to this file")
    args = parser.parse_args()

    dev = torch.device(args.device) if args.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.seconds is None:
        args.seconds = 5.0 if dev.type == "cuda" else 2.0
    dtypes = args.dtypes.split(",") if args.dtypes else (["fp32", "fp16", "bf16"] if dev.type == "cuda" else ["fp32", "bf16"])
    if unknown := [d for d in dtypes if d not in DTYPES]:
        parser.error(f"unknown dtype(s) {unknown}; use fp32, fp16, bf16")
    if dev.type == "cuda":
        torch.cuda.set_device(dev.index if dev.index is not None else torch.cuda.current_device())  # torch 2.11 wants an index
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    DEVICE_NAME = device_name(dev)

    labels = [args.model.name] if args.model else args.variants.split(",")
    per_variant = len(dtypes) * 2 * (2 if args.channels_last else 1) + (len(dtypes) if args.compile else 0) + (0 if args.no_onnx else 2)
    overhead = OVERHEAD_S if dev.type == "cuda" else 0.5
    estimate = len(labels) * (per_variant * (args.seconds + overhead) + (0 if args.no_onnx else EXPORT_S)
                              + (len(dtypes) * COMPILE_S if args.compile else 0))
    lines: list[dict[str, Any]] = []
    out = args.out.open("w", encoding="utf-8") if args.out else None

    def emit(line: dict[str, Any]) -> None:
        lines.append(line)
        text = json.dumps(line)
        print(text, flush=True)
        if out is not None:
            out.write(text + "\n")
            out.flush()

    emit({
        "kind": "plan", "device": DEVICE_NAME, "torch": torch.__version__, "cuda": torch.version.cuda,
        "variants": labels, "scale": args.scale, "lr_size": [args.height, args.width], "dtypes": dtypes,
        "measurements": per_variant * len(labels), "seconds_each": args.seconds, "estimated_total_s": round(estimate),
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32, "channels_last_extra": args.channels_last,
        "weights": str(args.model) if args.model else "random (speed does not depend on weight values)",
        "cpu_threads": torch.get_num_threads(), "pid": os.getpid(),
    })
    start = time.perf_counter()
    torch.manual_seed(0)
    x = torch.rand(1, 3, args.height, args.width, device=dev)
    with tempfile.TemporaryDirectory(prefix="autosr-upscale-speed-") as tmp:
        for label, model, info, _source in models(args):
            model.to(dev)
            frame = x if info.in_chans == 3 else x[:, :info.in_chans].contiguous()
            print(f"[{time.perf_counter() - start:6.1f} s] {label}: pytorch", file=sys.stderr, flush=True)
            for line in pytorch_results(label, model, info, frame, dev, args, dtypes):
                emit(line)
            if args.compile:
                print(f"[{time.perf_counter() - start:6.1f} s] {label}: torch.compile", file=sys.stderr, flush=True)
                for line in compile_results(label, model, frame, dev, args, dtypes):
                    emit(line)
                torch._dynamo.reset()
            if not args.no_onnx:
                print(f"[{time.perf_counter() - start:6.1f} s] {label}: onnxruntime", file=sys.stderr, flush=True)
                for line in onnx_results(label, model, info, frame, dev, args, Path(tmp)):
                    emit(line)
            emit(ratios(label, lines))
            model.cpu()
            free_memory(dev)
    emit({"kind": "done", "total_s": round(time.perf_counter() - start, 1), "estimated_total_s": round(estimate)})
    if out is not None:
        out.close()
    print()
    print(table(lines))


if __name__ == "__main__":
    main()
