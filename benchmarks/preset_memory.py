"""Measure each preset's training memory per sample (the figure `presets/*.yml` carries).

    python benchmarks/preset_memory.py [--lq 64] [--scale 2] [--write]

For every ParagonSR2 variant (nano…xl and realtime…pro), one full training step (bf16 autocast, channels_last, AdamW, L1 +
SSIM) runs at two batch sizes; the slope of peak memory over batch is the per-sample cost and
the intercept the fixed cost. `--write` puts the figures into presets/*.yml (source: measured).
Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autosr.archs import build_network  # noqa: E402
from autosr.plan.presets import V2_VARIANTS, VARIANTS, load_preset  # noqa: E402
from autosr.train.losses import build_losses, total_loss  # noqa: E402


def peak_for(variant: str, batch: int, lq: int, scale: int) -> int:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build_network({"type": f"paragonsr2_{variant}", "scale": scale}).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    terms = build_losses(load_preset(variant).losses)
    for _ in range(2):  # the second step includes the optimizer state
        lq_t = torch.rand(batch, 3, lq, lq, device="cuda").contiguous(memory_format=torch.channels_last)
        gt_t = torch.rand(batch, 3, lq * scale, lq * scale, device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            sr = model(lq_t)
        loss, _ = total_loss(terms, sr.float(), gt_t)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_reserved()
    del model, opt
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lq", type=int, default=64)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--variants", help="comma list (default: every preset)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("preset_memory.py measures CUDA memory: run it on a machine with an NVIDIA GPU", file=sys.stderr)
        sys.exit(2)
    context = 0
    torch.zeros(1, device="cuda")
    context = torch.cuda.mem_get_info()[1] - torch.cuda.mem_get_info()[0]  # driver + context, roughly
    results = {}
    for variant in args.variants.split(",") if args.variants else VARIANTS + V2_VARIANTS:
        small, large = (8, 24) if variant in ("l", "xl", "pro") else (16, 48)
        p1, p2 = peak_for(variant, small, args.lq, args.scale), peak_for(variant, large, args.lq, args.scale)
        per_sample = (p2 - p1) / (large - small) / 2**20
        fixed = (p1 / 2**20 - small * per_sample) + context / 2**20
        results[variant] = {"per_sample_mib": round(per_sample, 2), "fixed_mib": round(max(fixed, 300.0))}
        print(json.dumps({"variant": variant, **results[variant]}), flush=True)
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "lq": args.lq, "scale": args.scale}))
    if args.write:
        for variant, r in results.items():
            path = ROOT / "presets" / f"{variant}.yml"
            text = path.read_text(encoding="utf-8")
            text = re.sub(r"per_sample_mib: [0-9.]+", f"per_sample_mib: {r['per_sample_mib']}", text)
            text = re.sub(r"fixed_mib: [0-9.]+", f"fixed_mib: {r['fixed_mib']}", text)
            where = f"{torch.cuda.get_device_name()}, torch {torch.__version__}, benchmarks/preset_memory.py"
            text = re.sub(r"source: \w+.*", f"source: measured  # {where}", text, count=1)  # memory's, not checkpointing's
            path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
