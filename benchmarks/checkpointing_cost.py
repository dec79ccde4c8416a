"""What `use_checkpointing: true` saves in memory and costs in time, for the realtime…pro family.

    python benchmarks/checkpointing_cost.py                  # every variant, lq 64, ×2
    python benchmarks/checkpointing_cost.py --variants stream --rounds 1   # a quick look
    python benchmarks/checkpointing_cost.py --json out.json

With checkpointing each block keeps only its input for the backward pass and runs its forward again
there. For each variant, one training step (forward, L1, backward) with and without:
  memory  peak of the live tensors per sample: the slope of the peak over batch 1 → 2 (CUDA: the
          allocator's peak, bf16 autocast; CPU: the allocation timeline of the profiler, fp32)
  time    the step's wall time at batch 2, with and without in alternation (A B, B A), median
and prints share = memory with / without and slowdown = time with / without: the two figures the
planner reads from presets/<variant>.yml (`checkpointing:`).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosr.archs import build_network  # noqa: E402
from autosr.plan.presets import V2_VARIANTS  # noqa: E402


def _step(net: torch.nn.Module, x: torch.Tensor, device: torch.device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        y = net(x)
    y.float().abs().mean().backward()  # L1 against zero: the loss does not matter here, the graph does


def peak_mib(net: torch.nn.Module, batch: int, lq: int, device: torch.device) -> float:
    """Peak MiB of tensors allocated during one step, beyond what was live before it."""
    x = torch.rand(batch, 3, lq, lq, device=device)
    net.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _step(net, x, device)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(net, x, device)
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:  # allocations are positive, frees negative
        live += event.nbytes()
        peak = max(peak, live)
    return peak / 2**20


def step_seconds(net: torch.nn.Module, batch: int, lq: int, device: torch.device) -> float:
    x = torch.rand(batch, 3, lq, lq, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    _step(net, x, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(variant: str, lq: int, scale: int, rounds: int, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    nets = {on: build_network({"type": f"paragonsr2_{variant}", "scale": scale, "use_checkpointing": on}).to(device).train()
            for on in (False, True)}
    per_sample = {on: peak_mib(net, 2, lq, device) - peak_mib(net, 1, lq, device) for on, net in nets.items()}
    for net in nets.values():
        step_seconds(net, 2, lq, device)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for on in (False, True) if r % 2 == 0 else (True, False):  # A B, then B A
            times[on].append(step_seconds(nets[on], 2, lq, device))
    off_s, on_s = statistics.median(times[False]), statistics.median(times[True])
    return {"per_sample_mib": round(per_sample[False], 2), "checkpointed_mib": round(per_sample[True], 2),
            "share": round(per_sample[True] / per_sample[False], 3), "step_s": round(off_s, 4),
            "checkpointed_step_s": round(on_s, 4), "slowdown": round(on_s / off_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(V2_VARIANTS), help="comma list (default: realtime,stream,photo,pro)")
    parser.add_argument("--lq", type=int, default=64)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="timed steps per setting, alternating (default 4)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    print(f"{where}, torch {torch.__version__}, lq {args.lq} ×{args.scale}, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}", flush=True)
    results = {}
    for variant in args.variants.split(","):
        results[variant] = measure(variant.strip(), args.lq, args.scale, args.rounds, device)
        r = results[variant]
        print(f"{variant:>9}: {r['per_sample_mib']:8.1f} → {r['checkpointed_mib']:7.1f} MiB/sample (share {r['share']:.3f}), "
              f"step {r['step_s']:.3f} → {r['checkpointed_step_s']:.3f} s (slowdown ×{r['slowdown']:.2f})", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": where, "torch": torch.__version__, "lq": args.lq, "scale": args.scale,
                                         "results": results}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
