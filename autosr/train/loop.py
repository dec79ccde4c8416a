"""The training loop: time, validation, checkpoints, automations, journal, agreement between processes.

What one step computes is the objective's business (autosr/train/objective.py); the loop never asks
which kind it runs. `autosr train`'s composition root (autosr/train_cmd.py) builds the objective, the
data and the automations and hands them in. Run-time changes (out-of-memory back-off, self-healing,
what automations ask for through `Controls`) are applied here, in one place, and journaled.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autosr.config import RunConfig
from autosr.durations import format_duration
from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.hardware import TIER_SETTINGS, tier_for_vram
from autosr.journal import Journal
from autosr.runfolder import PSNR_BEST_MODEL, JsonlWriter, RunFolder, rewrite_jsonl, up_to
from autosr.train import checkpoint as ckpt
from autosr.train import distributed
from autosr.train.budget import TimeBudget
from autosr.train.data import CropSource, UnreadableSet
from autosr.train.hooks import Automation, LossInfo, RunInfo, StepStats, TierInfo, ValStats, phase_of
from autosr.train.objective import Objective, StepContext
from autosr.train.progress import Progress
from autosr.train.settings import Settings
from autosr.train.setup import DistInfo, Note, TorchSetup, denormals_flushed
from autosr.train.val_plan import ValSchedule
from autosr.train.validate import Validator

LR_FACTOR_BOUNDS = (0.1, 2.0)  # runtime-scheduler.md: the automation scales, within these
# The scheduler's statistics are sampled every this many iterations. Run every step, its ~45 small
# kernels slowed nano's batch-64 step on an H200 from 7,926 to 5,643 samples/s (launch-bound);
# its decisions act over hundreds of iterations, so its constants are scaled to the interval.
# Every 8, its host time is still 1.5% of that step on an H100 (benchmarks/scheduler_profile.py);
# every 16 would halve it, but DLS then moves the balance only half as far (test_schedule_dls).
SCHEDULE_EVERY = 8
# Self-healing: a step whose gradients are not finite is skipped (no update); this many in a row
# roll the run back to its last checkpoint with the LR halved; after MAX_ROLLBACKS it stops.
NONFINITE_IN_A_ROW = 10
MAX_ROLLBACKS = 3
# With a time budget, validations (each with a checkpoint) may take at most this share of the time
# left; more would be bought with training steps (a 9-photo validation on a CPU takes seconds).
VAL_TIME_SHARE = 0.15
# ...but the last one stays (the final model is the one most likely best, and unmeasured it could
# not be chosen: an H100 run kept its iteration-4,627 model of 9,923) unless one validation costs
# more than this share of the whole budget (a large validation set on a CPU).
FINAL_VAL_MAX_SHARE = 0.25

# The metadata every saved model file carries: (iteration, best metrics, training summary) → strings.
ModelMetadata = Callable[[int, dict[str, float] | None, dict[str, Any]], dict[str, str]]


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) fit() leaves, for the command that started it."""

    iteration: int
    total_iter: int
    best: dict[str, tuple[float, int]]
    stop_reason: str | None
    interrupted: bool


