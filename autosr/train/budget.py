"""A wall-clock budget for a run: the schedule is driven by the time spent, so the run ends on time.

The budget counts the whole `autosr train` command: start-up (caching the data, compiling),
training steps, validations, checkpoints, and the final validation and save. Every step the
trainer asks for the total number of iterations that ends on time at the current speed
(`fit_total`); the learning-rate schedule, phases and validation points follow that estimate,
as budget-based schedulers do. A slower GPU, a batch back-off or a slow validation therefore
shorten the run instead of making it late.

Pure host-side arithmetic with an injectable clock (tests drive it with a fake one).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

RATE_WINDOW = 0.05  # the speed is measured over the last 5% of the budget (at least 10 s)
EXIT_RESERVE = 2.0  # seconds for closing files, the CUDA context and the interpreter after the last save


class TimeBudget:
    """How much of `seconds` is spent, how fast steps go, and how many iterations still fit.

    Speed is measured on training steps only (validations and saves are paused time, reported by
    the caller); the time the remaining validations and the final save will take is the caller's
    estimate (`upcoming`), so a run with slow validations trains fewer steps instead of ending late.
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic, spent: float = 0.0) -> None:
        self.seconds = float(seconds)
        self.clock = clock
        self._start = clock() - spent
        self._marks: deque[tuple[float, int]] = deque()  # (step time so far, iteration)
        self._note_at = 0.0  # the share of the budget at which the next re-fit is worth a journal line

    @property
    def elapsed(self) -> float:
        return self.clock() - self._start

    @property
    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed)

    def mark(self, iteration: int, paused: float) -> None:
        """`iteration` steps are done now, and `paused` seconds of the run so far were not steps."""
        step_time = self.elapsed - paused
        self._marks.append((step_time, iteration))
        window = max(10.0, RATE_WINDOW * self.seconds)
        while len(self._marks) > 2 and self._marks[1][0] < step_time - window:
            self._marks.popleft()

    def rate(self) -> float | None:
        """Training iterations per second over the recent window, or None until measured."""
        if len(self._marks) < 2:
            return None
        (t0, i0), (t1, i1) = self._marks[0], self._marks[-1]
        return (i1 - i0) / (t1 - t0) if t1 > t0 and i1 > i0 else None

    def fit_total(self, iteration: int, fallback: int, upcoming: float = 0.0) -> int:
        """The total iterations that end on time at the measured speed, keeping `upcoming`
        seconds for the validations and saves still to come; `fallback` before a speed is known;
        `iteration` when the time is up."""
        remaining = self.seconds - self.elapsed - upcoming - EXIT_RESERVE
        if remaining <= 0:
            return iteration
        rate = self.rate()
        if rate is None:
            return max(iteration + 1, fallback)
        return iteration + int(remaining * rate)  # 0 when not even one more step fits

    def note_due(self) -> bool:
        """True once per tenth of the budget, once a speed is measured: when a re-fit is journaled."""
        share = self.elapsed / self.seconds
        if share < self._note_at or self.rate() is None:
            return False
        self._note_at = share + 0.1
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "spent": self.elapsed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the time already spent counts against the budget."""
        self._start = self.clock() - float(state["spent"])
        self._marks.clear()
