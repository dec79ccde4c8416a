"""A decided value with the reason it was chosen: what the planner, `detect` and the journal share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Decision:
    value: Any
    reason: str
    source: str = "auto"  # "auto" (autosr chose it), "set" (the user's --set), "preset"
