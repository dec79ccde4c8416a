"""Inline SVG line charts for `autosr report`: no plotting library, no network.

A chart has axis titles, "nice" ticks with a light grid, optional shaded bands (training phases),
decision marks (small ticks along the top with a tooltip), horizontal reference lines (bicubic)
and any number of series (raw ones drawn light, smoothed ones drawn strong).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
BAND_COLOURS = ["#f3f6fb", "#fbf6ee", "#f1f8f1", "#f8f1f8"]
MAX_POINTS = 800  # per series: keeps a 200k-iteration run's page small


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    colour: str = ""
    faint: bool = False  # raw values under a smoothed line
    dashed: bool = False


@dataclass
class Chart:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    hlines: list[tuple[str, float]] = field(default_factory=list)  # (label, y)
    bands: list[tuple[float, float, str]] = field(default_factory=list)  # (x0, x1, label)
    marks: list[tuple[float, str]] = field(default_factory=list)  # (x, tooltip)
    log_y: bool = False


def smooth(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """An exponential moving average whose span grows with the number of points (about n/30)."""
    if len(points) < 8:
        return list(points)
    alpha = 2 / (max(3, len(points) // 30) + 1)
    out, level = [], points[0][1]
    for x, y in points:
        level = alpha * y + (1 - alpha) * level
        out.append((x, level))
    return out


def thin(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most about `limit` points: for each bucket keep its min and max (spikes survive)."""
    if len(points) <= limit:
        return points
    step = math.ceil(len(points) / (limit // 2))
    out: list[tuple[float, float]] = []
    for i in range(0, len(points), step):
        chunk = points[i:i + step]
        lo, hi = min(chunk, key=lambda p: p[1]), max(chunk, key=lambda p: p[1])
        out.extend(sorted({lo, hi}, key=lambda p: p[0]))
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks: list[float] = []
    t = first
    while t <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(t, 12))
        t += step
    return ticks


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 and float(value).is_integer():
        return f"{value / 1000:g}k"
    return f"{value:.4g}"


def render(chart: Chart, *, width: int = 540, height: int = 250) -> str:
    """The chart as one <svg> element ("" when it has no points)."""
    series = [s for s in chart.series if s.points]
    points = [p for s in series for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])]
    if chart.log_y:
        points = [p for p in points if p[1] > 0]
    if not points:
        return ""

    def ty(y: float) -> float:
        return math.log10(y) if chart.log_y else y

    ys = [ty(y) for _, y in points] + [ty(y) for _, y in chart.hlines if not chart.log_y or y > 0]
    x0, x1 = min(x for x, _ in points), max(x for x, _ in points)
    y0, y1 = min(ys), max(ys)
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    left, right, top, bottom = 64, 12, 30, 42
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (ty(y) - y0) / (y1 - y0)) * ph

    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="14" font-weight="bold" font-size="12">{esc(chart.title)}</text>']
    for i, (b0, b1, label) in enumerate(chart.bands):
        a, b = max(sx(max(b0, x0)), left), min(sx(min(b1, x1)), left + pw)
        if b > a:
            out.append(f'<rect x="{a:.1f}" y="{top}" width="{b - a:.1f}" height="{ph}" fill="{BAND_COLOURS[i % len(BAND_COLOURS)]}">'
                       f'<title>phase {esc(label)}</title></rect>')
            out.append(f'<text x="{a + 2:.1f}" y="{top + ph - 3}" fill="#999" font-size="9">{esc(label)}</text>')
    # grid and ticks
    for t in nice_ticks(x0, x1):
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 13}" text-anchor="middle" fill="#444">{fmt(t)}</text>')
    for t in nice_ticks(y0, y1):
        y = top + (1 - (t - y0) / (y1 - y0)) * ph
        label = fmt(10 ** t) if chart.log_y else fmt(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end" fill="#444">{label}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{height - 6}" text-anchor="middle">{esc(chart.xlabel)}</text>')
    out.append(f'<text transform="translate(13,{top + ph / 2:.0f}) rotate(-90)" text-anchor="middle">'
               f'{esc(chart.ylabel)}{" (log)" if chart.log_y else ""}</text>')
    for label, yv in chart.hlines:
        if chart.log_y and yv <= 0:
            continue
        y = sy(yv)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555" stroke-dasharray="5 3"/>'
                   f'<text x="{left + pw - 4}" y="{y - 4:.1f}" text-anchor="end" fill="#333">{esc(label)}</text>')
    for x, tip in chart.marks:
        if x0 <= x <= x1:
            xs = sx(x)
            out.append(f'<line x1="{xs:.1f}" x2="{xs:.1f}" y1="{top}" y2="{top + 7}" stroke="#e67e00" stroke-width="2">'
                       f'<title>{esc(tip)}</title></line>')
    legend_x = left + 4
    for i, s in enumerate(series):
        colour = s.colour or COLOURS[i % len(COLOURS)]
        data = thin([p for p in s.points if math.isfinite(p[1]) and (p[1] > 0 or not chart.log_y)])
        if not data:
            continue
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data)
        style = ' stroke-opacity="0.3" stroke-width="1"' if s.faint else ' stroke-width="1.6"'
        dash = ' stroke-dasharray="4 2"' if s.dashed else ""
        if len(data) == 1:
            x, y = data[0]
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
        else:
            out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}"{style}{dash}/>')
        if not s.faint:
            out.append(f'<text x="{legend_x}" y="{top - 5}" fill="{colour}">{esc(s.name)}</text>')
            legend_x += 8 + 6 * len(s.name)
    out.append("</svg>")
    return "".join(out)
