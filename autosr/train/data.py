"""Training crops, served as ready batches on the training device.

Two sources behind one interface (`CropSource`):
- `CachedCropSource`: every decoded image sits as uint8 in one flat buffer per side, on the
  training device (or in pinned host memory); a batch is one row gather plus a fused
  augment-and-normalise pass. No decoding while training.
- `LoaderCropSource`: Pillow decodes in DataLoader workers, for sets too big to cache; each
  decoded pair gives K crops (`CROPS_PER_PAIR`), since decoding is nearly all the cost.

HR alone (`build_hr_crop_source`): both sources cut only HR crops (lq_size × scale) and a
`Degrader` (autosr.train.degradations) makes the LR side on the training device, batched, after the
crops are there (the loader: in the main process, after the batch arrives); sample c of the
stream is degraded from (run seed, rank, c), so the LR stream resumes exactly too.

Both draw crops uniformly over every crop position in the set (so an image's share of the
batches grows with its area: a 4K photo is not sampled as often as a 200-px thumbnail; the loader's
K crops of one decode share their image, each still uniform over all positions), and both
derive every random choice from (seed, counter), which makes the stream deterministic and lets a
resumed run continue exactly where it stopped.
"""

from __future__ import annotations

import bisect
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.images import Pair, check_pair, image_size, load_rgb_uint8, usable_lq_size
from autosr.train.degradations import Degrader

__all__ = [
    "Batch",
    "CachedCropSource",
    "CropSource",
    "LoaderCropSource",
    "Skip",
    "UnreadableSet",
    "build_crop_source",
    "build_hr_crop_source",
]

_MASK64 = (1 << 64) - 1
_GiB = 1 << 30
_T = TypeVar("_T")
_R = TypeVar("_R")

# A transform code is 3 bits applied in this order: 1 = vertical flip, 2 = horizontal flip,
# 4 = transpose. All 8 codes are the 8 symmetries of the square.
_ROT_CODES = tuple(range(8))
_HFLIP_CODES = (0, 2)


class Batch(NamedTuple):
    lq: torch.Tensor  # float [B, 3, p, p] in [0, 1]
    gt: torch.Tensor  # float [B, 3, p·scale, p·scale] in [0, 1]


@dataclass(frozen=True)
class CropSpec:
    """What both crop sources serve, described once: augmentations, the random stream, and
    where batches go. (The batch size is run-time state: the trainer may change it.)"""

    use_hflip: bool
    use_rot: bool
    seed: int
    device: torch.device
    channels_last: bool
    rank: int = 0
    world_size: int = 1

    @property
    def codes(self) -> tuple[int, ...]:
        return _codes(self.use_hflip, self.use_rot)


PEEK = 16  # crops in a peek_batch (the run's complexity is measured on them)


class CropSource(Protocol):
    kind: str  # "cache" or "loader"
    reason: str  # why this kind was chosen, for the journal
    batch_size: int

    def next_batch(self) -> Batch: ...
    def peek_batch(self, n: int = PEEK) -> Batch: ...
    def set_batch_size(self, batch_size: int) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def take_skips(self) -> list[Skip]: ...
    def close(self) -> None: ...


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 rounds): nearby counters give unrelated streams."""
    h = 0x9E3779B97F4A7C15
    for value in values:
        h = ((h ^ (value & _MASK64)) + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


def _codes(use_hflip: bool, use_rot: bool) -> tuple[int, ...]:
    # use_rot means traiNNer's vflip + rot90, which together with hflip give the 8 symmetries.
    return _ROT_CODES if use_rot else _HFLIP_CODES if use_hflip else (0,)


def _ordered_map(fn: Callable[[_T], _R], items: Sequence[_T], threads: int) -> Iterator[_R]:
    """fn over items on a thread pool, results in order, at most 2×threads in flight (bounded memory)."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending = [pool.submit(fn, item) for item in items[: 2 * threads]]
        for i in range(len(items)):
            result = pending[i].result()
            if i + 2 * threads < len(items):
                pending.append(pool.submit(fn, items[i + 2 * threads]))
            pending[i] = None  # type: ignore[call-overload]  # free the finished result
            yield result


def _default_threads() -> int:
    return max(1, min(16, os.cpu_count() or 1))


