"""The run folder on disk: its named paths, and the one way to append, read and cut its JSONL logs.

    runs/<name>/
      config.yml        the resolved config the run trained with
      plan.json         init's typed plan, when there was one
      hardware.json     the machine it ran on
      metrics.jsonl     one record per log / validation / baseline
      events.jsonl      the decision journal
      checkpoints/      training states (autosr.train.checkpoint)
      models/           safetensors weights
      tb/               TensorBoard scalars
      report.html       autosr report

JSONL files are appended by one writer (the main process) that keeps the file open and flushes
each line; readers skip a line cut by a kill; a resume cuts them back with an atomic rewrite.
Torch-free: `autosr report` reads run folders without it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autosr.errors import AutosrRuntimeError
from autosr.fsutil import write_text_atomic

# A run whose result is its final model (GAN) keeps its PSNR-best model under this name in models/.
PSNR_BEST_MODEL = "net_g_psnr_best.safetensors"


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yml"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def hardware(self) -> Path:
        return self.root / "hardware.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def tb(self) -> Path:
        return self.root / "tb"

    @property
    def visualization(self) -> Path:
        return self.root / "visualization"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def use_commands(self) -> list[str]:
        """How to use the trained model (printed at the end of `autosr train` and in the report): empty
        until the run has saved one. Both commands take the run folder and pick its best model."""
        if not self.models.is_dir() or not any(self.models.glob("net_g_*.safetensors")):
            return []
        root = shlex.quote(str(self.root))
        return [f"autosr upscale {root} INPUT OUTPUT",
                f"autosr export {root} --onnx {shlex.quote(self.root.name + '.onnx')}"]


def plain(value: Any) -> Any:
    """A JSON-able copy: tuples become lists, unknown objects their text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


# errno → (what it means, what to do). A write failing with one of these is the machine's state, not
# a bug: it stops the run with one line naming the file (see write_failure).
_WRITE_CAUSES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on device", "free space or pass --out on another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota or pass --out on another disk"),
    errno.EROFS: ("read-only file system", "pass --out on a writable disk"),
    errno.EACCES: ("permission denied", "make the folder writable or pass --out on another disk"),
    errno.EPERM: ("operation not permitted", "make the folder writable or pass --out on another disk"),
    errno.EFBIG: ("file too large for the file system", "pass --out on another disk"),
    errno.EIO: ("input/output error", "check the disk, or pass --out on another disk"),
}


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or one in its cause/context chain (torch.save wraps a
    failed write in a RuntimeError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def write_failure(exc: BaseException, target: Path, after: str = "") -> AutosrRuntimeError | None:
    """``exc`` (raised while writing ``target``) as the one-line error the user sees, or None when it
    is not a known disk or permission failure. ``after`` ends the hint (e.g. where the last checkpoint is)."""
    os_error = os_error_in(exc)
    if os_error is None or os_error.errno not in _WRITE_CAUSES:
        return None
    what, todo = _WRITE_CAUSES[os_error.errno]
    code = errno.errorcode.get(os_error.errno, str(os_error.errno))
    return AutosrRuntimeError(f"{target}: cannot write: {what} ({code})", todo + (f"; {after}" if after else ""))


def _append_whole(fd: int, data: bytes) -> None:
    """Append ``data`` to an O_APPEND file, all of it or none: a failed write is cut back off, so the
    file never ends in half a line."""
    start = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise


class JsonlWriter:
    """Appends one JSON record per line to a file it keeps open; `path=None` writes nothing
    (non-main DDP ranks, dry runs). Each line goes to the OS unbuffered, whole or not at all (a
    failed write — disk full — is cut back off and raised as AutosrRuntimeError naming the file),
    so only a kill mid-line can leave a cut line, which readers skip."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd: int | None = None

    def append(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        line = (json.dumps(plain(record)) + "\n").encode("utf-8")
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
                self._fd = os.open(self.path, flags, 0o666)
            _append_whole(self._fd, line)
        except OSError as exc:
            failure = write_failure(exc, self.path, "the run stopped; its checkpoints are as they were")
            if failure is None:
                raise
            raise failure from exc

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass(frozen=True)
class JsonlRead:
    records: list[dict[str, Any]]
    skipped: int  # lines that were not a JSON object (cut by a kill, or damaged)
    problem: str  # why the file could not be read at all ("" when it could)


def read_jsonl(path: Path) -> JsonlRead:
    """Every whole record of a JSONL file; a missing file is an empty read."""
    path = Path(path)
    if not path.exists():
        return JsonlRead([], 0, "")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return JsonlRead([], 0, f"cannot read {path.name}: {exc.strerror or exc}")
    records, skipped = [], 0
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            skipped += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    return JsonlRead(records, skipped, "")


def rewrite_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Atomically keep only the whole records `keep` accepts (a resume cuts the logs back to the
    restored iteration so they read as one straight run)."""
    if not path.exists():
        return
    kept: Iterable[dict[str, Any]] = (r for r in read_jsonl(path).records if keep(r))
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def up_to(iteration: int) -> Callable[[dict[str, Any]], bool]:
    """A `keep` for rewrite_jsonl: records of iterations ≤ iteration."""
    return lambda record: record.get("iter", 0) <= iteration
