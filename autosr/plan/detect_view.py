"""How `autosr detect` shows a HardwareProfile and its Advice: rich tables, or JSON.

The JSON schema ("autosr.detect/1") is documented in docs/detect-json.md; change it only by
bumping the version there and here.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autosr.decision import Decision
from autosr.hardware import HardwareProfile
from autosr.plan.presets import ARCH_PREFIX
from autosr.plan.recommend import Advice

SCHEMA = "autosr.detect/1"


def _gib(mib: int | None) -> str:
    return "?" if mib is None else f"{mib / 1024:.1f} GiB"


def _decision(d: Decision) -> dict[str, Any]:
    return {"value": d.value, "reason": d.reason}


def to_dict(profile: HardwareProfile, advice: Advice) -> dict[str, Any]:
    """The detect report as plain data (schema autosr.detect/1)."""
    batch = {
        ARCH_PREFIX + variant: {**_decision(d), "lq_size": advice.batch_lq_sizes[variant]}
        for variant, d in advice.batch_estimates.items()
    }
    return {
        "schema": SCHEMA,
        "hardware": profile.to_dict(),
        "tier": {
            "name": profile.tier,
            "reason": profile.tier_reason,
            "gpu_vram_mib": profile.gpu_vram_mib,
            "total_vram_mib": profile.total_vram_mib,
            "settings": asdict(profile.settings),
        },
        "recommendations": {
            "precision": _decision(advice.precision),
            "channels_last": _decision(advice.channels_last),
            "compile": _decision(advice.compile),
            "workers": _decision(advice.workers),
            "batch_budget_mib": _decision(advice.batch_budget),
            "batch": batch,
        },
    }


def to_json(profile: HardwareProfile, advice: Advice) -> str:
    return json.dumps(to_dict(profile, advice), indent=2, ensure_ascii=False)


def print_report(profile: HardwareProfile, advice: Advice, console: Console | None = None) -> None:
    out = console or Console(highlight=False)
    for section in (_gpu_section(profile), _system_table(profile)):
        out.print(section)
        out.print()
    out.print(f"[bold]Hardware tier:[/bold] [cyan]{profile.tier}[/cyan] — {escape(profile.tier_reason)}")
    out.print()
    for section in (_advice_table(advice), _batch_table(profile, advice)):
        out.print(section)
        out.print()
    if profile.notes:
        out.print("[yellow bold]Could not read / assumed:[/yellow bold]")
        out.print(_notes(profile.notes))


def _notes(notes: tuple[str, ...]) -> Table:
    """What could not be read, as a bullet list with hanging indents."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="yellow", no_wrap=True)
    grid.add_column(style="yellow")
    for note in notes:
        grid.add_row("  •", escape(note))
    return grid


def _versions(profile: HardwareProfile) -> str:
    parts = []
    if profile.driver_version:
        parts.append(f"driver {profile.driver_version}")
    if profile.cuda_version:
        parts.append(f"CUDA {profile.cuda_version}")
    if profile.torch_version:
        build = f"CUDA {profile.torch_cuda}" if profile.torch_cuda else "no CUDA"
        parts.append(f"torch {profile.torch_version} ({build})")
    parts.append(f"facts from {profile.source}")
    return " · ".join(parts)


def _gpu_section(profile: HardwareProfile) -> Table | str:
    if not profile.gpus:
        what = {
            "mps": "Apple MPS (GPU shares system RAM)",
            "cuda": "CUDA available, but no GPU could be read",
        }.get(profile.backend, "none — CPU-only machine")
        return f"[bold]GPUs:[/bold] {what}\n[dim]{escape(_versions(profile))}[/dim]"
    idle = "" if profile.backend == "cuda" else " [yellow](not usable by this torch)[/yellow]"
    table = Table(title=f"GPUs{idle}", caption=escape(_versions(profile)), title_justify="left")
    for column in ("#", "name", "VRAM", "free", "cc", "arch", "bf16"):
        table.add_column(column, justify="right" if column in ("#", "VRAM", "free") else "left", no_wrap=column == "name")
    for g in profile.gpus:
        table.add_row(
            str(g.index), escape(g.name), _gib(g.total_mib), _gib(g.free_mib),
            g.compute_capability or "?", g.arch_family, "yes" if g.bf16 else "no",
        )
    return table


def _system_table(profile: HardwareProfile) -> Table:
    table = Table(title="System", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("CPU", escape(profile.cpu_model))
    table.add_row("cores", f"{profile.physical_cores} physical, {profile.logical_cores} logical")
    table.add_row("RAM", f"{_gib(profile.ram_total_mib)} total, {_gib(profile.ram_available_mib)} available")
    table.add_row("disk", f"{_gib(profile.disk_free_mib)} free at {escape(profile.disk_path)}")
    table.add_row("platform", f"{profile.platform}, backend {profile.backend}")
    return table


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _advice_table(advice: Advice) -> Table:
    table = Table(title="Recommendations", title_justify="left")
    table.add_column("setting", style="bold")
    table.add_column("value", style="green")
    table.add_column("why")
    for name, d in (
        ("precision", advice.precision),
        ("channels_last", advice.channels_last),
        ("torch.compile", advice.compile),
        ("loader workers", advice.workers),
    ):
        table.add_row(name, _show(d.value), escape(d.reason))
    return table


def _batch_table(profile: HardwareProfile, advice: Advice) -> Table:
    budget = advice.batch_budget.reason
    fits = "per GPU that fits" if profile.backend == "cuda" else "that fits in RAM"
    table = Table(
        title=f"Largest batch {fits}, by preset",
        caption=f"memory budget: {escape(budget)}",
        title_justify="left",
    )
    table.add_column("preset", style="bold")
    table.add_column("lq", justify="right")
    table.add_column("batch", justify="right", style="green")
    table.add_column("how")
    for variant, d in advice.batch_estimates.items():
        how = d.reason.removeprefix(budget + "; ")  # the shared budget is in the caption
        table.add_row(ARCH_PREFIX + variant, str(advice.batch_lq_sizes[variant]), str(d.value), escape(how))
    return table
