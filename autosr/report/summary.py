"""`autosr report`: what happened in a run — the numbers first, then plots and every automatic decision.

Reads only the run folder (config.yml, plan.json, hardware.json, metrics.jsonl, events.jsonl, models/,
checkpoints/), plus the validation images config.yml names for the "Pictures" crops (autosr.report.crops:
the best model on a few crops, embedded as PNG data URIs); writes a self-contained report.html (inline SVG
from autosr.report.svg) and prints a terminal summary. Anything unreadable is named in the summary
("problems"; for the pictures, in their section) and the rest is shown: the only error is a path
that is not a run folder (nor a folder of run folders) at all.
Several runs (`autosr report runA runB`) are compared on one page; a parent folder lists its runs.
`--json` prints the same summary as data (schema in docs/report-json.md).
"""

from __future__ import annotations

import html
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from autosr.errors import AutosrError
from autosr.fsutil import check_creatable, write_text_atomic
from autosr.report.svg import Chart, Series, render, smooth
from autosr.runfolder import RunFolder, read_jsonl

SCHEMA = "autosr.report/1"
RUN_FILES = ("config.yml", "metrics.jsonl", "events.jsonl", "hardware.json")


@dataclass
class RunSummary:
    folder: Path
    config: dict[str, Any]
    hardware: dict[str, Any]
    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    best_json: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def last_iter(self) -> int:
        return int(max([r["iter"] for r in self.train + self.val] or [0]))

    def best(self, metric: str) -> dict[str, Any] | None:
        rows = [r for r in self.val if _num(r.get(metric)) is not None]
        return max(rows, key=lambda r: r[metric]) if rows else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _section(mapping: Any, key: str) -> dict[str, Any]:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, dict) else {}


def is_run_folder(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_file() for name in RUN_FILES)


def _read_mapping(path: Path, problems: list[str], loader: str) -> dict[str, Any]:
    if not path.exists():
        if path.name in ("config.yml", "hardware.json"):
            problems.append(f"{path.name}: missing")
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if loader == "yaml" else json.loads(text)
    except OSError as exc:
        problems.append(f"{path.name}: cannot read ({exc.strerror or exc})")
        return {}
    except (UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name}: not a mapping (a {type(data).__name__})")
        return {}
    return data


