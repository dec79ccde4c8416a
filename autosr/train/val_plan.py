"""Where a time-budgeted run's validations fall.

With a time budget the run's length is re-fitted as it goes, so validations are a number, not an
interval: `planned` in all, spread evenly over the rest of the run from the point (`anchor_iter`,
`anchor_done`) where their number last changed (the plan's count at the start; fewer when they cost
too much of the time left; more or fewer when AdaptiveValidationFrequency asks). `ValSchedule` holds
the rest of the bookkeeping (the interval, the measured cost, the budget's bound on it). Pure
arithmetic: the loop journals the decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

from autosr.durations import format_duration
from autosr.train.budget import TimeBudget


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


@dataclass
class ValSchedule:
    """When the loop validates: every `freq` iterations; with a time budget, a number of validations
    (`plan`) spread over the re-fitted run, whose measured cost may take at most `share` of the time
    left. Host arithmetic only; the loop journals the decisions it returns."""

    freq: int  # 0: no validation
    budget: TimeBudget | None
    plan: ValPlan
    next_at: int
    share: float  # of the time left that validations may take
    final_max_share: float  # one validation costing more than this share of the budget: none at all
    seconds: float | None = None  # measured cost of one validation and its checkpoint
    baseline_seconds: float = 0.0  # the bicubic baseline's time: a first guess at a validation's

    @classmethod
    def start(cls, freq: int, total_iter: int, budget: TimeBudget | None, *, share: float, final_max_share: float) -> ValSchedule:
        # A time budget spreads this many validations over whatever length fits (as planned).
        plan = ValPlan(planned=max(1, total_iter // freq) if freq else 0)
        return cls(freq, budget, plan, next_at=freq, share=share, final_max_share=final_max_share)

    def due(self, iteration: int, total_iter: int) -> bool:
        return bool(self.freq) and (iteration >= self.next_at or iteration == total_iter)

    def mark_done(self, iteration: int) -> None:
        self.plan.done += 1
        self.next_at = iteration + self.freq

    def record_cost(self, seconds: float) -> None:
        self.seconds = seconds if self.seconds is None else 0.5 * (self.seconds + seconds)

    def cost(self) -> float:
        """Seconds one validation (and its checkpoint) takes: measured, or guessed from the baseline."""
        assert self.budget is not None
        return self.seconds if self.seconds is not None else max(0.01 * self.budget.seconds, 3 * self.baseline_seconds)

    def affordable(self) -> int | None:
        """How many more validations fit in `share` of the budget left (None: no budget)."""
        if self.budget is None:
            return None
        return int(self.share * self.budget.remaining / max(self.cost(), 1e-6))

    def upcoming_seconds(self) -> float:
        """What the validations still to come will cost (the budget keeps it for them)."""
        assert self.budget is not None
        return self.plan.left * self.cost() if self.freq else 0.01 * self.budget.seconds

    def interval(self, total_iter: int) -> int:
        """Iterations between validations now: freq, or with a time budget the spacing of the
        validations still planned over the rest of the (re-fitted) run."""
        if self.budget is None or not self.freq:
            return self.freq
        return self.plan.interval(total_iter)

    def refit(self, iteration: int, total_iter: int) -> None:
        """The run's length moved: the validations still planned move with it."""
        if self.freq:
            self.next_at = self.plan.next_point(iteration, total_iter)

    def respread(self, iteration: int, total_iter: int, count: int) -> None:
        self.plan.respread(iteration, count)
        self.next_at = self.plan.next_point(iteration, total_iter)

    def change_freq(self, iteration: int, total_iter: int, freq: int) -> str:
        """An automation's new interval. With a time budget the run's length moves, so it becomes a
        number of validations over the rest of the run, within the budget's share: the returned
        text says so (empty without a budget)."""
        why = ""
        if self.budget is not None and self.plan.done:
            wanted = max(1, round((total_iter - iteration) / freq))
            affordable = self.affordable()
            count = max(1, min(wanted, wanted if affordable is None else affordable))
            why = (f"; time budget: {count} more validation(s) over the {total_iter - iteration} iterations left"
                   + (f" (at most {affordable} fit in {self.share:.0%} of the time left)" if count < wanted else ""))
            self.respread(iteration, total_iter, count)
        self.freq = freq
        return why

    def bound(self, iteration: int, total_iter: int) -> tuple[int, int, str] | None:
        """With a time budget, validations may take at most `share` of the time left: where the ones
        still planned would take more (a slow CPU, a large validation set), fewer are made.
        Returns (planned before, after, why) to journal, or None when nothing changed."""
        affordable = self.affordable()
        left = self.plan.left
        if affordable is None or not self.freq or left <= affordable:
            return None
        assert self.budget is not None
        per_val = self.cost()
        why = (f"a validation takes ~{per_val:.1f} s ({'measured' if self.seconds is not None else 'estimated'}); "
               f"{left} more would take over {self.share:.0%} of the {format_duration(self.budget.remaining)} left "
               "of the time budget")
        if affordable < 1 and per_val > self.final_max_share * self.budget.seconds:
            # not even the last one is worth its time: train instead (the report says the run was not validated)
            self.freq = 0
            return left, 0, (f"{why}, and one costs over {self.final_max_share:.0%} of the whole budget: no more "
                             "validations, the time goes to training")
        if affordable < 1:
            if left == 1 and self.next_at >= total_iter:
                return None  # already only the last one
            self.respread(iteration, total_iter, 1)
            return left, 1, f"{why}: only the last one, at the end of the run, which measures the final model"
        self.respread(iteration, total_iter, affordable)
        return left, affordable, f"{why}: {affordable} more, spread over the rest of the run"

    def resume(self, iteration: int, saved_freq: int, done: int, planned: list[int] | None) -> None:
        """Every rank validates on the same schedule after a resume (rank 0 runs it)."""
        self.freq = saved_freq if self.freq else 0
        self.next_at = (iteration // self.freq + 1) * self.freq if self.freq else 0
        self.plan.done = done
        if planned is not None:
            self.plan.load(planned)
