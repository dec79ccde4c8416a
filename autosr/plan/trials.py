"""Short training trials on the user's own pairs, scored on held-out pairs, that choose the batch size and
the learning rate together for progress per second — not samples per second.

Each candidate trains a fresh network (same seed, same crops) for the same wall time on this device, with
the run's warm-up and its LR halvings at 75% and 87.5% of the time, then its PSNR gain over bicubic on
held-out crops is its score. Crops come from a pool cut once in GPU memory, so the data pipeline's own cost
(~15% of a nano step at batch 64) is not in the trials: it favours neither candidate much. The measured default (batch 64, lr 2e-3 for
nano…s, docs/budget.md) stays unless a candidate beats it by more than `MARGIN_DB`: a few seconds of
training only rank settings roughly, and the default is known to be good on real photographs.

Bounded in cost: at most `TRIAL_SHARE` of the time budget and `TRIALS_MAX_S` in all; too short a budget
for trials that mean anything skips them (the plan says why). Selection (`choose`) and the cost bound
(`trial_seconds`) are pure; `run_trials` does the training.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

TRIAL_SHARE = 0.04  # of the budget; init's speed probe takes ≤ 1% more: calibration stays within 5%
TRIALS_MAX_S = 90.0  # in all, whatever the budget
MIN_TRIAL_S = 12.0  # below this a trial is still warming up: its score says little
MARGIN_DB = 0.05  # a candidate must beat the default by this much to replace it
MAX_TRAIN_IMAGES = 16  # crops come from at most this many training pairs (decoded once)
MAX_VAL_IMAGES = 4
VAL_CROP = 96  # LR side of each held-out crop
POOL = 2048  # crops cut once per trial set; each step draws a batch of them


@dataclass(frozen=True)
class Candidate:
    batch: int
    lr: float
    label: str  # "default", "lr ×2", …


@dataclass(frozen=True)
class TrialResult:
    candidate: Candidate
    iterations: int
    seconds: float
    gain_db: float | None  # held-out PSNR over bicubic; None when the trial failed
    note: str = ""

    def describe(self) -> str:
        c = self.candidate
        head = f"batch {c.batch}, lr {c.lr:.2g} ({c.label})"
        if self.gain_db is None:
            return f"{head}: failed ({self.note})"
        return f"{head}: {self.gain_db:+.3f} dB over bicubic after {self.iterations} iterations in {self.seconds:.1f} s"


def candidates(default_batch: int, default_lr: float, max_batch: int) -> list[Candidate]:
    """The default, the LR halved and doubled, and the batch halved and doubled (LR √-scaled) where it fits."""
    out = [Candidate(default_batch, default_lr, "default"),
           Candidate(default_batch, default_lr / 2, "lr ×0.5"),
           Candidate(default_batch, default_lr * 2, "lr ×2")]
    if default_batch >= 16:
        out.append(Candidate(default_batch // 2, float(f"{default_lr / math.sqrt(2):.3g}"), "batch ×0.5"))
    if default_batch * 2 <= max_batch:
        out.append(Candidate(default_batch * 2, float(f"{default_lr * math.sqrt(2):.3g}"), "batch ×2"))
    return out


def trial_seconds(budget_s: float | None, count: int, on_gpu: bool, share: float = TRIAL_SHARE) -> tuple[float | None, str]:
    """Seconds per trial within the cost bound (`share` of the budget, at most TRIALS_MAX_S), or None and why
    the trials are skipped."""
    if not on_gpu:
        return None, "no CUDA GPU: the measured defaults apply (trials on a CPU would take the whole budget)"
    if not budget_s:
        return None, "no --time: the measured defaults apply (trials are sized from the budget)"
    total = min(TRIALS_MAX_S, share * budget_s)
    each = total / max(1, count)
    if each < MIN_TRIAL_S:
        shortest = math.ceil(MIN_TRIAL_S * count / share / 60)
        return None, (f"the budget is too short for trials that mean anything ({count} × {each:.1f} s < {MIN_TRIAL_S:.0f} s "
                      f"each; from --time {shortest}m): the measured defaults apply")
    return each, f"{count} trials of {each:.0f} s ({total:.0f} s, {total / budget_s:.1%} of the budget)"


def choose(results: Sequence[TrialResult], default: Candidate, margin_db: float = MARGIN_DB) -> tuple[Candidate, str]:
    """The best-scoring candidate if it beats the default by more than `margin_db`, else the default."""
    scored = [r for r in results if r.gain_db is not None]
    if not scored:
        return default, "every trial failed: the measured default"
    best = max(scored, key=lambda r: r.gain_db or 0.0)
    base = next((r for r in scored if r.candidate == default), None)
    if base is None:
        return best.candidate, f"trial on your data: the default failed; best {best.describe()}"
    assert best.gain_db is not None and base.gain_db is not None
    if best.candidate == default or best.gain_db - base.gain_db <= margin_db:
        others = [r for r in scored if r.candidate != default]
        runner_up = max(others, key=lambda r: r.gain_db or 0.0).describe() if others else "no other trial finished"
        return default, (f"trials on your data kept the measured default ({base.gain_db:+.3f} dB over bicubic); best other: "
                         f"{runner_up} — not more than {margin_db} dB better")
    return best.candidate, (f"trial on your data: {best.describe()}, {best.gain_db - base.gain_db:+.3f} dB over the "
                            f"default's {base.gain_db:+.3f} dB (batch {default.batch}, lr {default.lr:.2g})")


def _decay(fraction: float) -> float:
    """The run's step decay (halved at 75% and 87.5%), compressed into the trial: scoring annealed weights
    keeps a high LR's fast but noisy start from looking better than it ends (short-horizon bias)."""
    return 1.0 if fraction < 0.75 else (0.5 if fraction < 0.875 else 0.25)


