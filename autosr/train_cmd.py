"""`autosr train`: config → run folder → the loop's fit(), with resume and a graceful Ctrl-C or SIGTERM.

The command's composition root: it builds what the loop runs — the objective (what a step
computes), the data, the runtime scheduler's automations, the model files' metadata — and hands
them to `autosr.train.loop.Trainer`, which knows none of the layers above it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from autosr.config import RunConfig, load_config, parse_override, read_yaml, stale_after_overrides
from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.fork_keys import unused_fork_keys
from autosr.fsutil import check_creatable, write_text_atomic
from autosr.hardware import probe
from autosr.init_cmd import run_init_from
from autosr.journal import Journal
from autosr.plan.complete import partial_reasons
from autosr.plan.dataset import image_complexity
from autosr.plan_file import plan_path_for, plan_records, read_plan
from autosr.runfolder import RunFolder, rewrite_jsonl, up_to, write_failure
from autosr.schedule import build_automations, describe
from autosr.train import checkpoint as ckpt
from autosr.train import distributed, runlock
from autosr.train.budget import TimeBudget
from autosr.train.data import CropSource
from autosr.train.fidelity import FidelityObjective
from autosr.train.gan import GANObjective
from autosr.train.graphed import GraphedFidelity, graph_blocker
from autosr.train.hooks import Automation, RunInfo
from autosr.train.inputs import build_data
from autosr.train.launch import launch_note
from autosr.train.loop import SCHEDULE_EVERY, ModelMetadata, RunResult, Trainer
from autosr.train.losses import inert_loss_keys
from autosr.train.objective import Objective
from autosr.train.settings import Settings, build_settings
from autosr.train.setup import DistInfo, Note, TorchSetup, init_distributed, setup_torch
from autosr.use.model_file import model_metadata

err = Console(stderr=True, highlight=False)
DEFAULT_OUT = Path("runs")  # `autosr train --out`'s default (autosr/cli.py)
NO_GRAPH_ENV = "AUTOSR_NO_CUDA_GRAPH"  # 1: the eager step even where a CUDA graph would do (A/B benchmarks)


def complete_if_partial(config_path: Path, out_dir: Path, *, time_budget: float | None, explain: bool) -> Path:
    """A partial config (keys missing or `auto`: autosr/plan/complete.py) is completed by the planner into
    <out>/<stem>.planned.yml (with its plan file and pair lists); a complete one is returned as it is. The
    planned file is reused while it is newer than the partial one, so a resumed run keeps its plan."""
    tree = read_yaml(config_path)
    if not partial_reasons(tree):
        return config_path
    planned = out_dir / f"{config_path.stem}.planned.yml"
    if planned.is_file() and planned.stat().st_mtime >= config_path.stat().st_mtime:
        err.print(f"[dim]{config_path} is partial: using the plan made at its first start, {planned}[/dim]")
        return planned
    check_creatable(out_dir, "--out")
    run_init_from(config_path, output=planned, force=True, print_only=False, explain=explain, sample=256,
                  time_budget=time_budget, calibrate=True)
    err.print(f"planned the rest of {config_path} into {planned} (its reasons: autosr init --from {config_path} --explain)")
    return planned


def train_from_file(
    config_path: Path, *, out_dir: Path, resume: bool | None, overrides: list[str], dry_run: bool, quiet: bool = False,
    time_budget: float | None = None, spent: float = 0.0, explain: bool = False,
) -> int:
    """`time_budget`: seconds for the whole command (None: the plan's budget, if init set one);
    `spent`: seconds of it already used before this call (the CLI passes its process's age)."""
    budget = _budget(config_path, time_budget, spent)  # started first: the budget counts the start-up too
    cfg = load_config(config_path, overrides)
    dist = init_distributed()
    stale = stale_after_overrides(cfg.data, overrides)  # e.g. a warm-up longer than a shortened run
    if dist.is_main:
        for line in stale:
            err.print(f"[yellow]warning:[/yellow] {escape(line)}")

    if dry_run:
        return _dry_run(cfg, dist, explain)

    run_dir = out_dir / cfg.name
    if dist.is_main:
        check_creatable(run_dir, "--out")  # a folder this user cannot write: one line, before anything is written
    # Taken before anything reads, cleans or writes the folder: a refused second run changes nothing in it.
    lock = runlock.acquire(run_dir) if dist.is_main else None
    try:
        return _train(cfg, dist, run_dir, lock, config_path=config_path, out_dir=out_dir, resume=resume,
                      overrides=overrides, quiet=quiet, budget=budget, explain=explain)
    finally:
        if lock is not None:
            lock.release()


def _train(
    cfg: RunConfig, dist: Any, run_dir: Path, lock: runlock.RunLock | None, *, config_path: Path, out_dir: Path,
    resume: bool | None, overrides: list[str], quiet: bool, budget: TimeBudget | None, explain: bool,
) -> int:
    """train_from_file with the run folder's lock held (on the main process)."""
    folder = RunFolder(run_dir)
    store = ckpt.CheckpointStore(run_dir, clean=dist.is_main)
    latest = store.latest()
    explicit = cfg.section("path").get("resume_state")
    if explicit:  # traiNNer's way to name the state to resume from
        latest, resume = Path(explicit), True
        if not latest.is_file():
            raise AutosrError(f"path.resume_state: {latest} does not exist",
                              "fix the path, or remove the key to resume from the run folder")
    elif latest is None and store.skipped:  # starting over here would wipe the run's history
        names = "; ".join(f"{path.name} ({why})" for path, why in store.skipped)
        raise AutosrRuntimeError(
            f"{run_dir}: every checkpoint is unreadable: {names}. Nothing was changed: metrics.jsonl and events.jsonl are kept",
            f"fix those files, or move {store.checkpoints_dir} away to start the run over",
        )
    if resume is None:
        resume = latest is not None
    if resume and latest is None:
        raise AutosrError(f"{run_dir}: no checkpoint to resume from", "start it with --no-resume (or drop --resume)")
    if not resume and latest is not None:
        raise AutosrError(
            f"{run_dir}: this run already has checkpoints",
            "resume it (the default), or start a new one with --set name=<new name>",
        )

    journal = Journal(folder.events if dist.is_main else None)
    # Built first: it reads every image header, so bad data fails before the run folder is touched.
    trainer = build_trainer(cfg, run_dir, dist, journal, quiet=quiet, budget=budget)
    if explain and dist.is_main:
        _print_explain(trainer)
    if dist.is_main and not resume:
        for note in trainer.notes:
            if note.value == "not used":
                err.print(f"[dim]note: {escape(note.key)} is not used: {escape(note.reason)}[/dim]")
            elif note.value == "skipped":
                err.print(f"[yellow]note:[/yellow] {escape(note.reason)}")
    if dist.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_run_files(cfg, folder, config_path, overrides, first=not resume)
            if not resume:
                _journal_plan(journal, config_path, cfg, folder)
        except OSError as exc:  # a full disk or a read-only folder at start: one line, not a traceback
            failure = write_failure(exc, Path(exc.filename) if getattr(exc, "filename", None) else run_dir,
                                    "nothing was trained yet")
            if failure is None:
                raise
            raise failure from None

    if resume:
        assert latest is not None  # checked above: resuming needs a checkpoint
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
            err.print(f"resumed from iteration {trainer.iteration} ({latest.name})", markup=False)
            rewrite_jsonl(folder.metrics, up_to(trainer.iteration))
            journal.truncate_after(trainer.iteration)
            journal.record(trainer.iteration, "trainer", "resume", None, trainer.iteration, f"resumed from {latest.name}")
            saved_world = int(state.get("world_size", 1))
            if saved_world != dist.world_size:
                per = trainer.batch_size * trainer.accum
                journal.record(trainer.iteration, "trainer", "world_size", saved_world, dist.world_size,
                               f"resumed on {dist.world_size} process(es), trained on {saved_world}: the global batch is "
                               f"{per} × {dist.world_size} = {per * dist.world_size} now (was {per * saved_world}); "
                               "weights, optimizer, schedule and scheduler state carry over, each rank's data stream "
                               "continues from the saved position")

    if dist.is_main:
        if lock is not None and lock.takeover:
            err.print(f"[yellow]took over a stale lock on {escape(str(run_dir))}[/yellow]: {escape(lock.takeover)}")
            journal.record(trainer.iteration, "trainer", "run_lock", None, os.getpid(),
                           f"took over the run folder's stale lock: {lock.takeover}")
        for text in overrides:
            key, value = parse_override(text)
            journal.record(trainer.iteration, "set", key, None, value, "--set on the train command line")
        for line in stale_after_overrides(cfg.data, overrides):
            journal.record(trainer.iteration, "set", "warning", None, None, line)
    ended = False
    try:
        code = _fit_with_interrupts(trainer)
        ended = True
    except BaseException as exc:  # the report names how the run ended, not just that it did not finish
        aborted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        what = "aborted (a second interrupt)" if aborted else (str(exc).splitlines() or [type(exc).__name__])[0]
        journal.record(trainer.iteration, "trainer", "failed", None, type(exc).__name__, what[:500])
        raise
    finally:
        journal.close()
        trainer.source.close()
        if dist.world_size > 1:
            distributed.leave(together=ended)
    if dist.is_main:
        _print_result(trainer.result(), folder, config_path, overrides, code, out_dir)
    return code


def _journal_plan(journal: Journal, config_path: Path, cfg: RunConfig, folder: RunFolder) -> None:
    """Plan-time decisions from init's plan file (typed values and reasons), copied into the run."""
    source = plan_path_for(config_path)
    plan = read_plan(source)
    if not plan:
        journal.record(0, "plan", "plan", None, None, f"no {source.name} beside the config: a hand-written config")
        return
    write_text_atomic(folder.plan, source.read_text(encoding="utf-8"))
    for key, value, reason in plan_records(plan, cfg.data):
        journal.record(0, "plan", key, None, value, reason)


def _budget(config_path: Path, seconds: float | None, spent: float) -> TimeBudget | None:
    """--time, else the budget `autosr init --time` wrote into the plan beside the YAML."""
    if seconds is None:
        seconds = read_plan(plan_path_for(config_path)).get("time_budget_s")
    return TimeBudget(seconds, spent=spent) if seconds else None


def _fit_with_interrupts(trainer: Trainer) -> int:
    """First Ctrl-C or SIGTERM (schedulers, `docker stop`): finish the step, checkpoint, exit 130 (SIGINT) or
    143 (SIGTERM). Second: abort at once."""
    received: list[int] = []

    def on_interrupt(signum: int, frame: Any) -> None:
        if trainer.interrupted:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        trainer.interrupted = True
        received.append(signum)
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        again = "Ctrl-C again" if signum == signal.SIGINT else "send it again"
        err.print(f"\n[yellow]{what}: finishing this step and saving a checkpoint ({again} to abort)[/yellow]")

    handled = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {sig: signal.signal(sig, on_interrupt) for sig in handled}
    try:
        code = trainer.fit()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code == 130 and received and received[0] != signal.SIGINT:
        return 128 + received[0]  # 143 after SIGTERM
    return code


def _print_explain(trainer: Trainer) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title="runtime scheduler: settings and their reasons", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("automation", style="cyan", overflow="fold", ratio=2)
    table.add_column("setting", overflow="fold", ratio=2)
    table.add_column("value (reason)", style="dim", overflow="fold", ratio=6)
    for automation, setting, value in explain_schedule(trainer):
        table.add_row(automation, setting, value)
    err.print(table)


def _dry_run(cfg: RunConfig, dist: Any, explain: bool = False) -> int:
    trainer = build_trainer(cfg, None, dist, Journal(None), quiet=True)
    if explain:
        _print_explain(trainer)
    trainer.fit(max_steps=1)
    err.print(f"[green]dry run ok[/green]: {cfg.source}", markup=True)
    for topic, text in trainer.describe():
        err.print(f"  {topic:<7} {text}", markup=False)
    assert trainer.last_stats is not None  # fit ran its one step
    err.print(f"  step    1 step ran, loss {float(trainer.last_stats.total):.4g}", markup=False)
    return 0


def _write_run_files(cfg: RunConfig, folder: RunFolder, config_path: Path, overrides: list[str], first: bool) -> None:
    header = f"# resolved config of {config_path}" + (f" with --set {' '.join(overrides)}" if overrides else "") + "\n"
    write_text_atomic(folder.config, header + yaml.safe_dump(cfg.data, sort_keys=False))
    write_text_atomic(folder.hardware, json.dumps(probe(folder.root).to_dict(), indent=2))
    if first:
        folder.metrics.unlink(missing_ok=True)
        folder.events.unlink(missing_ok=True)


def _check_same_model(cfg: RunConfig, state: dict[str, Any], run_dir: Path) -> None:
    saved = state.get("config", {})
    for key in ("scale", "network_g"):
        if saved.get(key) != cfg.data.get(key):
            raise AutosrError(
                f"{run_dir}: the checkpoint was trained with {key}={saved.get(key)}, the config says {cfg.data.get(key)}",
                "train it under another name: --set name=<new name>",
            )


def _print_result(result: RunResult, folder: RunFolder, config_path: Path, overrides: list[str], code: int,
                  out_dir: Path = DEFAULT_OUT) -> None:
    if code in (130, 143):
        command = resume_command(config_path, overrides, out_dir)
        # soft_wrap: the command stays on one line, whatever the terminal's width, so it can be copied as it is
        err.print(f"[yellow]stopped at iteration {result.iteration}[/yellow]; checkpoint saved. Resume with: {escape(command)}",
                  soft_wrap=True)
        return
    best = ", ".join(f"{k} {v[0]:.4f} @ {v[1]}" for k, v in result.best.items()) or "no validation"
    err.print(f"[green]done[/green]: {result.iteration} iterations · best {best}")
    err.print(f"  run folder: {folder.root}  (metrics.jsonl, events.jsonl, models/)")
    best_model = folder.models / "net_g_best.safetensors"
    if best_model.exists():
        err.print(f"  best model: {best_model}")
    for command in folder.use_commands():
        err.print(f"  use it: {escape(command)}", soft_wrap=True)
    sys.stderr.flush()


def resume_command(config_path: Path, overrides: list[str], out_dir: Path) -> str:
    """The `autosr train` command line that resumes this run: same config, run folder and --set overrides."""
    out = f" --out {shlex.quote(str(out_dir))}" if out_dir != DEFAULT_OUT else ""
    sets = "".join(f" --set {shlex.quote(o)}" for o in overrides)
    return f"autosr train {shlex.quote(str(config_path))}{out}{sets}"


# ---- the composition root ------------------------------------------------------------------------

def build_trainer(cfg: RunConfig, run_dir: Path | None, dist: DistInfo, journal: Journal, *,
                  automations: list[Automation] | None = None, quiet: bool = False,
                  budget: TimeBudget | None = None) -> Trainer:
    """Settings → torch → objective → data → the loop, with the runtime scheduler the config asks
    for (`automations` replaces it: tests pass their own)."""
    s = build_settings(cfg)
    torch_setup = setup_torch(s.runtime, dist)
    save_dir = RunFolder(run_dir).visualization if run_dir is not None else None
    data = build_data(s, torch_setup.device, dist, torch_setup.seed, torch_setup.precision.autocast(torch_setup.device), save_dir)
    objective = build_objective(s, torch_setup, dist, data.source)
    notes = [*torch_setup.notes, *objective.notes, *data.notes, *unused_key_notes(s, torch_setup, data.source, dist)]
    trainer = Trainer(s, cfg, objective, data.source, data.validator, torch_setup, dist=dist, journal=journal,
                      run_dir=run_dir, budget=budget, quiet=quiet, complexity=dataset_complexity(cfg, data.source),
                      model_metadata=metadata_for(s), notes=notes)
    if automations is None:
        trainer.attach(*build_schedule(s, trainer.run_info()))
    else:
        trainer.attach(automations)
    return trainer


def build_objective(s: Settings, torch_setup: TorchSetup, dist: DistInfo, source: CropSource) -> Objective:
    """What one step computes: GAN training when the config has a discriminator (network_d), else
    fidelity training (the generator and its losses) — as one CUDA graph where that is possible."""
    if s.gan is not None:
        return GANObjective(s, torch_setup.device, torch_setup.precision, dist)
    fidelity = FidelityObjective(s, torch_setup.device, torch_setup.precision, dist)
    blocker = graph_blocker(s, torch_setup, dist.world_size, source.kind)
    if blocker is None and os.environ.get(NO_GRAPH_ENV) == "1":
        blocker = f"{NO_GRAPH_ENV}=1 (benchmarks compare the two)"
    if blocker is None:
        return GraphedFidelity(fidelity)
    if torch_setup.device.type == "cuda":
        fidelity.notes.append(Note("cuda_graph", False, f"the step runs eagerly: {blocker}"))
    return fidelity


def build_schedule(s: Settings, run: RunInfo) -> tuple[list[Automation], list[str]]:
    """The config's dynamic loss scheduling and training automations, calibrated for this run."""
    dls, autos = s.dynamic_loss_scheduling or None, s.training_automations or None
    if dls is None and autos is None:
        return [], []
    built, notes = build_automations(dls, autos, run)
    for automation in built:  # their maths is many tiny kernels: sampled, not run every step
        automation.step_interval = SCHEDULE_EVERY
    return built, notes


def explain_schedule(trainer: Trainer) -> list[tuple[str, str, str]]:
    """(automation, setting, value with its reason) for every scheduler setting of this run."""
    dls, autos = trainer.s.dynamic_loss_scheduling or None, trainer.s.training_automations or None
    if dls is None and autos is None:
        return [("scheduler", "off", "the config has no dynamic_loss_scheduling / training_automations section")]
    return describe(trainer.run_info(), dls, autos)


def dataset_complexity(cfg: RunConfig, source: CropSource) -> Any:
    """The dataset's complexity for the scheduler's calibration: what `autosr init` measured (in the
    plan beside the config), else measured on one training batch (a hand-written config). Lazy:
    only a run with automations asks."""

    @cache
    def complexity() -> float:
        measured = read_plan(plan_path_for(cfg.source)).get("dataset", {}).get("complexity")
        if isinstance(measured, (int, float)):
            return float(measured)
        _, gt = source.peek_batch()
        images = gt.float().permute(0, 2, 3, 1).cpu().numpy()
        return float(sum(image_complexity(img) for img in images) / max(1, len(images)))

    return complexity


def metadata_for(s: Settings) -> ModelMetadata:
    """Every model file describes itself: a file alone rebuilds the network (docs/model-files.md)."""

    def metadata(iteration: int, metrics: dict[str, float] | None, training: dict[str, Any]) -> dict[str, str]:
        return model_metadata(s.network, iteration=iteration, metrics=metrics, training=training)

    return metadata


def unused_key_notes(s: Settings, torch_setup: TorchSetup, source: CropSource, dist: DistInfo) -> list[Note]:
    """traiNNer keys that autosr's own pipeline decides: accepted, and said to be unused."""
    d, out = s.data, []
    if d.prefetch_mode:
        out.append(Note("datasets.train.prefetch_mode", "not used", f"autosr's data pipeline prefetches itself ({source.kind})"))
    if d.pin_memory is False and torch_setup.device.type == "cuda":
        out.append(Note("datasets.train.pin_memory", "not used", "autosr pins host memory on CUDA (faster copies)"))
    if d.persistent_workers is False and source.kind == "loader":
        out.append(Note("datasets.train.persistent_workers", "not used", "autosr's loader keeps its workers for the whole run"))
    if d.dataset_enlarge_ratio not in (1, "auto"):
        out.append(Note("datasets.train.dataset_enlarge_ratio", "not used",
                        "autosr samples crops endlessly: there are no epochs to enlarge"))
    for key, reason in [*unused_fork_keys(s.tree), *inert_loss_keys(s.losses)]:
        out.append(Note(key, "not used", reason))
    if s.auto_vram_management:
        out.append(Note("auto_vram_management", "not used", "the fork's VRAM manager; autosr sizes the batch from its memory "
                                                            "probe (autosr init) and backs off by 10% on an out-of-memory error"))
    if s.save_checkpoint_format == "pth":
        out.append(Note("logger.save_checkpoint_format", "not used", "models are written as safetensors (loads everywhere .pth does)"))
    launched = launch_note()
    num_gpu = s.runtime.num_gpu
    if launched is not None:
        out.append(launched)  # how many processes `autosr train` started, and why
    elif isinstance(num_gpu, int) and num_gpu != dist.world_size:
        out.append(Note("num_gpu", dist.world_size, f"num_gpu: {num_gpu} asked for, {dist.world_size} "
                                                     "process(es) run (--gpus or CUDA_VISIBLE_DEVICES limit it)"))
    return out
