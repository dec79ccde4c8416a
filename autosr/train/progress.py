"""What the user sees while training: a rich progress bar on a terminal, log lines otherwise;
TensorBoard scalars when tensorboard is installed. Rates are measured between log points with
validation time left out."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, total: int, *, enabled: bool, tb_dir: Path | None = None) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar: RichProgress | None = None
        self.task: TaskID | None = None  # set together with self.bar
        self.total = total
        self.paused = 0.0
        self._mark = (0, time.perf_counter(), 0.0)
        self.tb_dir = tb_dir if enabled else None
        self.tb = None  # opened at start(): nothing is written before the run really begins
        self.tb_note = None if tb_dir is None or _tensorboard_available() else "tensorboard is not installed: no tb/ logs"

    def start(self, iteration: int) -> None:
        self._mark = (iteration, time.perf_counter(), self.paused)
        if self.tb is None and self.tb_dir is not None and self.tb_note is None:
            self.tb = _tensorboard(self.tb_dir)
        if self.tty and self.bar is None:
            self.bar = RichProgress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=self.total, completed=iteration, info="")

    def update(self, iteration: int) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=iteration)

    def rates(self, iteration: int, samples_per_step: int) -> dict[str, float]:
        """it/s and samples/s since the last call, validation time excluded."""
        last_iter, last_time, last_paused = self._mark
        now = time.perf_counter()
        seconds = max(1e-9, (now - last_time) - (self.paused - last_paused))
        steps = iteration - last_iter
        self._mark = (iteration, now, self.paused)
        return {"it_s": round(steps / seconds, 3), "samples_s": round(steps * samples_per_step / seconds, 1)}

    def log(self, record: dict[str, Any]) -> None:
        """A training log line: into the bar's info on a terminal, else a printed line."""
        losses = " ".join(f"{k[5:]} {v:.4g}" for k, v in record.items() if k.startswith("loss_"))
        text = f"loss {record['loss']:.4g} ({losses}) lr {record['lr']:.2e} {record['it_s']:.1f} it/s"
        if "peak_vram_gib" in record:
            text += f" {record['peak_vram_gib']:.1f} GiB"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, info=text)
        elif self.enabled:
            self.console.print(f"[{record['iter']}/{self.total}] {text}")

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, markup=False)

    def scalars(self, record: dict[str, Any]) -> None:
        if self.tb is None:
            return
        kind = record.get("kind", "train")
        for key, value in record.items():
            if key not in ("iter", "kind", "method") and isinstance(value, int | float):
                self.tb.add_scalar(f"{kind}/{key}", value, record["iter"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.tb is not None:
            self.tb.flush()


def _tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(folder))
