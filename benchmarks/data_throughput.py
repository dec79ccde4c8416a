"""How fast can the crop sources feed the trainer? Batches/s and samples/s, warm-up excluded.

    python benchmarks/data_throughput.py                      # 200 synthetic 512² HR images, ×2
    python benchmarks/data_throughput.py --dir my_set --device cuda --batch 256 --lq 64
    # the worker loader alone, where decoding dominates: 1 crop per decoded pair (the old
    # behaviour) against the default K, and a sweep of K
    python benchmarks/data_throughput.py --count 24 --size 1024 --workers 2 --batch 64 --skip-cache
    python benchmarks/data_throughput.py --count 24 --size 1024 --workers 2 --batch 64 --skip-cache \
        --crops-per-pair 1,2,4,8,16,32

The figure to compare with is the GPU-bound training step (shared/specs/performance.md): nano at
lq 64 trains ~23,000 samples/s on an H200, so a source must deliver well beyond that to stay out
of the way. Sources measured: the cache on the device, the cache in pinned host memory (CUDA
only), and the worker loader once per crops-per-decoded-pair K (default: 1 and the loader's
default, with the speed-up over the first). Each sample is ready on the device as float in [0, 1].
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from PIL import Image  # noqa: E402

from autosr.images import collect_pairs  # noqa: E402
from autosr.synthetic import paint  # noqa: E402
from autosr.train.data import CROPS_PER_PAIR, build_crop_source  # noqa: E402

TARGET = 23_000  # samples/s: nano, lq 64, H200 (performance.md)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(source, device: torch.device, warmup: int, seconds: float, min_batches: int) -> tuple[float, int]:
    """(batches/s, batches timed): the batch counts as delivered once its tensors exist on the device."""
    for _ in range(warmup):
        source.next_batch()
    _sync(device)
    start, n = time.perf_counter(), 0
    while n < min_batches or time.perf_counter() - start < seconds:
        source.next_batch()
        n += 1
    _sync(device)
    return n / (time.perf_counter() - start), n


def worker_alone(source, batch: int, seconds: float, min_batches: int = 2) -> float:
    """Samples/s of one loader worker's share of the work (decode, cut, stack), run in this process:
    what each worker adds, whatever the main process and the device do with the batches."""
    dataset, start, n = source._dataset, time.perf_counter(), 0
    while n < min_batches or time.perf_counter() - start < seconds:
        dataset[(n * batch, batch)]
        n += 1
    return n * batch / (time.perf_counter() - start)


def _decodes_per_batch(batch: int, k: int, batches: int = 1000) -> float:
    """Pairs a loader batch decodes on average: the units of K crops that its crops fall in."""
    return sum((b * batch + batch - 1) // k - (b * batch) // k + 1 for b in range(batches)) / batches


def _write_one(root: Path, i: int, size: int, scale: int) -> None:
    """One pair as autosr.synthetic.write_pairs makes it (HR painting, bicubic LR), for a process pool."""
    hr = Image.fromarray(paint(size, size, i))
    hr.resize((size // scale, size // scale), Image.Resampling.BICUBIC).save(root / "lr" / f"img_{i:04d}.png")
    hr.save(root / "hr" / f"img_{i:04d}.png")


def dataset(args: argparse.Namespace) -> list:
    root = (
        Path(args.dir)
        if args.dir
        else Path(tempfile.gettempdir()) / f"autosr-bench-{args.count}x{args.size}-x{args.scale}"
    )
    hr, lr = root / "hr", root / "lr"
    if not (hr.is_dir() and len(list(hr.iterdir())) >= (args.count if not args.dir else 1)):
        print(
            f"writing {args.count} synthetic pairs ({args.size}² HR, ×{args.scale}) to {root} …", flush=True
        )
        t = time.perf_counter()
        for sub in (hr, lr):
            sub.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor() as pool:
            n = args.count
            list(pool.map(_write_one, [root] * n, range(n), [args.size] * n, [args.scale] * n))
        print(f"  {time.perf_counter() - t:.1f} s")
    return collect_pairs(str(hr), str(lr))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="dataset root with hr/ and lr/ (default: generate a synthetic set)")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="HR width and height of the synthetic set")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lq", type=int, default=64, help="LQ patch size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="loader workers")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per source")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-loader", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument(
        "--crops-per-pair",
        default=f"1,{CROPS_PER_PAIR}",
        help="comma-separated K values for the loader: crops cut per decoded pair",
    )
    parser.add_argument(
        "--decode-sweep", action="store_true", help="also time filling the cache with 1…16 threads"
    )
    args = parser.parse_args()

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device: {device} ({name}); torch {torch.__version__}; {os.cpu_count()} CPU cores; python {platform.python_version()}"
    )
    pairs = dataset(args)
    bytes_per_sample = 3 * args.lq * args.lq * (1 + args.scale * args.scale)
    common = dict(
        scale=args.scale,
        lq_size=args.lq,
        batch_size=args.batch,
        use_hflip=True,
        use_rot=True,
        seed=0,
        device=device,
        channels_last=True,
        num_workers=args.workers,
    )

    if args.decode_sweep:
        for threads in (1, 2, 4, 8, 16):
            t = time.perf_counter()
            build_crop_source(
                pairs, **{**common, "device": "cpu"}, cache_budget_bytes=1 << 50, decode_threads=threads
            )
            print(
                f"fill the cache with {threads:2d} decode threads: {time.perf_counter() - t:5.2f} s",
                flush=True,
            )

    runs = []
    if not args.skip_cache:
        runs.append(("cache on device", dict(cache_budget_bytes=1 << 50)))
        if device.type == "cuda":
            runs.append(("cache in pinned host memory", dict(cache_budget_bytes=1 << 50, cache_device="cpu")))
    if not args.skip_loader:
        for k in dict.fromkeys(int(v) for v in args.crops_per_pair.split(",")):
            runs.append(
                (f"loader, {args.workers} workers, K={k}", dict(cache_budget_bytes=0, crops_per_pair=k))
            )

    print(
        f"{len(pairs)} pairs, batch {args.batch}, lq {args.lq}, ×{args.scale}, 8 dihedral augmentations, channels_last"
    )
    loader_base: tuple[int, float] | None = None  # (K, samples/s) of the first loader run
    loader_alone = 0.0  # and its one-worker-alone samples/s
    for label, extra in runs:
        t = time.perf_counter()
        source = build_crop_source(pairs, **common, **extra)
        _sync(device)
        built = time.perf_counter() - t
        rate, n = measure(source, device, args.warmup, args.seconds, min_batches=5)
        source.close()
        alone = worker_alone(source, args.batch, args.seconds / 2) if "crops_per_pair" in extra else 0.0
        samples = rate * args.batch
        note = ""
        if "crops_per_pair" in extra:
            k = extra["crops_per_pair"]
            loader_base = loader_base or (k, samples)
            loader_alone = loader_alone or alone
            note = (
                f"   {_decodes_per_batch(args.batch, k):5.1f} pair decodes/batch; "
                f"one worker alone {alone:7,.0f} samples/s"
            )
            if k != loader_base[0]:
                note += (
                    f"; {samples / loader_base[1]:5.2f}× K={loader_base[0]} "
                    f"({alone / loader_alone:5.2f}× for one worker alone)"
                )
        print(
            f"{label:30s} {rate:9.1f} batches/s {samples:11,.0f} samples/s "
            f"{samples * bytes_per_sample / 1e9:6.2f} GB/s uint8   "
            f"= {samples / TARGET:5.2f}× the {TARGET:,} samples/s nano step   "
            f"(built in {built:.1f} s, {n} batches timed){note}",
            flush=True,
        )


if __name__ == "__main__":
    main()