def _crops(images: Sequence[tuple[Any, Any]], lq: int, scale: int, count: int, seed: int) -> tuple[Any, Any]:
    """`count` random (LR, HR) crop pairs, uint8, stacked."""
    import torch

    rng = random.Random(seed)
    lqs, gts = [], []
    for _ in range(count):
        lr_img, hr_img = images[rng.randrange(len(images))]
        h, w = lr_img.shape[-2:]
        y, x = rng.randrange(h - lq + 1), rng.randrange(w - lq + 1)
        lqs.append(lr_img[:, y:y + lq, x:x + lq])
        gts.append(hr_img[:, y * scale:(y + lq) * scale, x * scale:(x + lq) * scale])
    return torch.stack(lqs), torch.stack(gts)


def _centre(lr_img: Any, hr_img: Any, side: int, scale: int) -> tuple[Any, Any]:
    h, w = lr_img.shape[-2:]
    s = min(side, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return lr_img[:, y:y + s, x:x + s], hr_img[:, y * scale:(y + s) * scale, x * scale:(x + s) * scale]


def run_trials(*, network: dict[str, Any], losses: list[dict[str, Any]], optim: dict[str, Any], train_pairs: Sequence[Any],
               val_pairs: Sequence[Any], scale: int, lq_size: int, precision: str, channels_last: bool,
               warmup: int, cands: Sequence[Candidate], seconds_each: float, seed: int = 1024,
               device: str | None = None, clock: Callable[[], float] = time.perf_counter,
               bound_s: float | None = None) -> list[TrialResult]:
    """Train each candidate for `seconds_each` on crops of the user's pairs and score it on held-out crops.
    The whole call stops starting trials once `bound_s` (default `seconds_each × len(cands) × 1.5`) has
    passed, model builds and scoring included, so its cost stays bounded even when something is slow."""
    import torch

    from autosr.images import load_val_pairs
    from autosr.train.losses import build_losses
    from autosr.train.metrics import calculate_psnr

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if dev.type == "cuda" else None
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    picked = random.Random(seed).sample(list(train_pairs), min(MAX_TRAIN_IMAGES, len(train_pairs)))
    images = [(lq, gt) for _, lq, gt in load_val_pairs(picked, scale) if min(lq.shape[-2:]) >= lq_size]
    held = [_centre(lq, gt, VAL_CROP, scale) for _, lq, gt in load_val_pairs(list(val_pairs)[:MAX_VAL_IMAGES], scale)]
    if not images or not held:
        return [TrialResult(c, 0, 0.0, None, "no training image as large as the patch, or no held-out pair") for c in cands]
    pool_lq, pool_gt = (t.to(dev) for t in _crops(images, lq_size, scale, POOL, seed))
    bicubic = [calculate_psnr(torch.nn.functional.interpolate(lq[None].float() / 255, scale_factor=scale, mode="bicubic",
                                                              align_corners=False).clamp(0, 1), gt[None].float() / 255, scale)
               for lq, gt in held]
    terms = [term for term in build_losses(losses) if term.kind == "pixel"]  # trials run for fidelity plans
    started, bound = clock(), bound_s if bound_s is not None else seconds_each * len(cands) * 1.5
    results = []
    for cand in cands:
        if clock() - started > bound:
            results.append(TrialResult(cand, 0, 0.0, None, "skipped: the trials' time bound was reached"))
            continue
        results.append(_one_trial(cand, network, terms, optim, pool_lq, pool_gt, held, bicubic, scale, warmup, seconds_each,
                                  seed, dev, dtype, fmt, clock))
    return results


def _one_trial(cand: Candidate, network: dict[str, Any], terms: Any, optim: dict[str, Any], pool_lq: Any, pool_gt: Any,
               held: Sequence[tuple[Any, Any]], bicubic: Sequence[float], scale: int, warmup: int, seconds: float, seed: int,
               dev: Any, dtype: Any, fmt: Any, clock: Callable[[], float]) -> TrialResult:
    import torch

    from autosr.archs import build_network
    from autosr.train.losses import total_loss
    from autosr.train.metrics import calculate_psnr

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    try:
        torch.manual_seed(seed)
        model = build_network(network).to(dev, memory_format=fmt)  # type: ignore[call-overload]  # stubs lack memory_format
        kwargs: dict[str, Any] = {"lr": cand.lr, "betas": tuple(optim.get("betas", (0.9, 0.99))),
                                  "weight_decay": float(optim.get("weight_decay", 0.0))}
        if dev.type == "cuda":
            kwargs["fused"] = True
        opt = torch.optim.AdamW(model.parameters(), **kwargs)
        scaler = torch.amp.GradScaler(dev.type, enabled=dtype is torch.float16)
        gen = torch.Generator(device=dev).manual_seed(seed)
        sync()
        t0, it = clock(), 0
        while it < 3 or clock() - t0 < seconds:
            idx = torch.randint(0, pool_lq.shape[0], (cand.batch,), device=dev, generator=gen)
            lq = (pool_lq[idx].float() / 255).contiguous(memory_format=fmt)
            gt = (pool_gt[idx].float() / 255).contiguous(memory_format=fmt)
            for group in opt.param_groups:
                group["lr"] = cand.lr * min(1.0, (it + 1) / max(1, warmup)) * _decay((clock() - t0) / seconds)
            with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss, _ = total_loss(terms, model(lq).float(), gt, iteration=10**9)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            it += 1
            if it % 10 == 0:
                sync()  # the clock must see finished work
        sync()
        spent = clock() - t0
        model.eval()
        gains = []
        with torch.no_grad():
            for (lq_img, gt_img), base in zip(held, bicubic, strict=True):
                x = (lq_img[None].to(dev).float() / 255).contiguous(memory_format=fmt)
                with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    sr = model(x).float().clamp(0, 1)
                gains.append(calculate_psnr(sr.cpu(), gt_img[None].float() / 255, scale) - base)
        gain = sum(gains) / len(gains)
        if not math.isfinite(gain):
            return TrialResult(cand, it, spent, None, "the loss diverged")
        return TrialResult(cand, it, spent, gain)
    except (RuntimeError, ValueError) as exc:  # out of memory, a diverged step
        return TrialResult(cand, 0, 0.0, None, str(exc).splitlines()[0][:100])
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