class Trainer:
    """Holds the run's state around the objective; implements `Controls` for the automations."""

    def __init__(self, s: Settings, cfg: RunConfig, objective: Objective, source: CropSource, validator: Validator | None,
                 torch_setup: TorchSetup, *, dist: DistInfo, journal: Journal, run_dir: Path | None = None,
                 budget: TimeBudget | None = None, quiet: bool = False, complexity: Callable[[], float] = lambda: 0.0,
                 model_metadata: ModelMetadata | None = None, notes: Sequence[Note] = ()) -> None:
        self.s, self.cfg, self.objective, self.source, self.validator = s, cfg, objective, source, validator
        self.device, self.precision, self.seed = torch_setup.device, torch_setup.precision, torch_setup.seed
        self.dist, self.journal, self.run_dir, self.budget = dist, journal, run_dir, budget
        self.folder = RunFolder(run_dir) if run_dir is not None else None
        # the dataset's complexity (0..1) for the automations' calibration: asked for only when they start
        self.complexity, self.model_metadata = complexity, model_metadata
        self.notes = list(notes)
        self.automations: list[Automation] = []
        self.schedule_notes: list[str] = []
        # Run-time state (what a checkpoint saves).
        self.iteration = 0
        self.total_iter = s.total_iter
        self.accum = s.data.accum_iter
        self.batch_size = s.data.batch_size
        self.lr_scale = 1.0
        self.clip, self.clip_threshold = s.grad_clip, s.grad_clip_max_norm
        self.vals = ValSchedule.start(s.val.freq, s.total_iter, budget, share=VAL_TIME_SHARE, final_max_share=FINAL_VAL_MAX_SHARE)
        self.print_freq, self.save_freq = s.print_freq, s.save_checkpoint_freq
        self.phase: str | None = None
        self.stop_reason: str | None = None
        self.interrupted = False
        self.resumed = False
        self.last_stats: StepStats | None = None
        self._lr = 0.0
        self._journaled_weights = [t.weight for t in objective.terms]
        self._weights_reason = ""
        # self-healing counters live on the device (read at log points only)
        self.skipped = torch.zeros((), dtype=torch.long, device=self.device)
        self.bad_run = torch.zeros((), dtype=torch.long, device=self.device)
        self.rollbacks = 0
        self._rollback_request: tuple[str, str] | None = None
        self._ranks_agree_said = False
        tb_dir = self.folder.tb if (self.folder and s.use_tb_logger) else None
        self.progress = Progress(self.total_iter, enabled=dist.is_main and not quiet, tb_dir=tb_dir)
        self.metrics_log = JsonlWriter(self.folder.metrics if (self.folder and dist.is_main) else None)

    def attach(self, automations: Sequence[Automation], notes: Sequence[str] = ()) -> None:
        """The runtime scheduler: each automation sees every step and validation, acts through Controls."""
        if len({a.name for a in automations}) != len(automations):
            raise AutosrError("two automations share a state key", "each automation needs its own name")
        self.automations, self.schedule_notes = list(automations), list(notes)

    @property
    def loss_weights(self) -> torch.Tensor:
        return self.objective.loss_weights

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.objective.eval_model

    @property
    def best(self) -> dict[str, tuple[float, int]]:
        return dict(self.validator.best) if self.validator else {}

    def run_info(self) -> RunInfo:
        """The frozen description automations start from."""
        vram = torch.cuda.get_device_properties(self.device).total_memory if self.device.type == "cuda" else None
        tier = tier_for_vram(vram // 2**20 * self.dist.world_size if vram else None)
        t = TIER_SETTINGS[tier]
        terms = self.objective.terms
        return RunInfo(
            total_iter=self.total_iter, warmup_iter=max(0, self.s.schedule.warmup_iter), arch=self.s.network["type"],
            variant=self.s.network["type"].removeprefix("paragonsr2_"), scale=self.s.scale,
            losses=tuple(LossInfo(t_.name, t_.type, t_.weight, t_.schedule is not None and t_.schedule.factor(1) == 0)
                         for t_ in terms),
            has_gan=any(t_.type == "ganloss" for t_ in terms),
            tier=TierInfo(tier, t.vram_target, t.safety_margin, t.lr_patience, t.clip_start, t.early_stop_patience, vram),
            complexity=self.complexity(), world_size=self.dist.world_size, batch_size=self.batch_size,
            accum_iter=self.accum, lq_size=self.s.data.lq_size, val_freq=self.vals.freq,
            val_metric=self.validator.primary if self.validator else None, print_freq=self.print_freq,
            resumed=self.resumed, start_iter=self.iteration,
            time_budget_s=self.budget.seconds if self.budget is not None else None,
        )

    # ---- the loop -----------------------------------------------------------------------------

    def fit(self, *, max_steps: int | None = None) -> int:
        """Train until total_iter, a stop, or Ctrl-C. Returns the exit code (0, or 130 after Ctrl-C)."""
        with denormals_flushed(self.device):
            return self._fit(max_steps)

    def _fit(self, max_steps: int | None) -> int:
        self._startup_seconds = self.budget.elapsed - self.progress.paused if self.budget else 0.0
        self._fit_start = self.iteration
        self._start()
        steps_done = 0
        while True:
            # 1. the run's length (a time budget re-fits it to the measured speed)
            if self.budget is not None:
                self._fit_to_budget()
            if self.iteration >= self.total_iter:
                break
            # 2. one optimiser step (phase and LR first); the automations see it and may act through Controls
            stats, lr = self._train_step_skipping_lost_pairs()
            steps_done += 1
            # 3. log; too many non-finite steps in a row roll back
            self.progress.update(self.iteration)
            if self.iteration % self.print_freq == 0 or self.iteration == self.total_iter:
                self._log(stats, lr)
                self._heal()
            # 4. validate and checkpoint
            if self.vals.due(self.iteration, self.total_iter):
                self._validate()
            if self.iteration % self.save_freq == 0 and self.iteration < self.total_iter and self.budget is None:
                self.save()
            # 5. Ctrl-C, an automation's stop, or a step budget (tests, --dry-run): save and leave
            if self._should_leave() or (max_steps is not None and steps_done >= max_steps):
                break
        if self.budget is not None and self.iteration >= self.total_iter and self.vals.freq and self.vals.next_at <= self.iteration:
            self._validate()  # the budget ended between validation points: the last one is due
        self._finish()
        return 130 if self.interrupted and self.iteration < self.total_iter else 0

    def _finish(self) -> None:
        for automation in self.automations:
            automation.on_end(self.iteration, self)
        self._journal_weights()
        skipped = int(self.skipped)
        if skipped:
            self._event("trainer", "skipped_steps", None, skipped,
                        f"steps with non-finite gradients skipped (no update); {self.rollbacks} rollback(s)")
        self.save(final=self.iteration >= self.total_iter)
        if self.budget is not None:
            self._event("trainer", "time_budget", format_duration(self.budget.seconds), format_duration(self.budget.elapsed),
                        f"{self.iteration} iterations; the run took {self.budget.elapsed / self.budget.seconds:.1%} of its budget")
        self.progress.close()
        self.metrics_log.close()
        if self.stop_reason:
            self._event("trainer", "stop", None, self.iteration, self.stop_reason)

    def result(self) -> RunResult:
        return RunResult(self.iteration, self.total_iter, self.best, self.stop_reason, self.interrupted)

    def describe(self) -> list[tuple[str, str]]:
        """(topic, text) lines saying how this run is built (`--dry-run` prints them)."""
        lines = [
            ("model", f"{self.s.network['type']} ×{self.s.scale}, precision {self.precision.label} ({self.precision.note})"),
            ("batch", f"{self.batch_size} × accum {self.accum}, patch {self.s.data.lq_size}, device {self.device}"),
        ]
        lines += [("note", f"{n.key}: {n.reason}") for n in self.notes if n.key not in ("network_g", "precision")]
        lines += [("schedule", f"{a.name}") for a in self.automations]
        if self.validator:
            lines.append(("val", f"{len(self.validator.images)} validation images every {self.vals.freq} iterations"))
        return lines

    def _fit_to_budget(self) -> None:
        """Re-fit total_iter (and with it the schedule and the validation points) so that the run,
        its remaining validations and the final save end when the budget does."""
        assert self.budget is not None
        budget = self.budget
        if self.iteration > self._fit_start + 2:  # the first steps include compile and warm-up
            budget.mark(self.iteration, self.progress.paused + self._startup_seconds)
        fitted = budget.fit_total(self.iteration, fallback=self.total_iter, upcoming=self.vals.upcoming_seconds())
        if self.dist.world_size > 1:  # ranks must agree on the length: rank 0's, at log boundaries
            if self.iteration % self.print_freq:
                return
            fitted = distributed.rank0_int(fitted, self.dist.is_main, self.device)
        self.total_iter = self.progress.total = fitted
        self.vals.refit(self.iteration, self.total_iter)
        if budget.note_due():
            self._event("trainer", "train.total_iter", self.s.total_iter, self.total_iter,
                        f"time budget {format_duration(budget.seconds)}: {format_duration(budget.elapsed)} spent, "
                        f"{budget.rate():.2f} it/s measured → {self.total_iter} iterations end on time")

    def _bound_validation_cost(self) -> None:
        change = self.vals.bound(self.iteration, self.total_iter)
        if change is not None:
            self._event("trainer", "val.count", *change)

    def _should_leave(self) -> bool:
        """Single process: at once. Under DDP every rank must leave after the same step or the
        next all-reduce hangs, so ranks agree at log boundaries (one tiny all-reduce there)."""
        local = self.interrupted or self.stop_reason is not None
        if self.dist.world_size == 1:
            return local
        if self.iteration % self.print_freq:
            return False
        if distributed.any_rank(local, self.device):
            self.interrupted = self.interrupted or self.stop_reason is None
            return True
        return False

    # ---- one step ------------------------------------------------------------------------------

    def train_step(self) -> tuple[StepStats, float]:
        """One iteration as fit() runs it (benchmarks time this): phase, LR, the objective's step
        (CUDA OOM → smaller batch, same step), then the automations due at this iteration."""
        self._enter_phase()
        lr = self._set_lr()
        stats = self._step_with_backoff()
        self.last_stats = stats
        self.iteration += 1
        for automation in self.automations:
            if stats.iteration % automation.step_interval == 0:
                automation.after_step(stats, self)
        return stats, lr

    def _train_step_skipping_lost_pairs(self) -> tuple[StepStats, float]:
        """train_step; pairs the loader found unreadable are warned about and journaled. When too
        many of the set are gone: checkpoint, then stop with one line (exit 1)."""
        try:
            result = self.train_step()
        except UnreadableSet as exc:
            self._report_skips()
            self.objective.zero_grad()  # the cut-short step leaves nothing behind
            self.save()
            self.progress.close()
            self.metrics_log.close()
            saved = ckpt.CheckpointStore(self.run_dir, clean=False).state_path(self.iteration) if self.run_dir else None
            where = f"checkpoint saved: {saved}" if saved and saved.exists() else "no checkpoint was saved"
            raise AutosrRuntimeError(f"iteration {self.iteration}: {exc.message}", f"{exc.hint} ({where})") from None
        self._report_skips()
        return result

    def _report_skips(self) -> None:
        for skip in self.source.take_skips():
            if self.dist.is_main:
                self.progress.console.print(f"warning: {skip.describe()}", markup=False, style="yellow")
            self._event("data", "data.unreadable", skip.skipped - 1, skip.skipped, skip.reason)

    def _step_with_backoff(self) -> StepStats:
        while True:
            try:
                return self._step()
            except torch.cuda.OutOfMemoryError:
                self.objective.zero_grad()
                torch.cuda.empty_cache()
                if self.batch_size <= 1:
                    raise AutosrRuntimeError(
                        f"CUDA ran out of memory at batch 1 (iteration {self.iteration})",
                        "lower datasets.train.lq_size or pick a smaller arch",
                    ) from None
                new = max(1, int(self.batch_size * 0.9))
                self._apply_batch_size(new, f"CUDA out of memory at batch {self.batch_size}: step repeated at {new}")

    def _step(self) -> StepStats:
        started = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        context = StepContext(iteration=self.iteration + 1, accum=self.accum, clip_threshold=self.clip_threshold if self.clip else None,
                              world_size=self.dist.world_size)
        out = self.objective.step(self.source.next_batch, context)
        bad = (~out.finite).long()  # a skipped step: counted on the device, read at log points
        self.skipped += bad
        self.bad_run = (self.bad_run + 1) * bad
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        total, losses, extras = out.total, out.losses, out.extras
        if self.dist.world_size > 1:
            averaged = distributed.average({"": total, **losses, **{f"extra:{k}": v for k, v in extras.items()}})
            total = averaged.pop("")
            losses = {k: averaged[k] for k in losses}
            extras = {k: averaged[f"extra:{k}"] for k in extras}
        return StepStats(
            iteration=self.iteration + 1, losses=losses, total=total, grad_norm=out.grad_norm, clipped=out.clipped,
            weights=self.loss_weights, batch_size=self.batch_size, step_seconds=time.perf_counter() - started,
            peak_memory_bytes=peak, phase=self.phase or "", lr=self._lr, lr_scale=self.lr_scale,
            clip_threshold=self.clip_threshold if self.clip else None, extras=extras,
        )

    def _heal(self) -> None:
        """At a log point: too many non-finite steps in a row → back to the last checkpoint, LR halved."""
        bad = int(self.bad_run)
        if bad < NONFINITE_IN_A_ROW:
            return
        self.rollbacks += 1
        store = ckpt.CheckpointStore(self.run_dir, clean=self.dist.is_main) if self.run_dir is not None else None
        latest = store.latest() if store is not None else None
        if self.rollbacks > MAX_ROLLBACKS or latest is None:
            why = (f"{bad} non-finite steps in a row after {MAX_ROLLBACKS} rollbacks" if latest is not None
                   else f"{bad} non-finite steps in a row and no checkpoint to roll back to")
            self._event("trainer", "self_heal", None, "stop", why)
            self.stop(f"{why}: the model keeps diverging (lower train.optim_g.lr; the best model is kept)")
            self.bad_run.zero_()
            return
        lr_scale, at = self.lr_scale, self.iteration
        self._restore(latest)
        self.lr_scale = max(LR_FACTOR_BOUNDS[0], lr_scale * 0.5)
        self._event("trainer", "rollback", at, self.iteration,
                    f"{bad} non-finite steps in a row: back to {latest.name}, LR scale {lr_scale:g} → {self.lr_scale:g} "
                    f"(rollback {self.rollbacks} of at most {MAX_ROLLBACKS})")

    def _restore(self, path: Path, keep: Sequence[str] = ()) -> None:
        """Load an earlier checkpoint of this run; the healing counters, and the state of the automations
        named in `keep`, stay as they are now (they must remember that they rolled back)."""
        rollbacks, skipped = self.rollbacks, self.skipped.clone()
        kept = {a.name: a.state_dict() for a in self.automations if a.name in keep}
        self.load_state(ckpt.load_training_state(path))
        self.rollbacks, self.skipped = rollbacks, skipped
        for automation in self.automations:
            if automation.name in kept:
                automation.load_state_dict(kept[automation.name])
        self.bad_run.zero_()
        if self.folder is not None and self.dist.is_main:
            self.metrics_log.close()
            rewrite_jsonl(self.folder.metrics, up_to(self.iteration))

    def _apply_rollback_request(self) -> None:
        """An automation's roll_back (asked for at a validation, decided on rank 0, broadcast): back to the
        checkpoint of the best validation, else the latest before now."""
        requester, reason = self._rollback_request or ("", "")
        self._rollback_request = None
        store = ckpt.CheckpointStore(self.run_dir, clean=False) if self.run_dir is not None else None
        target = None
        if store is not None:
            best = store.best_iter
            if best is not None and best < self.iteration and store.state_path(best).is_file():
                target = store.state_path(best)
            else:
                target = next((p for it in reversed(store.iterations()) if it < self.iteration
                               and (p := store.state_path(it)).is_file()), None)
        if target is None:
            self._event("automation", "rollback", self.iteration, "not applied", f"{reason} (no earlier checkpoint of this run)")
            return
        at = self.iteration
        self._restore(target, keep=[requester])
        self._event("automation", "rollback", at, self.iteration, f"{reason}: back to {target.name}")

    def _set_lr(self) -> float:
        factor = self.s.schedule.factor(self.iteration, self.total_iter) * self.lr_scale
        self._lr = self.objective.set_lr(factor)
        return self._lr

    def _enter_phase(self) -> None:
        phase = phase_of(self.iteration, self.total_iter, max(0, self.s.schedule.warmup_iter))
        if phase != self.phase:
            self._event("trainer", "phase", self.phase, phase, f"iteration {self.iteration} of {self.total_iter}")
            self.phase = phase
            for automation in self.automations:
                automation.on_phase(phase, self.iteration, self)
            self._journal_weights()

    # ---- start, validation, logging ------------------------------------------------------------

    def _start(self) -> None:
        if self.iteration == 0:
            for note in self.notes:
                self._event("trainer", note.key, None, note.value, note.reason)
            for text in self.schedule_notes:
                self._event("schedule", text.split(":", 1)[0], None, None, text)
        parameters = sum(p.numel() for p in self.objective.model.parameters() if p.requires_grad)
        self.progress.message(
            f"{self.s.network['type']} ×{self.s.scale} · {parameters:,} params · {self.precision.label} · "
            f"batch {self.batch_size}×{self.accum} · patch {self.s.data.lq_size} · {self.device} · data: {self.source.kind}"
        )
        if self.automations:
            self.progress.message("scheduler: " + ", ".join(a.name for a in self.automations))
        if not self.s.val.enabled:
            self.progress.message(f"note: validation is off: {self.s.val.off_reason}")
        if self.automations:
            run = self.run_info()
            for automation in self.automations:
                automation.on_start(run, self)
        if self.progress.tb_note and self.iteration == 0:
            self._event("trainer", "use_tb_logger", True, False, self.progress.tb_note)
        if self.validator and self.iteration == 0:
            started = time.perf_counter()
            base = self.validator.bicubic()
            self.vals.baseline_seconds = time.perf_counter() - started
            if self.dist.world_size == 1:  # under DDP the first measured validation bounds it (broadcast)
                self._bound_validation_cost()
            self._write_metrics({"iter": 0, "kind": "baseline", "method": "bicubic", **base})
            self.progress.message("bicubic baseline: " + ", ".join(f"{k} {v:.4f}" for k, v in base.items()))
        self.progress.start(self.iteration)

    def _validate(self) -> None:
        self.vals.mark_done(self.iteration)
        if self.validator is not None:
            self._validate_main()
        self._sync_knobs()
        if self._rollback_request is not None:
            self._apply_rollback_request()

    def _validate_main(self) -> None:
        assert self.validator is not None
        started = time.perf_counter()
        model = self.eval_model
        was_training = model.training
        model.eval()
        result = self.validator.run(model, self.iteration)
        model.train(was_training)
        if self.validator.tile_note:
            self._event("trainer", "val.tile_size", 0, self.validator.tile, self.validator.tile_note)
            self.validator.tile_note = ""
        self._write_metrics({"iter": self.iteration, "kind": "val", **result.values})
        self.progress.message(
            f"val @ {self.iteration}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.values.items())
            + (f" (best {', '.join(result.improved)})" if result.improved else "")
        )
        if self.validator.primary in result.improved:
            self.save(best=True)
        if self.budget is not None and self.iteration < self.total_iter:
            self.save()  # with a time budget, checkpoints go with the validations
        spent = time.perf_counter() - started
        self.vals.record_cost(spent)
        self.progress.paused += spent
        self._bound_validation_cost()
        stats = ValStats(self.iteration, result.values, result.best, result.higher_is_better, result.improved,
                         self.validator.primary, val_freq=self.vals.interval(self.total_iter), total_iter=self.total_iter)
        for automation in self.automations:
            automation.after_validation(stats, self)

    def _sync_knobs(self) -> None:
        """Under DDP, validation runs on rank 0 and so do the decisions it drives: every other
        rank takes rank 0's knobs here, at the same iteration, so ranks never diverge."""
        if self.dist.world_size == 1:
            return
        names = sorted(self.objective.knobs)
        knobs = distributed.broadcast_floats(
            [self.lr_scale, self.clip_threshold, float(self.clip), float(self.vals.freq),
             float(self.stop_reason is not None), *map(float, self.vals.plan.state()),
             float(self._rollback_request is not None), *(self.objective.knobs[n] for n in names)], self.device)
        distributed.broadcast_(self.loss_weights)
        if not self.dist.is_main:
            lr_scale, clip_threshold, clip, val_freq, stop, planned_vals, anchor_it, anchor_k, rollback = knobs[:9]
            for name, value in zip(names, knobs[9:], strict=True):
                if value != self.objective.knobs[name]:
                    self.objective.set_knob(name, value)
            if rollback:
                self._rollback_request = ("", "rank 0 rolled back")
            self.lr_scale, self.clip_threshold, self.clip = lr_scale, clip_threshold, bool(clip)
            self.vals.plan.load((int(planned_vals), int(anchor_it), int(anchor_k)))
            if int(val_freq) != self.vals.freq:
                self.vals.freq = int(val_freq)
                self.vals.next_at = self.iteration + self.vals.freq
            if stop and self.stop_reason is None:
                self.stop_reason = "rank 0 stopped the run"
        self._check_ranks_agree()

    def _check_ranks_agree(self) -> None:
        """Every validation point under DDP: the ranks' weights, LR factor and loss weights must be
        the same. Divergence is a bug: stop loudly."""
        lr = torch.tensor(self.lr_scale, dtype=torch.float64)
        spread = distributed.disagreement(self.objective.trained_modules(), [self.loss_weights, lr], self.device)
        if spread > 1e-6:
            raise AutosrRuntimeError(f"the {self.dist.world_size} ranks diverged at iteration {self.iteration} "
                                     f"(weights/knobs fingerprints differ by {spread:.3g})", "please report it: this is a bug")
        if self.dist.is_main and not self._ranks_agree_said:
            self._ranks_agree_said = True
            self._event("trainer", "ranks_agree", None, self.dist.world_size,
                        "weights, LR factor and loss weights identical on every rank (checked at every validation)")

    def _log(self, stats: StepStats, lr: float) -> None:
        if not self.dist.is_main:
            return
        record: dict[str, Any] = {
            "iter": self.iteration, "kind": "train",
            "loss": float(stats.total),
            **{f"loss_{k}": float(v) for k, v in stats.losses.items()},
            **{k: float(v) for k, v in stats.extras.items()},
            "grad_norm": float(stats.grad_norm),
            "lr": lr, "lr_scale": self.lr_scale, "batch_size": self.batch_size,
            **({"grad_clip_threshold": self.clip_threshold} if self.clip else {}),
            **{f"dynamic_weight_{t.name}": float(w) for t, w in zip(self.objective.terms, self.loss_weights.tolist(), strict=True)},
            **{f"knob_{k}": float(v) for k, v in self.objective.knobs.items()},
            **self.progress.rates(self.iteration, self.batch_size * self.accum * self.dist.world_size),
        }
        if stats.peak_memory_bytes is not None:
            record["peak_vram_gib"] = round(stats.peak_memory_bytes / 2**30, 3)
        if not math.isfinite(record["loss"]):
            self._event("trainer", "loss", None, record["loss"], "non-finite loss: the step was skipped (no update)")
        self._write_metrics(record)
        self.progress.log(record)
        self._journal_weights()

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.metrics_log.append(record)
        self.progress.scalars(record)

    def _event(self, source: str, key: str, old: Any, new: Any, reason: str) -> None:
        if self.dist.is_main:
            self.journal.record(self.iteration, source, key, old, new, reason)

    def _journal_weights(self) -> None:
        """Loss weights change every step under DLS: journaled at phase changes and log points."""
        if not self._weights_reason:
            return
        new = [round(w, 6) for w in self.loss_weights.tolist()]
        old = self._journaled_weights
        for term, before, after in zip(self.objective.terms, old, new, strict=True):
            if before != after:
                self._event("automation", f"loss_weight.{term.name}", before, after, self._weights_reason)
        self._journaled_weights, self._weights_reason = new, ""

    # ---- Controls (what automations may change) -------------------------------------------------

    def set_loss_weights(self, weights: torch.Tensor, reason: str) -> None:
        if weights.shape != self.loss_weights.shape:
            raise ValueError(f"expected {len(self.objective.terms)} loss weights, got shape {tuple(weights.shape)}")
        self.loss_weights.copy_(weights)  # in place, on the device: no sync
        self._weights_reason = reason

    def note(self, key: str, old: Any, new: Any, reason: str) -> None:
        self._event("automation", key, old, new, reason)

    def scale_lr(self, factor: float, reason: str) -> None:
        new = min(LR_FACTOR_BOUNDS[1], max(LR_FACTOR_BOUNDS[0], self.lr_scale * factor))
        self._event("automation", "lr_scale", self.lr_scale, new, reason)
        self.lr_scale = new

    def set_clip_threshold(self, max_norm: float, reason: str) -> None:
        new = min(10.0, max(0.1, float(max_norm)))
        self._event("automation", "grad_clip_max_norm", self.clip_threshold, new, reason)
        self.clip_threshold, self.clip = new, True

    def set_batch_size(self, batch_size: int, reason: str) -> None:
        self._apply_batch_size(max(1, int(batch_size)), reason)

    def set_val_freq(self, val_freq: int, reason: str) -> None:
        val_freq = max(1, int(val_freq))
        old = self.vals.freq
        reason += self.vals.change_freq(self.iteration, self.total_iter, val_freq)
        self._event("automation", "val_freq", old, val_freq, reason)

    def set_knob(self, name: str, value: float, reason: str) -> None:
        old = self.objective.knobs.get(name)
        if old is None:
            self._event("automation", name, None, "not applied", f"{reason} (the {self.objective.name} objective has no {name})")
            return
        new = self.objective.set_knob(name, value)
        self._event("automation", name, old, new, reason)

    def roll_back(self, requester: str, reason: str) -> None:
        self._rollback_request = (requester, reason)  # applied after the validation, on every rank

    def stop(self, reason: str) -> None:
        self.stop_reason = reason

    def _apply_batch_size(self, new: int, reason: str) -> None:
        old = self.batch_size
        self._event("trainer", "batch_size", old, new, reason)
        self.batch_size = new
        self.source.set_batch_size(new)
        for automation in self.automations:
            automation.on_batch_size(old, new, reason, self)

    # ---- checkpoints ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "seed": self.seed,
            **self.objective.state_dict(),  # model, ema, optimizer, scaler (and a GAN's D side)
            "lr_scale": self.lr_scale,
            "skipped": int(self.skipped),
            "rollbacks": self.rollbacks,
            "clip": [self.clip, self.clip_threshold],
            "loss_weights": self.loss_weights.cpu(),
            "phase": self.phase,
            "val_freq": self.vals.freq,
            "total_iter": self.total_iter,
            "vals_done": self.vals.plan.done,
            "planned_vals": self.vals.plan.state(),
            "budget": self.budget.state_dict() if self.budget is not None else None,
            "batch_size": self.batch_size,
            "world_size": self.dist.world_size,  # the state itself is rank-independent (rank 0's)
            "best": self.validator.state_dict() if self.validator else {},
            "data": self.source.state_dict(),
            "automations": {a.name: a.state_dict() for a in self.automations},
            "rng": ckpt.rng_state(),
            "config": self.cfg.data,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.iteration = state["iteration"]
        self.objective.load_state_dict(state)
        self.lr_scale = state["lr_scale"]
        self.skipped.fill_(state.get("skipped", 0))
        self.rollbacks = state.get("rollbacks", 0)
        self.clip, self.clip_threshold = state["clip"]
        self.loss_weights.copy_(state["loss_weights"].to(self.loss_weights))
        self._journaled_weights = [round(w, 6) for w in self.loss_weights.tolist()]
        self.phase = state["phase"]  # a resumed run does not re-enter the phase it is in
        self.resumed = True
        freq = state["val_freq"] if self.s.val.freq else 0
        self.vals.resume(self.iteration, freq, state.get("vals_done", self.iteration // freq if freq else 0), state.get("planned_vals"))
        if self.budget is not None and state.get("budget"):
            self.budget.load_state_dict(state["budget"])
            self.total_iter = state.get("total_iter", self.total_iter)
        if state["batch_size"] != self.batch_size:
            self.batch_size = state["batch_size"]
            self.source.set_batch_size(self.batch_size)
        if self.validator:
            self.validator.load_state_dict(state["best"])
        self.source.load_state_dict(state["data"])
        for automation in self.automations:
            automation.load_state_dict(state["automations"].get(automation.name, {}))
        ckpt.set_rng_state(state["rng"])

    def save(self, *, best: bool = False, final: bool = False) -> None:
        if self.run_dir is None or not self.dist.is_main:
            return
        store = ckpt.CheckpointStore(self.run_dir)
        best_metrics = {k: v[0] for k, v in self.best.items()}
        # every model file describes itself: a file alone rebuilds the network (docs/model-files.md)
        meta = self.model_metadata(self.iteration, best_metrics or None, self._training_summary()) if self.model_metadata else None
        if best:
            store.mark_best(self.iteration, metrics=best_metrics, weights=self.eval_model.state_dict(), metadata=meta)
            return
        if not final and int(self.bad_run) > 0:
            return  # mid-divergence: keep the last checkpoint a good one to roll back to
        net_g, net_g_ema = self.objective.weights()
        store.save(self.iteration, self.state(), net_g=net_g, net_g_ema=net_g_ema, metadata=meta)
        if final and self.objective.final_is_result:
            if store.best_model_path.is_file():  # kept: the report shows it beside the result
                shutil.copyfile(store.best_model_path, store.best_model_path.with_name(PSNR_BEST_MODEL))
            store.mark_best(self.iteration, metrics=best_metrics, weights=self.eval_model.state_dict(), metadata=meta)
            self._event("trainer", "best_model", None, self.iteration,
                        f"a {self.objective.name} run: its result is the final model (the PSNR-best one would be from before "
                        f"the adversarial terms had their effect); net_g_best is the final EMA model, the PSNR-best one is "
                        f"kept as {PSNR_BEST_MODEL}")

    def _training_summary(self) -> dict[str, Any]:
        """The run's hyperparameters, stored in every model file it writes."""
        s, objective = self.s, self.objective.summary()
        return {"name": s.name, "scale": s.scale, "total_iter": self.total_iter, "batch_size_per_gpu": self.batch_size,
                "accum_iter": self.accum, "lq_size": s.data.lq_size, "optimizer": objective["optimizer"], "lr": objective["lr"],
                "warmup_iter": s.schedule.warmup_iter, "ema_decay": objective["ema_decay"], "precision": self.precision.label,
                "losses": objective["losses"], "world_size": self.dist.world_size}
