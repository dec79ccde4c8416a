"""What `autosr init --style realistic` and HR-only data add to a plan: the degradation that makes the
LR on the fly, and the realistic recipe (a fidelity phase, then perceptual + adversarial terms switched
on at a planned iteration), each value with its reason. Pure functions of the profiles; the planner
(planner.py) puts the values into the plan. Anchors: traiNNer-redux's GAN templates and the ParagonSR2
fork's GAN configs (../shared/specs/realistic.md), Real-ESRGAN's degradation settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autosr.plan.dataset import DatasetProfile

STYLES = ("fidelity", "realistic")
DEGRADATIONS = ("bicubic", "realesrgan", "paragon")
# From scratch, the adversarial phase starts here (share of the run): a realistic model needs a fidelity
# generator to start from (upstream's training guide); with --pretrain it starts at once.
GAN_START_SHARE = 0.6


@dataclass(frozen=True)
class Value:
    key: str
    value: Any
    reason: str


def degradation_kind(ds: DatasetProfile, style: str, asked: str | None) -> tuple[str, str]:
    """(kind, reason) for an HR-only set."""
    if asked:
        return asked, "--degradation"
    if style == "realistic":
        return "realesrgan", ("--style realistic: Real-ESRGAN-style degradations (blur, resize, noise, JPEG, twice), so the "
                              "model learns to restore real photos, not only to enlarge clean ones")
    return "bicubic", ("fidelity: the antialiased bicubic downscale people use to make paired sets (Pillow's BICUBIC, the "
                       "kernel autosr's validation pairs are made with)")


def degradation_values(ds: DatasetProfile, kind: str) -> list[Value]:
    """The root and datasets.train keys of a Real-ESRGAN-style degradation (upstream's names): Real-ESRGAN's
    published settings for its ×4 models, halved in strength for ×2 and ×3 (a smaller scale leaves less room
    to hide damage), and halved again in noise and JPEG when the HR photos are themselves compressed or noisy
    (their damage would otherwise be learned as detail)."""
    if kind != "realesrgan":
        return []
    mild = ds.scale < 4
    damaged = ds.degradation.get("label") not in ("clean", "unknown", None)
    why = "Real-ESRGAN's ×4 setting" + (f", milder for ×{ds.scale}" if mild else "")
    why_damaged = why + ("; milder still: the HR photos are " + str(ds.degradation.get("label")) if damaged else "")
    noise = (1.0, 15.0 if mild else 30.0) if not damaged else (1.0, 8.0 if mild else 15.0)
    jpeg = (60.0 if damaged else 40.0 if mild else 30.0, 95.0)
    d = "datasets.train."
    return [
        Value("high_order_degradation", True, "traiNNer-redux runs its on-the-fly degradations with this on"),
        Value("blur_prob", 1.0, why), Value("blur_prob2", 0.8, why),
        Value("resize_prob", [0.2, 0.7, 0.1], why), Value("resize_range", [0.5 if mild else 0.15, 1.5], why),
        Value("gaussian_noise_prob", 0.5, why), Value("noise_range", list(noise), why_damaged),
        Value("poisson_scale_range", [0.05, 1.5 if mild or damaged else 3.0], why_damaged), Value("gray_noise_prob", 0.4, why),
        Value("jpeg_range", list(jpeg), why_damaged),
        Value("resize_prob2", [0.3, 0.4, 0.3], why), Value("resize_range2", [0.6 if mild else 0.3, 1.2], why),
        Value("gaussian_noise_prob2", 0.5, why), Value("noise_range2", [1.0, noise[1] * 0.8], why_damaged),
        Value("poisson_scale_range2", [0.05, 1.2 if mild or damaged else 2.5], why_damaged), Value("gray_noise_prob2", 0.4, why),
        Value("jpeg_range2", list(jpeg), why_damaged),
        Value(d + "blur_kernel_size", 21, why), Value(d + "sinc_prob", 0.1, why),
        Value(d + "blur_sigma", [0.2, 1.5 if mild else 3.0], why), Value(d + "blur_kernel_size2", 21, why),
        Value(d + "sinc_prob2", 0.1, why), Value(d + "blur_sigma2", [0.2, 1.0 if mild else 1.5], why),
        Value(d + "final_sinc_prob", 0.8, why),
    ]


def discriminator(variant: str, scale: int) -> Value:
    """network_d for the generator's size: the fork's munet, small for small generators (its docstring
    suggests feat 32, (1, 2, 2), ≈0.4 M parameters), full for the others."""
    small = variant in ("nano", "micro", "tiny", "realtime", "stream", "xs")
    if small:
        return Value("network_d", {"type": "munet", "num_feat": 32, "ch_mult": [1, 2, 2]},
                     f"the fork's munet at feat 32, ch_mult (1, 2, 2) (~0.4 M parameters): its own advice for small "
                     f"generators ({variant}); a D far larger than G overpowers it")
    return Value("network_d", {"type": "munet"}, f"the fork's munet at its defaults (~11 M parameters) for {variant}")


def losses(preset_losses: list[dict[str, Any]], gan_start: int, *, vgg19: bool, from_pretrain: bool) -> tuple[list[dict[str, Any]], str]:
    """train.losses of the realistic recipe and why: the preset's fidelity terms throughout (the L1
    anchor), then — from `gan_start` (the fork's per-loss start_iter) — perceptual (VGG19, when its
    weights are here), HSLuv colour and the adversarial term with feature matching."""
    start = {} if gan_start == 0 else {"start_iter": gan_start}
    out = [dict(x) for x in preset_losses]
    if vgg19:
        out.append({"type": "perceptualloss", "loss_weight": 0.05, **start})
    out.append({"type": "hsluvloss", "loss_weight": 0.5, **start})
    out.append({"type": "ganloss", "gan_type": "r3gan", "loss_weight": 0.05, "r1_weight": 3.0, "r2_weight": 0.0, **start})
    out.append({"type": "featurematchingloss", "loss_weight": 0.1, **start})
    phase = "from the first iteration (a pretrained generator)" if from_pretrain else f"from iteration {gan_start}"
    why = (f"the preset's fidelity terms throughout (the L1 anchor the fork's guide keeps); {phase}: "
           + ("perceptual VGG19 0.05, " if vgg19 else "no perceptual term (VGG19's weights are not on this machine: "
              "vgg19-dcbb9e9d.pth in the torch hub cache), ")
           + "HSLuv colour 0.5, r3gan 0.05 with R1 3 (the fork's r3gan range 0.03–0.08; R2 off, as its showcase config), "
             "feature matching 0.1 (the fork's 0.1–0.15)")
    return out, why


def gan_start(total_iter: int, from_pretrain: bool) -> tuple[int, str]:
    if from_pretrain:
        return 0, "a pretrained generator: the realistic phase starts at once"
    start = int(total_iter * GAN_START_SHARE)
    return start, (f"{GAN_START_SHARE:.0%} of the run trains a fidelity generator first (a realistic model should always start "
                   "from one: traiNNer-redux's training guide), then the perceptual and adversarial terms switch on")
