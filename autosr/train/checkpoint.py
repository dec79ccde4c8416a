"""Training state on disk: atomic saves, RNG capture, and the run folder's checkpoint store.

Run folder layout written here:
    checkpoints/state_<iter>.pt            everything needed to resume (torch.save, a zip archive)
    models/net_g_<iter>.safetensors        generator weights
    models/net_g_ema_<iter>.safetensors    EMA weights (when EMA is on)
    models/net_g_best.safetensors          the best weights so far (EMA when there is EMA)
    models/best.json                       {"iter", "metrics", "source"} for net_g_best

Every file goes through a same-folder temp file + fsync + rename, so a kill leaves either the
previous file or the complete new one, never half a file under a final name. A save writes the
model files first and the state file last: a state file is the mark of a complete checkpoint.

States are plain containers of tensors, numbers and strings (RNG states included), so they load
with ``torch.load(weights_only=True)``: resuming never runs pickled code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.fsutil import atomic_write, fsync_dir, is_temp_name, temp_name_for
from autosr.runfolder import write_failure
from autosr.safetensors_io import load_safetensors, save_safetensors

log = logging.getLogger("autosr.checkpoint")

_STATE_RE = re.compile(r"^state_(\d+)\.pt$")
_MODEL_RE = re.compile(r"^net_g(?:_ema)?_(\d+)\.safetensors$")


# ----------------------------------------------------------------------------- single files
def save_training_state(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """``torch.save`` through a temp file in the same folder, fsync, then rename onto ``path``."""
    return atomic_write(path, lambda f: torch.save(dict(state), f))


def load_training_state(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu",
                        weights_only: bool = True) -> dict[str, Any]:
    """Load a state saved by :func:`save_training_state` (tensors land on ``map_location``)."""
    path = Path(path)
    if not path.is_file():
        raise AutosrError(f"{path}: no such training state", "check the path, or start without resuming")
    try:
        state = torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as e:  # torch raises many types for a damaged archive
        raise AutosrRuntimeError(f"{path}: cannot read the training state ({type(e).__name__}: {e})",
                                 "resume from an earlier checkpoint in the same folder") from e
    if not isinstance(state, dict):
        raise AutosrRuntimeError(f"{path}: not an autosr training state (a {type(state).__name__})")
    return state


# ----------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """Python ``random``, NumPy's global generator, torch CPU and every CUDA device, as plain data."""
    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True: the MT19937 tuple (a dict only for other bit generators)
    _, key, pos, has_gauss, cached = np_state
    return {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured. CUDA states are restored for the devices both
    runs have; a different device count is logged, not fatal."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    key = npy["key"].cpu().numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    saved = state.get("cuda") or []
    if torch.cuda.is_available() and saved:
        count = torch.cuda.device_count()
        if count != len(saved):
            log.warning("RNG state has %d CUDA device(s), this machine %d: restoring the first %d",
                        len(saved), count, min(count, len(saved)))
        for i in range(min(count, len(saved))):
            torch.cuda.set_rng_state(saved[i].cpu(), i)


# ----------------------------------------------------------------------------- the run's store
def _zip_problem(path: Path) -> str | None:
    """Why a torch.save archive cannot be trusted, or None: structure plus every member's CRC."""
    try:
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith("data.pkl") for n in z.namelist()):
                return "no data.pkl inside"
            bad = z.testzip()
            return f"corrupt member {bad}" if bad else None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"{type(e).__name__}: {e}"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Put ``src``'s bytes under ``dst`` atomically: a hard link when the filesystem allows it."""
    tmp = temp_name_for(dst)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(dst.parent)


def _entries(folder: Path) -> list[Path]:
    """A folder's entries; none while it does not exist yet."""
    return list(folder.iterdir()) if folder.is_dir() else []


