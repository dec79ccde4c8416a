"""Durations as people write them (`--time 1h30m`) and as autosr prints them; the process's age."""

from __future__ import annotations

import re
import time

from autosr.errors import AutosrError

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|min|m|sec|s)")


def since_process_start() -> float:
    """Seconds this process has run (imports included): the budget counts the whole command."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except (ImportError, OSError):
        return 0.0


def parse_duration(text: str) -> float:
    """'20m', '2h', '1h30m', '90s', '45' (minutes) → seconds; AutosrError for anything else."""
    raw = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        seconds = float(raw) * 60
    else:
        parts = _PART.findall(raw)
        if not parts or "".join(f"{n}{u}" for n, u in parts) != raw:
            raise AutosrError(f"--time {text}: not a duration", "write it like 20m, 2h, 1h30m or 90s")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 10:
        raise AutosrError(f"--time {text}: {seconds:g} s is too short to train anything", "give at least 10s")
    return seconds


def format_duration(seconds: float) -> str:
    """3725 → '1 h 2 min'; 95 → '1 min 35 s'."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m} min"
    if m:
        return f"{m} min {s} s" if s else f"{m} min"
    return f"{s} s"
