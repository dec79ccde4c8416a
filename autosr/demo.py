"""`autosr demo`: a small generated paired set → `init` → a short `train` → where the results are.

Runs in a few minutes on a 2-core CPU; on a GPU it is over in seconds.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from autosr.errors import AutosrError
from autosr.fsutil import check_creatable
from autosr.init_cmd import run_init
from autosr.runfolder import RunFolder, read_jsonl
from autosr.synthetic import write_pairs

err = Console(stderr=True, highlight=False)
PAIRS = 48


def run_demo(folder: Path, *, iters: int = 600) -> None:
    folder = Path(folder)
    _check_writable(folder)
    data = folder / "data"
    if not (data / "hr").is_dir():
        err.print(f"writing {PAIRS} example pairs (×2) to {data}")
        try:
            write_pairs(data, PAIRS, scale=2, size=(192, 160), seed=7)
        except PermissionError as e:  # a sub-folder the check above could not see
            raise AutosrError(f"{e.filename or data}: cannot write there", "pass --dir a folder you can write to") from None
    name = _free_name(folder / "runs")
    if name != "demo":
        err.print(f"{folder / 'runs' / 'demo'} holds an earlier demo run (kept): this one goes to {folder / 'runs' / name}")
    config = folder / f"{name}.yml"
    overrides = [
        f"train.total_iter={iters}",
        f"train.warmup_iter={max(10, iters // 20)}",
        "train.optim_g.lr=5.0e-3",  # a short run: a bolder LR than the 40k-iteration preset
        "datasets.train.lq_size=32",  # small patches and no accumulation: many quick steps on a CPU
        "datasets.train.batch_size_per_gpu=16",
        "datasets.train.accum_iter=1",
        f"val.val_freq={max(10, iters // 4)}",
        f"logger.print_freq={max(5, iters // 10)}",
        f"logger.save_checkpoint_freq={max(10, iters // 2)}",
    ]
    run_init(
        gt=data / "hr", lq=data / "lr", arch="paragonsr2_nano", val_gt=None, val_lq=None, output=config,
        name=name, scale=None, overrides=overrides, flavor="fork", force=True, print_only=False,
        explain=False, sample=256,
    )
    run_dir = folder / "runs" / name
    from autosr.train_cmd import train_from_file

    code = train_from_file(config, out_dir=folder / "runs", resume=None, overrides=[], dry_run=False)
    if code:
        return
    records = read_jsonl(RunFolder(run_dir).metrics).records
    base = next((r for r in records if r.get("kind") == "baseline"), {})
    vals = [r for r in records if r.get("kind") == "val"]
    if base and vals:
        best = max(vals, key=lambda r: r["psnr"])
        err.print(
            f"[bold]demo result[/bold]: PSNR {best['psnr']:.2f} dB at iteration {best['iter']} "
            f"vs bicubic {base['psnr']:.2f} dB ({best['psnr'] - base['psnr']:+.2f} dB)"
        )
    err.print(f"next: autosr report {run_dir}  — or train on your own folders: autosr init --gt HR/ --lq LR/ && autosr train auto.yml")


def _free_name(runs: Path) -> str:
    """'demo', or 'demo-2', 'demo-3'… when earlier demo runs are there: a new demo never deletes one."""
    name, n = "demo", 1
    while (runs / name).exists():
        n += 1
        name = f"demo-{n}"
    return name


def _check_writable(folder: Path) -> None:
    """--dir must be (or be creatable in) a folder this user can write: one line, before any work."""
    if folder.exists() and not folder.is_dir():
        raise AutosrError(f"{folder}: not a folder", "pass --dir a folder (it is created when missing)")
    check_creatable(folder, "--dir")
