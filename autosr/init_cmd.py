"""`autosr init`: hardware + dataset → plan → commented traiNNer YAML (+ hold-out lists)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from autosr.config import validate
from autosr.dataset import analyse, check_patch, hold_out, pair_folders, write_meta_info
from autosr.errors import AutosrError
from autosr.fsutil import write_text_atomic
from autosr.hardware import probe
from autosr.plan import Plan, ValData, make_plan
from autosr.presets import load_preset
from autosr.render import render

err = Console(stderr=True, highlight=False)


def run_init(
    *, gt: Path, lq: Path, arch: str | None, val_gt: Path | None, val_lq: Path | None, output: Path,
    name: str | None, scale: int | None, overrides: list[str], flavor: str, force: bool,
    print_only: bool, explain: bool, sample: int,
) -> Plan:
    if not print_only and output.exists() and not force:
        raise AutosrError(f"{output}: already exists", "pass --force to overwrite it, or -o another.yml")
    if arch:
        load_preset(arch)  # an unknown name fails before any reading
    if (val_gt is None) != (val_lq is None):
        raise AutosrError("--val-gt and --val-lq go together", "pass both folders, or neither to hold out pairs")

    hw = probe(Path("runs"))
    ds = analyse(gt.resolve(), lq.resolve(), sample=sample, scale=scale)
    meta_dir = output.resolve().parent
    stem = output.stem
    if val_gt is not None and val_lq is not None:
        val_pairs = pair_folders(val_gt.resolve(), val_lq.resolve()).pairs
        held = None
        # Unpaired files would break traiNNer's folder mode: list the pairs explicitly then.
        train_pairs = ds.pairs if (ds.unpaired_gt or ds.unpaired_lq) else None
        train_meta = str(meta_dir / f"{stem}.train_pairs.txt") if train_pairs else None
        val = ValData("folders", str(val_gt.resolve()), str(val_lq.resolve()), len(val_pairs), train_meta_info=train_meta)
    else:
        split = hold_out(ds.pairs)
        train_pairs, held = split.train, split.val
        val = ValData(
            "holdout", str(ds.gt_dir), str(ds.lq_dir), len(held),
            meta_info=str(meta_dir / f"{stem}.val_pairs.txt"),
            train_meta_info=None if split.shared else str(meta_dir / f"{stem}.train_pairs.txt"),
            note=split.describe(),
        )

    plan = make_plan(hw, ds, arch=arch, val=val, overrides=overrides, flavor=flavor, name=name)
    if "datasets.train.lq_size" in plan.values:
        check_patch(ds, int(plan.get("datasets.train.lq_size")))
    command = "autosr init " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "autosr init"
    text = render(plan, command=command)
    _check_round_trip(text, plan)

    if explain:
        _print_explain(plan)
    if print_only:
        sys.stdout.write(text)
        if val.meta_info or val.train_meta_info:
            err.print("[yellow]note:[/yellow] --print: the pair lists were not written; run without --print to write them")
        return plan
    if val.train_meta_info:
        write_meta_info(train_pairs, Path(val.train_meta_info))
    if held is not None:
        write_meta_info(held, Path(val.meta_info))
    write_text_atomic(output, text)
    _print_summary(plan, ds, output)
    return plan


def _check_round_trip(text: str, plan: Plan) -> None:
    """The file we write must load back, typed, into our own strict loader, unchanged."""
    loaded = yaml.safe_load(text)
    validate(loaded, "rendered config")
    if loaded != plan.tree():
        raise AssertionError("rendered YAML does not load back to the plan")  # a bug, not user input


def _print_explain(plan: Plan) -> None:
    table = Table(title="autosr plan", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("key", style="cyan", overflow="fold", ratio=3)
    table.add_column("value", overflow="fold", ratio=2)
    table.add_column("reason", style="dim", overflow="fold", ratio=4)
    for key, decision in plan.values.items():
        reason = "set by you" if decision.source == "set" else decision.reason
        table.add_row(key, str(decision.value), reason)
    err.print(table)


def _print_summary(plan: Plan, ds, output: Path) -> None:
    get = plan.values.get
    batch = get("datasets.train.batch_size_per_gpu")
    accum = get("datasets.train.accum_iter")
    lq = get("datasets.train.lq_size")
    precision = "bf16" if plan.get("amp_bf16") else ("fp16" if plan.get("use_amp") else "fp32")
    err.print(f"[green]wrote[/green] {output}")
    err.print(
        f"  {plan.get('network_g.type')} ×{plan.get('scale')} · {ds.pair_count} pairs ({ds.complexity_label}) · "
        f"batch {batch.value if batch else '?'}×{accum.value if accum else 1} · patch {lq.value if lq else '?'} · "
        f"{precision} · {plan.get('train.total_iter')} iterations"
    )
    for note in plan.notes:
        err.print(f"  [yellow]note:[/yellow] {note}")
    err.print(f"  next: [bold]autosr train {output}[/bold]   (see every reason: autosr init … --explain)")
