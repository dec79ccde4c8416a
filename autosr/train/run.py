"""`autosr train`: config → run folder → Trainer.fit(), with resume and a graceful Ctrl-C."""

from __future__ import annotations

import json
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from autosr.config import RunConfig, load_config, parse_override
from autosr.errors import AutosrError
from autosr.fsutil import write_text_atomic
from autosr.journal import Journal, plan_decisions
from autosr.train import checkpoint as ckpt
from autosr.train.setup import init_distributed

err = Console(stderr=True, highlight=False)


def train_from_file(
    config_path: Path, *, out_dir: Path, resume: bool | None, overrides: list[str], dry_run: bool, quiet: bool = False
) -> int:
    cfg = load_config(config_path, overrides)
    dist = init_distributed()
    from autosr.train.trainer import Trainer  # torch-heavy: imported once the config is known good

    if dry_run:
        return _dry_run(cfg, dist)

    run_dir = out_dir / cfg.name
    store = ckpt.CheckpointStore(run_dir)
    latest = store.latest()
    explicit = cfg.section("path").get("resume_state")
    if explicit:  # traiNNer's way to name the state to resume from
        latest, resume = Path(explicit), True
        if not latest.is_file():
            raise AutosrError(f"path.resume_state: {latest} does not exist", "fix the path, or remove the key to resume from the run folder")
    if resume is None:
        resume = latest is not None
    if resume and latest is None:
        raise AutosrError(f"{run_dir}: no checkpoint to resume from", "start it with --no-resume (or drop --resume)")
    if not resume and latest is not None:
        raise AutosrError(
            f"{run_dir}: this run already has checkpoints",
            "resume it (the default), or start a new one with --set name=<new name>",
        )

    journal = Journal(run_dir / "events.jsonl" if dist.is_main else None)
    # Built first: it reads every image header, so bad data fails before the run folder is touched.
    trainer = Trainer(cfg, run_dir, dist, journal, quiet=quiet)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_run_files(cfg, run_dir, config_path, overrides, first=not resume)
        if not resume:
            for key, value, reason in plan_decisions(config_path.read_text(encoding="utf-8")):
                journal.record(0, "plan", key, None, value, reason)

    if resume:
        state = ckpt.load_training_state(latest)
        _check_same_model(cfg, state, run_dir)
        trainer.load_state(state)
        if trainer.iteration >= trainer.total_iter:
            err.print(
                f"{run_dir}: already trained to iteration {trainer.iteration} of {trainer.total_iter}; "
                f"to go on, raise it: --set train.total_iter={max(trainer.iteration, trainer.total_iter) * 2}"
            )
            return 0
        if dist.is_main:
            _truncate_metrics(run_dir / "metrics.jsonl", trainer.iteration)
            journal.truncate_after(trainer.iteration)
            journal.record(trainer.iteration, "trainer", "resume", None, trainer.iteration, f"resumed from {latest.name}")

    if dist.is_main:
        for text in overrides:
            key, value = parse_override(text)
            journal.record(trainer.iteration, "set", key, None, value, "--set on the train command line")
    try:
        code = _fit_with_interrupts(trainer)
    finally:
        _leave_process_group(dist)
    if dist.is_main:
        _print_result(trainer, run_dir, config_path, overrides, code)
    return code


def _leave_process_group(dist: Any) -> None:
    if dist.world_size > 1:
        import torch.distributed

        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _fit_with_interrupts(trainer: Any) -> int:
    """First Ctrl-C: finish the step, checkpoint, exit 130. Second: abort at once."""

    def on_interrupt(signum: int, frame: Any) -> None:
        if trainer.interrupted:
            raise KeyboardInterrupt
        trainer.interrupted = True
        err.print("\n[yellow]Ctrl-C: finishing this step and saving a checkpoint (Ctrl-C again to abort)[/yellow]")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        return trainer.fit()
    finally:
        signal.signal(signal.SIGINT, previous)


def _dry_run(cfg: RunConfig, dist: Any) -> int:
    from autosr.train.trainer import Trainer

    trainer = Trainer(cfg, None, dist, Journal(None), quiet=True)
    trainer.fit(max_steps=1)
    loss = float(trainer.last_stats.total)
    err.print(f"[green]dry run ok[/green]: {cfg.source}")
    err.print(f"  model   {trainer.net_opts['type']} ×{cfg.scale}, precision {trainer.precision.label} ({trainer.precision.note})")
    err.print(f"  data    {trainer.data_reason}")
    err.print(f"  batch   {trainer.batch_size} × accum {trainer.accum}, patch {cfg.lq_size}, device {trainer.device}")
    err.print(f"  step    1 step ran, loss {loss:.4g}; {len(trainer.val_images)} validation images")
    for key, note in trainer._unapplied_sections():
        err.print(f"  note    {key}: {note}")
    return 0


def _write_run_files(cfg: RunConfig, run_dir: Path, config_path: Path, overrides: list[str], first: bool) -> None:
    from autosr.hardware import probe

    header = f"# resolved config of {config_path}" + (f" with --set {' '.join(overrides)}" if overrides else "") + "\n"
    write_text_atomic(run_dir / "config.yml", header + yaml.safe_dump(cfg.data, sort_keys=False))
    write_text_atomic(run_dir / "hardware.json", json.dumps(probe(run_dir).to_dict(), indent=2))
    if first:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        (run_dir / "events.jsonl").unlink(missing_ok=True)


def _check_same_model(cfg: RunConfig, state: dict[str, Any], run_dir: Path) -> None:
    saved = state.get("config", {})
    for key in ("scale", "network_g"):
        if saved.get(key) != cfg.data.get(key):
            raise AutosrError(
                f"{run_dir}: the checkpoint was trained with {key}={saved.get(key)}, the config says {cfg.data.get(key)}",
                "train it under another name: --set name=<new name>",
            )


def _truncate_metrics(path: Path, iteration: int) -> None:
    """Drop metric lines past the restored iteration so the log reads as one straight run."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("iter", 0) <= iteration:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def _print_result(trainer: Any, run_dir: Path, config_path: Path, overrides: list[str], code: int) -> None:
    if code == 130:
        sets = "".join(f" --set {shlex.quote(o)}" for o in overrides)
        command = f"autosr train {shlex.quote(str(config_path))}{sets}"
        err.print(f"[yellow]stopped at iteration {trainer.iteration}[/yellow]; checkpoint saved. Resume with: {command}")
        return
    best = ", ".join(f"{k} {v[0]:.4f} @ {v[1]}" for k, v in trainer.best.items()) or "no validation"
    err.print(f"[green]done[/green]: {trainer.iteration} iterations · best {best}")
    err.print(f"  run folder: {run_dir}  (metrics.jsonl, events.jsonl, models/)")
    if (run_dir / "models" / "net_g_best.safetensors").exists():
        err.print(f"  best model: {run_dir / 'models' / 'net_g_best.safetensors'}")
    sys.stderr.flush()