@dataclass(frozen=True)
class _CropTable:
    """Where crops can start: every LQ position whose p×p patch (and ×scale GT patch) fits."""

    pairs: list[Pair]
    gt_wh: list[tuple[int, int]]
    lq_wh: list[tuple[int, int]]
    scale: int
    lq_size: int
    first: torch.Tensor  # int64 [N]: number of crop positions in the images before this one
    cum: torch.Tensor  # int64 [N]: the same, this image included (sampling is uniform over them)
    nx: torch.Tensor  # int64 [N]: crop positions per row
    hr_only: bool = False  # HR images alone (pairs hold each path twice, lq_wh = gt_wh // scale)
    margin: int = 0  # HR alone: LR px of context on each side of a crop (lq_size includes 2·margin)

    @classmethod
    def scan(cls, pairs: Sequence[Pair], scale: int, lq_size: int, threads: int | None = None) -> _CropTable:
        if not pairs:
            raise AutosrError("the training set has no image pairs", "check dataroot_gt / dataroot_lq")
        pairs = list(pairs)
        paths = [path for pair in pairs for path in pair]
        # Header reads wait on the disk more than on Python: threads help on network drives.
        sizes = list(_ordered_map(image_size, paths, threads or _default_threads()))
        gt_wh, lq_wh = sizes[0::2], sizes[1::2]
        for pair, g, q in zip(pairs, gt_wh, lq_wh, strict=True):
            check_pair(pair, g, q, scale, lq_size)
        usable = torch.tensor([usable_lq_size(g, q, scale) for g, q in zip(gt_wh, lq_wh, strict=True)])
        nx, ny = usable[:, 0] - lq_size + 1, usable[:, 1] - lq_size + 1
        cum = torch.cumsum(nx * ny, 0)
        return cls(pairs, gt_wh, lq_wh, scale, lq_size, cum - nx * ny, cum, nx)

    @classmethod
    def scan_hr(
        cls, paths: Sequence[str | os.PathLike[str]], scale: int, lq_size: int, margin: int = 0, threads: int | None = None
    ) -> _CropTable:
        """HR images alone: every position (at multiples of scale) of a square of lq_size + 2·margin
        LR px, i.e. the crop and `margin` px of context on each side for the degradation to see.
        The margin shrinks to what the smallest image allows (down to none)."""
        if not paths:
            raise AutosrError("the training set has no images", "check dataroot_gt")
        names = [os.fspath(path) for path in paths]
        gt_wh = list(_ordered_map(image_size, names, threads or _default_threads()))
        crop = lq_size * scale
        for name, (w, h) in zip(names, gt_wh, strict=True):
            if min(w, h) < crop:
                raise AutosrError(
                    f"image {name} ({w}×{h}) is smaller than the HR crop, {crop} px (lq_size {lq_size} × scale {scale})",
                    f"lower lq_size to at most {min(w, h) // scale}, or remove this image",
                )
        margin = max(0, min(margin, min((min(w, h) // scale - lq_size) // 2 for w, h in gt_wh)))
        lq_size += 2 * margin
        lq_wh = [(w // scale, h // scale) for w, h in gt_wh]
        usable = torch.tensor(lq_wh)
        nx, ny = usable[:, 0] - lq_size + 1, usable[:, 1] - lq_size + 1
        cum = torch.cumsum(nx * ny, 0)
        pairs = [Pair(name, name, name) for name in names]
        return cls(pairs, gt_wh, lq_wh, scale, lq_size, cum - nx * ny, cum, nx, hr_only=True, margin=margin)

    def decoded_bytes(self) -> int:
        return 3 * sum(w * h for w, h in self.gt_wh + ([] if self.hr_only else self.lq_wh))

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n crop positions, uniform over all of them: (image index, y0, x0) in LQ pixels."""
        pos = torch.randint(0, int(self.cum[-1]), (n,), generator=generator)
        image = torch.searchsorted(self.cum, pos, right=True)
        within = pos - self.first[image]
        nx = self.nx[image]
        return image, within // nx, within % nx


def _to_float(
    crops: torch.Tensor, groups: Iterable[tuple[int, int, int]], channels_last: bool
) -> torch.Tensor:
    """uint8 [B,P,P,3] → float [B,3,P,P] in [0,1], applying each group's flip/transpose on the way.

    groups: (start, end, code) over contiguous runs of the batch; the vertical flip (code & 1)
    was already done by the gather. One multiply kernel per group writes straight into the output,
    so the transpose costs no extra pass.
    """
    n, size = crops.shape[0], crops.shape[1]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((n, 3, size, size), dtype=torch.float32, device=crops.device, memory_format=fmt)
    out_hwc = out.permute(0, 2, 3, 1)
    for start, end, code in groups:
        part = crops[start:end]
        if code & 2:
            part = part.flip(2)
        if code & 4:
            part = part.transpose(1, 2)
        torch.mul(part, 1.0 / 255.0, out=out_hwc[start:end])
    return out


def _resolve(device: str | torch.device) -> torch.device:
    """'cuda' → 'cuda:<current>', so that device comparisons are exact."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        # Pinned + non_blocking: a pageable copy would make PyTorch wait for the GPU to drain.
        return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)
    return t.to(device)


class _FlatImages:
    """Images of one side (LQ or GT) back to back as uint8 HWC in one flat buffer."""

    def __init__(
        self, paths: Sequence[Path], sizes: Sequence[tuple[int, int]], device: torch.device, pin: bool
    ):
        lengths = torch.tensor([3 * w * h for w, h in sizes], dtype=torch.int64)
        self.offsets = torch.cumsum(lengths, 0) - lengths
        self.row_bytes = torch.tensor([3 * w for w, _ in sizes], dtype=torch.int64)
        total = int(lengths.sum())
        if device.type == "cpu":
            self.buffer = torch.empty(total, dtype=torch.uint8, pin_memory=pin)
        else:
            self.buffer = torch.empty(total, dtype=torch.uint8, device=device)
        self._paths, self._sizes = list(paths), list(sizes)
        self._rows: dict[int, torch.Tensor] = {}

    def fill(self, threads: int) -> None:
        # Each thread decodes and stores its own image. On the CPU the store is a numpy copy:
        # torch's OpenMP copy starved the decoding threads (filling 200 pairs on 16 cores took
        # 1.7–2.0 s whatever the thread count, against 0.6 s for the same decode into VRAM).
        host = self.buffer.numpy() if self.buffer.device.type == "cpu" else None
        for _ in _ordered_map(lambda i: self._store(i, host), range(len(self._paths)), threads):
            pass

    def _store(self, i: int, host: np.ndarray | None) -> None:
        arr = load_rgb_uint8(self._paths[i])
        w, h = self._sizes[i]
        if arr.shape != (h, w, 3):
            raise AutosrError(
                f"{self._paths[i]} decoded to {arr.shape[1]}×{arr.shape[0]}, header said {w}×{h}"
            )
        start = int(self.offsets[i])
        if host is not None:
            host[start : start + arr.size] = arr.reshape(-1)
        else:
            self.buffer[start : start + arr.size].copy_(torch.from_numpy(arr).reshape(-1))

    def rows(self, size: int) -> torch.Tensor:
        """[L, 3·size] overlapping view: row k is the `size` pixels starting at byte k (no copy)."""
        if size not in self._rows:
            self._rows[size] = self.buffer.unfold(0, 3 * size, 1)
        return self._rows[size]


# ---------------------------------------------------------------------- HR alone: LR on the fly ----

# The degradation keys of sample c are _mix(_mix(seed, _DEGRADE_STREAM, rank), c): apart from the crop
# stream's draws, and per rank. Peeks degrade from a counter training never reaches.
_DEGRADE_STREAM = 6
PEEK_COUNTER = 1 << 62


def _hr_degrader(table: _CropTable, spec: CropSpec, degrader: Degrader | None) -> Degrader | None:
    """The source's degrader, seeded from the run's seed and rank (None for paired sets)."""
    if not table.hr_only:
        return None
    if degrader is None:
        raise ValueError("a source of HR images alone needs a degrader")
    if degrader.scale != table.scale:
        raise ValueError(f"the degrader's scale {degrader.scale} is not the crop table's {table.scale}")
    degrader.seed = _mix(spec.seed, _DEGRADE_STREAM, spec.rank)
    return degrader


def _degrade(degrader: Degrader | None, gt: torch.Tensor, counter: int, transposed_from: int, margin: int) -> Batch:
    """(LR, GT) windows of an HR batch whose crops carry `margin` LR px of context; its slots from
    `transposed_from` on hold transposed crops (the batch is sorted by transform code, transposes last)."""
    assert degrader is not None
    transposed = torch.arange(gt.shape[0]) >= transposed_from
    with torch.no_grad():
        return Batch(*degrader.crop(gt, counter, margin, transposed))


class CachedCropSource:
    """Crops cut from decoded images held in memory: one gather and one fused pass per side.

    A row gather (index_select of whole crop rows from an overlapping view of the buffer) moves
    contiguous runs of bytes; it measured ~80× faster on CPU than gathering single bytes with a
    [B,p,p,3] index grid. The vertical flip is baked into the row order; horizontal flip and
    transpose are applied per contiguous group of the batch, which is why each batch is sorted by
    transform code (samples are i.i.d., so position within the batch carries no meaning).
    """

    kind = "cache"

    def __init__(
        self,
        table: _CropTable,
        spec: CropSpec,
        *,
        batch_size: int,
        cache_device: torch.device | None = None,
        threads: int | None = None,
        reason: str = "",
        degrader: Degrader | None = None,
    ) -> None:
        self.spec, self.device = spec, spec.device
        store = _resolve(cache_device) if cache_device is not None else self.device
        pin = store.type == "cpu" and self.device.type == "cuda"
        self.table, self.reason = table, reason
        self._codes = torch.tensor(spec.codes)
        self.degrader = _hr_degrader(table, spec, degrader)
        self.lq = None if table.hr_only else _FlatImages([lq for _, lq in table.pairs], table.lq_wh, store, pin)
        self.gt = _FlatImages([gt for gt, _ in table.pairs], table.gt_wh, store, pin)
        for side in (self.lq, self.gt):
            if side is not None:
                side.fill(threads or _default_threads())
        self.batch_size = batch_size
        self.batches = self.samples = 0

    def next_batch(self) -> Batch:
        g = torch.Generator().manual_seed(_mix(self.spec.seed, self.spec.rank, self.batches))
        n, p, s = self.batch_size, self.table.lq_size, self.table.scale
        image, y0, x0 = self.table.draw(n, g)
        codes = self._codes[torch.randint(0, len(self._codes), (n,), generator=g)].sort().values
        vflip = (codes & 1).bool()
        # Runs of equal (hflip, transpose) bits; their bounds are host ints, so no device sync.
        counts = torch.bincount(codes >> 1, minlength=4).tolist()
        bounds = np.cumsum([0, *counts]).tolist()
        groups = [(bounds[k], bounds[k + 1], 2 * k) for k in range(4) if counts[k]]
        gt = self._cut(self.gt, image, y0 * s, x0 * s, p * s, vflip, groups)
        if self.lq is not None:
            lq = self._cut(self.lq, image, y0, x0, p, vflip, groups)
        else:  # HR alone: the LR side made on the device, keyed by the sample counter
            counter = self.samples if self.batches >= 0 else PEEK_COUNTER
            lq, gt = _degrade(self.degrader, gt, counter, bounds[2], self.table.margin)
        self.batches += 1
        self.samples += n
        return Batch(lq, gt)

    def _cut(
        self,
        side: _FlatImages,
        image: torch.Tensor,
        y0: torch.Tensor,
        x0: torch.Tensor,
        size: int,
        vflip: torch.Tensor,
        groups: list[tuple[int, int, int]],
    ) -> torch.Tensor:
        row_bytes = side.row_bytes[image]
        start = side.offsets[image] + y0 * row_bytes + x0 * 3
        rows = torch.arange(size)
        rows = torch.where(vflip[:, None], size - 1 - rows, rows)
        index = (start[:, None] + rows * row_bytes[:, None]).reshape(-1)
        source = side.rows(size)
        if source.device.type == "cpu" and self.device.type == "cuda":  # pinned host cache
            crops = torch.empty((index.numel(), 3 * size), dtype=torch.uint8, pin_memory=True)
            torch.index_select(source, 0, index, out=crops)
            crops = crops.to(self.device, non_blocking=True)
        else:
            crops = source.index_select(0, _to_device(index, source.device))
        return _to_float(crops.view(-1, size, size, 3), groups, self.spec.channels_last)

    def set_batch_size(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be ≥ 1, got {batch_size}")
        self.batch_size = batch_size

    def peek_batch(self, n: int = PEEK) -> Batch:
        """n crops from a side stream: a look at the data that leaves the training stream as it is."""
        saved = (self.batch_size, self.batches, self.samples)
        self.batch_size, self.batches = n, -1  # counter -1 is never drawn by training
        try:
            return self.next_batch()
        finally:
            self.batch_size, self.batches, self.samples = saved

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seed": self.spec.seed,
            "batches": self.batches,
            "samples": self.samples,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_size = int(state.get("batch_size", self.batch_size))
        # The run's seed wins over this build's (a random seed is drawn anew at every start).
        self.spec = replace(self.spec, seed=int(state.get("seed", self.spec.seed)))
        self.degrader = _hr_degrader(self.table, self.spec, self.degrader)
        # A state saved by the other kind (another machine, another budget) is accepted: the stream
        # then goes on from the same counters but is not the one the first run would have drawn.
        self.batches, self.samples = int(state["batches"]), int(state["samples"])

    def take_skips(self) -> list[Skip]:
        """Always none: every image was decoded at start, nothing is read from disk while training."""
        return []

    def close(self) -> None:
        self.lq = self.gt = None  # type: ignore[assignment]  # release the cache memory


# ---------------------------------------------------------------- worker loader (large sets) ----

# Crops the worker loader cuts from each pair it decodes (K, `crops_per_pair`). Decoding is nearly all of a
# worker's time: a 1024² PNG pair (×2) takes ~25 ms on one core, cutting a 64-px LQ + 128-px GT
# crop pair a few µs. Measured with benchmarks/data_throughput.py (2-core CPU, 24 such pairs,
# batch 64, lq 64), K = 1, 2, 4, 8, 16, 32: one worker alone 41, 81, 162, 315, 571, 1,195
# samples/s, the loader with 2 workers 59, 150, 274, 446, 766, 1,275 (there the main process's
# CPU work shows). Speed alone would say "as large as possible": it grows ~×K. The price is
# variety: a batch of B holds crops of only ~B/K images. 8 is the largest K that still puts 8
# images in a batch of 64 (64 in the planner's usual 512) and keeps a back-off batch of 16 at 2+
# images, for an ~8× gain; the rest of the curve would need batches of 1–4 images at those sizes.
CROPS_PER_PAIR = 8

# One decoded pair's crops in a batch: (image index, [(slot in the batch, y0, x0, transform code)]).
_UnitCrops = tuple[int, list[tuple[int, int, int, int]]]

# A pair that became unreadable during the run, as a worker reports it: (image index, the one-line error).
_Skipped = tuple[int, str]
# Draws a worker makes for one unit before it gives up: only a set that is mostly gone exhausts them.
MAX_REDRAWS = 16
# Share of the training pairs that may become unreadable during a run before it stops: a few lost
# files do not matter to training, a disappearing disk or folder does.
UNREADABLE_LIMIT = 0.01


class Skip(NamedTuple):
    """A training pair the loader skipped because it could not be read any more (first time only)."""

    image: int  # index in the training set
    reason: str  # the one-line error, naming the file
    skipped: int  # pairs skipped so far, this one included
    total: int  # pairs in the training set

    def describe(self) -> str:
        return (f"skipped a training pair: {self.reason} ({self.skipped} of {self.total} pairs so far; "
                f"the run stops when more than {UNREADABLE_LIMIT:.0%} are unreadable)")


class UnreadableSet(AutosrRuntimeError):
    """More than UNREADABLE_LIMIT of the training pairs became unreadable while training."""


class _UnitStream:
    """The loader's crop stream, in decode units of K crops (pure, picklable, needs no pixels).

    Unit u of rank r is global unit g = u·world_size + r, so ranks take disjoint units of one
    stream. A unit's image is drawn uniformly over every crop position in the set (area-weighted,
    as the cache draws), then K crop positions uniformly within that image and K transforms, all
    from (seed, g) and the header sizes alone: each crop is still uniform over all crop positions,
    only not independent of the other crops of its unit.

    Rank-local crop c is crop c mod K of unit c // K, so the stream's state is just the number of
    crops consumed, and a batch is any run of it. A batch that starts or ends inside a unit decodes
    that unit and uses only its own crops of it; the neighbouring batch decodes it again for the
    rest (at most one extra decode per batch, none when K divides the batch size). So every batch
    is a pure function of (first crop, size): workers share nothing, batches do not depend on the
    worker count, and a resume or batch-size change restarts exactly at any crop.
    """

    def __init__(
        self,
        cum: list[int],
        usable: list[tuple[int, int]],
        lq_size: int,
        codes: tuple[int, ...],
        seed: int,
        rank: int,
        world_size: int,
        crops_per_pair: int,
    ) -> None:
        if crops_per_pair < 1:
            raise ValueError(f"crops per pair must be ≥ 1, got {crops_per_pair}")
        self.cum, self.usable, self.lq_size, self.codes = cum, usable, lq_size, codes
        self.seed, self.rank, self.world, self.crops_per_pair = seed, rank, world_size, crops_per_pair

    def unit(self, u: int) -> tuple[int, list[tuple[int, int, int]]]:
        """Rank-local unit u: (image index, its K crops as (y0, x0, transform code) in LQ pixels)."""
        g = u * self.world + self.rank
        rng = random.Random(_mix(self.seed, 2, g))
        image = bisect.bisect_right(self.cum, rng.randrange(self.cum[-1]))
        (width, height), p = self.usable[image], self.lq_size
        crops = [
            (rng.randrange(height - p + 1), rng.randrange(width - p + 1), rng.choice(self.codes))
            for _ in range(self.crops_per_pair)
        ]
        return image, crops

    def redraw(self, u: int, attempt: int, crops: list[tuple[int, int, int, int]]) -> _UnitCrops:
        """Unit u drawn again (attempt ≥ 1) because its pair could not be read: another image,
        area-weighted as `unit` draws, and new crop positions in it. Slots and transform codes stay,
        so the batch's (hflip, transpose) groups stay too. A pure function of (seed, u, attempt)."""
        rng = random.Random(_mix(self.seed, 4, u * self.world + self.rank, attempt))
        image = bisect.bisect_right(self.cum, rng.randrange(self.cum[-1]))
        (width, height), p = self.usable[image], self.lq_size
        return image, [(slot, rng.randrange(height - p + 1), rng.randrange(width - p + 1), code) for slot, _, _, code in crops]

    def batch(self, start: int, size: int) -> tuple[list[_UnitCrops], list[int]]:
        """Crops start … start+size−1 by unit: [(image, [(slot, y0, x0, code), …]), …] and the
        number of crops per (hflip, transpose) group.

        Slots are a seeded shuffle, then stably grouped by those two bits, which the device applies
        per group (as the cache does); so a batch is not K-blocked and workers skip the slow
        strided copies. The vertical flip (code & 1) stays with the worker: a row-order copy.
        """
        k = self.crops_per_pair
        units: list[_UnitCrops] = []
        flat: list[tuple[int, int, int, int]] = []  # (unit's index in units, y0, x0, code)
        for u in range(start // k, (start + size - 1) // k + 1):
            image, crops = self.unit(u)
            units.append((image, []))
            lo, hi = max(start - u * k, 0), min(start + size - u * k, k)
            flat += [(len(units) - 1, *crop) for crop in crops[lo:hi]]
        order = list(range(size))
        random.Random(_mix(self.seed, 3, self.rank, start, size)).shuffle(order)
        order.sort(key=lambda i: flat[i][3] >> 1)
        counts = [0] * 4
        for slot, i in enumerate(order):
            unit, y0, x0, code = flat[i]
            units[unit][1].append((slot, y0, x0, code))
            counts[code >> 1] += 1
        return units, counts


class _BatchStream(Sampler):
    """Endless (first crop, batch size) items, one per batch, from crop `start` on."""

    def __init__(self, start: int, size: int) -> None:
        self.start, self.size = start, size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = self.start
        while True:
            yield start, self.size
            start += self.size


class _BatchDataset(Dataset):
    """One whole batch per item (first crop, size): decodes each unit's pair once and cuts its
    crops into their slots. Returns uint8 [B,p,p,3] LQ and GT, vertically flipped where their code
    says, and the crops per (hflip, transpose) group, which the device applies (`_to_float`)."""

    def __init__(
        self,
        pairs: list[Pair],
        gt_wh: list[tuple[int, int]],
        lq_wh: list[tuple[int, int]],
        scale: int,
        stream: _UnitStream,
        hr_only: bool = False,
    ) -> None:
        self.pairs, self.gt_wh, self.lq_wh, self.scale, self.stream = pairs, gt_wh, lq_wh, scale, stream
        self.hr_only = hr_only  # decode GT only; the LQ batch comes back empty

    def __len__(self) -> int:
        return len(self.pairs)

    def _decode(self, path: Path, wh: tuple[int, int]) -> np.ndarray:
        arr = load_rgb_uint8(path)
        if arr.shape[:2] != (wh[1], wh[0]):  # the crops were drawn from the header sizes
            raise AutosrError(f"{path} decoded to {arr.shape[1]}×{arr.shape[0]}, header said {wh[0]}×{wh[1]}")
        return arr

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[_Skipped]]:
        """(LQ, GT, crops per group, the pairs that could not be read and were drawn around)."""
        start, size = item
        p, s = self.stream.lq_size, self.scale
        units, counts = self.stream.batch(start, size)
        lq_out = np.empty((0,) if self.hr_only else (size, p, p, 3), dtype=np.uint8)
        gt_out = np.empty((size, p * s, p * s, 3), dtype=np.uint8)
        skipped: list[_Skipped] = []
        first_unit = start // self.stream.crops_per_pair
        for i, (image, crops) in enumerate(units):
            lq, gt, crops = self._readable_unit(first_unit + i, image, crops, skipped)
            for slot, y0, x0, code in crops:
                rows = slice(None, None, -1 if code & 1 else 1)
                if lq is not None:
                    lq_out[slot] = lq[y0 : y0 + p, x0 : x0 + p][rows]
                gt_out[slot] = gt[y0 * s : (y0 + p) * s, x0 * s : (x0 + p) * s][rows]
            del lq, gt  # one decoded pair alive at a time
        return torch.from_numpy(lq_out), torch.from_numpy(gt_out), torch.tensor(counts), skipped

    def _readable_unit(
        self, u: int, image: int, crops: list[tuple[int, int, int, int]], skipped: list[_Skipped]
    ) -> tuple[np.ndarray | None, np.ndarray, list[tuple[int, int, int, int]]]:
        """Unit u's pair decoded (LQ, GT, crops). A pair that became unreadable after the start
        (deleted, truncated, replaced) goes into `skipped` and the unit is drawn again elsewhere:
        the worker reports, the main process decides whether the run may go on."""
        for attempt in range(1, MAX_REDRAWS + 1):
            gt_path, lq_path = self.pairs[image]
            try:
                lq = None if self.hr_only else self._decode(lq_path, self.lq_wh[image])
                return lq, self._decode(gt_path, self.gt_wh[image]), crops
            except AutosrError as exc:
                skipped.append((image, exc.message))  # the hint is the run's to give: restore, or stop
            image, crops = self.stream.redraw(u, attempt, crops)
        raise AutosrRuntimeError(
            f"no readable training pair in {MAX_REDRAWS} draws; last: {skipped[-1][1]}",
            "the training images are disappearing: check the disk, then resume",
        )


def _clean_worker_error(exc: AutosrError) -> AutosrError:
    """DataLoader re-raises a worker's error with its traceback as the message: keep the last line."""
    lines = str(exc).strip().splitlines()
    if len(lines) < 2:
        return exc  # raised in this process (num_workers=0): already clean
    return type(exc)(lines[-1].split(f"{type(exc).__name__}: ", 1)[-1])  # the type keeps the exit code


class LoaderCropSource:
    """Crops decoded in DataLoader workers (spawn-safe: only top-level classes cross processes).

    Each worker builds whole batches, decoding a pair once per K crops (`_UnitStream`). The state
    is the number of crops the trainer consumed, not the number prefetched, plus K: a resume
    rebuilds the loader at exactly that crop of the same stream.
    """

    kind = "loader"

    def __init__(
        self,
        table: _CropTable,
        spec: CropSpec,
        *,
        batch_size: int,
        num_workers: int,
        crops_per_pair: int = CROPS_PER_PAIR,
        prefetch_factor: int = 4,
        mp_context: str | None = None,
        reason: str = "",
        degrader: Degrader | None = None,
    ) -> None:
        self.spec, self.device = spec, spec.device
        self.table, self.reason = table, reason
        self.degrader = _hr_degrader(table, spec, degrader)
        self.num_workers, self.prefetch_factor, self.mp_context = num_workers, prefetch_factor, mp_context
        self._dataset = self._make_dataset(crops_per_pair)
        self.batch_size = batch_size
        self.batches = self.samples = 0
        # Pairs found unreadable during the run (image index → error), and those not yet taken by
        # the trainer. Not saved in checkpoints: a resume reads every header again anyway.
        self.unreadable: dict[int, str] = {}
        self._fresh: list[Skip] = []
        self._loader: DataLoader | None = None
        self._iter: Iterator | None = None

    @property
    def crops_per_pair(self) -> int:
        return self._dataset.stream.crops_per_pair

    def _make_dataset(self, crops_per_pair: int) -> _BatchDataset:
        t = self.table
        usable = [usable_lq_size(g, q, t.scale) for g, q in zip(t.gt_wh, t.lq_wh, strict=True)]
        sp = self.spec
        stream = _UnitStream(t.cum.tolist(), usable, t.lq_size, sp.codes, sp.seed, sp.rank, sp.world_size, crops_per_pair)
        return _BatchDataset(t.pairs, t.gt_wh, t.lq_wh, t.scale, stream, hr_only=t.hr_only)

    def _start(self) -> Iterator:
        # Built lazily: a load_state_dict right after construction starts workers only once.
        workers = self.num_workers
        self._loader = DataLoader(
            self._dataset,
            batch_size=None,  # each item already is a whole batch
            sampler=_BatchStream(self.samples, self.batch_size),
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            multiprocessing_context=self.mp_context if workers > 0 else None,
        )
        self._iter = iter(self._loader)
        return self._iter

    def next_batch(self) -> Batch:
        try:
            lq, gt, counts, skipped = next(self._start() if self._iter is None else self._iter)
        except AutosrError as exc:
            raise _clean_worker_error(exc) from None
        self._note_skipped(skipped)
        bounds = np.cumsum([0, *counts.tolist()]).tolist()
        groups = [(bounds[k], bounds[k + 1], 2 * k) for k in range(4) if bounds[k + 1] > bounds[k]]
        gt = _to_float(_to_device(gt, self.device), groups, self.spec.channels_last)
        if self.degrader is not None:  # HR alone: degraded here, on the device, batched
            lq, gt = _degrade(self.degrader, gt, self.samples, bounds[2], self.table.margin)
        else:
            lq = _to_float(_to_device(lq, self.device), groups, self.spec.channels_last)
        self.batches += 1
        self.samples += lq.shape[0]
        return Batch(lq, gt)

    def peek_batch(self, n: int = PEEK) -> Batch:
        """The first n crops of the stream, decoded in this process; the stream's state is untouched."""
        lq, gt, counts, skipped = self._dataset[(0, n)]
        self._note_skipped(skipped)
        bounds = np.cumsum([0, *counts.tolist()]).tolist()
        groups = [(bounds[k], bounds[k + 1], 2 * k) for k in range(4) if bounds[k + 1] > bounds[k]]
        gt = _to_float(_to_device(gt, self.device), groups, self.spec.channels_last)
        if self.degrader is not None:
            return _degrade(self.degrader, gt, PEEK_COUNTER, bounds[2], self.table.margin)
        return Batch(_to_float(_to_device(lq, self.device), groups, self.spec.channels_last), gt)

    def _note_skipped(self, skipped: Sequence[_Skipped]) -> None:
        """Record the pairs a batch was drawn around; stop once too many of the set are gone."""
        total = len(self.table.pairs)
        for image, reason in skipped:
            if image not in self.unreadable:
                self.unreadable[image] = reason
                self._fresh.append(Skip(image, reason, len(self.unreadable), total))
        if len(self.unreadable) > UNREADABLE_LIMIT * total:
            raise UnreadableSet(
                f"{len(self.unreadable)} of {total} training pairs became unreadable while training "
                f"(the limit is {UNREADABLE_LIMIT:.0%}); first: {next(iter(self.unreadable.values()))}",
                "restore the files (or run autosr init again to list the set anew), then resume",
            )

    def take_skips(self) -> list[Skip]:
        """Pairs skipped since the last call, for the trainer to warn about and journal."""
        fresh, self._fresh = self._fresh, []
        return fresh

    def set_batch_size(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be ≥ 1, got {batch_size}")
        if batch_size != self.batch_size:
            self.close()  # prefetched batches of the old size are dropped; the state says where to restart
            self.batch_size = batch_size

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seed": self.spec.seed,
            "batches": self.batches,
            "samples": self.samples,
            "batch_size": self.batch_size,
            "crops_per_pair": self.crops_per_pair,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.close()
        self.batch_size = int(state.get("batch_size", self.batch_size))
        self.batches, self.samples = int(state["batches"]), int(state["samples"])
        # The saved K wins over this build's: under another K the same crop counter names other
        # crops. (A state without one, saved by the cache, goes on from the same counters in
        # another stream.)
        k = int(state.get("crops_per_pair", self.crops_per_pair))
        seed = int(state.get("seed", self.spec.seed))
        if k != self.crops_per_pair or seed != self.spec.seed:
            self.spec = replace(self.spec, seed=seed)
            self._dataset = self._make_dataset(k)
            self.degrader = _hr_degrader(self.table, self.spec, self.degrader)

    def close(self) -> None:
        shutdown = getattr(self._iter, "_shutdown_workers", None)
        if shutdown is not None:
            try:
                shutdown()  # stop persistent workers now rather than at garbage collection
            except RuntimeError as exc:
                # A worker told to stop can abort on its way out ("terminate called without an active
                # exception" in torch's teardown of a spawned process; rare, seen on a loaded CI box).
                # Its batches were all taken and torch has already reaped the workers, so closing is done.
                if not str(exc).startswith("DataLoader worker"):
                    raise
        self._iter = self._loader = None


# ------------------------------------------------------------------------------------ factory ----


def _gib(n: float) -> str:
    return f"{n / _GiB:.1f} GiB" if n >= _GiB / 10 else f"{n / (1 << 20):.0f} MiB"


@dataclass(frozen=True)
class CacheTier:
    """One place the decoded set may live: a device ("cuda:0"; "cpu" = pinned host memory with a
    CUDA device), or None for no cache (loader workers decode per batch)."""

    where: torch.device | None
    reason: str


def plan_cache_tiers(need: int, device: torch.device, device_budget: int, host_budget: int | None,
                     cache_device: torch.device | None = None) -> list[CacheTier]:
    """Where to try to keep the decoded set, best first; the loader (no cache) always ends the list.

    Pure: the budgets are the caller's measurements. On a GPU: the device itself, then pinned host
    memory (still far faster than decoding per crop); on the CPU: RAM.
    """
    first = cache_device if cache_device is not None else device
    budgets: list[tuple[torch.device, int]] = [(first, device_budget)]
    if host_budget and device.type == "cuda" and cache_device is None:
        budgets.append((torch.device("cpu"), host_budget))
    tiers = []
    for where, budget in budgets:
        if need <= budget:
            place = "pinned host memory, copied to the GPU per batch" if where.type == "cpu" and device.type == "cuda" else str(where)
            tiers.append(CacheTier(where, f"decoded set {_gib(need)} fits the {_gib(budget)} cache budget: crops are cut in {place}"))
    over = " / ".join(_gib(b) for _, b in budgets)
    tiers.append(CacheTier(None, f"decoded set {_gib(need)} exceeds the {over} cache budget"))
    return tiers


def build_crop_source(
    pairs_gt_lq: Sequence[Pair],
    *,
    scale: int,
    lq_size: int,
    batch_size: int,
    use_hflip: bool,
    use_rot: bool,
    seed: int,
    device: str | torch.device,
    channels_last: bool,
    cache_budget_bytes: int | None,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    cache_device: str | torch.device | None = None,
    host_cache_budget_bytes: int | None = None,
    mp_context: str | None = None,
    decode_threads: int | None = None,
    crops_per_pair: int = CROPS_PER_PAIR,
) -> CropSource:
    """Check every pair from its headers, then cache the decoded set if it fits a budget, else load.

    cache_device: where the cache lives (default: `device`); "cpu" with a CUDA device means
    pinned host memory, cut there and copied over. host_cache_budget_bytes: with a CUDA device, a
    second tier — a set too big for the device cache but within this many bytes is cached in pinned
    host memory. mp_context: the loader workers' start method (None: the platform's).
    decode_threads: threads that fill the cache (None: up to 16). crops_per_pair: crops the loader
    cuts from each pair it decodes (K; the cache ignores it). The choice and its reason are
    `source.reason`.
    """
    table = _CropTable.scan(pairs_gt_lq, scale, lq_size)
    spec = CropSpec(use_hflip, use_rot, seed, _resolve(device), channels_last, rank, world_size)
    return _cached_or_loader(table, spec, None, batch_size=batch_size, cache_budget_bytes=cache_budget_bytes,
                             num_workers=num_workers, cache_device=cache_device, host_cache_budget_bytes=host_cache_budget_bytes,
                             mp_context=mp_context, decode_threads=decode_threads, crops_per_pair=crops_per_pair)


def build_hr_crop_source(
    hr_files: Sequence[str | os.PathLike[str]],
    degrader: Degrader,
    *,
    lq_size: int,
    batch_size: int,
    use_hflip: bool,
    use_rot: bool,
    seed: int,
    device: str | torch.device,
    channels_last: bool,
    cache_budget_bytes: int | None,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    cache_device: str | torch.device | None = None,
    host_cache_budget_bytes: int | None = None,
    mp_context: str | None = None,
    decode_threads: int | None = None,
    crops_per_pair: int = CROPS_PER_PAIR,
    margin: int | None = None,
) -> CropSource:
    """`build_crop_source` for HR images alone: crops of lq_size × scale (scale = degrader.scale)
    whose LR side `degrader` makes on `device` (build it with `Degrader.from_options`; the source
    reseeds it from (seed, rank), so its own seed does not matter). Same cache/loader choice (the
    cache holds the HR images only), same state, same reasons.

    margin: LR px of context cut with each crop on every side and degraded with it, then cut away
    (None: the degrader's own, `degrader.margin`: realesrgan 16 // scale, as traiNNer degrades a crop
    32 HR px larger than gt_size and takes a random window of it; bicubic 2, its kernel's reach, so
    that the LR equals the offline LR of the whole image). It shrinks to what the smallest image allows."""
    m = degrader.margin if margin is None else margin
    table = _CropTable.scan_hr(hr_files, degrader.scale, lq_size, m)
    spec = CropSpec(use_hflip, use_rot, seed, _resolve(device), channels_last, rank, world_size)
    return _cached_or_loader(table, spec, degrader, batch_size=batch_size, cache_budget_bytes=cache_budget_bytes,
                             num_workers=num_workers, cache_device=cache_device, host_cache_budget_bytes=host_cache_budget_bytes,
                             mp_context=mp_context, decode_threads=decode_threads, crops_per_pair=crops_per_pair)


def _cached_or_loader(
    table: _CropTable,
    spec: CropSpec,
    degrader: Degrader | None,
    *,
    batch_size: int,
    cache_budget_bytes: int | None,
    num_workers: int,
    cache_device: str | torch.device | None,
    host_cache_budget_bytes: int | None,
    mp_context: str | None,
    decode_threads: int | None,
    crops_per_pair: int,
) -> CropSource:
    """The decoded set cached if it fits a budget (best tier first), else the worker loader."""
    cache_at = _resolve(cache_device) if cache_device is not None else None
    tiers = plan_cache_tiers(table.decoded_bytes(), spec.device, cache_budget_bytes or 0, host_cache_budget_bytes, cache_at)
    fallback = ""
    for tier in tiers[:-1]:
        try:
            reason = tier.reason + (f"; LR made on the device ({degrader.kind}, {table.margin} LR px of context per side)"
                                    if degrader is not None else "")
            return CachedCropSource(table, spec, batch_size=batch_size, cache_device=tier.where,
                                    threads=decode_threads, reason=reason, degrader=degrader)
        except RuntimeError as exc:  # CUDA OOM, or pinned/host memory refused
            if "memory" not in str(exc).lower():
                raise
            fallback = f"; the cache did not fit after all ({str(exc).splitlines()[0][:120]})"
            if tier.where is not None and tier.where.type == "cuda":
                torch.cuda.empty_cache()
    unit = "image" if table.hr_only else "pair"
    reason = f"{tiers[-1].reason}{fallback}: {num_workers} workers decode and cut {crops_per_pair} crops per decoded {unit}"
    if degrader is not None:
        reason += f"; LR made on the device ({degrader.kind}, {table.margin} LR px of context per side)"
    return LoaderCropSource(table, spec, batch_size=batch_size, num_workers=num_workers,
                            crops_per_pair=crops_per_pair, mp_context=mp_context, reason=reason, degrader=degrader)
