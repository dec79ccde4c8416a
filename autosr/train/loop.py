"""The training run: build everything from typed Settings, then `fit()` — the loop reads top to bottom.

Run-time changes (OOM back-off, precision fallback, automations through `Controls`) are all
applied here and written to the decision journal.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autosr.archs import build_network, count_parameters
from autosr.config import RunConfig
from autosr.durations import format_duration
from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.images import collect_pairs, load_val_pairs
from autosr.journal import Journal
from autosr.runfolder import JsonlWriter, RunFolder
from autosr.train import checkpoint as ckpt
from autosr.train.budget import TimeBudget
from autosr.train.data import CropSource, UnreadableSet, build_crop_source
from autosr.train.ema import ModelEMA, build_ema
from autosr.train.hooks import Automation, LossInfo, RunInfo, StepStats, TierInfo, ValStats, phase_of
from autosr.train.losses import LossTerm, build_losses, total_loss
from autosr.train.pretrained import load_pretrained
from autosr.train.progress import Progress
from autosr.train.settings import Settings, build_settings
from autosr.train.setup import DistInfo, Note, Precision, build_optimizer, cache_budget_bytes, denormals_flushed, setup_torch
from autosr.train.val_plan import ValPlan
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
# With a time budget, validations (each with a checkpoint) may take at most this share of the time
# left; more would be bought with training steps (a 9-photo validation on a CPU takes seconds).
VAL_TIME_SHARE = 0.15
# ...but the last one stays (the final model is the one most likely best, and unmeasured it could
# not be chosen: an H100 run kept its iteration-4,627 model of 9,923) unless one validation costs
# more than this share of the whole budget (a large validation set on a CPU).
FINAL_VAL_MAX_SHARE = 0.25
MAX_ROLLBACKS = 3


@dataclass
class ModelParts:
    model: torch.nn.Module
    step_model: Any  # what the step calls: compiled and/or DDP-wrapped model
    ema: ModelEMA | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    losses: list[LossTerm]
    notes: list[Note]


def build_model_parts(s: Settings, device: torch.device, precision: Precision, dist: DistInfo) -> ModelParts:
    """Network (pretrained weights loaded), EMA, optimizer, scaler, losses, compile, DDP."""
    notes = []
    model = build_network(s.network).to(device)
    if s.runtime.channels_last:
        # torch's stubs lack Module.to's memory_format keyword (documented, and it works)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    notes.append(Note("network_g", s.network["type"], f"{count_parameters(model):,} trainable parameters"))
    if s.pretrain.path:
        loaded = load_pretrained(model, Path(s.pretrain.path), param_key=s.pretrain.param_key, strict=s.pretrain.strict)
        notes.append(Note("path.pretrain_network_g", "loaded", loaded))
    ema = build_ema(model, s.ema_decay, s.ema_power)
    if ema is None:
        notes.append(Note("train.ema_decay", 0.0, "no EMA (traiNNer's meaning of 0): validation and models use the trained weights"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, s.optimizer, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
    losses = build_losses(list(s.losses))
    step_model: Any = model
    if s.runtime.use_compile:
        step_model, note = _compile(model, losses, s.runtime.compile_mode, device)
        notes.append(note)
    if dist.world_size > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            step_model, device_ids=[dist.local_rank] if device.type == "cuda" else None
        )
    return ModelParts(model, step_model, ema, optimizer, scaler, losses, notes)


def _compile(model: torch.nn.Module, losses: list[LossTerm], mode: str, device: torch.device) -> tuple[Any, Note]:
    if device.type != "cuda":
        return model, Note("use_compile", False, "torch.compile skipped on the CPU: slow to build, rarely faster")
    # The SSIM window comes from an lru_cache'd builder; tracing through it is safe (pure).
    warnings.filterwarnings("ignore", message=".*functools.lru_cache.*", category=UserWarning)
    for term in losses:
        # The loss maths (SSIM's many fp32 elementwise passes) fuses well; weights stay outside
        # the compiled function so that changing them never recompiles.
        term.fn = torch.compile(term.fn)
    note = Note("use_compile", mode, "model and losses compiled on the first step (its time shows in the first log line)")
    return torch.compile(model, mode=mode), note


@dataclass
class DataParts:
    source: CropSource
    validator: Validator | None
    notes: list[Note]


def build_data(s: Settings, device: torch.device, dist: DistInfo, seed: int, autocast: Any,
               save_dir: Path | None) -> DataParts:
    """The training crop source (cache or loader) and, on the main process, the validator."""
    _check_dataroots(s)
    budget, host_budget, budget_reason = cache_budget_bytes(device)
    d = s.data
    pairs = collect_pairs(list(d.dataroot_gt), list(d.dataroot_lq), list(d.meta_info) if d.meta_info else None)
    source = build_crop_source(
        pairs, scale=s.scale, lq_size=d.lq_size, batch_size=d.batch_size,
        use_hflip=d.use_hflip, use_rot=d.use_rot, seed=seed, device=device,
        channels_last=s.runtime.channels_last, cache_budget_bytes=budget, host_cache_budget_bytes=host_budget,
        num_workers=d.num_workers or 0, rank=dist.rank, world_size=dist.world_size,
    )
    notes = [Note("data", source.kind, f"{source.reason} (budget: {budget_reason})")]
    validator = None
    if s.val.enabled and dist.is_main:
        images = []
        for vset in s.val.sets:
            images += load_val_pairs(collect_pairs(list(vset.dataroot_gt), list(vset.dataroot_lq),
                                                   list(vset.meta_info) if vset.meta_info else None), scale=s.scale)
        validator = Validator(images, s.val.metrics, scale=s.scale, tile=s.val.tile_size, device=device,
                              autocast=autocast, channels_last=s.runtime.channels_last,
                              save_dir=save_dir if s.val.save_img else None)
    elif not s.val.enabled:
        notes.append(Note("val", "off", s.val.off_reason))
    return DataParts(source, validator, notes)


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) fit() leaves, for the command that started it."""

    iteration: int
    total_iter: int
    best: dict[str, tuple[float, int]]
    stop_reason: str | None
    interrupted: bool


