"""Where a time-budgeted run's validations fall.

With a time budget the run's length is re-fitted as it goes, so validations are a number, not an
interval: `planned` in all, spread evenly over the rest of the run from the point (`anchor_iter`,
`anchor_done`) where their number last changed (the plan's count at the start; fewer when they cost
too much of the time left; more or fewer when AdaptiveValidationFrequency asks). Pure arithmetic: the
trainer decides when to respread and journals why.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ValPlan:
    planned: int  # validations in the whole run
    done: int = 0
    anchor_iter: int = 0  # the iteration from which the remaining validations are spread
    anchor_done: int = 0  # validations done at that point

    @property
    def left(self) -> int:
        return max(0, self.planned - self.done)

    def next_point(self, iteration: int, total_iter: int) -> int:
        """The iteration of the next validation (always after `iteration`)."""
        left = max(1, self.planned - self.anchor_done)
        k = self.done + 1 - self.anchor_done
        return max(iteration + 1, self.anchor_iter + round((total_iter - self.anchor_iter) * k / left))

    def interval(self, total_iter: int) -> int:
        """Iterations between the validations still planned."""
        return max(1, round((total_iter - self.anchor_iter) / max(1, self.planned - self.anchor_done)))

    def respread(self, iteration: int, count: int) -> None:
        """From `iteration` on, `count` (at least one) more validations over the rest of the run."""
        self.planned = self.done + max(1, count)
        self.anchor_iter, self.anchor_done = iteration, self.done

    def state(self) -> list[int]:
        """[planned, anchor_iter, anchor_done], as checkpoints store it ("planned_vals")."""
        return [self.planned, self.anchor_iter, self.anchor_done]

    def load(self, state: list[int] | tuple[int, ...]) -> None:
        self.planned, self.anchor_iter, self.anchor_done = (int(v) for v in state)
