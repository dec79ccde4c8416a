"""The decision journal (events.jsonl): every automatic choice, one JSON record a line.

Record: {iter, time, source, key, old, new, reason}. One writer (the trainer's main process),
one reader (`autosr report`, tests). Plan-time choices are copied in from init's plan file
(`autosr.plan_file`) when a run starts, so the journal tells the whole story.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from autosr.runfolder import JsonlWriter, plain, read_jsonl, rewrite_jsonl, up_to


class Journal:
    """Writes decision records; `path=None` records in memory only (non-main DDP ranks, tests)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._writer = JsonlWriter(path)

    def record(self, iteration: int, source: str, key: str, old: Any, new: Any, reason: str) -> dict[str, Any]:
        entry = {"iter": iteration, "time": round(time.time(), 3), "source": source, "key": key,
                 "old": plain(old), "new": plain(new), "reason": reason}
        self.records.append(entry)
        self._writer.append(entry)
        return entry

    def truncate_after(self, iteration: int) -> None:
        """On resume: drop records from iterations the restored checkpoint never reached."""
        if self.path is not None:
            self._writer.close()
            rewrite_jsonl(self.path, up_to(iteration))

    def close(self) -> None:
        self._writer.close()


def read_journal(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path).records
