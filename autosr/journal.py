"""The decision journal (events.jsonl): every automatic choice, one JSON record a line.

Record: {iter, time, source, key, old, new, reason}. One writer (the trainer's main process),
one reader (`autosr report`, tests). Plan-time choices are copied in from the YAML's
`# auto:` comments when a run starts, so the journal tells the whole story.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

_COMMENT = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<value>[^#]*?)\s*#\s*(?P<kind>auto|set)\b:?\s*(?P<reason>.*)$")
_KEY = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[A-Za-z0-9_]+):")


class Journal:
    def __init__(self, path: Path | None) -> None:
        """`path=None` gives a journal that records nothing (non-main DDP ranks)."""
        self.path = path
        self.records: list[dict[str, Any]] = []

    def record(self, iteration: int, source: str, key: str, old: Any, new: Any, reason: str) -> dict[str, Any]:
        entry = {"iter": iteration, "time": round(time.time(), 3), "source": source, "key": key,
                 "old": _plain(old), "new": _plain(new), "reason": reason}
        self.records.append(entry)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
        return entry

    def truncate_after(self, iteration: int) -> None:
        """On resume: drop records from iterations the restored checkpoint never reached."""
        if self.path is None or not self.path.exists():
            return
        kept = [r for r in read_journal(self.path) if r.get("iter", 0) <= iteration]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill: skip it, keep the rest
    return out


def plan_decisions(yaml_text: str) -> list[tuple[str, str, str]]:
    """(dotted key, value text, reason) for every `# auto:` / `# set` line of a rendered config."""
    stack: list[tuple[int, str]] = []
    out = []
    for line in yaml_text.splitlines():
        key_match = _KEY.match(line)
        if not key_match or line.lstrip().startswith("#"):
            continue
        indent = len(key_match["indent"]) + (2 if line.lstrip().startswith("- ") else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key_match["key"]])
        comment = _COMMENT.match(line.replace("- ", "  ", 1) if line.lstrip().startswith("- ") else line)
        if comment:
            reason = comment["reason"] if comment["kind"] == "auto" else "set by the user"
            out.append((dotted, comment["value"].strip(), reason))
        if line.rstrip().endswith(":") or re.match(r"^ *[A-Za-z0-9_]+:\s*(#.*)?$", line):
            stack.append((indent, key_match["key"]))
    return out