def _read_records(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    if not path.exists():
        problems.append(f"{path.name}: missing")
        return []
    read = read_jsonl(path)
    if read.problem:
        problems.append(read.problem)
    if read.skipped:
        problems.append(f"{path.name}: {read.skipped} unreadable line{'s' if read.skipped != 1 else ''} skipped (cut or damaged)")
    bad = [r for r in read.records if _num(r.get("iter")) is None]
    if bad:
        problems.append(f"{path.name}: {len(bad)} record{'s' if len(bad) != 1 else ''} without an iteration skipped")
    return [r for r in read.records if _num(r.get("iter")) is not None]


def load_run(folder: Path) -> RunSummary:
    """Everything readable in a run folder; what is not is listed in `problems`."""
    run = RunFolder(Path(folder))
    if not is_run_folder(run.root):
        raise AutosrError(f"{folder}: not a run folder (none of {', '.join(RUN_FILES)})",
                          "pass runs/<name> of a run started with `autosr train`, or the runs/ folder to list them")
    problems: list[str] = []
    config = _read_mapping(run.config, problems, "yaml")
    hardware = _read_mapping(run.hardware, problems, "json")
    plan = _read_mapping(run.plan, problems, "json")
    best_json = _read_mapping(run.models / "best.json", problems, "json")
    rows = _read_records(run.metrics, problems)
    events = [e for e in _read_records(run.events, problems) if isinstance(e.get("key"), str)]
    train = [r for r in rows if r.get("kind") == "train"]
    val = [r for r in rows if r.get("kind") == "val"]
    if not rows and run.metrics.exists():
        problems.append("metrics.jsonl: no records yet")
    return RunSummary(folder=run.root, config=config, hardware=hardware, train=train, val=val,
                      baseline=next((r for r in rows if r.get("kind") == "baseline"), {}), events=events,
                      plan=plan, best_json=best_json, problems=problems)


# ---- the summary as data ----------------------------------------------------------------------


def _state(run: RunSummary, total: int | None) -> dict[str, Any]:
    by_key = {e["key"]: e for e in run.events if e.get("source") == "trainer"}
    last = run.last_iter
    if "stop" in by_key:
        return {"code": "stopped", "text": f"stopped early at iteration {last}: {by_key['stop'].get('reason', '')}"}
    if "time_budget" in by_key:
        e = by_key["time_budget"]
        return {"code": "finished", "text": f"finished on its time budget ({e.get('old')}, took {e.get('new')}): {e.get('reason', '')}"}
    if total and last >= total:
        return {"code": "finished", "text": f"finished ({last} of {total} iterations)"}
    if not run.train and not run.val:
        return {"code": "empty", "text": "no training recorded yet"}
    ended = next((e for e in reversed(run.events) if e.get("source") == "trainer" and e["key"] in ("failed", "resume")), None)
    if ended is not None and ended["key"] == "failed":
        return {"code": "crashed", "text": f"crashed at iteration {ended.get('iter', last)}: {ended.get('reason', '')}"}
    if (RunFolder(run.folder).checkpoints / f"state_{last}.pt").is_file() and total and last < total:
        return {"code": "interrupted", "text": f"interrupted at iteration {last} (saved; `autosr train` resumes it)"}
    return _lock_state(run.folder, last)


def _lock_state(folder: Path, last: int) -> dict[str, Any]:
    """No end recorded: the run folder's lock tells a running run from one whose process died."""
    from autosr.train import runlock

    owner = runlock.holder(folder)
    if owner is None:
        return {"code": "no_end", "text": f"no end recorded at iteration {last} and no process holds the run: "
                                          "it was stopped by an older autosr, or crashed"}
    who = f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"
    if owner["alive"]:
        return {"code": "running", "text": f"still running ({who}), at iteration {last}"}
    if owner["alive"] is False:
        return {"code": "crashed", "text": f"crashed at iteration {last}: its process ({who}) is gone without "
                                           "recording an end (killed, out of memory, or power loss); "
                                           "`autosr train` resumes from the last checkpoint"}
    return {"code": "no_end", "text": f"no end recorded at iteration {last}; {who} holds the run and cannot be "
                                      "checked from here: still running there, or crashed"}


def _metric(run: RunSummary, name: str) -> dict[str, Any] | None:
    best = run.best(name)
    base = _num(run.baseline.get(name))
    last = next((r for r in reversed(run.val) if _num(r.get(name)) is not None), None)
    if best is None and base is None:
        return None
    return {"best": best[name] if best else None, "best_iter": int(best["iter"]) if best else None,
            "final": last[name] if last else None, "final_iter": int(last["iter"]) if last else None,
            "bicubic": base, "gain": (best[name] - base) if best and base is not None else None}


def _hardware_text(hw: dict[str, Any]) -> str:
    gpus = [g.get("name", "?") for g in hw.get("gpus", []) if isinstance(g, dict)] if isinstance(hw.get("gpus"), list) else []
    if gpus:
        names = sorted(set(gpus))
        return ", ".join(f"{len([g for g in gpus if g == n])}× {n}" for n in names)
    return str(hw.get("backend") or hw.get("cpu") or "unknown")


def summarize(run: RunSummary) -> dict[str, Any]:
    """The run's summary as plain data: the `--json` output (docs/report-json.md)."""
    cfg = run.config
    total = _num(_section(cfg, "train").get("total_iter"))
    refits = [_num(e.get("new")) for e in run.events if e.get("source") == "trainer" and e.get("key") == "train.total_iter"]
    if refits and refits[-1] is not None:  # a time budget re-fitted the length to the measured speed
        total = refits[-1]
    ended = [_num(e.get("iter")) for e in run.events if e.get("key") == "time_budget"]
    if ended and ended[-1] is not None:  # the budget ran out here: that was the run's length
        total = ended[-1]
    times = [t for t in (_num(e.get("time")) for e in run.events) if t is not None and t > 0]
    speeds = [s for s in (_num(r.get("samples_s")) for r in run.train) if s is not None]
    vram = [v for v in (_num(r.get("peak_vram_gib")) for r in run.train) if v is not None]
    metrics = {m: s for m in ("psnr", "ssim") if (s := _metric(run, m)) is not None}
    rf = RunFolder(run.folder)
    models = []
    if (rf.models / "net_g_best.safetensors").is_file():
        models.append({"path": str(rf.models / "net_g_best.safetensors"), "what": "best weights"
                       + (f" (iteration {run.best_json.get('iter')})" if run.best_json.get("iter") is not None else "")})
    if rf.models.is_dir():
        latest = sorted(rf.models.glob("net_g_[0-9]*.safetensors"), key=lambda p: int(p.stem.rsplit("_", 1)[-1]))
        if latest:
            models.append({"path": str(latest[-1]), "what": "latest weights"})
    if rf.checkpoints.is_dir():
        states = sorted(rf.checkpoints.glob("state_*.pt"), key=lambda p: int(p.stem.split("_")[-1]) if p.stem[6:].isdigit() else -1)
        if states:
            models.append({"path": str(states[-1]), "what": "training state: `autosr train` on this run's config resumes from it"})
    last_loss = next((r["loss"] for r in reversed(run.train) if _num(r.get("loss")) is not None), None)
    planned = sum(1 for e in run.events if e.get("source") == "plan")
    return {
        "schema": SCHEMA,
        "folder": str(run.folder),
        "name": str(cfg.get("name") or run.folder.name),
        "arch": _section(cfg, "network_g").get("type"),
        "scale": cfg.get("scale"),
        "params": run.plan.get("params") if isinstance(run.plan.get("params"), int) else None,
        "state": _state(run, int(total) if total else None),
        "iterations": {"done": run.last_iter, "planned": int(total) if total else None},
        "wall_time_s": round(max(times) - min(times), 1) if len(times) > 1 else None,
        "metrics": metrics,
        "final_loss": last_loss,
        "mean_samples_s": round(statistics.fmean(speeds), 1) if speeds else None,
        "peak_vram_gib": max(vram) if vram else None,
        "hardware": _hardware_text(run.hardware) if run.hardware else None,
        "decisions": {"planned": planned, "runtime": len(run.events) - planned},
        "models": models,
        "use": rf.use_commands(),
        "problems": list(run.problems),
    }


def verdict(summary: dict[str, Any]) -> str:
    psnr = summary["metrics"].get("psnr") or {}
    if psnr.get("gain") is None:
        return "no PSNR against bicubic yet" if psnr.get("best") is None or psnr.get("bicubic") is None else ""
    gain = psnr["gain"]
    side = "better" if gain > 0 else "worse" if gain < 0 else "no better"
    return (f"{side} than bicubic by {abs(gain):.2f} dB "
            f"(best {psnr['best']:.2f} dB at iteration {psnr['best_iter']}, bicubic {psnr['bicubic']:.2f} dB)")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def summary_lines(s: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows shared by the terminal and the page."""
    it = s["iterations"]
    rows = [("state", s["state"]["text"]), ("quality", verdict(s) or "–")]
    for name, m in s["metrics"].items():
        parts = []
        if m["best"] is not None:
            parts.append(f"best {m['best']:.4f} at iter {m['best_iter']}")
        if m["final"] is not None:
            parts.append(f"final {m['final']:.4f} at iter {m['final_iter']}")
        if m["bicubic"] is not None:
            parts.append(f"bicubic {m['bicubic']:.4f}")
        if m["gain"] is not None:
            parts.append(f"gain {m['gain']:+.4f}")
        rows.append((name, " · ".join(parts)))
    rows += [
        ("iterations", f"{it['done']} of {it['planned'] if it['planned'] is not None else '?'}"),
        ("wall time", _duration(s["wall_time_s"])),
        ("final loss", f"{s['final_loss']:.4g}" if s["final_loss"] is not None else "–"),
        ("speed", f"{s['mean_samples_s']:,.0f} samples/s (mean)" if s["mean_samples_s"] is not None else "–"),
        ("peak VRAM", f"{s['peak_vram_gib']:.1f} GiB" if s["peak_vram_gib"] is not None else "–"),
        ("hardware", s["hardware"] or "–"),
        ("model", f"{s['arch'] or '?'} ×{s['scale'] or '?'}" + (f" · {s['params']:,} parameters" if s["params"] else "")),
        ("decisions", f"{s['decisions']['planned']} planned by `autosr init`, {s['decisions']['runtime']} at run time"),
    ]
    for m in s["models"]:
        rows.append(("file", f"{m['path']} — {m['what']}"))
    for command in s["use"]:
        rows.append(("use it", command))
    for p in s["problems"]:
        rows.append(("unreadable", p))
    return rows


# ---- decisions, condensed ---------------------------------------------------------------------


def _value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def condensed_decisions(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (source, key) that repeats: count, first and last; single records as they are."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in events:
        groups.setdefault((str(e.get("source", "?")), e["key"]), []).append(e)
    rows = []
    for (source, key), items in groups.items():
        first, last = items[0], items[-1]
        rows.append({"source": source, "key": key, "count": len(items), "first_iter": first.get("iter"), "last_iter": last.get("iter"),
                     "old": first.get("old"), "first_new": first.get("new"), "new": last.get("new"),
                     "reason": str(last.get("reason", ""))})
    rows.sort(key=lambda r: (_num(r["first_iter"]) or 0))
    return rows


# ---- terminal ---------------------------------------------------------------------------------


def print_summary(run: RunSummary, console: Console, summary: dict[str, Any] | None = None) -> None:
    s = summary or summarize(run)
    console.print(f"[bold]{html.unescape(s['name'])}[/bold]")
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in summary_lines(s):
        table.add_row(label, value)
    console.print(table)
    runtime = [r for r in condensed_decisions(run.events) if r["source"] != "plan"]
    if runtime:
        events = Table(show_header=True, header_style="bold", title="decisions at run time (repeats condensed)")
        for column in ("iter", "source", "key", "×", "old → new", "reason"):
            events.add_column(column, overflow="fold")
        for r in runtime[:40]:
            its = str(r["first_iter"]) if r["count"] == 1 else f"{r['first_iter']}–{r['last_iter']}"
            events.add_row(its, r["source"], r["key"], str(r["count"]), f"{_short(r['old'])} → {_short(r['new'])}", r["reason"])
        console.print(events)
        if len(runtime) > 40:
            console.print(f"… {len(runtime) - 40} more keys: see the HTML report")


def _short(value: Any) -> str:
    text = _value(value)
    return text if len(text) <= 40 else text[:37] + "…"


# ---- HTML -------------------------------------------------------------------------------------

CSS = """body{font-family:sans-serif;margin:2em;max-width:1160px;color:#222}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
td.v{white-space:pre-wrap;word-break:break-word;max-width:320px;font-family:monospace}
.summary td:first-child{font-weight:bold;white-space:nowrap} .verdict{font-size:1.25em;margin:.4em 0 1em}
.good{color:#17813a} .bad{color:#b3261e} .charts svg{margin:6px;border:1px solid #f0f0f0} .problem{color:#b3261e}
tr.best td{background:#eef8ee;font-weight:bold}"""


def _phase_bands(run: RunSummary) -> list[tuple[float, float, str]]:
    changes = [(float(e["iter"]), str(e.get("new"))) for e in run.events if e["key"] == "phase"]
    end = float(run.last_iter)
    return [(x, changes[i + 1][0] if i + 1 < len(changes) else end, name) for i, (x, name) in enumerate(changes)]


def _marks(run: RunSummary) -> list[tuple[float, str]]:
    """Run-time decisions (automation/trainer changes, not the per-interval loss weights), one mark per iteration."""
    by_iter: dict[float, list[str]] = {}
    for e in run.events:
        if e.get("source") in ("automation", "trainer") and e["key"] != "phase" and not e["key"].startswith("loss_weight."):
            tip = f"{e['key']}: {_short(e.get('old'))} → {_short(e.get('new'))} ({e.get('reason', '')})"
            by_iter.setdefault(float(e["iter"]), []).append(tip)
    items = sorted(by_iter.items())
    if len(items) > 150:  # keep the page light: a sample, evenly spread
        items = items[:: math.ceil(len(items) / 150)]
    return [(x, f"iter {x:.0f}: " + "; ".join(tips[:5]) + (f"; … {len(tips) - 5} more" if len(tips) > 5 else "")) for x, tips in items]


def _train_series(run: RunSummary, key: str) -> list[tuple[float, float]]:
    return [(float(r["iter"]), v) for r in run.train if (v := _num(r.get(key))) is not None]


def charts(run: RunSummary, summary: dict[str, Any]) -> list[str]:
    bands, marks = _phase_bands(run), _marks(run)

    def chart(title: str, ylabel: str, series: list[Series], **kw: Any) -> str:
        return render(Chart(title, "iteration", ylabel, series, bands=bands, marks=marks, **kw))

    out = []
    for name, m in summary["metrics"].items():
        points = [(float(r["iter"]), float(r[name])) for r in run.val if _num(r.get(name)) is not None]
        hlines = []
        if m["bicubic"] is not None:
            gap = f" (best {m['gain']:+.3f})" if m["gain"] is not None else ""
            hlines.append((f"bicubic {m['bicubic']:.4g}{gap}", m["bicubic"]))
        out.append(chart(f"validation {name.upper()}" + (" (dB)" if name == "psnr" else ""), name.upper(),
                         [Series(name, points)], hlines=hlines))
    losses = ["loss"] + sorted({k for r in run.train for k in r if k.startswith("loss_")})
    for key in losses:
        raw = _train_series(run, key)
        title = "total loss" if key == "loss" else f"loss: {key[5:]}"
        out.append(chart(title, "loss", [Series("raw", raw, "#1f77b4", faint=True), Series("smoothed", smooth(raw), "#1f77b4")],
                         log_y=bool(raw) and all(y > 0 for _, y in raw) and max(y for _, y in raw) > 20 * min(y for _, y in raw)))
    weights = sorted({k for r in run.train for k in r if k.startswith("dynamic_weight_")})
    out.append(chart("dynamic loss weights", "weight", [Series(k[15:], _train_series(run, k)) for k in weights]))
    out.append(chart("learning rate", "lr", [Series("lr", _train_series(run, "lr"))]))
    out.append(chart("lr scale (scheduler)", "lr_scale", [Series("lr_scale", _train_series(run, "lr_scale"))]))
    out.append(chart("gradient norm and clip threshold", "norm",
                     [Series("grad_norm", _train_series(run, "grad_norm"), "#888", faint=True),
                      Series("grad_norm smoothed", smooth(_train_series(run, "grad_norm")), "#555"),
                      Series("clip threshold", _train_series(run, "grad_clip_threshold"), "#d62728", dashed=True)]))
    out.append(chart("batch size", "samples", [Series("batch_size", _train_series(run, "batch_size"))]))
    out.append(chart("throughput", "samples/s", [Series("samples/s", _train_series(run, "samples_s"))]))
    return [c for c in out if c]


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _summary_table(summary: dict[str, Any]) -> str:
    rows = "".join(f"<tr{' class=problem' if label == 'unreadable' else ''}><td>{_esc(label)}</td><td>{_esc(value)}</td></tr>"
                   for label, value in summary_lines(summary))
    gain = (summary["metrics"].get("psnr") or {}).get("gain")
    cls = "good" if gain is not None and gain > 0 else "bad" if gain is not None else ""
    text = verdict(summary)
    head = f'<p class="verdict {cls}"><b>{_esc(text[:1].upper() + text[1:])}</b></p>' if text else ""
    return f'{head}<table class="summary">{rows}</table>'


def _decisions_table(run: RunSummary) -> str:
    rows = []
    for r in condensed_decisions(run.events):
        its = str(r["first_iter"]) if r["count"] == 1 else f"{r['first_iter']} … {r['last_iter']}"
        change = f"{_value(r['old'])} → {_value(r['new'])}" if r["count"] == 1 else \
            f"first: {_value(r['old'])} → {_value(r['first_new'])}\nlast: → {_value(r['new'])}"
        rows.append(f"<tr><td>{_esc(its)}</td><td>{_esc(r['source'])}</td><td>{_esc(r['key'])}</td><td>{r['count']}</td>"
                    f"<td class=v>{_esc(change)}</td><td class=v>{_esc(r['reason'])}</td></tr>")
    return (f"<h2>Decisions ({len(run.events)} records, {len(rows)} keys; repeats condensed)</h2>"
            "<table><tr><th>iter</th><th>source</th><th>key</th><th>×</th><th>old → new</th><th>reason</th></tr>"
            + "".join(rows) + "</table>")


def page(title: str, body: str) -> str:
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>autosr report: {_esc(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{_esc(title)}</h1>{body}</body></html>\n")


def _pictures(run: RunSummary) -> str:
    """Validation crops at the best checkpoint (autosr.report.crops); what is missing instead, never an error."""
    from autosr.report.crops import build_crops, crops_html

    return crops_html(build_crops(run.folder, run.config))


def render_html(run: RunSummary, summary: dict[str, Any] | None = None, *, images: bool = True) -> str:
    s = summary or summarize(run)
    pictures = _pictures(run) if images else ""
    body = (f"<h2>Summary</h2>{_summary_table(s)}<h2>Plots</h2>"
            "<p>Shaded: training phases. Orange ticks on top: run-time decisions (hover for details). "
            "Faint lines: raw values; strong: smoothed.</p>"
            f'<div class="charts">{"".join(charts(run, s))}</div>{pictures}{_decisions_table(run)}')
    return page(s["name"], body)


# ---- several runs -----------------------------------------------------------------------------


def _best_psnr(s: dict[str, Any]) -> float | None:
    return (s["metrics"].get("psnr") or {}).get("best")


def compare_html(runs: list[RunSummary], summaries: list[dict[str, Any]]) -> str:
    scores = [_best_psnr(s) for s in summaries]
    top = max((x for x in scores if x is not None), default=None)
    series_iter, series_time = [], []
    for run, s in zip(runs, summaries, strict=True):
        points = [(float(r["iter"]), float(r["psnr"])) for r in run.val if _num(r.get("psnr")) is not None]
        series_iter.append(Series(s["name"], points))
        times = sorted((float(e["iter"]), float(e["time"])) for e in run.events if _num(e.get("time")) and e["time"] > 0)
        if times and points:
            t0 = times[0][1]
            series_time.append(Series(s["name"], [(_time_at(times, x) - t0, y) for x, y in points]))
    bicubic = [(f"bicubic {b:.4g}", b) for b in {(s["metrics"].get("psnr") or {}).get("bicubic") for s in summaries} if b is not None][:3]
    plots = render(Chart("validation PSNR against iterations", "iteration", "PSNR (dB)", series_iter, hlines=bicubic))
    plots += render(Chart("validation PSNR against wall time", "seconds since start", "PSNR (dB)", series_time, hlines=bicubic))
    head = "<tr><th>run</th><th>state</th><th>best PSNR</th><th>vs bicubic</th><th>iterations</th><th>wall time</th>" \
           "<th>samples/s</th><th>arch</th><th>hardware</th></tr>"
    rows = []
    for s, score in zip(summaries, scores, strict=True):
        p = s["metrics"].get("psnr") or {}
        best = score is not None and score == top
        rows.append(f"<tr{' class=best' if best else ''}><td>{_esc(s['name'])}{' ★ best' if best else ''}</td>"
                    f"<td>{_esc(s['state']['code'])}</td>"
                    f"<td>{_fmt_best(score, p.get('best_iter'))}</td><td>{_fmt_gain(p.get('gain'))}</td>"
                    f"<td>{s['iterations']['done']} / {s['iterations']['planned'] or '?'}</td><td>{_duration(s['wall_time_s'])}</td>"
                    f"<td>{_fmt_speed(s['mean_samples_s'])}</td>"
                    f"<td>{_esc(s['arch'] or '?')}</td><td>{_esc(s['hardware'] or '–')}</td></tr>")
    details = "".join(f"<h2>{_esc(s['name'])}</h2>{_summary_table(s)}" for s in summaries)
    return page(f"{len(runs)} runs compared", f"<table>{head}{''.join(rows)}</table><div class=charts>{plots}</div>{details}")


def _fmt_best(score: float | None, at: Any) -> str:
    return "–" if score is None else f"{score:.3f} @ {at}"


def _fmt_gain(gain: float | None) -> str:
    return "–" if gain is None else f"{gain:+.3f} dB"


def _fmt_speed(speed: float | None) -> str:
    return "–" if speed is None else f"{speed:,.0f}"


def _time_at(times: list[tuple[float, float]], iteration: float) -> float:
    """Wall-clock time at an iteration, interpolated between journal records."""
    import bisect

    i = bisect.bisect_left([t[0] for t in times], iteration)
    if i <= 0:
        return times[0][1]
    if i >= len(times):
        return times[-1][1]
    (a, ta), (b, tb) = times[i - 1], times[i]
    return ta if b == a else ta + (tb - ta) * (iteration - a) / (b - a)


def print_table(summaries: list[dict[str, Any]], console: Console, title: str) -> None:
    top = max((x for s in summaries if (x := _best_psnr(s)) is not None), default=None)
    table = Table(title=title, header_style="bold")
    for column in ("run", "state", "best PSNR", "vs bicubic", "iterations", "wall time"):
        table.add_column(column, overflow="fold")
    for s in summaries:
        score = _best_psnr(s)
        gain = (s["metrics"].get("psnr") or {}).get("gain")
        mark = " ★" if score is not None and score == top else ""
        table.add_row(s["name"] + mark, s["state"]["code"], "–" if score is None else f"{score:.3f}",
                      "–" if gain is None else f"{gain:+.3f} dB", f"{s['iterations']['done']} / {s['iterations']['planned'] or '?'}",
                      _duration(s["wall_time_s"]))
    console.print(table)


# ---- the command --------------------------------------------------------------------------------


def _html_target(html_path: Path | None, default: Path) -> Path:
    if html_path is None:
        return default
    if html_path.is_dir():
        check_creatable(html_path, "--html")
        return html_path / "report.html"
    if not html_path.parent.is_dir():
        raise AutosrError(f"--html {html_path}: folder {html_path.parent} does not exist", "create it first, or pick another path")
    check_creatable(html_path.parent, "--html")
    return html_path


def _write(target: Path, text: str) -> tuple[Path | None, str]:
    """(the page written or None, the line that says so)."""
    try:
        write_text_atomic(target, text)
    except OSError as exc:
        return None, f"cannot write the report to {target}: {exc.strerror or exc} — pass --html PATH to write it elsewhere"
    return target, f"report: {target}"


def report(folders: Path | list[Path], *, html_path: Path | None = None, write_html: bool = True, as_json: bool = False,
           console: Console | None = None, images: bool = True) -> Path | None:
    """One run: summary + page; several: a comparison; a folder of runs: the list. Returns the page written.
    `images=False` leaves out the validation crops (no model run)."""
    paths = [Path(f) for f in (folders if isinstance(folders, list) else [folders])]
    out = console or Console(highlight=False)
    if html_path is not None:
        html_path = _html_target(html_path, html_path)  # refuse a missing folder before any work
    if len(paths) == 1 and not is_run_folder(paths[0]) and paths[0].is_dir():
        children = sorted(p for p in paths[0].iterdir() if is_run_folder(p))
        if children:
            summaries = [summarize(load_run(p)) for p in children]
            if as_json:
                print(json.dumps({"schema": SCHEMA, "runs": summaries}, indent=2))
            else:
                print_table(summaries, out, f"{len(children)} runs in {paths[0]}")
            return None
    runs = [load_run(p) for p in paths]
    summaries = [summarize(r) for r in runs]
    written, said = None, ""
    # The page is written before anything is printed: `autosr report RUN | head` must not lose it.
    if write_html and not (as_json and html_path is None):
        if len(runs) == 1:
            target, page = _html_target(html_path, RunFolder(runs[0].folder).report), render_html(runs[0], summaries[0], images=images)
        else:
            default = Path(*Path.cwd().joinpath(runs[0].folder).parts[:-1]) / "compare.html"
            target, page = _html_target(html_path, default), compare_html(runs, summaries)
        written, said = _write(target, page)
    if as_json:
        print(json.dumps(summaries[0] if len(runs) == 1 else {"schema": SCHEMA, "runs": summaries}, indent=2))
    elif len(runs) == 1:
        print_summary(runs[0], out, summaries[0])
    else:
        print_table(summaries, out, f"{len(runs)} runs")
    if said:  # beside JSON, on stderr: stdout stays one JSON document
        (Console(stderr=True, highlight=False) if as_json else out).print(said, markup=False)
    return written
