"""Dataset analysis for `autosr init`: sample the pairs, measure them → DatasetProfile.

Listing, pairing, header reading and decoding live in `autosr.images` (one rule for init and
train). Planning a 100k-pair folder must take seconds, so: each folder is listed once (os.scandir,
no stat per file), only a bounded deterministic sample is opened, sizes and modes come from image
headers, and pixels are decoded for a small subset of that sample only.

Vocabulary: GT = high-resolution (ground truth, `--gt`), LQ = low-resolution (`--lq`), as in
traiNNer-redux. A pair's key is its path relative to its folder, posix-style, without extension.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from autosr.errors import AutosrError
from autosr.images import SHOW, Header, Pair, Pairing, few, list_images, load_rgb_uint8, pair_folders, quiet, read_header

SAMPLE = 256  # pairs whose headers are read
STATS_PAIRS = 32  # pairs whose pixels are decoded for complexity and degradation
STATS_CROP = 256  # centre crop (px) of each decoded image: the size of a training patch

_GRAY = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN = {"I;16", "I;16B", "I;16L", "I;16N", "RGB;16", "RGBA;16"}
_EXT_NAME = {"jpeg": "jpg", "tiff": "tif"}
_QUARTER_TURNS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


# ─── the profile ──────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class DatasetProfile:
    gt_dir: Path
    lq_dir: Path
    pair_count: int
    scale: int
    scale_source: str  # "detected" | "set"
    formats: dict[str, int]  # extension → files, over every paired file (GT and LQ)
    sampled: int  # pairs whose headers were read
    lq_min: tuple[int, int]  # (w, h) of the sampled LQ images: smallest, median, largest
    lq_median: tuple[int, int]
    lq_max: tuple[int, int]
    smallest_side: int  # of the sampled LQ images
    smallest_lq: str  # that image, relative to lq_dir
    modes: dict[str, int]  # PIL mode → sampled images (GT and LQ); 16-bit RGB shows as "RGB;16"
    notes: tuple[str, ...]
    complexity: float  # 0..1, the runtime scheduler's formula on GT crops
    complexity_label: str  # simple | moderate | complex
    stats_pairs: int  # pairs decoded for complexity and degradation
    degradation: dict[str, Any]
    unpaired_gt: int
    unpaired_lq: int
    unpaired_gt_names: tuple[str, ...]  # the first few keys
    unpaired_lq_names: tuple[str, ...]
    same_names: bool  # every pair has one file name in both folders, at the top level
    pairs: list[Pair] = field(repr=False, compare=False, default_factory=list)
    # HR alone (no LR folder): the LR is made on the fly; "pairs" then hold the HR on both sides, the LR
    # sizes are the HR's ÷ scale, and "degradation" measures the HR photos' own compression and noise
    hr_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (no pair list)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name != "pairs"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def analyse(
    gt_dir: Path, lq_dir: Path, *, sample: int = SAMPLE, seed: int = 0, scale: int | None = None
) -> DatasetProfile:
    """Pair the folders, read a seeded sample of `sample` pairs, and profile the dataset.

    Sizes, modes and the scale come from the headers of every sampled pair; pixels are decoded
    for the first STATS_PAIRS of the sample only (complexity, degradation). Corrupt files are
    therefore caught when their header is unreadable (whole sample) or their pixels are
    (stats subset); files outside the sample are never opened.
    """
    gt_dir, lq_dir = Path(gt_dir), Path(lq_dir)
    if scale is not None and not 1 <= scale <= 8:
        raise AutosrError(f"--scale {scale} is out of range", "use an integer from 1 to 8")
    pairing = pair_folders(gt_dir, lq_dir)
    pairs = pairing.pairs
    chosen = draw_sample(pairs, sample, seed)
    with quiet():  # PIL's warnings (odd EXIF, huge images) say nothing a user can act on here
        heads = [(read_header(p.gt), read_header(p.lq)) for p in chosen]

    found = scale if scale is not None else _pair_scale(chosen[0], *heads[0])
    for pair, (gt, lq) in zip(chosen, heads, strict=True):
        _check_scale(pair, gt, lq, found, chosen[0], heads[0], scale is not None)

    by_size = sorted(zip(chosen, heads, strict=True), key=lambda ph: (min(ph[1][1].size), _area(ph[1][1].size)))
    smallest, middle, largest = by_size[0], by_size[len(by_size) // 2], by_size[-1]
    with quiet():
        complexity, degradation = _pixel_stats(chosen[:STATS_PAIRS], [lq.jpeg_quality for _, lq in heads])
    gt_exts, lq_exts = [p.gt_ext for p in pairs], [p.lq_ext for p in pairs]  # one pass each: 100k pairs
    same_names = gt_exts == lq_exts and not any("/" in p.key for p in pairs)
    return DatasetProfile(
        gt_dir=gt_dir,
        lq_dir=lq_dir,
        pair_count=len(pairs),
        scale=found,
        scale_source="set" if scale is not None else "detected",
        formats=_formats(gt_exts + lq_exts),
        sampled=len(chosen),
        lq_min=smallest[1][1].size,
        lq_median=middle[1][1].size,
        lq_max=largest[1][1].size,
        smallest_side=min(smallest[1][1].size),
        smallest_lq=smallest[0].lq_name,
        modes=dict(Counter(h.mode for pair in heads for h in pair).most_common()),
        notes=tuple(_notes(pairing, chosen, heads, same_names)),
        complexity=round(complexity, 4),
        complexity_label=complexity_label(complexity),
        stats_pairs=min(len(chosen), STATS_PAIRS),
        degradation=degradation,
        unpaired_gt=len(pairing.unpaired_gt),
        unpaired_lq=len(pairing.unpaired_lq),
        unpaired_gt_names=tuple(pairing.unpaired_gt[:SHOW]),
        unpaired_lq_names=tuple(pairing.unpaired_lq[:SHOW]),
        same_names=same_names,
        pairs=pairs,
    )


def analyse_hr(gt_dir: Path, *, scale: int | None, sample: int = SAMPLE, seed: int = 0) -> DatasetProfile:
    """A folder of HR images alone: the profile `analyse` gives a paired set, with the LR sizes the
    scale will make (default ×2) and the HR's own JPEG blockiness and noise where the paired profile
    measures the LR's (the planner makes milder degradations for photos that already carry them)."""
    gt_dir = Path(gt_dir)
    chosen_scale = 2 if scale is None else scale
    if not 1 <= chosen_scale <= 8:
        raise AutosrError(f"--scale {scale} is out of range", "use an integer from 1 to 8")
    files = list_images(gt_dir)
    if not files:
        raise AutosrError(f"--gt {gt_dir}: no images found", "point --gt at a folder of png, jpg, webp, bmp or tif images")
    pairs = [Pair(key, path, path) for key, path in sorted(files.items())]  # the HR stands for both sides
    chosen = draw_sample(pairs, sample, seed)
    with quiet():
        heads = [read_header(p.gt) for p in chosen]
    lq_sizes = [((h.size[0] // chosen_scale), (h.size[1] // chosen_scale)) for h in heads]
    order = sorted(range(len(chosen)), key=lambda i: (min(lq_sizes[i]), _area(lq_sizes[i])))
    smallest, middle, largest = order[0], order[len(order) // 2], order[-1]
    with quiet():
        complexity, degradation = _pixel_stats(chosen[:STATS_PAIRS], [h.jpeg_quality for h in heads])
    exts = [p.gt_ext for p in pairs]
    notes = [f"HR alone ({len(pairs)} images): the LR is made on the fly at ×{chosen_scale}"
             + ("" if scale is not None else " (the default; --scale 3 or 4 for another)")]
    return DatasetProfile(
        gt_dir=gt_dir, lq_dir=gt_dir, pair_count=len(pairs), scale=chosen_scale,
        scale_source="set" if scale is not None else "default", formats=_formats(exts), sampled=len(chosen),
        lq_min=lq_sizes[smallest], lq_median=lq_sizes[middle], lq_max=lq_sizes[largest],
        smallest_side=min(lq_sizes[smallest]), smallest_lq=chosen[smallest].gt_name,
        modes=dict(Counter(h.mode for h in heads).most_common()), notes=tuple(notes),
        complexity=round(complexity, 4), complexity_label=complexity_label(complexity),
        stats_pairs=min(len(chosen), STATS_PAIRS), degradation=degradation, unpaired_gt=0, unpaired_lq=0,
        unpaired_gt_names=(), unpaired_lq_names=(), same_names=True, pairs=pairs, hr_only=True,
    )


def draw_sample(pairs: Sequence[Pair], size: int, seed: int = 0) -> list[Pair]:
    """A seeded random sample of `size` pairs (all of them when fewer), in draw order."""
    if size >= len(pairs):
        return list(pairs)
    return random.Random(seed).sample(list(pairs), max(1, size))


def complexity_label(value: float) -> str:
    """The runtime scheduler's bands: < 0.3 simple, > 0.7 complex."""
    return "simple" if value < 0.3 else "complex" if value > 0.7 else "moderate"


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _formats(exts: Sequence[str]) -> dict[str, int]:
    """File counts by format ("png", "jpg"), from extensions such as ".PNG" and ".jpeg"."""
    counts: Counter[str] = Counter()
    for ext, n in Counter(exts).items():
        low = ext[1:].lower()
        counts[_EXT_NAME.get(low, low)] += n
    return dict(counts.most_common())


# ─── headers and scale ────────────────────────────────────────────────────────────────────────


def _pair_scale(pair: Pair, gt: Header, lq: Header) -> int:
    """The integer scale of one pair; the LR side may be off by 1 px (odd HR sizes)."""
    (gw, gh), (lw, lh) = gt.size, lq.size
    if not _fits((gw, gh), (lw, lh)):
        _refuse_one_sided_rotation(pair, gt, lq)
    if lw > gw or lh > gh:
        raise AutosrError(
            f"LR image {pair.lq} ({lw}×{lh}) is larger than its HR image {pair.gt} ({gw}×{gh})",
            "--gt takes the high-resolution folder and --lq the low-resolution one: are they swapped?",
        )
    if not _fits((gw, gh), (lw, lh)):
        raise AutosrError(
            f"pair '{pair.key}' has no integer scale from 1 to 8: HR {gw}×{gh}, LR {lw}×{lh} "
            f"(width ×{gw / lw:.2f}, height ×{gh / lh:.2f})",
            "each LR image must be the HR image shrunk by one integer factor (±1 px)",
        )
    return round(gw / lw)


def _fits(gt: tuple[int, int], lq: tuple[int, int]) -> bool:
    """Whether LR is HR shrunk by one integer factor from 1 to 8 (±1 px)."""
    sw, sh = round(gt[0] / lq[0]), round(gt[1] / lq[1])
    return sw == sh and 1 <= sw <= 8 and abs(gt[0] / sw - lq[0]) <= 1 and abs(gt[1] / sh - lq[1]) <= 1


def _refuse_one_sided_rotation(pair: Pair, gt: Header, lq: Header) -> None:
    """A pair that fits as stored but not as shown, because only one side carries an EXIF rotation of
    90° (autosr, like OpenCV, shows each file upright): name the tag, not a puzzling ratio."""
    gt_turns, lq_turns = gt.orientation in _QUARTER_TURNS, lq.orientation in _QUARTER_TURNS
    stored_gt, stored_lq = (gt.size[1], gt.size[0]) if gt_turns else gt.size, (lq.size[1], lq.size[0]) if lq_turns else lq.size
    if gt_turns == lq_turns or not _fits(stored_gt, stored_lq):
        return
    tagged, other = (pair.gt, pair.lq) if gt_turns else (pair.lq, pair.gt)
    raise AutosrError(
        f"pair '{pair.key}': {tagged} carries EXIF orientation {(gt if gt_turns else lq).orientation} (shown turned 90°) "
        f"but {other} does not, so they match only as stored, not as shown",
        "save both upright without the orientation tag (or give both the same tag)",
    )


def _check_scale(
    pair: Pair, gt: Header, lq: Header, want: int, ref: Pair, ref_heads: tuple[Header, Header], is_set: bool
) -> None:
    got = _pair_scale(pair, gt, lq)
    if got == want:
        return
    this = f"'{pair.key}' is ×{got} (HR {_wh(gt.size)}, LR {_wh(lq.size)})"
    if is_set:
        raise AutosrError(f"--scale {want} was set but pair {this}", f"drop --scale, or fix the pair in {pair.lq.parent}")
    raise AutosrError(
        f"scales disagree: pair '{ref.key}' is ×{want} (HR {_wh(ref_heads[0].size)}, LR {_wh(ref_heads[1].size)}) "
        f"but pair {this}",
        "every pair must have the same scale: split the dataset by scale",
    )


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


# ─── notes ────────────────────────────────────────────────────────────────────────────────────


def _notes(
    pairing: Pairing, chosen: list[Pair], heads: list[tuple[Header, Header]], same_names: bool
) -> list[str]:
    notes = []
    for side, keys, partner in (("HR", pairing.unpaired_gt, "LR"), ("LR", pairing.unpaired_lq, "HR")):
        if keys:
            notes.append(f"{len(keys)} {side} file(s) without an {partner} partner are skipped: {few(keys)}")
    mismatched = pairing.case_mismatches()
    if mismatched:
        notes.append(
            f"{len(mismatched)} unpaired HR name(s) differ from an LR name only in letter case: {few(mismatched)} "
            "— names pair exactly: rename them so that they match"
        )
    clashes = pairing.case_clashes()
    if clashes:
        notes.append(
            f"{len(clashes)} file names differ from another in the same folder only in letter case: {few(clashes)} "
            "— each pairs with its exact namesake, but Windows and macOS cannot hold both: rename them"
        )
    images = [h for pair in heads for h in pair]
    odd = (
        (_GRAY, "grayscale (read as RGB)"),
        (_ALPHA, "with an alpha channel (alpha is dropped)"),
        ({"P", "PA"}, "palette-based (converted to RGB)"),
        ({"CMYK", "YCbCr", "LAB", "HSV"}, "in an unusual colour space (converted to RGB)"),
        (_SIXTEEN, "16-bit per channel (accepted)"),
    )
    for modes, what in odd:
        hits = Counter(h.mode for h in images if h.mode in modes)
        if hits:
            notes.append(f"{sum(hits.values())} of {len(images)} sampled images are {what}: {_modes(hits)}")
    mixed = [p.key for p, (g, q) in zip(chosen, heads, strict=True) if _base_mode(g.mode) != _base_mode(q.mode)]
    if mixed:
        notes.append(f"{len(mixed)} sampled pair(s) differ in colour mode between HR and LR: {few(mixed)}")
    turned = [p.key for p, (g, q) in zip(chosen, heads, strict=True) if g.orientation != q.orientation]
    if turned:
        notes.append(
            f"{len(turned)} sampled pair(s) carry different EXIF orientations on HR and LR: {few(turned)} — autosr "
            "shows each file upright (as OpenCV does): check that the pairs line up, or save them upright without the tag"
        )
    rotated = [p.key for p, (g, q) in zip(chosen, heads, strict=True) if g.rotated or q.rotated]
    if rotated:
        notes.append(
            f"{len(rotated)} sampled pair(s) carry an EXIF rotation, which image loaders honour "
            f"differently: {few(rotated)} — save them upright without the tag"
        )
    spaced = [p.key for p in pairing.pairs if " " in p.key]
    if not same_names or spaced:
        why = f"{len(spaced)} file name(s) contain spaces" if spaced else "HR and LR file names differ (extension or sub-folder)"
        notes.append(f"{why}: traiNNer-redux's own loader pairs identical top-level names without spaces only")
    if len(pairing.pairs) == 1:
        notes.append("only one pair: fine for a smoke test, far too little to train a useful model")
    return notes


def _modes(hits: Counter[str]) -> str:
    return ", ".join(f"{mode} ×{n}" for mode, n in hits.most_common())


def _base_mode(mode: str) -> str:
    return "gray" if mode in _GRAY else mode.split(";")[0].rstrip("A").rstrip("a") or mode


# ─── pixel statistics ─────────────────────────────────────────────────────────────────────────


def _pixel_stats(pairs: Sequence[Pair], jpeg_qualities: Sequence[int | None]) -> tuple[float, dict[str, Any]]:
    """Complexity of GT crops and degradation of LQ crops, over a few pairs."""
    scores, blocks, sigmas = [], [], []
    for pair in pairs:
        scores.append(image_complexity(_centre_crop(pair.gt)))
        rgb = _centre_crop(pair.lq, align=8) * 255.0
        if min(rgb.shape[:2]) >= 24:  # too small a crop says nothing about 8-px blocks
            blocks.append(jpeg_blockiness(_luma(rgb)))
            # per channel: the σ of noise added to each of R, G, B (luma would read ~0.67σ)
            sigmas.append(float(np.mean([noise_sigma(rgb[..., c]) for c in range(3)])))
    complexity = float(np.mean(scores)) if scores else 0.0
    return complexity, _degradation(blocks, sigmas, [q for q in jpeg_qualities if q is not None])


def _centre_crop(path: Path, crop: int = STATS_CROP, align: int = 1) -> np.ndarray:
    """A centre crop (≤ crop px, origin on a multiple of `align`) as H×W×3 float32 in [0, 1],
    decoded as training decodes it (`load_rgb_uint8`)."""
    rgb = load_rgb_uint8(path)
    h, w = rgb.shape[:2]
    ch, cw = min(h, crop), min(w, crop)
    y0, x0 = (h - ch) // 2 // align * align, (w - cw) // 2 // align * align
    return rgb[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32) / 255.0


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def image_complexity(img: np.ndarray) -> float:
    """The runtime scheduler's dataset complexity of one float image in [0, 1]:
    mean of min(10·var, 1), min(10·(mean|∂x| + mean|∂y|), 1) and min(2·(max − min), 1)."""
    if img.size == 0:
        return 0.0
    variance = min(10.0 * float(img.var()), 1.0)
    dx = float(np.abs(np.diff(img, axis=1)).mean()) if img.shape[1] > 1 else 0.0
    dy = float(np.abs(np.diff(img, axis=0)).mean()) if img.shape[0] > 1 else 0.0
    edges = min(10.0 * (dx + dy), 1.0)
    spread = min(2.0 * float(img.max() - img.min()), 1.0)
    return (variance + edges + spread) / 3.0


def jpeg_blockiness(luma: np.ndarray) -> float:
    """How much stronger luma steps are on one 8-px grid phase than on the others.

    The mean |difference| between neighbouring columns (and rows) is gathered per position
    modulo 8; JPEG quantises each 8×8 block on its own, so the steps across block borders stand
    out. Score = strongest phase / median phase: ≈1.0 for clean images, well above 1 for
    JPEG-compressed ones. Taking the strongest phase finds the grid even after a crop shifted it.
    """
    dx = np.abs(np.diff(luma, axis=1)).mean(axis=0)
    dy = np.abs(np.diff(luma, axis=0)).mean(axis=1)
    profile = np.array([dx[p::8].mean() + dy[p::8].mean() for p in range(8)])
    middle = float(np.median(profile))
    return float(profile.max() / middle) if middle > 1e-6 else 1.0


def noise_sigma(plane: np.ndarray) -> float:
    """Robust noise level of one channel, in its units (Immerkær's operator, median not mean).

    The residual of the 3×3 kernel [[1,−2,1],[−2,4,−2],[1,−2,1]] cancels flat areas, ramps and
    straight edges, leaving mostly noise; for Gaussian noise of σ its standard deviation is 6σ.
    σ = 1.4826 · median|residual| / 6 (MAD → σ), so the few strong edges left over barely count.
    """
    y = plane
    r = (
        y[:-2, :-2] - 2 * y[:-2, 1:-1] + y[:-2, 2:]
        - 2 * y[1:-1, :-2] + 4 * y[1:-1, 1:-1] - 2 * y[1:-1, 2:]
        + y[2:, :-2] - 2 * y[2:, 1:-1] + y[2:, 2:]
    )  # fmt: skip
    return float(1.4826 * np.median(np.abs(r)) / 6.0) if r.size else 0.0


BLOCKY = 1.2  # blockiness above this: visible JPEG blocks
NOISY = 4.0  # σ above this (8-bit units): visibly noisy
LOSSY_QUALITY = 80  # LQ stored as JPEG below this quality counts as JPEG-degraded


def _degradation(blocks: list[float], sigmas: list[float], qualities: list[int]) -> dict[str, Any]:
    """How the LQ images are degraded, beyond being smaller. Keys:

    - jpeg_blockiness: median of jpeg_blockiness() over the decoded LQ crops (≈1.0 clean,
      > BLOCKY visible 8×8 blocks: JPEG happened at some point, whatever the file type now);
    - noise_sigma: median of noise_sigma() per RGB channel, 8-bit units (> NOISY: visibly noisy);
    - jpeg_quality: median IJG quality of the sampled LQ files stored as JPEG, estimated from
      the quantisation table in their headers; None when none is a JPEG;
    - label: "jpeg" (blocky, or stored below LOSSY_QUALITY), "noisy", "jpeg+noisy", "clean",
      or "unknown" when the LQ images are too small (< 24 px) to measure;
    - measured_on: how many LQ crops were measured. Unmeasured values are None.
    """
    block = round(float(np.median(blocks)), 3) if blocks else None
    sigma = round(float(np.median(sigmas)), 2) if sigmas else None
    quality = int(statistics.median_low(qualities)) if qualities else None
    kinds = []
    if (block is not None and block > BLOCKY) or (quality is not None and quality < LOSSY_QUALITY):
        kinds.append("jpeg")
    if sigma is not None and sigma > NOISY:
        kinds.append("noisy")
    label = "+".join(kinds) if kinds else "clean" if blocks else "unknown"
    return {
        "label": label,
        "jpeg_blockiness": block,
        "noise_sigma": sigma,
        "jpeg_quality": quality,
        "measured_on": len(blocks),
    }


# ─── patch size, validation hold-out, meta_info ───────────────────────────────────────────────


def check_patch(profile: DatasetProfile, lq_size: int) -> None:
    """Fail when the smallest sampled LR image cannot hold one training patch."""
    if profile.smallest_side >= lq_size:
        return
    path = profile.lq_dir / profile.smallest_lq
    fit = profile.smallest_side // 8 * 8
    what = f"pass a smaller patch with --set datasets.train.lq_size={fit}, or " if fit >= 16 else ""
    raise AutosrError(
        f"LR image {path} is {_wh(profile.lq_min)}: smaller than the {lq_size}px training patch",
        f"{what}remove the LR images (and their HR partners) under {lq_size}px",
    )


class Split(NamedTuple):
    """Training and validation pairs; `train, val = hold_out(pairs)` unpacks it."""

    train: list[Pair]
    val: list[Pair]

    @property
    def shared(self) -> bool:
        """True when the validation pairs are also trained on (a dataset of one pair)."""
        return bool(self.val) and self.val[0] in self.train

    def describe(self) -> str:
        if self.shared:
            return "only one pair: it is used for both training and validation (metrics will flatter)"
        return f"held out {len(self.val)} of {len(self.train) + len(self.val)} pairs for validation: " + few(
            [p.key for p in self.val]
        )


def hold_out(
    pairs: Sequence[Pair], *, fraction: float = 0.01, cap: int = 16, minimum: int = 1, seed: int = 0
) -> Split:
    """Hold out fraction·n pairs (at least `minimum`, at most `cap`, never all) for validation.

    Pairs are ranked by a hash of (seed, key) rather than drawn at random, so that adding
    images later leaves the validation set as it was (once the cap is reached) and runs stay
    comparable. A single pair is used for both sides (see Split.shared).
    """
    pairs = list(pairs)
    if not pairs:
        raise AutosrError("no pairs to split into training and validation sets", "check the dataset folders")
    if len(pairs) == 1:
        return Split(pairs, list(pairs))
    count = min(max(int(len(pairs) * fraction), minimum), cap, len(pairs) - 1)

    def rank(p: Pair) -> bytes:
        return hashlib.sha1(f"{seed}:{p.key}".encode()).digest()

    val = sorted(heapq.nsmallest(count, pairs, key=rank), key=lambda p: p.key)
    held = {p.key for p in val}
    return Split(sorted((p for p in pairs if p.key not in held), key=lambda p: p.key), val)
