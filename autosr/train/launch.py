"""`autosr train` on several GPUs by itself: one process per GPU, through PyTorch's elastic launcher.

`decide_procs` picks the number of processes from `num_gpu` in the config (``"auto"``: every
visible GPU; an int: at most that many), `--gpus N` (wins over the config) and the GPUs torch can
see (`CUDA_VISIBLE_DEVICES` already restricts `torch.cuda.device_count()`). Inside a launched
process (torchrun, or this launcher: `WORLD_SIZE` is set) it never spawns again.

`launch` starts the processes with `torch.distributed.launcher.api.elastic_launch` (what
`torchrun --standalone` runs): one node, c10d rendezvous on a free localhost port, no restarts.
Each process runs the same `python -m autosr train <args>`. From the user's side it is one
process: rank 0 prints to the terminal, the other ranks' output goes to log files (named when a
rank fails), the exit code is the run's (0; 1 when any rank failed, the others stopped; 130 after Ctrl-C —
the agent hands SIGINT on to every rank once, each finishes its step, rank 0 checkpoints).

Test-only switches (CI has no GPUs; never set them for real runs):

- ``AUTOSR_FORCE_PROCS=N``: act as if N GPUs were visible, and run the N processes on the CPU with
  gloo (the children see no GPU).
- ``AUTOSR_TEST_CRASH_RANK=R``: the process of rank R fails at start-up, before training
  (to test that a crash on one rank ends every rank with a clear message).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from autosr.config import load_config
from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.train.setup import Note

FORCE_ENV = "AUTOSR_FORCE_PROCS"
CRASH_ENV = "AUTOSR_TEST_CRASH_RANK"
STOP_GRACE_S = 120  # after Ctrl-C: how long the ranks may take to finish the step and checkpoint
NOTE_ENV = "AUTOSR_LAUNCH_NOTE"  # the launch decision, handed to every process for the journal


@dataclass(frozen=True)
class LaunchDecision:
    """How many processes `autosr train` runs on this machine, and why."""

    nproc: int
    reason: str
    forced: bool = False  # AUTOSR_FORCE_PROCS: CPU processes with gloo (tests)

    @property
    def spawn(self) -> bool:
        return self.nproc > 1

    def note(self) -> Note:
        return Note("num_gpu", self.nproc, self.reason)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def visible_devices(env: Mapping[str, str] | None = None) -> tuple[int, bool]:
    """(GPUs this process may use, forced by AUTOSR_FORCE_PROCS)."""
    env = os.environ if env is None else env
    forced = env.get(FORCE_ENV, "").strip()
    if forced:
        try:
            count = int(forced)
        except ValueError:
            raise AutosrError(f"{FORCE_ENV}={forced!r} is not a whole number", "unset it: it is a test-only switch") from None
        return max(count, 0), True
    import torch

    return (torch.cuda.device_count() if torch.cuda.is_available() else 0), False


def decide_procs(num_gpu: int | str, gpus: int | None, device_count: int, *, forced: bool = False,
                 env: Mapping[str, str] | None = None) -> LaunchDecision:
    """The number of training processes on this machine (one per GPU), with its reason."""
    env = os.environ if env is None else env
    if env.get("WORLD_SIZE"):
        world = env["WORLD_SIZE"]
        return LaunchDecision(1, f"already one of {world} launched processes (WORLD_SIZE={world}): no further spawn")
    if gpus is not None and gpus < 1:
        raise AutosrError(f"--gpus {gpus}: needs at least 1", "drop --gpus to use every visible GPU")
    if forced:
        seen = f"{_plural(device_count, 'CPU slot')} ({FORCE_ENV}, test-only)"
    else:
        masked = env.get("CUDA_VISIBLE_DEVICES") is not None
        seen = _plural(device_count, "visible GPU") + (" (after CUDA_VISIBLE_DEVICES)" if masked else "")
    if device_count <= 1:
        what = "no GPU" if device_count == 0 and not forced else seen
        return LaunchDecision(1, f"{what}: one process", forced)
    if gpus is not None:
        n = min(gpus, device_count)
        why = f"--gpus {gpus}" + (f", but only {seen}" if gpus > device_count else f" of {seen}")
    elif num_gpu == "auto":
        n, why = device_count, f"num_gpu: auto uses every one of {seen}"
    else:
        asked = int(num_gpu)
        if asked < 1:
            return LaunchDecision(1, f"num_gpu: {asked}: one process", forced)
        n = min(asked, device_count)
        why = f"num_gpu: {asked}" + (f", but only {seen}" if asked > device_count else f" of {seen}")
    how = " through torch's elastic launcher, one per device" if n > 1 else ""
    return LaunchDecision(n, f"{why}: {_plural(n, 'process')}{how}", forced)


def decide(num_gpu: int | str, gpus: int | None) -> LaunchDecision:
    """`decide_procs` for this machine and environment."""
    if os.environ.get("WORLD_SIZE"):
        return decide_procs(num_gpu, gpus, 1)
    count, forced = visible_devices()
    return decide_procs(num_gpu, gpus, count, forced=forced)


def remember(decision: LaunchDecision) -> None:
    """Hand the decision to this process and its children (`launch_note` reads it back)."""
    os.environ[NOTE_ENV] = json.dumps({"value": decision.nproc, "reason": decision.reason})


def launch_note() -> Note | None:
    """The launch decision for the journal (key num_gpu), in the launcher and in every rank."""
    text = os.environ.get(NOTE_ENV)
    if not text:
        return None
    try:
        data = json.loads(text)
        return Note("num_gpu", int(data["value"]), str(data["reason"]))
    except (ValueError, KeyError, TypeError):
        return None


def child_checks() -> None:
    """Run at the start of a launched process: the test-only crash switch."""
    crash = os.environ.get(CRASH_ENV)
    if crash and os.environ.get("WORLD_SIZE") and os.environ.get("RANK") == crash.strip():
        raise AutosrRuntimeError(f"rank {crash.strip()}: failing on purpose ({CRASH_ENV}, a test-only switch)")


def maybe_launch(config_path: Path, overrides: list[str], gpus: int | None, *, dry_run: bool, argv: list[str]) -> int | None:
    """The `autosr train` entry: start the processes and return the run's exit code, or None when
    this process trains by itself (one device, --dry-run, or already a launched rank). The decision
    is left in the environment for the journal (`launch_note`)."""
    child_checks()
    world = os.environ.get("WORLD_SIZE")
    if world:
        if not os.environ.get(NOTE_ENV):  # started by torchrun, not by autosr
            os.environ[NOTE_ENV] = json.dumps({"value": int(world), "reason": f"started by torchrun (WORLD_SIZE={world})"})
        return None
    cfg = load_config(config_path, overrides)
    decision = decide(cfg.data.get("num_gpu", "auto"), gpus)
    if dry_run and decision.spawn:
        decision = LaunchDecision(1, f"--dry-run: one process (a real run would start {decision.nproc}: {decision.reason})")
    remember(decision)
    return launch(decision, train_args(argv)) if decision.spawn else None


def train_args(argv: list[str]) -> list[str]:
    """The `autosr train …` arguments for the children: the command line as typed, from `train` on."""
    if "train" not in argv:
        raise AutosrError("cannot start several processes: `train` is not on the command line",
                          "run `autosr train <config>`, or start the ranks with torchrun")
    return argv[argv.index("train"):]


def launch(decision: LaunchDecision, argv: list[str]) -> int:
    """Run `python -m autosr <argv>` in `decision.nproc` processes; the run's exit code."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    log_dir = Path(tempfile.mkdtemp(prefix="autosr-ranks-"))
    quiet = {rank: Std.ALL for rank in range(1, decision.nproc)}  # rank 0 alone talks to the terminal
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=decision.nproc, run_id=f"autosr-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2,
        logs_specs=DefaultLogsSpecs(log_dir=str(log_dir), redirects=quiet),
    )
    # The ranks run in sessions of their own (the terminal's Ctrl-C reaches only this process): the agent hands
    # SIGINT on to each rank once, and gives them time to finish the step and checkpoint before it kills them.
    # torch < 2.12 has no such setting (its agent waits its own 30 s).
    if "shutdown_timeout" in {f.name for f in fields(LaunchConfig)}:
        config.shutdown_timeout = STOP_GRACE_S
    saved_env = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")}
    if decision.forced:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # forced (tests): CPU processes, so gloo
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // decision.nproc))
    # The elastic loggers' warnings and failure dumps would bury rank 0's output (each has its own level).
    quieted = [logging.getLogger(name) for name in [*logging.root.manager.loggerDict, "torch.distributed.elastic"]
               if name.startswith("torch.distributed")]
    saved_levels = [log.level for log in quieted]
    for log in quieted:
        log.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-m", "autosr", *argv)
    except SignalException as exc:
        shutil.rmtree(log_dir, ignore_errors=True)
        return 130 if exc.sigval == signal.SIGINT else 128 + int(exc.sigval)
    except ChildFailedError as exc:
        raise AutosrRuntimeError(_failure_message(exc, log_dir, decision.nproc), "every other rank was stopped") from None
    finally:
        for log, level in zip(quieted, saved_levels, strict=True):
            log.setLevel(level)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


def _failure_message(exc: Any, log_dir: Path, nproc: int) -> str:
    """One line: which rank failed, how, its last error line and where its log is."""
    rank, failure = exc.get_first_failure()
    where, last = "its error is printed above", ""
    if rank != 0:
        logs = sorted(log_dir.glob(f"**/{failure.local_rank}/stderr.log"))
        where = f"its log: {logs[-1]}" if logs else f"its log is under {log_dir}"
        lines = [x.strip() for x in logs[-1].read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()] if logs else []
        last = f": {lines[-1].removeprefix('error: ')}" if lines else ""
    code = failure.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return f"rank {rank} of {nproc} failed ({how}){last} — {where}"
