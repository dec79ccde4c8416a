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

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from autosr.fsutil import write_text_atomic


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


def plain(value: Any) -> Any:
    """A JSON-able copy: tuples become lists, unknown objects their text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


class JsonlWriter:
    """Appends one JSON record per line to a file it keeps open; `path=None` writes nothing
    (non-main DDP ranks, dry runs). Each line is flushed, so a kill loses at most the line
    being written, which readers skip."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def append(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(plain(record)) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


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