class CheckpointStore:
    """Numbered checkpoints in a run folder: save, prune to ``keep_last`` (never the best), find
    the newest loadable one, and keep ``net_g_best``.

    ``skipped`` lists ``(path, reason)`` for state files :meth:`latest` passed over, so the caller
    can journal them; the same is logged.
    """

    def __init__(self, run_dir: str | os.PathLike[str], keep_last: int = 3, *, clean: bool = True) -> None:
        """`clean`: remove temp files left by a killed save — only the process that saves may (under
        DDP another rank would delete rank 0's save in progress)."""
        if keep_last < 1:
            raise AutosrError(f"keep_last must be ≥ 1, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last
        self.checkpoints_dir = self.run_dir / "checkpoints"
        self.models_dir = self.run_dir / "models"
        self.skipped: list[tuple[Path, str]] = []
        self.best_iter = self._read_best_iter()
        if clean:
            self.remove_temp_files()

    # paths
    def state_path(self, iteration: int) -> Path:
        return self.checkpoints_dir / f"state_{iteration}.pt"

    def model_path(self, iteration: int, ema: bool = False) -> Path:
        return self.models_dir / f"net_g{'_ema' if ema else ''}_{iteration}.safetensors"

    @property
    def best_model_path(self) -> Path:
        return self.models_dir / "net_g_best.safetensors"

    @property
    def best_json_path(self) -> Path:
        return self.models_dir / "best.json"

    # writing
    @contextlib.contextmanager
    def _writing(self, iteration: int | None = None) -> Iterator[list[Path]]:
        """Turn a disk-full / read-only / permission failure of a save into one AutosrRuntimeError that
        names the file and the last complete checkpoint. The caller appends each path before it writes
        it. Temp files are removed by atomic_write itself; weights of ``iteration`` written before the
        failure are removed too while no state file marks that iteration complete (they only take space)."""
        current: list[Path] = []
        try:
            yield current
        except Exception as exc:
            target = current[-1] if current else self.run_dir
            failure = write_failure(exc, target)
            if failure is None:
                raise
            if iteration is not None and not self.state_path(iteration).exists():
                for ema in (False, True):
                    with contextlib.suppress(OSError):
                        self.model_path(iteration, ema).unlink(missing_ok=True)
            try:
                last = self.latest()
            except OSError:
                last = None
            failure.hint += (f"; the last complete checkpoint is {last}" if last is not None
                             else "; no checkpoint of this run is complete yet")
            raise failure from exc  # the CLI prints it once (no log line: one message, not two)

    def _ensure_dirs(self) -> None:
        # Created at the first write, so that a run failing at start leaves no empty folders.
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(parents=True, exist_ok=True)

    def save(self, iteration: int, state: Mapping[str, Any], net_g: Mapping[str, Tensor],
             net_g_ema: Mapping[str, Tensor] | None = None, metadata: Mapping[str, str] | None = None) -> Path:
        """Write the weights, then the state (the completion mark), then prune. Returns the state path.

        ``metadata`` (autosr.use.model_file.model_metadata) goes into both model files; ``iter`` is
        always set to ``iteration``.
        """
        with self._writing(iteration) as current:
            current.append(self.checkpoints_dir)
            self._ensure_dirs()
            meta = {**(metadata or {}), "iter": str(iteration)}
            current.append(self.model_path(iteration))
            save_safetensors(net_g, current[-1], meta)
            if net_g_ema is not None:
                current.append(self.model_path(iteration, ema=True))
                save_safetensors(net_g_ema, current[-1], meta)
            current.append(self.state_path(iteration))
            path = save_training_state(current[-1], state)
            current.append(self.checkpoints_dir)
            self.prune()
        return path

    def mark_best(self, iteration: int, metrics: Mapping[str, float] | None = None,
                  weights: Mapping[str, Tensor] | None = None, metadata: Mapping[str, str] | None = None) -> Path:
        """Make ``iteration``'s weights ``net_g_best.safetensors`` and record it in ``best.json``.

        Without ``weights`` the saved files of that iteration are used (EMA first, else plain) and
        hard-linked (copied where links are impossible); with ``weights`` they are written directly,
        for a validation that falls between two checkpoints. With ``metadata`` the best file is
        written with it (``iter`` set to ``iteration``): from ``weights``, else from the saved file's
        tensors (a rewrite, not a link, since the metadata differs).
        """
        with self._writing() as current:
            current.append(self.models_dir)
            self._ensure_dirs()
            meta = {**(metadata or {}), "iter": str(iteration)}
            current.append(self.best_model_path)
            if weights is not None:
                save_safetensors(weights, self.best_model_path, meta)
                source = "weights"
            else:
                candidates = [self.model_path(iteration, ema=True), self.model_path(iteration)]
                src = next((p for p in candidates if p.is_file()), None)
                if src is None:
                    raise AutosrRuntimeError(f"no saved weights for iteration {iteration} in {self.models_dir}",
                                             "pass the weights to mark_best, or save that iteration first")
                if metadata is None:
                    _link_or_copy(src, self.best_model_path)
                else:
                    save_safetensors(load_safetensors(src), self.best_model_path, meta)
                source = src.name
            record = {"iter": iteration, "metrics": {k: float(v) for k, v in (metrics or {}).items()},
                      "source": source}
            current.append(self.best_json_path)
            atomic_write(self.best_json_path, lambda f: f.write(json.dumps(record, indent=2).encode()))
            self.best_iter = iteration
            current.append(self.models_dir)
            self.prune()
        return self.best_model_path

    # reading
    def iterations(self) -> list[int]:
        """Iterations that have a state file, ascending (temp files never match)."""
        found = (_STATE_RE.match(p.name) for p in _entries(self.checkpoints_dir))
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self) -> Path | None:
        """The newest state file that is a complete archive; unreadable newer ones are skipped,
        logged and listed in ``skipped``."""
        self.skipped = []
        for iteration in reversed(self.iterations()):
            path = self.state_path(iteration)
            problem = _zip_problem(path)
            if problem is None:
                return path
            self.skipped.append((path, problem))
            log.warning("checkpoint %s is unreadable (%s); falling back to the previous one", path, problem)
        return None

    # housekeeping
    def prune(self) -> None:
        """Delete checkpoints older than the newest ``keep_last`` (the best one stays), and
        weights files whose state is gone (left by a save that was killed half-way)."""
        iterations = self.iterations()
        keep = set(iterations[-self.keep_last:])
        if self.best_iter is not None:
            keep.add(self.best_iter)
        for iteration in iterations:
            if iteration not in keep:
                self.state_path(iteration).unlink(missing_ok=True)
        newest = iterations[-1] if iterations else -1
        for p in _entries(self.models_dir):
            m = _MODEL_RE.match(p.name)
            # weights newer than the newest state may belong to a save in progress elsewhere: keep
            if m and int(m.group(1)) not in keep and int(m.group(1)) <= newest:
                p.unlink(missing_ok=True)

    def remove_temp_files(self) -> None:
        """Drop temp files a killed writer left behind (only one process writes a run folder)."""
        for folder in (self.checkpoints_dir, self.models_dir):
            for p in _entries(folder):
                if is_temp_name(p.name):
                    p.unlink(missing_ok=True)

    def _read_best_iter(self) -> int | None:
        try:
            record = json.loads(self.best_json_path.read_text(encoding="utf-8"))
            return int(record["iter"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
