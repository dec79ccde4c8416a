"""`autosr init`: hardware + dataset → plan → commented traiNNer YAML (+ hold-out lists)."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from autosr.config import read_yaml, validate
from autosr.decision import Decision
from autosr.durations import format_duration
from autosr.errors import AutosrError, did_you_mean
from autosr.fsutil import check_creatable, write_text_atomic
from autosr.hardware import HardwareProfile, probe
from autosr.images import Pair, complete_pairs, write_meta_info
from autosr.plan.calibrate import MemoryProbe
from autosr.plan.complete import completion_inputs, partial_reasons
from autosr.plan.dataset import DatasetProfile, analyse, analyse_hr, check_patch, hold_out
from autosr.plan.planner import MEASURED, Plan, Timing, Tuned, ValData, budget_arch_choice, make_plan, memory_batch, pick_arch
from autosr.plan.presets import load_preset
from autosr.plan.realistic import STYLES
from autosr.plan.render import render
from autosr.plan_file import plan_path_for, write_plan

err = Console(stderr=True, highlight=False)


def run_init(
    *, gt: Path, lq: Path | None, arch: str | None, val_gt: Path | None, val_lq: Path | None, output: Path,
    name: str | None, scale: int | None, overrides: list[str], flavor: str, force: bool,
    print_only: bool, explain: bool, sample: int, time_budget: float | None = None, calibrate: bool = False,
    style: str = "fidelity", degradation: str | None = None, pretrain: Path | None = None,
    explain_overrides: bool = False, trials: bool = False,
) -> Plan:
    """time_budget: seconds the whole `autosr train` may take (None: a length from the dataset).
    calibrate: measure this machine's training speed for the plan (bounded: ≤ 5% of the budget).
    lq None: HR alone, the LR made on the fly (`degradation`, else the style's). style "realistic": the
    GAN recipe (docs/realistic.md); `pretrain`: the generator starts from these weights."""
    if style not in STYLES:
        raise AutosrError(f"--style {style}: unknown{did_you_mean(style, STYLES)}", "use fidelity or realistic")
    if degradation is not None and degradation not in INIT_DEGRADATIONS:
        raise AutosrError(f"--degradation {degradation}: unknown{did_you_mean(degradation, INIT_DEGRADATIONS)}",
                          "use bicubic or realesrgan (the fork's pipeline: write its keys into the YAML)")
    if degradation is not None and lq is not None:
        raise AutosrError("--degradation makes the LR from the HR images, but --lq gives them", "drop --lq or --degradation")
    if pretrain is not None and not pretrain.is_file():
        raise AutosrError(f"--pretrain {pretrain}: not a file", "pass a model file (.safetensors or .pth)")
    if not print_only and output.exists() and not force:
        raise AutosrError(f"{output}: already exists", "pass --force to overwrite it, or -o another.yml")
    if not print_only:  # the YAML, its plan and pair lists go in -o's folder: writable, before any work
        if output.is_dir():
            raise AutosrError(f"{output}: is a folder", f"pass -o a file name, e.g. -o {output / 'auto.yml'}")
        check_creatable(output.parent, "-o")
    if arch:
        load_preset(arch)  # an unknown name fails before any reading
    if (val_gt is None) != (val_lq is None):
        raise AutosrError("--val-gt and --val-lq go together", "pass both folders, or neither to hold out pairs")
    if lq is not None:
        _check_distinct(gt, lq, "--gt", "--lq")
    if val_gt is not None and val_lq is not None:
        _check_distinct(val_gt, val_lq, "--val-gt", "--val-lq")
    if scale is not None and scale not in TRAIN_SCALES:
        raise AutosrError(f"--scale {scale}: train supports only ×{_scales_text()}", f"pass --scale {_scales_text(' or ')}")

    hw = probe(Path("runs"))
    ds = analyse(gt.resolve(), lq.resolve(), sample=sample, scale=scale) if lq is not None else \
        analyse_hr(gt.resolve(), scale=scale, sample=sample)
    if ds.scale not in TRAIN_SCALES:
        raise AutosrError(
            f"the HR images are ×{ds.scale} the size of the LR images ({ds.gt_dir} vs {ds.lq_dir}), "
            f"but train supports only ×{_scales_text()}",
            f"pass folders whose LR images are the HR images shrunk ×{_scales_text(' or ')}",
        )
    meta_dir = output.resolve().parent
    unpaired = bool(ds.unpaired_gt or ds.unpaired_lq)
    stem = output.stem
    if val_gt is not None and val_lq is not None:
        # Read as train will read them (collect_pairs without a list): every file must pair.
        val_pairs = complete_pairs(val_gt.resolve(), val_lq.resolve(), roles=("HR (--val-gt)", "LR (--val-lq)"))
        held = None
        trial_train, trial_val = ds.pairs, val_pairs  # what init's trials train on and score on
        # Unpaired files would break traiNNer's folder mode: list the pairs explicitly then.
        train_pairs = ds.pairs if unpaired else None
        train_meta = str(meta_dir / f"{stem}.train_pairs.txt") if train_pairs else None
        val = ValData("folders", str(val_gt.resolve()), str(val_lq.resolve()), len(val_pairs), train_meta_info=train_meta)
    else:
        split = hold_out(ds.pairs)
        train_pairs, held = split.train, split.val
        trial_train, trial_val = split.train, split.val
        val = ValData(
            "holdout", str(ds.gt_dir), str(meta_dir / f"{stem}.val_lr") if ds.hr_only else str(ds.lq_dir), len(held),
            meta_info=str(meta_dir / f"{stem}.val_pairs.txt"),
            # Without a list train reads the whole folders, which unpaired files would break.
            train_meta_info=None if split.shared and not unpaired else str(meta_dir / f"{stem}.train_pairs.txt"),
            note=split.describe(),
        )

    planning: dict[str, Any] = {"style": style, "degradation": degradation, "pretrain": str(pretrain.resolve()) if pretrain else None,
                                "vgg19": style == "realistic" and _vgg19_here()}
    calibrate_trials = calibrate and trials and not ds.hr_only and style != "realistic"  # trials score fidelity on paired files
    arch_reason = None
    if arch is None and time_budget and calibrate and hw.backend == "cuda" and pick_arch(hw, ds.scale)[0].variant == "s":
        # nano or s for this budget: s's speed on this GPU and data decides (half of the probe's time)
        s_plan = make_plan(hw, ds, arch="paragonsr2_s", val=val, overrides=overrides, flavor=flavor, name=name,
                           timing=Timing(time_budget, None, "not measured yet"), arch_reason="probe", **planning)
        s_timing = _measure(s_plan, hw, time_budget, calibrate, share=0.01)
        arch, arch_reason = budget_arch_choice(s_timing.it_per_s, time_budget, s_timing.source)
    plan = make_plan(hw, ds, arch=arch, val=val, overrides=overrides, flavor=flavor, name=name,
                     timing=Timing(time_budget, None, "not measured yet"), arch_reason=arch_reason, **planning)
    memory = _probe_memory(plan, calibrate and hw.backend == "cuda")
    if memory is not None:  # the batch that fits, from measured peak memory instead of the preset's table
        plan = make_plan(hw, ds, arch=arch, val=val, overrides=overrides, flavor=flavor, name=name,
                         timing=Timing(time_budget, None, "not measured yet"), arch_reason=arch_reason, memory=memory, **planning)
    # Batch and LR by trials on the user's pairs (≤ 4% of the budget; 3% after the arch probe's 1%)
    tuned, trial_rows, trial_note = _tune(plan, hw, trial_train, trial_val, time_budget, calibrate_trials, memory,
                                      share=0.03 if arch_reason else 0.04)
    if tuned is not None:
        plan = make_plan(hw, ds, arch=arch, val=val, overrides=overrides, flavor=flavor, name=name,
                         timing=Timing(time_budget, None, "not measured yet"), arch_reason=arch_reason, tuned=tuned,
                         memory=memory, **planning)
    timing = _measure(plan, hw, time_budget, calibrate, share=0.01 if calibrate and time_budget else 0.05)
    if timing.it_per_s or time_budget:
        plan = make_plan(hw, ds, arch=arch, val=val, overrides=overrides, flavor=flavor, name=name, timing=timing,
                         arch_reason=arch_reason, tuned=tuned, memory=memory, **planning)
    if explain_overrides and overrides:  # what autosr would have chosen where the user's value stands
        free = make_plan(hw, ds, arch=arch, val=val, overrides=[], flavor=flavor, name=name, timing=timing,
                         arch_reason=arch_reason, tuned=tuned, memory=memory, **planning)
        for key, decision in list(plan.values.items()):
            mine = free.values.get(key)
            if decision.source == "set" and mine is not None and mine.value != decision.value:
                plan.values[key] = Decision(decision.value, f"yours; autosr would choose {mine.value!r}: {mine.reason}", "set")
    plan.trials = trial_rows
    if calibrate and not trials:
        trial_note = ("off by default: batch × LR trials have not been measured helping on a GPU yet (docs/budget.md); "
                      "--trials runs them (≤ 4% of a --time budget of 25 minutes or more)")
    if trial_note:
        plan.notes.append(f"trials: {trial_note}")
    if timing.source:
        plan.notes.append(f"speed: {timing.source}")
    short = too_short_to_beat_bicubic(plan, timing)
    if short:
        plan.notes.append(short)
    if "datasets.train.lq_size" in plan.values:
        check_patch(ds, int(plan.get("datasets.train.lq_size")))
    command = "autosr init " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "autosr init"
    text = render(plan, command=command)
    _check_round_trip(text, plan)

    if explain:
        _print_explain(plan)
    if print_only:
        sys.stdout.write(text)
        if val.meta_info or val.train_meta_info:
            err.print("[yellow]note:[/yellow] --print: the pair lists were not written; run without --print to write them")
        return plan
    if val.train_meta_info and train_pairs is not None:
        write_meta_info(train_pairs, Path(val.train_meta_info))
    if val.meta_info and held is not None:
        write_meta_info(held, Path(val.meta_info))
    if ds.hr_only and held is not None:
        write_val_lr(held, Path(val.lq), plan.tree(), ds.scale)
    write_plan(plan_path_for(output), decisions=plan.values, command=command, config=output,
               hardware=hw.to_dict(), dataset=ds.to_dict(), time_budget_s=time_budget,
               calibration={"speed_it_per_s": timing.it_per_s, "speed_source": timing.source, "trials": plan.trials,
                            "trials_note": trial_note, "memory": None if memory is None else {
                                "fixed_mib": memory.fixed_mib, "per_sample_mib": memory.per_sample_mib, "note": memory.note}})
    write_text_atomic(output, text)
    _print_summary(plan, ds, output, time_budget)
    return plan


def _network(plan: Plan) -> dict[str, Any]:
    """network_g as planned (use_checkpointing included): what the probes build."""
    return {key.removeprefix("network_g."): d.value for key, d in plan.values.items() if key.startswith("network_g.")}


def _probe_memory(plan: Plan, run: bool) -> MemoryProbe | None:
    """Peak memory of real steps of this plan at its batch and half of it (a few seconds on a GPU)."""
    if not run or "datasets.train.batch_size_per_gpu" in plan.fixed:
        return None
    from autosr.plan.calibrate import measure_memory

    get = plan.get
    precision = "bf16" if get("amp_bf16") else ("fp16" if get("use_amp") else "fp32")
    return measure_memory(_network(plan),
                          batch=int(get("datasets.train.batch_size_per_gpu")), lq_size=int(get("datasets.train.lq_size")),
                          scale=int(get("scale")), precision=precision, channels_last=bool(get("use_channels_last")),
                          losses=list(get("train.losses")))


def _tune(plan: Plan, hw: HardwareProfile, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair], time_budget: float | None,
          calibrate: bool, memory: MemoryProbe | None, share: float) -> tuple[Tuned | None, list[dict[str, Any]], str]:
    """Batch and LR from short trials on the user's pairs (autosr/plan/trials.py), the trials as data, and a note
    saying what was done or why not. Only for the presets with measured defaults, and never over a --set."""
    if not calibrate:
        return None, [], ""
    variant = str(plan.get("network_g.type")).removeprefix("paragonsr2_")
    batch_key, lr_key = "datasets.train.batch_size_per_gpu", "train.optim_g.lr"
    if variant not in MEASURED:
        return None, [], f"not run for {variant} (its defaults are not measured; trials only move around measured ones)"
    if batch_key in plan.fixed or lr_key in plan.fixed:
        return None, [], "not run: you set the batch or the learning rate"
    from autosr.plan.trials import candidates, choose, run_trials, trial_seconds

    batch, lr = int(plan.get(batch_key)), float(plan.get(lr_key))
    lq, scale = int(plan.get("datasets.train.lq_size")), int(plan.get("scale"))
    preset = load_preset(variant)
    cands = candidates(batch, lr, max_batch=int(memory_batch(hw, preset, lq, scale, memory).value))
    seconds, why = trial_seconds(time_budget, len(cands), hw.backend == "cuda", share=share)
    if seconds is None:
        return None, [], why
    err.print(f"[dim]calibrating on your data: {why}…[/dim]")
    precision = "bf16" if plan.get("amp_bf16") else ("fp16" if plan.get("use_amp") else "fp32")
    results = run_trials(
        network=_network(plan), losses=list(plan.get("train.losses")),
        optim={"betas": plan.get("train.optim_g.betas"), "weight_decay": plan.get("train.optim_g.weight_decay")},
        train_pairs=train_pairs, val_pairs=val_pairs, scale=scale, lq_size=lq, precision=precision,
        channels_last=bool(plan.get("use_channels_last")), warmup=int(plan.get("train.warmup_iter")), cands=cands,
        seconds_each=seconds,
    )
    chosen, reason = choose(results, cands[0])
    trials = [{"batch": r.candidate.batch, "lr": r.candidate.lr, "label": r.candidate.label, "iterations": r.iterations,
               "seconds": round(r.seconds, 2), "gain_db": None if r.gain_db is None else round(r.gain_db, 4),
               "text": r.describe()} for r in results]
    return Tuned(chosen.batch, chosen.lr, reason), trials, why


def run_init_from(partial: Path, *, output: Path, force: bool, print_only: bool, explain: bool, sample: int,
                  flavor: str = "fork", time_budget: float | None = None, calibrate: bool = True) -> Plan:
    """`autosr init --from partial.yml` (and `autosr train partial.yml`): plan every key the partial config
    leaves out or writes `auto`, keeping every key it sets; --explain says where autosr would choose otherwise."""
    tree = read_yaml(partial)
    reasons = partial_reasons(tree)
    if not reasons:
        raise AutosrError(f"{partial}: nothing to plan (no key is missing or `auto`)", "train it as it is: autosr train " + str(partial))
    inputs = completion_inputs(tree, partial)
    err.print(f"[dim]{partial}: a partial config ({'; '.join(reasons[:4])}{' …' if len(reasons) > 4 else ''}): "
              "planning the rest[/dim]")
    return run_init(gt=inputs.gt, lq=inputs.lq, arch=inputs.arch, val_gt=inputs.val_gt, val_lq=inputs.val_lq, output=output,
                    name=inputs.name, scale=inputs.scale, overrides=inputs.overrides, flavor=flavor, force=force,
                    print_only=print_only, explain=explain, sample=sample, time_budget=time_budget, calibrate=calibrate,
                    explain_overrides=True)


def _vgg19_here() -> bool:
    """VGG19's ImageNet weights in the torch hub cache (the perceptual term needs them; never downloaded)."""
    from autosr.train.backbones import VGG19  # torch: only for realistic plans

    return VGG19.find() is not None


def write_val_lr(held: Sequence[Pair], folder: Path, tree: dict[str, Any], scale: int) -> None:
    """The held-out HR images' LR, made once with the training degradation and a fixed seed (image i draws
    its degradation from counter i), so that every validation measures the same inputs."""
    import torch
    from PIL import Image

    from autosr.images import load_rgb_uint8
    from autosr.train.degradations import Degrader, kind_for_config, options_of

    kind = kind_for_config(tree) or "bicubic"
    degrader = Degrader.from_options(kind, options_of(tree), scale, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    for i, pair in enumerate(held):
        rgb = load_rgb_uint8(pair.gt)
        h, w = rgb.shape[0] // scale * scale, rgb.shape[1] // scale * scale
        hr = torch.from_numpy(rgb[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255.0
        lq = degrader.degrade(hr, counter=i)[0]
        out = (lq.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        target = folder / Path(pair.key).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(out).save(target)


INIT_DEGRADATIONS = ("bicubic", "realesrgan")


# The scales the network (autosr.archs.paragonsr2.SCALES) is built for, so the ones train accepts;
# kept here so that init does not import torch (a test checks the two agree).
TRAIN_SCALES = (2, 3, 4)


def _scales_text(last: str = ", ") -> str:
    """'2, 3, 4' or, with last=' or ', '2, 3 or 4'."""
    names = [str(s) for s in TRAIN_SCALES]
    return ", ".join(names) if last == ", " else ", ".join(names[:-1]) + last + names[-1]


def _check_distinct(gt: Path, lq: Path, gt_flag: str, lq_flag: str) -> None:
    """HR and LR in one folder would pair every image with itself: a ×1 'dataset' train refuses later."""
    if gt.is_dir() and lq.is_dir() and os.path.samefile(gt, lq):  # symlinks and case-insensitive disks too
        raise AutosrError(
            f"{gt_flag} and {lq_flag} are the same folder ({gt.resolve()})",
            f"HR and LR images must be in different folders: pass the high-resolution folder to {gt_flag} "
            f"and the low-resolution one to {lq_flag}",
        )


def _measure(plan: Plan, hw: HardwareProfile, time_budget: float | None, calibrate: bool, share: float = 0.05) -> Timing:
    """The plan's training speed on this machine: a few real steps, ≤ `share` of the budget (≤ 20 s;
    init's probes together stay within 5%)."""
    if not calibrate:
        return Timing(time_budget, None, "not measured (calibration off): train measures it and re-fits the length")
    from autosr.plan.calibrate import measure_speed

    get = plan.get
    seconds = min(20.0 if hw.backend == "cuda" else 2.0, share * time_budget) if time_budget else (10.0 if hw.backend == "cuda" else 1.0)
    precision = "bf16" if get("amp_bf16") else ("fp16" if get("use_amp") else "fp32")
    probe_ = measure_speed(
        _network(plan), batch=int(get("datasets.train.batch_size_per_gpu")),
        lq_size=int(get("datasets.train.lq_size")), scale=int(get("scale")), precision=precision,
        channels_last=bool(get("use_channels_last")), losses=list(get("train.losses")), seconds=seconds,
    )
    if probe_.it_per_s is None:
        return Timing(time_budget, None, probe_.note)
    accum = int(plan.values["datasets.train.accum_iter"].value) if "datasets.train.accum_iter" in plan.values else 1
    return Timing(time_budget, probe_.it_per_s / accum, probe_.note)


# On an H200, nano (batch 64, real photographs) passed bicubic by 0.48 dB at its first validation,
# after ~70k training samples (1,101 iterations); a 90 s CPU budget (~5k samples) ended 1.2 dB below
# bicubic. Fewer samples than this in a budget: say so before the user waits for it.
MIN_SAMPLES_OVER_BICUBIC = 50_000


def too_short_to_beat_bicubic(plan: Plan, timing: Timing) -> str | None:
    """A warning when the budget lets the run see too few samples to be better than bicubic."""
    if not timing.budget_s or not timing.it_per_s:
        return None
    per_step = int(plan.get("datasets.train.batch_size_per_gpu")) * int(plan.values["datasets.train.accum_iter"].value
                                                                        if "datasets.train.accum_iter" in plan.values else 1)
    samples = int(plan.get("train.total_iter")) * per_step
    if samples >= MIN_SAMPLES_OVER_BICUBIC:
        return None
    need = MIN_SAMPLES_OVER_BICUBIC / (timing.it_per_s * per_step) * 1.1 + 10
    return (f"warning: this budget trains ~{samples:,} samples here ({timing.it_per_s:.1f} it/s × {per_step}); "
            f"small models needed ~{MIN_SAMPLES_OVER_BICUBIC // 1000}k before they beat bicubic on real photos, so the "
            f"model will likely be worse than bicubic: give it about --time {format_duration(need)} or more, or a GPU")


def _check_round_trip(text: str, plan: Plan) -> None:
    """The file we write must load back, typed, into our own strict loader, unchanged."""
    loaded = yaml.safe_load(text)
    validate(loaded, "rendered config")
    if loaded != plan.tree():
        raise AssertionError("rendered YAML does not load back to the plan")  # a bug, not user input


def _print_explain(plan: Plan) -> None:
    table = Table(title="autosr plan", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("key", style="cyan", overflow="fold", ratio=3)
    table.add_column("value", overflow="fold", ratio=2)
    table.add_column("reason", style="dim", overflow="fold", ratio=4)
    for key, decision in plan.values.items():
        reason = decision.reason if decision.reason.startswith("yours;") else "set by you" if decision.source == "set" else decision.reason
        table.add_row(key, str(decision.value), reason)
    for note in plan.notes:
        if note.startswith("trials: "):
            table.add_row("calibration.trials", "run" if plan.trials else "not run", note.removeprefix("trials: "))
    for trial in plan.trials:
        gain = trial["gain_db"]
        table.add_row("calibration.trial", "failed" if gain is None else f"{gain:+.3f} dB", trial["text"])
    err.print(table)


def _print_summary(plan: Plan, ds: DatasetProfile, output: Path, time_budget: float | None = None) -> None:
    get = plan.values.get
    batch = get("datasets.train.batch_size_per_gpu")
    accum = get("datasets.train.accum_iter")
    lq = get("datasets.train.lq_size")
    precision = "bf16" if plan.get("amp_bf16") else ("fp16" if plan.get("use_amp") else "fp32")
    err.print(f"[green]wrote[/green] {output}")
    err.print(
        f"  {plan.get('network_g.type')} ×{plan.get('scale')} · {ds.pair_count} pairs ({ds.complexity_label}) · "
        f"batch {batch.value if batch else '?'}×{accum.value if accum else 1} · patch {lq.value if lq else '?'} · "
        f"{precision} · {plan.get('train.total_iter')} iterations"
    )
    for note in plan.notes:
        err.print(f"  [yellow]note:[/yellow] {note}")
    if time_budget:
        err.print(f"  time budget: {format_duration(time_budget)} for the whole run (in {plan_path_for(output).name}; "
                  "train fits the length to the speed it measures)")
    err.print(f"  next: [bold]autosr train {output}[/bold]   (see every reason: autosr init … --explain)")
