"""Estimate a preset's training memory per sample without a GPU (the `source: estimate` in presets/*.yml).

    python benchmarks/preset_memory_cpu.py paragonsr2_photo [paragonsr2_nano ...]

One training forward (lq 64, ×2, bf16 autocast, the preset's losses) at batch 1 and 3 on the CPU; the
bytes of the tensors autograd saves for backward (unique storages) grow by the per-sample figure. On
an H200, benchmarks/preset_memory.py measured nano…m at this figure + 5.5–8.1 MiB (the HR-side
output, loss maps and transients), so the presets add 6.5. A GPU measurement replaces it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autosr.archs import build_network  # noqa: E402
from autosr.plan.presets import load_preset  # noqa: E402
from autosr.train.losses import build_losses, total_loss  # noqa: E402

GPU_EXTRA_MIB = 6.5


def saved_for_backward(arch: str, batch: int, lq: int = 64, scale: int = 2) -> int:
    torch.manual_seed(0)
    model = build_network({"type": arch, "scale": scale}).train()
    terms = build_losses(load_preset(arch).losses)
    storages: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    x, gt = torch.rand(batch, 3, lq, lq), torch.rand(batch, 3, lq * scale, lq * scale)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            sr = model(x)
        total_loss(terms, sr.float(), gt)
    return sum(storages.values())


def main() -> None:
    torch.set_num_threads(1)
    for arch in sys.argv[1:] or ["paragonsr2_nano"]:
        per = (saved_for_backward(arch, 3) - saved_for_backward(arch, 1)) / 2 / 2**20
        print(f"{arch}: {per:.2f} MiB saved for backward per sample → per_sample_mib ≈ {per + GPU_EXTRA_MIB:.1f}")


if __name__ == "__main__":
    main()