class Trainer:
    """Holds the run's state; implements `Controls` for the automations."""

    def __init__(self, cfg: RunConfig, run_dir: Path | None, dist: DistInfo, journal: Journal,
                 automations: list[Automation] | None = None, quiet: bool = False,
                 budget: TimeBudget | None = None) -> None:
        self.cfg, self.run_dir, self.dist, self.journal = cfg, run_dir, dist, journal
        self.budget = budget
        self.folder = RunFolder(run_dir) if run_dir is not None else None
        self.s = s = build_settings(cfg)
        self.automations: list[Automation] = list(automations or [])
        # 1. torch: device, seed, math modes, precision
        torch_setup = setup_torch(s.runtime, dist)
        self.device, self.precision, self.seed = torch_setup.device, torch_setup.precision, torch_setup.seed
        self.autocast = self.precision.autocast(self.device)
        # 2. model, EMA, optimizer, losses
        parts = build_model_parts(s, self.device, self.precision, dist)
        self.model, self.step_model, self.ema = parts.model, parts.step_model, parts.ema
        self.optimizer, self.scaler, self.losses = parts.optimizer, parts.scaler, parts.losses
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # Loss weights live on the device: the scheduler changes them with no host sync per step.
        self.loss_weights = torch.tensor([t.weight for t in self.losses], dtype=torch.float32, device=self.device)
        self._journaled_weights = [t.weight for t in self.losses]
        self._weights_reason = ""
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        # 3. data: training crops, validation images
        save_dir = self.folder.visualization if self.folder else None
        data = build_data(s, self.device, dist, self.seed, self.autocast, save_dir)
        self.source, self.validator = data.source, data.validator
        self.notes = [*torch_setup.notes, *parts.notes, *data.notes, *self._overridden_hints()]

        # Run-time state (what a checkpoint saves).
        self.iteration = 0
        self.total_iter = s.total_iter
        self.accum = s.data.accum_iter
        self.batch_size = s.data.batch_size
        self.lr_scale = 1.0
        self.clip, self.clip_threshold = s.grad_clip, s.grad_clip_max_norm
        self.val_freq = s.val.freq
        self.next_val = self.val_freq
        self.print_freq, self.save_freq = s.print_freq, s.save_checkpoint_freq
        # A time budget spreads this many validations over whatever length fits (as planned).
        self.vals = ValPlan(planned=max(1, s.total_iter // self.val_freq) if self.val_freq else 0)
        self.val_seconds: float | None = None  # measured cost of one validation + checkpoint
        self._baseline_s = 0.0  # the bicubic baseline's time: a first guess at a validation's
        self._refit_note_at = 0.0
        self.stop_reason: str | None = None
        self.interrupted = False
        self.resumed = False
        self._lr = 0.0
        # self-healing counters live on the device (read at log points only)
        self.fused = bool(self.optimizer.defaults.get("fused"))
        self.skipped = torch.zeros((), dtype=torch.long, device=self.device)
        self.bad_run = torch.zeros((), dtype=torch.long, device=self.device)
        self.rollbacks = 0
        self._ranks_agree_said = False
        self.phase: str | None = None
        self.last_stats: StepStats | None = None
        tb_dir = self.folder.tb if (self.folder and s.use_tb_logger) else None
        self.progress = Progress(self.total_iter, enabled=dist.is_main and not quiet, tb_dir=tb_dir)
        self.metrics_log = JsonlWriter(self.folder.metrics if (self.folder and dist.is_main) else None)
        # 4. the runtime scheduler: the config's DLS and automations (tests may pass their own)
        self.schedule_notes: list[str] = []
        if automations is None:
            self.automations, self.schedule_notes = self._build_schedule()

    @property
    def eval_model(self) -> torch.nn.Module:
        """What validation and the saved 'best' model use: the EMA weights when there is EMA."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def best(self) -> dict[str, tuple[float, int]]:
        return dict(self.validator.best) if self.validator else {}

    def run_info(self) -> RunInfo:
        """The frozen description automations start from."""
        from autosr.hardware import TIER_SETTINGS, tier_for_vram

        vram = torch.cuda.get_device_properties(self.device).total_memory if self.device.type == "cuda" else None
        tier = tier_for_vram(vram // 2**20 * self.dist.world_size if vram else None)
        t = TIER_SETTINGS[tier]
        variant = self.s.network["type"].removeprefix("paragonsr2_")
        return RunInfo(
            total_iter=self.total_iter, warmup_iter=max(0, self.s.schedule.warmup_iter), arch=self.s.network["type"],
            variant=variant, scale=self.s.scale,
            losses=tuple(LossInfo(t_.name, t_.type, t_.weight) for t_ in self.losses),
            has_gan=any(t_.type == "ganloss" for t_ in self.losses),
            tier=TierInfo(tier, t.vram_target, t.safety_margin, t.lr_patience, t.clip_start, t.early_stop_patience, vram),
            complexity=self._complexity(), world_size=self.dist.world_size, batch_size=self.batch_size,
            accum_iter=self.accum, lq_size=self.s.data.lq_size, val_freq=self.val_freq,
            val_metric=self.validator.primary if self.validator else None, print_freq=self.print_freq,
            resumed=self.resumed, start_iter=self.iteration,
            time_budget_s=self.budget.seconds if self.budget is not None else None,
        )

    def _build_schedule(self) -> tuple[list[Automation], list[str]]:
        from autosr.schedule import build_automations

        dls, autos = self.s.dynamic_loss_scheduling or None, self.s.training_automations or None
        if dls is None and autos is None:
            return [], []
        built, notes = build_automations(dls, autos, self.run_info())
        for automation in built:  # their maths is many tiny kernels: sampled, not run every step
            automation.step_interval = SCHEDULE_EVERY
        names = {a.name for a in built}
        if len(names) != len(built):
            raise AutosrError("two automations share a state key", "each automation needs its own name")
        return built, notes

    def explain(self) -> list[tuple[str, str, str]]:
        """(automation, setting, value with its reason) for every scheduler setting of this run."""
        from autosr.schedule import describe

        dls, autos = self.s.dynamic_loss_scheduling or None, self.s.training_automations or None
        if dls is None and autos is None:
            return [("scheduler", "off", "the config has no dynamic_loss_scheduling / training_automations section")]
        return describe(self.run_info(), dls, autos)

    def _complexity(self) -> float:
        """Dataset complexity of one training batch (runtime-scheduler.md's formula), 0..1."""
        from autosr.plan.dataset import image_complexity

        _, gt = self.source.peek_batch()
        images = gt.float().permute(0, 2, 3, 1).cpu().numpy()
        return float(sum(image_complexity(img) for img in images) / max(1, len(images)))

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
            # 1. the run's length (a time budget re-fits it to the measured speed), phase, LR
            if self.budget is not None:
                self._fit_to_budget()
            if self.iteration >= self.total_iter:
                break
            # 2. one optimiser step; the automations see it and may act through Controls
            stats, lr = self._train_step_skipping_lost_pairs()
            steps_done += 1
            # 3. log
            self.progress.update(self.iteration)
            if self.iteration % self.print_freq == 0 or self.iteration == self.total_iter:
                self._log(stats, lr)
                self._heal()
            # 4. validate and checkpoint
            if self.val_freq and (self.iteration >= self.next_val or self.iteration == self.total_iter):
                self._validate()
            if self.iteration % self.save_freq == 0 and self.iteration < self.total_iter and self.budget is None:
                self.save()
            # 5. Ctrl-C, an automation's stop, or a step budget (tests, --dry-run): save and leave
            if self._should_leave() or (max_steps is not None and steps_done >= max_steps):
                break
        if self.budget is not None and self.iteration >= self.total_iter and self.val_freq and self.next_val <= self.iteration:
            self._validate()  # the budget ended between validation points: the last one is due
        for automation in self.automations:
            automation.on_end(self.iteration, self)
        self._journal_weights()
        skipped = int(self.skipped)
        if skipped:
            self._event("trainer", "skipped_steps", None, skipped,
                        f"steps with non-finite gradients skipped (no update); {self.rollbacks} rollback(s)")
        self.save(final=self.iteration >= self.total_iter)
        if self.budget is not None:
            self._event("trainer", "time_budget", format_duration(self.budget.seconds),
                        format_duration(self.budget.elapsed),
                        f"{self.iteration} iterations; the run took {self.budget.elapsed / self.budget.seconds:.1%} of its budget")
        self.progress.close()
        self.metrics_log.close()
        if self.stop_reason:
            self._event("trainer", "stop", None, self.iteration, self.stop_reason)
        return 130 if self.interrupted and self.iteration < self.total_iter else 0

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
            lines.append(("val", f"{len(self.validator.images)} validation images every {self.val_freq} iterations"))
        return lines

    def _fit_to_budget(self) -> None:
        """Re-fit total_iter (and with it the schedule and the validation points) so that the run,
        its remaining validations and the final save end when the budget does."""
        assert self.budget is not None
        budget = self.budget
        if self.iteration > self._fit_start + 2:  # the first steps include compile and warm-up
            budget.mark(self.iteration, self.progress.paused + self._startup_seconds)
        vals_left = self.vals.left if self.val_freq else 0
        per_val = self._val_cost()
        upcoming = vals_left * per_val + (0.0 if self.val_freq else 0.01 * budget.seconds)
        old = self.total_iter
        fitted = budget.fit_total(self.iteration, fallback=old, upcoming=upcoming)
        if self.dist.world_size > 1:  # ranks must agree on the length: rank 0's, at log boundaries
            if self.iteration % self.print_freq:
                return
            import torch.distributed as dist

            agreed = torch.tensor([fitted if self.dist.is_main else 0], dtype=torch.int64, device=self.device)
            dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
            fitted = int(agreed.item())
        self.total_iter = fitted
        self.progress.total = self.total_iter
        if self.val_freq:
            self.next_val = self.vals.next_point(self.iteration, self.total_iter)
        share = budget.elapsed / budget.seconds
        if share >= self._refit_note_at and budget.rate() is not None:
            self._refit_note_at = share + 0.1
            self._event("trainer", "train.total_iter", self.s.total_iter, self.total_iter,
                        f"time budget {format_duration(budget.seconds)}: {format_duration(budget.elapsed)} spent, "
                        f"{budget.rate():.2f} it/s measured → {self.total_iter} iterations end on time")

    def _val_interval(self) -> int:
        """Iterations between validations now: val_freq, or with a time budget the spacing of the
        validations still planned over the rest of the (re-fitted) run."""
        if self.budget is None or not self.val_freq:
            return self.val_freq
        return self.vals.interval(self.total_iter)

    def _affordable_vals(self) -> int | None:
        """How many more validations fit in VAL_TIME_SHARE of the budget left (None: no budget)."""
        if self.budget is None:
            return None
        return int(VAL_TIME_SHARE * self.budget.remaining / max(self._val_cost(), 1e-6))

    def _val_cost(self) -> float:
        """Seconds one validation (and its checkpoint) takes: measured, or guessed from the baseline."""
        assert self.budget is not None
        return self.val_seconds if self.val_seconds is not None else max(0.01 * self.budget.seconds, 3 * self._baseline_s)

    def _respread_validations(self, count: int) -> None:
        self.vals.respread(self.iteration, count)
        self.next_val = self.vals.next_point(self.iteration, self.total_iter)

    def _bound_validation_cost(self) -> None:
        """With a time budget, validations may take at most VAL_TIME_SHARE of the time left: where
        the ones still planned would take more (a slow CPU, a large validation set), fewer are made."""
        affordable = self._affordable_vals()
        left = self.vals.left
        if affordable is None or not self.val_freq or left <= affordable:
            return
        assert self.budget is not None
        per_val = self._val_cost()
        why = (f"a validation takes ~{per_val:.1f} s ({'measured' if self.val_seconds is not None else 'estimated'}); "
               f"{left} more would take over {VAL_TIME_SHARE:.0%} of the {format_duration(self.budget.remaining)} left "
               "of the time budget")
        if affordable < 1 and per_val > FINAL_VAL_MAX_SHARE * self.budget.seconds:
            # not even the last one is worth its time: train instead (the report says the run was not validated)
            self._event("trainer", "val.count", left, 0,
                        f"{why}, and one costs over {FINAL_VAL_MAX_SHARE:.0%} of the whole budget: no more validations, "
                        "the time goes to training")
            self.val_freq = 0
            return
        if affordable < 1:
            if left == 1 and self.next_val >= self.total_iter:
                return  # already only the last one
            self._respread_validations(1)
            self._event("trainer", "val.count", left, 1, f"{why}: only the last one, at the end of the run, which "
                                                         "measures the final model")
            return
        self._respread_validations(affordable)
        self._event("trainer", "val.count", left, affordable, f"{why}: {affordable} more, spread over the rest of the run")

    def _should_leave(self) -> bool:
        """Single process: at once. Under DDP every rank must leave after the same step or the
        next all-reduce hangs, so ranks agree at log boundaries (one tiny all-reduce there)."""
        local = self.interrupted or self.stop_reason is not None
        if self.dist.world_size == 1:
            return local
        if self.iteration % self.print_freq:
            return False
        import torch.distributed as dist

        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            self.interrupted = self.interrupted or self.stop_reason is None
            return True
        return False

    # ---- one step ------------------------------------------------------------------------------

    def train_step(self) -> tuple[StepStats, float]:
        """One iteration as fit() runs it (benchmarks time this): phase, LR, the optimiser step
        (gradient accumulation inside; CUDA OOM → smaller batch, same step), then the automations
        due at this iteration. Returns the step's statistics and its LR."""
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
            self.optimizer.zero_grad(set_to_none=True)  # the cut-short step leaves nothing behind
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
                self.optimizer.zero_grad(set_to_none=True)
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
        parts_sum: dict[str, torch.Tensor] = {}
        total_sum: torch.Tensor | None = None
        for micro in range(self.accum):
            lq, gt = self.source.next_batch()
            sync = self.dist.world_size == 1 or micro == self.accum - 1
            with (self.step_model.no_sync() if not sync else _null()), self.autocast():
                sr = self.step_model(lq)
                total, parts = total_loss(self.losses, sr.float(), gt, self.loss_weights)
            self.scaler.scale(total / self.accum if self.accum > 1 else total).backward()
            if self.accum == 1:  # the common case: no averaging kernels (a small model is launch-bound)
                total_sum, parts_sum = total.detach(), parts
                continue
            share = total.detach() / self.accum
            total_sum = share if total_sum is None else total_sum + share
            for name, value in parts.items():
                parts_sum[name] = parts_sum[name] + value / self.accum if name in parts_sum else value / self.accum
        self.scaler.unscale_(self.optimizer)
        grad_norm, clipped = self._clip_gradients()
        self._optimizer_step(torch.isfinite(grad_norm))
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        assert total_sum is not None  # accum ≥ 1
        if self.dist.world_size > 1:
            total_sum, parts_sum = self._average_over_ranks(total_sum, parts_sum)
        return StepStats(
            iteration=self.iteration + 1, losses=parts_sum, total=total_sum, grad_norm=grad_norm, clipped=clipped,
            weights=self.loss_weights, batch_size=self.batch_size, step_seconds=time.perf_counter() - started,
            peak_memory_bytes=peak, phase=self.phase or "", lr=self._lr, lr_scale=self.lr_scale,
            clip_threshold=self.clip_threshold if self.clip else None,
        )

    def _optimizer_step(self, finite: torch.Tensor) -> None:
        """Update the weights unless the gradients are not finite (that step is skipped and
        counted). The grad norm is global under DDP, so every rank skips the same steps."""
        bad = (~finite).long()
        self.skipped += bad
        self.bad_run = (self.bad_run + 1) * bad
        if self.precision.use_scaler:
            self.scaler.step(self.optimizer)  # GradScaler skips non-finite steps itself
        elif self.fused:
            self.optimizer.found_inf = bad.float()  # type: ignore[attr-defined]  # fused AdamW skips on the device
            self.optimizer.step()
        elif bool(finite):  # the CPU: reading the flag costs no GPU sync
            self.optimizer.step()
        self.scaler.update()

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
        from autosr.runfolder import rewrite_jsonl, up_to

        lr_scale, rollbacks, skipped, at = self.lr_scale, self.rollbacks, self.skipped.clone(), self.iteration
        self.load_state(ckpt.load_training_state(latest))
        self.lr_scale = max(LR_FACTOR_BOUNDS[0], lr_scale * 0.5)
        self.rollbacks, self.skipped = rollbacks, skipped
        self.bad_run.zero_()
        if self.folder is not None and self.dist.is_main:
            self.metrics_log.close()
            rewrite_jsonl(self.folder.metrics, up_to(self.iteration))
        self._event("trainer", "rollback", at, self.iteration,
                    f"{bad} non-finite steps in a row: back to {latest.name}, LR scale {lr_scale:g} → {self.lr_scale:g} "
                    f"(rollback {rollbacks} of at most {MAX_ROLLBACKS})")

    def _average_over_ranks(self, total: torch.Tensor, parts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's losses averaged over the ranks (one all-reduce, no host sync), so that every
        step-driven decision is the same on every rank. (The grad norm is already global.)"""
        import torch.distributed as dist

        flat = torch.stack([total, *parts.values()])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat = flat / self.dist.world_size
        return flat[0], dict(zip(parts, flat[1:], strict=True))

    def _clip_gradients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Total grad norm (before clipping) and whether it was clipped; clip to the threshold; a
        non-finite norm zeroes the step's gradients instead of poisoning the weights. No host sync."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            zero = torch.zeros((), device=self.device)
            return zero, zero.bool()
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        limit = self.clip_threshold if self.clip else math.inf
        coef = torch.clamp(limit / (norm + 1e-6), max=1.0)
        coef = torch.where(torch.isfinite(norm), coef, torch.zeros_like(coef))
        torch._foreach_mul_(grads, coef)
        return norm, norm > limit

    def _set_lr(self) -> float:
        factor = self.s.schedule.factor(self.iteration, self.total_iter) * self.lr_scale
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        self._lr = self.base_lrs[0] * factor
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
        self.progress.message(
            f"{self.s.network['type']} ×{self.s.scale} · {count_parameters(self.model):,} params · {self.precision.label} · "
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
            self._baseline_s = time.perf_counter() - started
            if self.dist.world_size == 1:  # under DDP the first measured validation bounds it (broadcast)
                self._bound_validation_cost()
            self._write_metrics({"iter": 0, "kind": "baseline", "method": "bicubic", **base})
            self.progress.message("bicubic baseline: " + ", ".join(f"{k} {v:.4f}" for k, v in base.items()))
        self.progress.start(self.iteration)

    def _overridden_hints(self) -> list[Note]:
        """traiNNer keys that autosr's own pipeline decides: accepted, and said to be unused."""
        d, out = self.s.data, []
        if d.prefetch_mode:
            out.append(Note("datasets.train.prefetch_mode", "not used", f"autosr's data pipeline prefetches itself ({self.source.kind})"))
        if d.pin_memory is False and self.device.type == "cuda":
            out.append(Note("datasets.train.pin_memory", "not used", "autosr pins host memory on CUDA (faster copies)"))
        if d.persistent_workers is False and self.source.kind == "loader":
            out.append(Note("datasets.train.persistent_workers", "not used", "autosr's loader keeps its workers for the whole run"))
        if d.dataset_enlarge_ratio not in (1, "auto"):
            out.append(Note("datasets.train.dataset_enlarge_ratio", "not used",
                            "autosr samples crops endlessly: there are no epochs to enlarge"))
        if self.s.save_checkpoint_format == "pth":
            out.append(Note("logger.save_checkpoint_format", "not used", "models are written as safetensors (loads everywhere .pth does)"))
        from autosr.train.launch import launch_note

        launched = launch_note()
        num_gpu = self.s.runtime.num_gpu
        if launched is not None:
            out.append(launched)  # how many processes `autosr train` started, and why
        elif isinstance(num_gpu, int) and num_gpu != self.dist.world_size:
            out.append(Note("num_gpu", self.dist.world_size, f"num_gpu: {num_gpu} asked for, {self.dist.world_size} "
                                                              "process(es) run (--gpus or CUDA_VISIBLE_DEVICES limit it)"))
        return out

    def _validate(self) -> None:
        self.vals.done += 1
        self.next_val = self.iteration + self.val_freq
        if self.validator is not None:
            self._validate_main()
        self._sync_knobs()

    def _sync_knobs(self) -> None:
        """Under DDP, validation runs on rank 0 and so do the decisions it drives: every other
        rank takes rank 0's knobs here, at the same iteration, so ranks never diverge."""
        if self.dist.world_size == 1:
            return
        import torch.distributed as dist

        knobs = torch.tensor([self.lr_scale, self.clip_threshold, float(self.clip), float(self.val_freq),
                              float(self.stop_reason is not None), *map(float, self.vals.state())],
                             dtype=torch.float64, device=self.device)
        dist.broadcast(knobs, 0)
        dist.broadcast(self.loss_weights, 0)
        if not self.dist.is_main:
            lr_scale, clip_threshold, clip, val_freq, stop, planned_vals, anchor_it, anchor_k = knobs.tolist()
            self.lr_scale, self.clip_threshold, self.clip = lr_scale, clip_threshold, bool(clip)
            self.vals.load((int(planned_vals), int(anchor_it), int(anchor_k)))
            if int(val_freq) != self.val_freq:
                self.val_freq = int(val_freq)
                self.next_val = self.iteration + self.val_freq
            if stop and self.stop_reason is None:
                self.stop_reason = "rank 0 stopped the run"
        self._check_ranks_agree()

    def _check_ranks_agree(self) -> None:
        """Every validation point under DDP: the ranks' weights, LR factor and loss weights must be
        the same (a fingerprint, all-reduced as max and min). Divergence is a bug: stop loudly."""
        import torch.distributed as dist

        with torch.no_grad():
            weights = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum()
            fingerprint = torch.stack([weights, self.loss_weights.double().sum(),
                                       torch.tensor(self.lr_scale, dtype=torch.float64, device=self.device)])
        high, low = fingerprint.clone(), fingerprint.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        spread = float((high - low).abs().max())
        if spread > 1e-6 * max(1.0, float(high.abs().max())):
            raise AutosrRuntimeError(f"the {self.dist.world_size} ranks diverged at iteration {self.iteration} "
                                     f"(weights/knobs fingerprints differ by {spread:.3g})", "please report it: this is a bug")
        if self.dist.is_main and not self._ranks_agree_said:
            self._ranks_agree_said = True
            self._event("trainer", "ranks_agree", None, self.dist.world_size,
                        "weights, LR factor and loss weights identical on every rank (checked at every validation)")

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
        self.val_seconds = spent if self.val_seconds is None else 0.5 * (self.val_seconds + spent)
        self.progress.paused += spent
        self._bound_validation_cost()
        stats = ValStats(self.iteration, result.values, result.best, result.higher_is_better, result.improved,
                         self.validator.primary, val_freq=self._val_interval(), total_iter=self.total_iter)
        for automation in self.automations:
            automation.after_validation(stats, self)

    def _log(self, stats: StepStats, lr: float) -> None:
        if not self.dist.is_main:
            return
        record: dict[str, Any] = {
            "iter": self.iteration, "kind": "train",
            "loss": float(stats.total),
            **{f"loss_{k}": float(v) for k, v in stats.losses.items()},
            "grad_norm": float(stats.grad_norm),
            "lr": lr, "lr_scale": self.lr_scale, "batch_size": self.batch_size,
            **({"grad_clip_threshold": self.clip_threshold} if self.clip else {}),
            **{f"dynamic_weight_{t.name}": float(w) for t, w in zip(self.losses, self.loss_weights.tolist(), strict=True)},
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

    # ---- Controls (what automations may change) -------------------------------------------------

    def set_loss_weights(self, weights: torch.Tensor, reason: str) -> None:
        if weights.shape != self.loss_weights.shape:
            raise ValueError(f"expected {len(self.losses)} loss weights, got shape {tuple(weights.shape)}")
        self.loss_weights.copy_(weights)  # in place, on the device: no sync
        self._weights_reason = reason

    def note(self, key: str, old: Any, new: Any, reason: str) -> None:
        self._event("automation", key, old, new, reason)

    def _journal_weights(self) -> None:
        """Loss weights change every step under DLS: journaled at phase changes and log points."""
        if not self._weights_reason:
            return
        new = [round(w, 6) for w in self.loss_weights.tolist()]
        old = self._journaled_weights
        for term, before, after in zip(self.losses, old, new, strict=True):
            if before != after:
                self._event("automation", f"loss_weight.{term.name}", before, after, self._weights_reason)
        self._journaled_weights, self._weights_reason = new, ""

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
        if self.budget is not None and self.vals.done:
            # With a time budget the run's length moves: the new interval becomes a number of
            # validations over the rest of the run, within the budget's share for validations.
            wanted = max(1, round((self.total_iter - self.iteration) / val_freq))
            affordable = self._affordable_vals()
            count = max(1, min(wanted, wanted if affordable is None else affordable))
            reason += (f"; time budget: {count} more validation(s) over the {self.total_iter - self.iteration} iterations left"
                       + (f" (at most {affordable} fit in {VAL_TIME_SHARE:.0%} of the time left)" if count < wanted else ""))
            self._respread_validations(count)
        self._event("automation", "val_freq", self.val_freq, val_freq, reason)
        self.val_freq = val_freq

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
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "lr_scale": self.lr_scale,
            "skipped": int(self.skipped),
            "rollbacks": self.rollbacks,
            "clip": [self.clip, self.clip_threshold],
            "loss_weights": self.loss_weights.cpu(),
            "phase": self.phase,
            "val_freq": self.val_freq,
            "total_iter": self.total_iter,
            "vals_done": self.vals.done,
            "planned_vals": self.vals.state(),
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
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # EMA switched on for a run that trained without: start it from the weights
                self.ema.module.load_state_dict(self.model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.lr_scale = state["lr_scale"]
        self.skipped.fill_(state.get("skipped", 0))
        self.rollbacks = state.get("rollbacks", 0)
        self.clip, self.clip_threshold = state["clip"]
        self.loss_weights.copy_(state["loss_weights"].to(self.loss_weights))
        self._journaled_weights = [round(w, 6) for w in self.loss_weights.tolist()]
        self.phase = state["phase"]  # a resumed run does not re-enter the phase it is in
        self.resumed = True
        # every rank validates on the same schedule (rank 0 runs it; the others meet it in _sync_knobs)
        self.val_freq = state["val_freq"] if self.s.val.freq else 0
        self.next_val = (self.iteration // self.val_freq + 1) * self.val_freq if self.val_freq else 0
        self.vals.done = state.get("vals_done", self.iteration // self.val_freq if self.val_freq else 0)
        if "planned_vals" in state:
            self.vals.load(state["planned_vals"])
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
        from autosr.use.model_file import model_metadata

        store = ckpt.CheckpointStore(self.run_dir)
        best_metrics = {k: v[0] for k, v in self.best.items()}
        # every model file describes itself: a file alone rebuilds the network (docs/model-files.md)
        meta = model_metadata(self.s.network, iteration=self.iteration, metrics=best_metrics or None,
                              training=self._training_summary())
        if best:
            store.mark_best(self.iteration, metrics=best_metrics, weights=self.eval_model.state_dict(), metadata=meta)
            return
        if not final and int(self.bad_run) > 0:
            return  # mid-divergence: keep the last checkpoint a good one to roll back to
        ema = self.ema.module.state_dict() if self.ema is not None else None
        store.save(self.iteration, self.state(), net_g=self.model.state_dict(), net_g_ema=ema, metadata=meta)

    def _training_summary(self) -> dict[str, Any]:
        """The run's hyperparameters, stored in every model file it writes."""
        s = self.s
        return {"name": s.name, "scale": s.scale, "total_iter": self.total_iter, "batch_size_per_gpu": self.batch_size,
                "accum_iter": self.accum, "lq_size": s.data.lq_size, "optimizer": s.optimizer.type, "lr": s.optimizer.lr,
                "warmup_iter": s.schedule.warmup_iter, "ema_decay": s.ema_decay, "precision": self.precision.label,
                "losses": [{"type": t.type, "loss_weight": t.weight} for t in self.losses], "world_size": self.dist.world_size}


def _check_dataroots(s: Settings) -> None:
    """A moved or mistyped folder is named as such, before any meta_info line is read."""
    sets = [("train", s.data.dataroot_gt, s.data.dataroot_lq, s.data.meta_info)]
    sets += [(v.name, v.dataroot_gt, v.dataroot_lq, v.meta_info) for v in s.val.sets]
    for set_name, gts, lqs, metas in sets:
        for key, roots in (("dataroot_gt", gts), ("dataroot_lq", lqs)):
            for root in roots:
                if not Path(root).is_dir():
                    raise AutosrError(f"{s.source}: datasets.{set_name}.{key}: {root} is not a folder",
                                      "fix the path (moved the data? re-run autosr init)")
        for meta in metas or ():
            if not Path(meta).is_file():
                raise AutosrError(f"{s.source}: datasets.{set_name}.meta_info: {meta} does not exist",
                                  "re-run autosr init to write the pair lists, or remove the key")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
