"""The training run: build everything from a RunConfig, then `fit()` — the loop reads top to bottom.

Run-time changes (OOM back-off, precision fallback, automations through `Controls`) are all
applied here and written to the decision journal.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from autosr.archs import build_network, count_parameters
from autosr.config import RunConfig
from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.journal import Journal
from autosr.train import checkpoint as ckpt
from autosr.train.data import build_crop_source
from autosr.train.ema import ModelEMA
from autosr.train.hooks import Automation, StepStats, ValStats, phase_of
from autosr.train.images import collect_pairs, load_val_pairs
from autosr.train.losses import build_losses, total_loss
from autosr.train.lr import schedule_factor
from autosr.train.pretrained import load_pretrained
from autosr.train.progress import Progress
from autosr.train.setup import (
    DistInfo,
    build_optimizer,
    cache_budget_bytes,
    check_network_scale,
    choose_precision,
    pick_device,
    seed_everything,
)
from autosr.train.validate import bicubic_baseline, evaluate

LR_FACTOR_BOUNDS = (0.1, 2.0)  # runtime-scheduler.md: the automation scales, within these


class Trainer:
    """Holds the run's state; implements `Controls` for the automations."""

    def __init__(self, cfg: RunConfig, run_dir: Path | None, dist: DistInfo, journal: Journal,
                 automations: list[Automation] | None = None, quiet: bool = False) -> None:
        self.cfg, self.run_dir, self.dist, self.journal = cfg, run_dir, dist, journal
        self.automations = automations or []
        self.device = pick_device(dist)
        self.iteration = 0
        self.lr_scale = 1.0
        self.stop_reason: str | None = None
        self.interrupted = False
        self.best: dict[str, tuple[float, int]] = {}
        self.phase: str | None = None
        self.last_stats: StepStats | None = None
        self.compile_note: tuple[Any, Any, str] | None = None  # journaled once the run starts
        self.pretrained_note: str | None = None
        train, ds = cfg.train, cfg.train_set
        self.total_iter = train["total_iter"]
        self.accum = ds.get("accum_iter", 1)
        self.clip = train.get("grad_clip", False)
        self.clip_threshold = float(train.get("grad_clip_max_norm", 1.0))
        val = cfg.section("val")
        validating = val.get("val_enabled", True) and val.get("metrics_enabled", True)
        self.val_freq = val.get("val_freq", 0) if validating else 0
        self.save_img = bool(val.get("save_img", False))
        logger = cfg.section("logger")
        self.print_freq = logger.get("print_freq", 100)
        self.save_freq = logger.get("save_checkpoint_freq", self.val_freq or 1000)
        seed_everything(cfg.data.get("manual_seed", 0) + dist.rank)
        if cfg.data.get("fast_matmul") and self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if cfg.data.get("deterministic"):
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch sizes: let cuDNN pick the fastest kernels
        self.channels_last = bool(cfg.data.get("use_channels_last", False))
        self.precision = choose_precision(cfg, self.device)
        self.autocast = self.precision.autocast(self.device)
        tb_dir = run_dir / "tb" if (run_dir is not None and cfg.section("logger").get("use_tb_logger")) else None
        self.progress = Progress(self.total_iter, enabled=dist.is_main and not quiet, tb_dir=tb_dir)

        # Model, EMA, optimiser, losses.
        self.net_opts = check_network_scale(cfg)
        self.model = build_network(self.net_opts).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        paths = cfg.section("path")
        if paths.get("pretrain_network_g"):
            self.pretrained_note = load_pretrained(
                self.model, Path(paths["pretrain_network_g"]), param_key=paths.get("param_key_g"),
                strict=paths.get("strict_load_g", True),
            )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.ema = ModelEMA(self.model, decay=train.get("ema_decay", 0.999), power=train.get("ema_power", 10.0))  # traiNNer's default: no warm-up
        self.optimizer = build_optimizer(self.params, cfg, self.device)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.use_scaler)
        self.losses = build_losses(train["losses"])
        self.step_model = self._maybe_compile(self.model)
        if dist.world_size > 1:
            self.step_model = torch.nn.parallel.DistributedDataParallel(
                self.step_model, device_ids=[dist.local_rank] if self.device.type == "cuda" else None
            )

        # Data.
        self.batch_size = ds["batch_size_per_gpu"]
        budget, host_budget, budget_reason = cache_budget_bytes(self.device)
        _check_dataroots(cfg)
        pairs = collect_pairs(ds["dataroot_gt"], ds["dataroot_lq"], ds.get("meta_info"))
        self.source = build_crop_source(
            pairs, scale=cfg.scale, lq_size=cfg.lq_size, batch_size=self.batch_size,
            use_hflip=ds.get("use_hflip", True), use_rot=ds.get("use_rot", True),
            seed=cfg.data.get("manual_seed", 0), device=self.device, channels_last=self.channels_last,
            cache_budget_bytes=budget, host_cache_budget_bytes=host_budget,
            num_workers=ds.get("num_worker_per_gpu", 0),
            rank=dist.rank, world_size=dist.world_size,
        )
        self.data_reason = f"{self.source.reason} (budget: {budget_reason})"
        self.val_images = []
        if dist.is_main and self.val_freq:
            for vset in cfg.val_sets.values():
                self.val_images += load_val_pairs(collect_pairs(vset["dataroot_gt"], vset["dataroot_lq"], vset.get("meta_info")), scale=cfg.scale)
        self.metrics = cfg.section("val", "metrics") or {"psnr": {"type": "calculate_psnr", "crop_border": cfg.scale}}

    # ---- the loop -----------------------------------------------------------------------------

    def fit(self, *, max_steps: int | None = None) -> int:
        """Train until total_iter, a stop, or Ctrl-C. Returns the exit code (0, or 130 after Ctrl-C)."""
        self._start()
        steps_done = 0
        while self.iteration < self.total_iter:
            # 1. phase and learning rate for this step
            self._enter_phase()
            lr = self._set_lr()
            # 2. one optimiser step (gradient accumulation inside; CUDA OOM → smaller batch, same step)
            stats = self._step_with_backoff()
            self.last_stats = stats
            self.iteration += 1
            steps_done += 1
            # 3. automations see the step and may act through Controls
            for automation in self.automations:
                automation.after_step(stats, self)
            # 4. log
            self.progress.update(self.iteration)
            if self.iteration % self.print_freq == 0 or self.iteration == self.total_iter:
                self._log(stats, lr)
            # 5. validate and checkpoint
            if self.val_freq and (self.iteration % self.val_freq == 0 or self.iteration == self.total_iter):
                self._validate()
            if self.iteration % self.save_freq == 0 and self.iteration < self.total_iter:
                self.save()
            # 6. Ctrl-C, an automation's stop, or a step budget (tests, --dry-run): save and leave
            if self._should_leave() or (max_steps is not None and steps_done >= max_steps):
                break
        self.save(final=self.iteration >= self.total_iter)
        self.progress.close()
        if self.stop_reason:
            self._event("trainer", "stop", None, self.iteration, self.stop_reason)
        return 130 if self.interrupted and self.iteration < self.total_iter else 0

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
        total_sum = torch.zeros((), device=self.device)
        for micro in range(self.accum):
            lq, gt = self.source.next_batch()
            sync = self.dist.world_size == 1 or micro == self.accum - 1
            with (self.step_model.no_sync() if not sync else _null()), self.autocast():
                sr = self.step_model(lq)
                total, parts = total_loss(self.losses, sr.float(), gt)
            self.scaler.scale(total / self.accum).backward()
            total_sum += total.detach() / self.accum
            for name, value in parts.items():
                parts_sum[name] = parts_sum.get(name, 0) + value / self.accum
        self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        peak = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        return StepStats(self.iteration, parts_sum, total_sum, grad_norm, self.batch_size,
                         time.perf_counter() - started, peak, self.phase or "")

    def _clip_gradients(self) -> torch.Tensor:
        """Total grad norm (before clipping); clip to the threshold; a non-finite norm zeroes the
        step's gradients instead of poisoning the weights. No host sync."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        limit = self.clip_threshold if self.clip else math.inf
        coef = torch.clamp(limit / (norm + 1e-6), max=1.0)
        coef = torch.where(torch.isfinite(norm), coef, torch.zeros_like(coef))
        torch._foreach_mul_(grads, coef)
        return norm

    def _set_lr(self) -> float:
        factor = schedule_factor(self.iteration, self.cfg.train) * self.lr_scale
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor

    def _enter_phase(self) -> None:
        warmup = max(0, self.cfg.train.get("warmup_iter", -1))
        phase = phase_of(self.iteration, self.total_iter, warmup)
        if phase != self.phase:
            self._event("trainer", "phase", self.phase, phase, f"iteration {self.iteration} of {self.total_iter}")
            self.phase = phase
            for automation in self.automations:
                automation.on_phase(phase, self.iteration, self)

    # ---- start, validation, logging ------------------------------------------------------------

    def _start(self) -> None:
        params = count_parameters(self.model)
        if self.iteration == 0:
            self._event("trainer", "network_g", None, self.net_opts["type"], f"{params:,} trainable parameters")
            self._event("trainer", "precision", None, self.precision.label, self.precision.note)
            self._event("trainer", "data", None, self.source.kind, self.data_reason)
            for key, note in self._unapplied_sections():
                self._event("trainer", key, None, "not applied", note)
            if self.compile_note:
                self._event("trainer", "use_compile", *self.compile_note)
            if self.pretrained_note:
                self._event("trainer", "path.pretrain_network_g", None, "loaded", self.pretrained_note)
            for key, note in self._overridden_hints():
                self._event("trainer", key, None, "not used", note)
        self.progress.message(
            f"{self.net_opts['type']} ×{self.cfg.scale} · {params:,} params · {self.precision.label} · "
            f"batch {self.batch_size}×{self.accum} · patch {self.cfg.lq_size} · {self.device} · data: {self.source.kind}"
        )
        for key, note in self._unapplied_sections():
            self.progress.message(f"note: {key}: {note}")
        run_info = {"total_iter": self.total_iter, "arch": self.net_opts["type"], "losses": [t.name for t in self.losses]}
        for automation in self.automations:
            automation.on_start(self, run_info)
        if self.progress.tb_note and self.iteration == 0:
            self._event("trainer", "use_tb_logger", True, False, self.progress.tb_note)
        if self.val_images and self.iteration == 0 and self.dist.is_main:
            base = bicubic_baseline(self.val_images, self.metrics, self.cfg.scale)
            self._write_metrics({"iter": 0, "kind": "baseline", "method": "bicubic", **base})
            self.progress.message("bicubic baseline: " + ", ".join(f"{k} {v:.4f}" for k, v in base.items()))
        self.progress.start(self.iteration)

    def _unapplied_sections(self) -> list[tuple[str, str]]:
        """The fork's automation sections are accepted and checked, but this version's runtime does
        not act on them yet: say so plainly instead of pretending."""
        out = []
        train = self.cfg.train
        if train.get("dynamic_loss_scheduling", {}).get("enabled"):
            out.append(("train.dynamic_loss_scheduling", "accepted and checked, not applied yet: loss weights stay as configured"))
        autos = train.get("training_automations", {})
        if autos.get("enabled"):
            names = [k for k, v in autos.items() if isinstance(v, dict) and v.get("enabled", True)]
            out.append(("train.training_automations", f"accepted and checked, not applied yet ({', '.join(names) or 'none enabled'})"))
        return out

    def _overridden_hints(self) -> list[tuple[str, str]]:
        """traiNNer keys that autosr's own pipeline decides: accepted, and said to be unused."""
        ds, out = self.cfg.train_set, []
        if ds.get("prefetch_mode"):
            out.append(("datasets.train.prefetch_mode", f"autosr's data pipeline prefetches itself ({self.source.kind})"))
        if ds.get("pin_memory") is False and self.device.type == "cuda":
            out.append(("datasets.train.pin_memory", "autosr pins host memory on CUDA (faster copies)"))
        if ds.get("persistent_workers") is False and self.source.kind == "loader":
            out.append(("datasets.train.persistent_workers", "autosr's loader keeps its workers for the whole run"))
        if ds.get("dataset_enlarge_ratio", 1) not in (1, "auto"):
            out.append(("datasets.train.dataset_enlarge_ratio", "autosr samples crops endlessly: there are no epochs to enlarge"))
        if self.cfg.section("logger").get("save_checkpoint_format") == "pth":
            out.append(("logger.save_checkpoint_format", "models are written as safetensors (loads everywhere .pth does)"))
        num_gpu = self.cfg.data.get("num_gpu")
        if isinstance(num_gpu, int) and num_gpu != self.dist.world_size:
            out.append(("num_gpu", f"{self.dist.world_size} process(es) run: start several GPUs with torchrun --nproc_per_node {num_gpu}"))
        return out

    def _validate(self) -> None:
        if not self.dist.is_main or not self.val_images:
            return
        started = time.perf_counter()
        self.ema.module.eval()
        values = evaluate(self.ema.module, self.val_images, self.metrics, scale=self.cfg.scale, device=self.device,
                          autocast=self.autocast, channels_last=self.channels_last,
                          tile=self.cfg.section("val").get("tile_size", 256),
                          save_dir=self.run_dir / "visualization" if (self.save_img and self.run_dir) else None,
                          iteration=self.iteration)
        improved = []
        for name, value in values.items():
            higher = self.metrics[name].get("better", "higher" if "psnr" in name or "ssim" in name else "lower") == "higher"
            old = self.best.get(name)
            if old is None or (value > old[0] if higher else value < old[0]):
                self.best[name] = (value, self.iteration)
                improved.append(name)
        self._write_metrics({"iter": self.iteration, "kind": "val", **values})
        self.progress.message(
            f"val @ {self.iteration}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
            + (f" (best {', '.join(improved)})" if improved else "")
        )
        first = next(iter(values))
        if first in improved and self.run_dir is not None:
            self.save(best=True)
        self.progress.paused += time.perf_counter() - started
        stats = ValStats(self.iteration, values, dict(self.best))
        for automation in self.automations:
            automation.after_validation(stats, self)

    def _log(self, stats: StepStats, lr: float) -> None:
        if not self.dist.is_main:
            return
        record = {
            "iter": self.iteration, "kind": "train",
            "loss": float(stats.total),
            **{f"loss_{k}": float(v) for k, v in stats.losses.items()},
            "grad_norm": float(stats.grad_norm),
            "lr": lr, "batch_size": self.batch_size,
            **self.progress.rates(self.iteration, self.batch_size * self.accum * self.dist.world_size),
        }
        if stats.peak_memory_bytes is not None:
            record["peak_vram_gib"] = round(stats.peak_memory_bytes / 2**30, 3)
        if not math.isfinite(record["loss"]):
            self._event("trainer", "loss", None, record["loss"], "non-finite loss: the step's gradients were zeroed")
        self._write_metrics(record)
        self.progress.log(record)

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if self.run_dir is None or not self.dist.is_main:
            return
        with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.progress.scalars(record)

    def _event(self, source: str, key: str, old: Any, new: Any, reason: str) -> None:
        if self.dist.is_main:
            self.journal.record(self.iteration, source, key, old, new, reason)

    # ---- Controls (what automations may change) -------------------------------------------------

    def set_loss_weight(self, name: str, weight: float, reason: str) -> None:
        term = next((t for t in self.losses if t.name == name), None)
        if term is None:
            raise KeyError(f"no loss named {name!r}")
        self._event("automation", f"loss_weight.{name}", term.weight, weight, reason)
        term.weight = float(weight)

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
        self._event("automation", "val_freq", self.val_freq, int(val_freq), reason)
        self.val_freq = int(val_freq)

    def stop(self, reason: str) -> None:
        self.stop_reason = reason

    def _apply_batch_size(self, new: int, reason: str) -> None:
        self._event("trainer", "batch_size", self.batch_size, new, reason)
        self.batch_size = new
        self.source.set_batch_size(new)

    # ---- checkpoints ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "lr_scale": self.lr_scale,
            "clip": [self.clip, self.clip_threshold],
            "loss_weights": {t.name: t.weight for t in self.losses},
            "val_freq": self.val_freq,
            "batch_size": self.batch_size,
            "best": {k: list(v) for k, v in self.best.items()},
            "data": self.source.state_dict(),
            "automations": {a.name: a.state_dict() for a in self.automations},
            "rng": ckpt.rng_state(),
            "config": self.cfg.data,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.iteration = state["iteration"]
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.lr_scale = state["lr_scale"]
        self.clip, self.clip_threshold = state["clip"]
        for term in self.losses:
            term.weight = state["loss_weights"].get(term.name, term.weight)
        self.val_freq = state["val_freq"]
        if state["batch_size"] != self.batch_size:
            self.batch_size = state["batch_size"]
            self.source.set_batch_size(self.batch_size)
        self.best = {k: (v[0], v[1]) for k, v in state["best"].items()}
        self.source.load_state_dict(state["data"])
        for automation in self.automations:
            automation.load_state_dict(state["automations"].get(automation.name, {}))
        ckpt.set_rng_state(state["rng"])

    def save(self, *, best: bool = False, final: bool = False) -> None:
        if self.run_dir is None or not self.dist.is_main:
            return
        store = ckpt.CheckpointStore(self.run_dir)
        if best:
            store.mark_best(self.iteration, metrics={k: v[0] for k, v in self.best.items()},
                            weights=self.ema.module.state_dict())
            return
        store.save(self.iteration, self.state(), net_g=self.model.state_dict(), net_g_ema=self.ema.module.state_dict())

    def _maybe_compile(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.cfg.data.get("use_compile"):
            return model
        if self.device.type != "cuda":
            self.compile_note = (True, False, "torch.compile skipped on the CPU: slow to build, rarely faster")
            return model
        mode = self.cfg.data.get("compile_mode", "default")
        self.compile_note = (None, mode, "model and losses compiled on the first step (its time shows in the first log line)")
        # The SSIM window comes from an lru_cache'd builder; tracing through it is safe (pure).
        warnings.filterwarnings("ignore", message=".*functools.lru_cache.*", category=UserWarning)
        for term in self.losses:
            # The loss maths (SSIM's many fp32 elementwise passes) fuses well; weights stay outside
            # the compiled function so that changing them never recompiles.
            term.fn = torch.compile(term.fn)
        return torch.compile(model, mode=mode)


def _check_dataroots(cfg: RunConfig) -> None:
    """A moved or mistyped folder is named as such, before any meta_info line is read."""
    for set_name, ds in cfg.data.get("datasets", {}).items():
        for key in ("dataroot_gt", "dataroot_lq"):
            roots = ds.get(key) if isinstance(ds.get(key), list) else [ds.get(key)]
            for root in roots:
                if root and not Path(root).is_dir():
                    raise AutosrError(f"{cfg.source}: datasets.{set_name}.{key}: {root} is not a folder",
                                      "fix the path (moved the data? re-run autosr init)")
        meta = ds.get("meta_info")
        if meta and not Path(meta).is_file():
            raise AutosrError(f"{cfg.source}: datasets.{set_name}.meta_info: {meta} does not exist",
                              "re-run autosr init to write the pair lists, or remove the key")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
