"""`autosr report`: what happened in a run — metrics, every automatic decision, plots.

Reads only the run folder (metrics.jsonl, events.jsonl, config.yml, hardware.json); writes a
self-contained report.html (inline SVG, no plotting library) and prints a terminal summary.
"""

from __future__ import annotations

import html
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from autosr.errors import AutosrError
from autosr.fsutil import write_text_atomic
from autosr.journal import read_journal
from autosr.runfolder import RunFolder, read_jsonl


@dataclass
class RunSummary:
    folder: Path
    config: dict[str, Any]
    hardware: dict[str, Any]
    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_iter(self) -> int:
        return max([r["iter"] for r in self.train + self.val] or [0])

    def best(self, metric: str) -> dict[str, Any] | None:
        rows = [r for r in self.val if metric in r]
        return max(rows, key=lambda r: r[metric]) if rows else None


def load_run(folder: Path) -> RunSummary:
    run = RunFolder(Path(folder))
    if not run.metrics.is_file():
        raise AutosrError(f"{folder}: not a run folder (no metrics.jsonl)", "pass runs/<name> of a run started with `autosr train`")
    rows = read_jsonl(run.metrics).records
    config = yaml.safe_load(run.config.read_text(encoding="utf-8")) if run.config.is_file() else {}
    hardware = json.loads(run.hardware.read_text(encoding="utf-8")) if run.hardware.is_file() else {}
    return RunSummary(
        folder=run.root, config=config or {}, hardware=hardware,
        train=[r for r in rows if r.get("kind") == "train"],
        val=[r for r in rows if r.get("kind") == "val"],
        baseline=next((r for r in rows if r.get("kind") == "baseline"), {}),
        events=read_journal(run.events),
    )


# ---- terminal ---------------------------------------------------------------------------------


def print_summary(run: RunSummary, console: Console) -> None:
    cfg = run.config
    total = cfg.get("train", {}).get("total_iter", "?")
    arch = cfg.get("network_g", {}).get("type", "?")
    gpus = ", ".join(g["name"] for g in run.hardware.get("gpus", [])) or run.hardware.get("backend", "?")
    console.print(f"[bold]{cfg.get('name', run.folder.name)}[/bold] · {arch} ×{cfg.get('scale', '?')} · "
                  f"{run.last_iter} of {total} iterations · {gpus}")
    table = Table(show_header=True, header_style="bold")
    for column in ("metric", "best", "at iter", "bicubic", "gain"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for metric in [k for k in (run.val[0] if run.val else {}) if k not in ("iter", "kind")]:
        best = run.best(metric)
        if best is None:  # cannot happen (val[0] has the metric); keeps the row logic typed
            continue
        base = run.baseline.get(metric)
        gain = f"{best[metric] - base:+.4f}" if base is not None else "–"
        table.add_row(metric, f"{best[metric]:.4f}", str(best["iter"]), f"{base:.4f}" if base is not None else "–", gain)
    if run.val:
        console.print(table)
    if run.train:
        last = run.train[-1]
        speeds = [r["samples_s"] for r in run.train if r.get("samples_s")]
        vram = max((r.get("peak_vram_gib", 0) for r in run.train), default=0)
        console.print(
            f"last loss {last['loss']:.4g} (first {run.train[0]['loss']:.4g}) · median {statistics.median(speeds):,.0f} samples/s"
            + (f" · peak VRAM {vram:.1f} GiB" if vram else "")
        )
    runtime = [e for e in run.events if e.get("source") != "plan"]
    planned = len(run.events) - len(runtime)
    console.print(f"decisions: {planned} planned by `autosr init`, {len(runtime)} at run time")
    events = Table(show_header=True, header_style="bold")
    for column in ("iter", "source", "key", "old → new", "reason"):
        events.add_column(column, overflow="fold")
    for e in runtime:
        events.add_row(str(e["iter"]), e["source"], e["key"], f"{_short(e['old'])} → {_short(e['new'])}", e["reason"])
    if runtime:
        console.print(events)


def _short(value: Any) -> str:
    text = "–" if value is None else str(value)
    return text if len(text) <= 30 else text[:27] + "…"


# ---- HTML -------------------------------------------------------------------------------------


def svg_plot(title: str, series: dict[str, list[tuple[float, float]]], *, width: int = 520, height: int = 220,
             hline: tuple[str, float] | None = None) -> str:
    """A small line chart: one polyline per series, axes labelled with min/max."""
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    values = [y for _, y in points] + ([hline[1]] if hline else [])
    x0, x1 = min(x for x, _ in points), max(x for x, _ in points)
    y0, y1 = min(values), max(values)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)
    left, right, top, bottom = 60, 10, 24, 28

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="14" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#ccc"/>',
             f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{y1:.4g}</text>',
             f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">{y0:.4g}</text>',
             f'<text x="{left}" y="{height - 8}">{x0:.0f}</text>',
             f'<text x="{width - right}" y="{height - 8}" text-anchor="end">{x1:.0f}</text>']
    if hline:
        y = sy(hline[1])
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#888" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{width - right - 4}" y="{y - 3:.1f}" text-anchor="end" fill="#666">{html.escape(hline[0])}</text>')
    for i, (name, data) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data)
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        parts.append(f'<text x="{left + 6 + 90 * i}" y="{top + 14}" fill="{colour}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(run: RunSummary) -> str:
    cfg = run.config
    losses = sorted({k for r in run.train for k in r if k.startswith("loss_")})
    charts = [
        svg_plot("training loss", {"total": [(r["iter"], r["loss"]) for r in run.train],
                                   **{k[5:]: [(r["iter"], r[k]) for r in run.train if k in r] for k in losses}}),
        svg_plot("learning rate", {"lr": [(r["iter"], r["lr"]) for r in run.train]}),
        svg_plot("samples/s", {"samples/s": [(r["iter"], r["samples_s"]) for r in run.train if "samples_s" in r]}),
    ]
    for metric in ("psnr", "ssim"):
        points = [(r["iter"], r[metric]) for r in run.val if metric in r]
        base = run.baseline.get(metric)
        charts.append(svg_plot(f"validation {metric}", {metric: points}, hline=("bicubic", base) if base is not None else None))
    rows = "".join(
        f"<tr><td>{e['iter']}</td><td>{html.escape(e['source'])}</td><td>{html.escape(e['key'])}</td>"
        f"<td>{html.escape(_short(e['old']))}</td><td>{html.escape(_short(e['new']))}</td><td>{html.escape(e['reason'])}</td></tr>"
        for e in run.events
    )
    title = html.escape(str(cfg.get("name", run.folder.name)))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>autosr report: {title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ddd;padding:3px 6px;text-align:left}} .charts svg{{margin:6px}}</style></head><body>
<h1>{title}</h1><p>{html.escape(str(cfg.get('network_g', {}).get('type', '?')))} ×{cfg.get('scale', '?')} ·
{run.last_iter} of {cfg.get('train', {}).get('total_iter', '?')} iterations</p>
<div class="charts">{''.join(charts)}</div>
<h2>Decisions ({len(run.events)})</h2>
<table><tr><th>iter</th><th>source</th><th>key</th><th>old</th><th>new</th><th>reason</th></tr>{rows}</table>
</body></html>
"""


def report(folder: Path, *, html_path: Path | None = None, write_html: bool = True, console: Console | None = None) -> Path | None:
    run = load_run(folder)
    print_summary(run, console or Console(highlight=False))
    if not write_html:
        return None
    target = html_path or RunFolder(Path(folder)).report
    write_text_atomic(target, render_html(run))
    (console or Console(highlight=False)).print(f"report: {target}")
    return target
