"""How long does planning take on a folder of 100,000 pairs? The target: `autosr init` < 10 s.

    python benchmarks/init_100k.py [--dir DIR] [--pairs 100000] [--skip-cli]

Writes tiny pairs (32×32 HR / 16×16 LR PNGs) into DIR (a temporary folder by default; an
existing DIR with the same number of pairs is reused), then times
  (a) autosr.plan.dataset.analyse in this process, and
  (b) the whole CLI, `autosr init … --print`, in a fresh interpreter (imports included).
Generation is fast because a few encoded images are written under many names.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from autosr.plan.dataset import analyse  # noqa: E402
from autosr.synthetic import paint  # noqa: E402

TARGET_S = 10.0
VARIANTS = 8  # distinct images; the rest are copies under other names


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def generate(root: Path, pairs: int) -> tuple[Path, Path]:
    """root/hr and root/lr with `pairs` pairs; reused when a previous run left the same count."""
    hr_dir, lr_dir = root / "hr", root / "lr"
    marker = root / f".complete-{pairs}"
    if marker.exists():
        return hr_dir, lr_dir
    for folder in (hr_dir, lr_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    encoded = []
    for seed in range(VARIANTS):
        hr = Image.fromarray(paint(32, 32, seed))
        encoded.append((_png(hr), _png(hr.resize((16, 16), Image.Resampling.BICUBIC))))
    start = time.perf_counter()
    for i in range(pairs):
        hr_bytes, lr_bytes = encoded[i % VARIANTS]
        name = f"{i:06d}.png"
        (hr_dir / name).write_bytes(hr_bytes)
        (lr_dir / name).write_bytes(lr_bytes)
    marker.touch()
    print(f"generated {pairs} pairs in {time.perf_counter() - start:.1f} s under {root}")
    return hr_dir, lr_dir


def time_analyse(hr: Path, lr: Path) -> float:
    start = time.perf_counter()
    profile = analyse(hr, lr)
    took = time.perf_counter() - start
    print(
        f"(a) analyse: {took:.2f} s — {profile.pair_count} pairs, ×{profile.scale}, sampled {profile.sampled}, "
        f"complexity {profile.complexity:.2f} ({profile.complexity_label}), degradation {profile.degradation['label']}"
    )
    return took


def time_cli(hr: Path, lr: Path) -> float | None:
    command = [
        sys.executable, "-m", "autosr.cli", "init", "--gt", str(hr), "--lq", str(lr),
        "--arch", "paragonsr2_nano", "--print", "--set", "datasets.train.lq_size=16",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    took = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"(b) autosr init: failed (exit {done.returncode}) after {took:.2f} s: {last}")
        return None
    print(f"(b) autosr init --print: {took:.2f} s (fresh interpreter, imports included)")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="where to generate the pairs (kept; reused when present)")
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--skip-cli", action="store_true", help="time analyse only")
    args = parser.parse_args()

    temp = None if args.dir else tempfile.TemporaryDirectory(prefix="autosr-100k-")
    root = args.dir or Path(temp.name)
    try:
        hr, lr = generate(root, args.pairs)
        figures = {"analyse": time_analyse(hr, lr)}
        if not args.skip_cli:
            figures["autosr init"] = time_cli(hr, lr)
    finally:
        if temp is not None:
            temp.cleanup()

    ok = True
    for what, took in figures.items():
        if took is None:
            print(f"{what}: not measured")
            continue
        verdict = "PASS" if took < TARGET_S else "FAIL"
        ok &= took < TARGET_S
        print(f"{what}: {took:.2f} s — {verdict} (target < {TARGET_S:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
