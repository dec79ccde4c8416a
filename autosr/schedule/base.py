"""What every scheduled automation shares: built from its YAML section, calibrated from RunInfo.

An automation file defines one subclass: `name` (its YAML key and checkpoint state key),
`options` (its YAML keys and their types, from which the schema can be derived), `calibrate`
(pure: section × run → frozen settings with reasons) and the hooks it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from autosr.schedule.calibration import fmt, rows_of
from autosr.train.hooks import Automation, Controls, RunInfo


class ScheduledAutomation(Automation):
    options: ClassVar[dict[str, type]] = {}  # YAML keys besides `enabled`, with their types
    summary: ClassVar[str] = ""  # one line for docs and --explain

    def __init__(self, section: Mapping[str, Any] | None = None, run: RunInfo | None = None) -> None:
        self.section: dict[str, Any] = {k: v for k, v in (section or {}).items() if k != "enabled"}
        self.run: RunInfo | None = run
        self.settings: Any = self.calibrate(self.section, run) if run is not None else None

    @classmethod
    def calibrate(cls, section: Mapping[str, Any], run: RunInfo) -> Any:
        raise NotImplementedError

    def configure(self, run: RunInfo) -> None:
        self.run = run
        self.settings = self.calibrate(self.section, run)

    def journal_settings(self, controls: Controls) -> None:
        """One journal record per setting, with its reason (fresh runs; a resume keeps them)."""
        for key, cal in rows_of(self.settings):
            controls.note(f"{self.name}.{key}", None, cal.value, cal.reason)

    def describe(self) -> list[tuple[str, str, str]]:
        return [(self.name, key, f"{fmt(cal.value)} ({cal.reason})") for key, cal in rows_of(self.settings)]
