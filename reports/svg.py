"""Inline SVG charts of measurement distributions — no plotting dependency.

:func:`distribution_chart` draws one row per series on a shared linear axis starting at 0:
every sample as a dot (spread vertically by a deterministic jitter so ties stay visible),
a box from the 25th to the 75th percentile with a whisker from min to max, and the recorded
p50 (solid), p90 (dashed) and max (dotted) as marks, with their values printed at the right.
Output is deterministic for the same input, so reports diff cleanly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from reports.analysis import percentile

WIDTH = 900
LABEL_W = 170  # left column: row labels
STATS_W = 190  # right column: p50/p90/max values
ROW_H = 46
TOP = 30  # title
BOTTOM = 34  # axis and its labels
PLOT_X0 = LABEL_W
PLOT_X1 = WIDTH - STATS_W

COLOURS = {
    "dot": "#0969da",
    "box": "#ddf4ff",
    "box_stroke": "#54aeff",
    "p50": "#1f2328",
    "p90": "#bc4c00",
    "max": "#cf222e",
    "axis": "#8c959f",
    "grid": "#eaeef2",
}


@dataclass(frozen=True)
class Series:
    """One row of a chart."""

    label: str
    samples: tuple[float, ...]
    p50: float | None
    p90: float | None
    max: float | None
    #: rows of one group (e.g. a change kind) are drawn together under its name
    group: str = ""


#: Height of a group's heading row.
GROUP_H = 22


def _layout(series: Sequence[Series]) -> tuple[list[float], list[tuple[str, float]], int]:
    """Each row's centre, each group heading's baseline, and the plot's bottom."""
    y = TOP
    centres: list[float] = []
    headings: list[tuple[str, float]] = []
    previous: str | None = None
    for s in series:
        if s.group and s.group != previous:
            headings.append((s.group, y + 15))
            y += GROUP_H
        previous = s.group
        centres.append(y + ROW_H / 2)
        y += ROW_H
    return centres, headings, max(y, TOP + ROW_H)


def fmt(value: float, unit: str = "") -> str:
    """Three significant digits, no exponent for everyday magnitudes: ``1.23 s``."""
    if value == 0:
        text = "0"
    elif abs(value) >= 1000 or abs(value) < 0.001:
        text = f"{value:.3g}"
    else:
        digits = max(0, 2 - math.floor(math.log10(abs(value))))
        text = f"{value:.{digits}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return f"{text} {unit}".strip()


def nice_ticks(top: float, target: int = 5) -> list[float]:
    """Ticks 0, step, 2·step, … covering ``top``, with step 1, 2 or 5 times 10^k."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 12) for i in range(count + 1)]


def _jitter(i: int) -> float:
    """Deterministic spread in [-0.5, 0.5): the golden-ratio sequence."""
    return (i * 0.6180339887498949) % 1.0 - 0.5


def _num(v: float) -> str:
    return f"{v:.1f}"


def distribution_chart(series: Sequence[Series], *, unit: str, title: str) -> str:
    """An ``<svg>`` element (a string) showing ``series`` on a shared axis."""
    centres, headings, axis_y = _layout(series)
    height = axis_y + BOTTOM
    values = [v for s in series for v in s.samples] + [
        v for s in series for v in (s.p50, s.p90, s.max) if v is not None
    ]
    ticks = nice_ticks(max(values) if values else 0.0)
    top = ticks[-1] or 1.0

    def x(v: float) -> float:
        return PLOT_X0 + (PLOT_X1 - PLOT_X0) * min(max(v, 0.0), top) / top

    label = f"{title}: distribution in {unit}" if unit else title
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'aria-label="{escape(label)}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(label)}</title>",
        f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>',
    ]
    for t in ticks:
        tx = _num(x(t))
        out.append(f'<line x1="{tx}" y1="{TOP}" x2="{tx}" y2="{axis_y}" stroke="{COLOURS["grid"]}"/>')
        out.append(
            f'<text x="{tx}" y="{axis_y + 16}" text-anchor="middle" fill="#57606a">{escape(fmt(t))}</text>'
        )
    out.append(
        f'<line x1="{PLOT_X0}" y1="{axis_y}" x2="{PLOT_X1}" y2="{axis_y}" stroke="{COLOURS["axis"]}"/>'
    )
    out.append(
        f'<text x="{(PLOT_X0 + PLOT_X1) / 2:.1f}" y="{axis_y + 31}" text-anchor="middle" '
        f'fill="#57606a">{escape(unit or "value")}</text>'
    )
    for text, baseline in headings:
        out.append(f'<text class="group" x="0" y="{baseline:.1f}" font-weight="bold" '
                   f'fill="#1f2328">{escape(text)}</text>')
    for s, cy in zip(series, centres, strict=True):
        out.extend(_row(s, cy, x, unit))
    out.append("</svg>")
    return "".join(out)


def _row(s: Series, cy: float, x: Callable[[float], float], unit: str) -> list[str]:
    out = [
        f'<g class="series" data-label="{escape(s.label)}" data-count="{len(s.samples)}">',
        f'<text x="{LABEL_W - 8}" y="{cy + 4:.1f}" text-anchor="end">'
        f"{escape(_clip(s.label, 26))}<title>{escape(s.label)}</title></text>",
    ]
    if s.samples:
        q1, q3 = percentile(s.samples, 25), percentile(s.samples, 75)
        lo, hi = min(s.samples), max(s.samples)
        out.append(
            f'<line x1="{_num(x(lo))}" y1="{cy:.1f}" x2="{_num(x(hi))}" y2="{cy:.1f}" '
            f'stroke="{COLOURS["box_stroke"]}"/>'
        )
        out.append(
            f'<rect class="box" x="{_num(x(q1))}" y="{cy - 9:.1f}" '
            f'width="{max(1.0, x(q3) - x(q1)):.1f}" height="18" fill="{COLOURS["box"]}" '
            f'stroke="{COLOURS["box_stroke"]}"/>'
        )
        for i, v in enumerate(s.samples):
            out.append(
                f'<circle class="sample" cx="{_num(x(v))}" cy="{cy + 14 * _jitter(i):.1f}" '
                f'r="2.6" fill="{COLOURS["dot"]}" fill-opacity="0.65">'
                f"<title>{escape(fmt(v, unit))}</title></circle>"
            )
    marks: tuple[tuple[str, float | None, str], ...] = (
        ("p50", s.p50, ""),
        ("p90", s.p90, ' stroke-dasharray="4 2"'),
        ("max", s.max, ' stroke-dasharray="1 2"'),
    )
    for name, value, dash in marks:
        if value is None:
            continue
        mx = _num(x(value))
        out.append(
            f'<line class="mark mark-{name}" x1="{mx}" y1="{cy - 15:.1f}" x2="{mx}" '
            f'y2="{cy + 15:.1f}" stroke="{COLOURS[name]}" stroke-width="2"{dash}>'
            f"<title>{name} {escape(fmt(value, unit))}</title></line>"
        )
    first = " · ".join(
        f"{name} {fmt(v, unit)}" for name, v in (("p50", s.p50), ("p90", s.p90)) if v is not None
    )
    second = f"max {fmt(s.max, unit)} · n={len(s.samples)}" if s.max is not None else ""
    if not (first or second):
        first = "no samples"
    out.append(
        f'<text class="stats" x="{PLOT_X1 + 10}" y="{cy - 2:.1f}" fill="#57606a">'
        f'{escape(first)}<tspan x="{PLOT_X1 + 10}" dy="14">{escape(second)}</tspan></text>'
    )
    out.append("</g>")
    return out


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
