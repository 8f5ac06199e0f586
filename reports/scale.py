"""The report's "Scale" section: ``results/<cell>/scale.json`` of every cell that ran the
scale benchmark (``python -m fixtures.scale``), beside the conformance verdict and never part
of it.

One SVG line plot per figure — Services on the x axis, one line per cell (solid: the figure's
headline statistic, dotted: its tail) — and the same numbers as tables (HTML and Markdown).
A scale.json that cannot be read is listed with its reason, never fatal.  This module only
reads files (it imports nothing of the framework, as the rest of ``reports``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from reports.svg import fmt, nice_ticks

SCALE_FILE = "scale.json"
SCALE_SCHEMA_VERSIONS = (1,)

JSON = dict[str, Any]


@dataclass(frozen=True)
class ScaleRun:
    """One cell's scale.json."""

    key: str  # the cell directory's name
    path: Path
    status: str = ""
    reason: str = ""
    cell: Mapping[str, Any] | None = None
    config: Mapping[str, Any] | None = None
    steps: tuple[Mapping[str, Any], ...] = ()
    started: str = ""
    duration_s: float | None = None
    notes: tuple[str, ...] = ()
    #: why the file could not be read ("" when it was)
    load_error: str = ""


def load_scale_runs(results_dir: Path) -> list[ScaleRun]:
    """Every ``<results_dir>/<cell>/scale.json``, by cell name; an unreadable one carries why."""
    if not results_dir.is_dir():
        return []
    runs = []
    for path in sorted(results_dir.glob(f"*/{SCALE_FILE}")):
        runs.append(load_scale_run(path))
    return runs


def load_scale_run(path: Path) -> ScaleRun:
    key = path.parent.name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return ScaleRun(key, path, load_error=f"{path}: cannot read: {exc.strerror or exc}")
    except ValueError as exc:
        return ScaleRun(key, path, load_error=f"{path}: not JSON: {exc}")
    if not isinstance(data, dict) or data.get("kind") != "scale":
        return ScaleRun(key, path, load_error=f"{path}: not a scale.json (no \"kind\": \"scale\")")
    if data.get("schema_version") not in SCALE_SCHEMA_VERSIONS:
        return ScaleRun(key, path, load_error=f"{path}: schema_version {data.get('schema_version')!r} is not "
                        f"one of {', '.join(map(str, SCALE_SCHEMA_VERSIONS))}")
    steps = data.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, dict) and isinstance(s.get("services"), int)
                                              for s in steps):
        return ScaleRun(key, path, load_error=f"{path}: steps is not a list of steps with a Services count")
    duration = data.get("duration_s")
    return ScaleRun(key, path, status=str(data.get("status", "")), reason=str(data.get("reason", "")),
                    cell=data.get("cell") or {}, config=data.get("config") or {}, steps=tuple(steps),
                    started=str(data.get("started", "")),
                    duration_s=float(duration) if isinstance(duration, int | float) else None,
                    notes=tuple(str(n) for n in data.get("notes") or ()))


# --- figures -----------------------------------------------------------------------------


def _get(step: Mapping[str, Any], *path: str) -> Any:
    value: Any = step
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _max_by_node(step: Mapping[str, Any], *path: str) -> float | None:
    by_node = _get(step, *path)
    if not isinstance(by_node, Mapping):
        return None
    values = [v for v in by_node.values() if isinstance(v, int | float)]
    return float(max(values)) if values else None


Extract = Callable[[Mapping[str, Any]], float | None]


@dataclass(frozen=True)
class Figure:
    """One plot: its headline statistic per step (solid line) and a tail (dotted)."""

    key: str
    title: str
    unit: str
    caption: str
    main: Extract
    main_label: str
    tail: Extract | None = None
    tail_label: str = ""
    scale: float = 1.0  # the unit's factor (bytes → MiB)


def _full_sync(step: Mapping[str, Any], q: str) -> float | None:
    """Full syncs where kube-proxy exports them, else every sync (the combined histogram)."""
    which = "full" if _get(step, "sync", "load", "full") else "all"
    return _num(_get(step, "sync", "load", which, "pooled", q))


def _stat(*path: str) -> Extract:
    return lambda step: _num(_get(step, *path))


FIGURES: tuple[Figure, ...] = (
    Figure("creation-rate", "API creation rate while loading", "objects/s",
           "Services and EndpointSlices written per second over the step (target --rate; the API server "
           "may be slower).", _stat("creation", "rate"), "achieved"),
    Figure("bulk", "Bulk convergence: last create → every node serves the last Service", "s",
           "From the step's last create until every node's client pod was answered by that Service.",
           _stat("bulk_convergence", "every_node", "max"), "every node"),
    Figure("one-more", "One more Service at steady state: served from every node", "s",
           "A new Service's EndpointSlice created → served from every node (n samples per step).",
           _stat("one_more", "every_node", "p50"), "p50", _stat("one_more", "every_node", "p99"), "p99"),
    Figure("endpoint-change", "Endpoint change on an existing Service: served from every node", "s",
           "The first Service's EndpointSlice swaps one backend → every node answered by the new one.",
           _stat("endpoint_change", "every_node", "p50"), "p50",
           _stat("endpoint_change", "every_node", "p99"), "p99"),
    Figure("netprog-steady", "kube-proxy network programming latency, steady state (pooled)", "s",
           "kubeproxy_network_programming_duration_seconds over the one-more and endpoint-change samples, "
           "bucket deltas summed across nodes (clusterloader2's pooling); the SLI is its p99 (30 s).",
           _stat("network_programming", "steady", "pooled", "p99"), "p99",
           _stat("network_programming", "steady", "pooled", "p50"), "p50"),
    Figure("netprog-load", "kube-proxy network programming latency, while loading (pooled)", "s",
           "The same histogram over the step's creates, until kube-proxy had programmed them.",
           _stat("network_programming", "load", "pooled", "p99"), "p99",
           _stat("network_programming", "load", "pooled", "p50"), "p50"),
    Figure("sync-partial", "kube-proxy partial sync duration while loading (pooled)", "s",
           "kubeproxy_sync_partial_proxy_rules_duration_seconds over the step's load.",
           _stat("sync", "load", "partial", "pooled", "p50"), "p50",
           _stat("sync", "load", "partial", "pooled", "p99"), "p99"),
    Figure("sync-full", "kube-proxy full sync duration while loading (pooled)", "s",
           "kubeproxy_sync_full_proxy_rules_duration_seconds over the step's load (or "
           "kubeproxy_sync_proxy_rules_duration_seconds where full and partial are not exported).",
           lambda s: _full_sync(s, "p50"), "p50", lambda s: _full_sync(s, "p99"), "p99"),
    Figure("rules", "Rules or objects programmed (largest node)", "rules",
           "iptables: kubeproxy_sync_proxy_rules_iptables_total (nat + filter); nftables: lines of its "
           "table; Cilium: LB map entries.", lambda s: _max_by_node(s, "rules", "by_node"), "largest node"),
    Figure("cpu", "kube-proxy CPU seconds over the step (all nodes)", "CPU s",
           "process_cpu_seconds_total of every node's kube-proxy, load and steady windows added.",
           _stat("kube_proxy", "cpu_seconds"), "all nodes"),
    Figure("rss", "kube-proxy RSS at the end of the step (largest node)", "MiB",
           "process_resident_memory_bytes.", _stat("kube_proxy", "rss_bytes_max"), "largest node",
           scale=1 / 2**20),
    Figure("connect-first", "First-packet TCP connect to the first-created Service", "ms",
           "curl %{time_connect} of fresh connections from every node's client pod, pooled.",
           _stat("connect", "first", "pooled", "p50"), "p50",
           _stat("connect", "first", "pooled", "p99"), "p99", scale=1000.0),
    Figure("connect-last", "First-packet TCP connect to the last-created Service", "ms",
           "As above, to the step's last Service.",
           _stat("connect", "last", "pooled", "p50"), "p50", _stat("connect", "last", "pooled", "p99"), "p99",
           scale=1000.0),
)

#: A colour per proxy mode (the cells compared are usually one per mode), then a palette.
MODE_COLOURS = {"iptables": "#0969da", "nftables": "#bc4c00", "none": "#1a7f37", "ipvs": "#8250df"}
PALETTE = ("#0969da", "#bc4c00", "#1a7f37", "#8250df", "#cf222e", "#6e7781", "#bf8700", "#1b7c83")


def colours(runs: Sequence[ScaleRun]) -> dict[str, str]:
    """Each cell's colour: its proxy mode's when no other cell has that mode, else the palette's."""
    modes = [str((r.cell or {}).get("proxy_mode", "")) for r in runs]
    out: dict[str, str] = {}
    used: set[str] = set()
    for run, mode in zip(runs, modes, strict=True):
        colour = MODE_COLOURS.get(mode) if modes.count(mode) == 1 else None
        if colour is None or colour in used:
            colour = next((c for c in PALETTE if c not in used), PALETTE[len(out) % len(PALETTE)])
        used.add(colour)
        out[run.key] = colour
    return out


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    points: tuple[tuple[float, float], ...]
    dotted: bool = False


W, H = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 34, 40


def line_chart(lines: Sequence[Line], *, title: str, unit: str, x_label: str = "Services") -> str:
    """An ``<svg>`` of ``lines`` on linear axes from 0 (deterministic output)."""
    xs = [x for line in lines for x, _ in line.points]
    ys = [y for line in lines for _, y in line.points]
    x_ticks = nice_ticks(max(xs) if xs else 0.0)
    y_ticks = nice_ticks(max(ys) if ys else 0.0)
    x_top, y_top = x_ticks[-1] or 1.0, y_ticks[-1] or 1.0
    x0, x1, y0, y1 = LEFT, W - RIGHT, H - BOTTOM, TOP

    def px(x: float) -> float:
        return x0 + (x1 - x0) * x / x_top

    def py(y: float) -> float:
        return y0 - (y0 - y1) * y / y_top

    label = f"{title}, in {unit} by Services"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart scale-chart" role="img" width="{W}" '
           f'height="{H}" viewBox="0 0 {W} {H}" aria-label="{escape(label)}" font-family="sans-serif" '
           'font-size="12">', f"<title>{escape(label)}</title>",
           f'<text x="0" y="16" font-weight="bold">{escape(title)}</text>']
    for t in y_ticks:
        out.append(f'<line x1="{x0}" y1="{py(t):.1f}" x2="{x1}" y2="{py(t):.1f}" stroke="#eaeef2"/>')
        out.append(f'<text x="{x0 - 6}" y="{py(t) + 4:.1f}" text-anchor="end" fill="#57606a">'
                   f"{escape(fmt(t))}</text>")
    for t in x_ticks:
        out.append(f'<line x1="{px(t):.1f}" y1="{y1}" x2="{px(t):.1f}" y2="{y0}" stroke="#f3f4f6"/>')
        out.append(f'<text x="{px(t):.1f}" y="{y0 + 16}" text-anchor="middle" fill="#57606a">'
                   f"{escape(f'{t:,.0f}')}</text>")
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#8c959f"/>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#8c959f"/>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{H - 6}" text-anchor="middle" fill="#57606a">'
               f"{escape(x_label)}</text>")
    out.append(f'<text x="12" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" fill="#57606a" '
               f'transform="rotate(-90 12 {(y0 + y1) / 2:.1f})">{escape(unit)}</text>')
    legend_y = TOP + 4
    for line in lines:
        if not line.points:
            continue
        dash = ' stroke-dasharray="2 3"' if line.dotted else ""
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in line.points)
        out.append(f'<g class="line" data-label="{escape(line.label)}" data-points="{len(line.points)}">')
        out.append(f'<polyline points="{path}" fill="none" stroke="{line.colour}" stroke-width="2"{dash}/>')
        for x, y in line.points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{2.5 if line.dotted else 3.5}" '
                       f'fill="{line.colour}"><title>{escape(line.label)}: {escape(fmt(y, unit))} at '
                       f"{x:,.0f} Services</title></circle>")
        out.append("</g>")
        out.append(f'<line x1="{x1 + 12}" y1="{legend_y:.1f}" x2="{x1 + 32}" y2="{legend_y:.1f}" '
                   f'stroke="{line.colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x1 + 38}" y="{legend_y + 4:.1f}">{escape(_clip(line.label, 20))}</text>')
        legend_y += 16
    if not any(line.points for line in lines):
        out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" '
                   'fill="#8c959f">not measured</text>')
    out.append("</svg>")
    return "".join(out)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def figure_lines(figure: Figure, runs: Sequence[ScaleRun]) -> list[Line]:
    """One line per cell (and one dotted for the tail), from the steps that have the figure."""
    palette = colours(runs)
    lines = []
    for run in runs:
        if run.load_error:
            continue
        main = tuple((float(s["services"]), v * figure.scale) for s in run.steps
                     if (v := figure.main(s)) is not None)
        if main:
            lines.append(Line(f"{run.key} {figure.main_label}", palette[run.key], main))
        if figure.tail is not None:
            tail = tuple((float(s["services"]), v * figure.scale) for s in run.steps
                         if (v := figure.tail(s)) is not None)
            if tail:
                lines.append(Line(f"{run.key} {figure.tail_label}", palette[run.key], tail, dotted=True))
    return lines


def charts(runs: Sequence[ScaleRun]) -> list[tuple[Figure, str]]:
    """Every figure some cell measured, as ``(figure, svg)``."""
    out = []
    for figure in FIGURES:
        lines = figure_lines(figure, runs)
        if lines:
            out.append((figure, line_chart(lines, title=figure.title, unit=figure.unit)))
    return out


# --- tables --------------------------------------------------------------------------------


def _s(value: Any, unit: str = "s") -> str:
    v = _num(value)
    if v is None:
        return "—"
    return f"{v:,.0f} {unit}" if abs(v) >= 1000 else fmt(v, unit)


def _ms(value: Any) -> str:
    v = _num(value)
    return "—" if v is None else fmt(v * 1000, "ms")


def _bucket(bucket: Any) -> str:
    if not isinstance(bucket, list) or len(bucket) != 2:
        return ""
    lo, hi = bucket
    return f"({fmt(float(lo))}, {fmt(float(hi)) if isinstance(hi, int | float) else '∞'}]"


def _triple(fig: Any) -> str:
    every = _get(fig or {}, "every_node") or {}
    if not every.get("n"):
        return "—"
    return f"{_s(every.get('p50'))} / {_s(every.get('p90'))} / {_s(every.get('p99'))} (n={every.get('n')})"


def row_values(step: Mapping[str, Any]) -> dict[str, str]:
    """The numbers of one step, formatted, as the tables show them."""
    np_steady = _get(step, "network_programming", "steady", "pooled") or {}
    sync = _get(step, "sync", "load") or {}
    partial = _get(sync, "partial", "pooled") or {}
    full = (_get(sync, "full", "pooled") or _get(sync, "all", "pooled") or {})
    rules = _max_by_node(step, "rules", "by_node")
    rss = _num(_get(step, "kube_proxy", "rss_bytes_max"))
    first = _get(step, "connect", "first", "pooled") or {}
    last = _get(step, "connect", "last", "pooled") or {}
    return {
        "services": f"{int(step['services']):,}",
        "rate": _s(_get(step, "creation", "rate"), "objects/s"),
        "bulk": _s(_get(step, "bulk_convergence", "every_node", "max")),
        "one_more": _triple(step.get("one_more")),
        "endpoint_change": _triple(step.get("endpoint_change")),
        "netprog": (f"{_s(np_steady.get('p99'))} in {_bucket(np_steady.get('p99_bucket'))} "
                    f"(n={np_steady.get('count', 0):g})" if np_steady.get("count") else "—"),
        "sync_partial": _s(partial.get("p50")) if partial.get("count") else "—",
        "sync_full": _s(full.get("p50")) if full.get("count") else "—",
        "rules": "—" if rules is None else f"{rules:,.0f}",
        "cpu": _s(_get(step, "kube_proxy", "cpu_seconds"), "s"),
        "rss": "—" if rss is None else fmt(rss / 2**20, "MiB"),
        "connect_first": f"{_ms(first.get('p50'))} / {_ms(first.get('p99'))}" if first.get("n") else "—",
        "connect_last": f"{_ms(last.get('p50'))} / {_ms(last.get('p99'))}" if last.get("n") else "—",
    }


COLUMNS: tuple[tuple[str, str], ...] = (
    ("services", "Services"), ("rate", "created"), ("bulk", "bulk convergence"),
    ("one_more", "one more Service p50 / p90 / p99"), ("endpoint_change", "endpoint change p50 / p90 / p99"),
    ("netprog", "network programming p99, steady (pooled)"), ("sync_partial", "partial sync p50"),
    ("sync_full", "full sync p50"), ("rules", "rules / objects"), ("cpu", "kube-proxy CPU"),
    ("rss", "kube-proxy RSS"), ("connect_first", "connect, first Service p50 / p99"),
    ("connect_last", "connect, last Service p50 / p99"),
)


def _run_line(run: ScaleRun) -> str:
    if run.load_error:
        return f"not read: {run.load_error}"
    config = run.config or {}
    ladder = ",".join(str(s) for s in config.get("ladder") or ())
    cell = run.cell or {}
    took = f", {run.duration_s / 60:.1f} min" if run.duration_s is not None else ""
    text = (f"{run.status}{took}: ladder {ladder}, {config.get('endpoints_per_service', '?')} endpoints per "
            f"Service over {config.get('backends', '?')} backends, target rate {config.get('rate', '?')} "
            f"objects/s; {cell.get('provider', '?')} cluster, Kubernetes "
            f"{cell.get('kubernetes_version') or '?'}, {cell.get('nodes') or '?'} nodes")
    if cell.get("cilium_lb_map_max"):
        text += f"; Cilium bpf-lb-map-max {int(cell['cilium_lb_map_max']):,}"
    if run.reason:
        text += f"; {run.reason}"
    return text


INTRO = ("The scale benchmark (<code>python -m fixtures.scale</code>, <code>tox -e scale</code>) beside the "
         "conformance verdict, never part of it: selector-less Services with hand-written EndpointSlices "
         "(pointing at real agnhost pods) created at a recorded rate up a ladder of sizes; at each size, "
         "figures per node and pooled.  Latencies measured by sampling loops (≤100 ms resolution) are "
         "samples (linear-interpolation percentiles); kube-proxy's histograms are pooled across nodes from "
         "bucket deltas and their quantiles read from the buckets, each stated with the bucket it lies in.")


def scale_html(runs: Sequence[ScaleRun]) -> str:
    """The report's Scale section ("" when no cell ran the benchmark)."""
    if not runs:
        return ""
    out = ['<section class="scale" id="scale"><h2>Scale <span class="tag">not conformance</span></h2>',
           f'<p class="muted">{INTRO}</p><ul class="scale-runs">']
    for run in runs:
        out.append(f'<li data-cell="{escape(run.key)}" data-status="{escape(run.status or "unreadable")}">'
                   f"<code>{escape(run.key)}</code>: {escape(_run_line(run))}</li>")
    out.append("</ul>")
    out.append('<div class="charts scale-charts">')
    for figure, svg in charts(runs):
        out.append(f'<figure class="scale-figure" data-figure="{escape(figure.key)}">{svg}'
                   f'<figcaption class="muted">{escape(figure.caption)} Solid: {escape(figure.main_label)}'
                   + (f"; dotted: {escape(figure.tail_label)}" if figure.tail is not None else "")
                   + ".</figcaption></figure>")
    out.append("</div>")
    head = "".join(f"<th>{escape(title)}</th>" for _, title in COLUMNS)
    rows = []
    for run in runs:
        for step in run.steps:
            values = row_values(step)
            rows.append(f'<tr data-cell="{escape(run.key)}" data-services="{int(step["services"])}">'
                        f"<td><code>{escape(run.key)}</code></td>"
                        + "".join(f'<td class="r">{escape(values[key])}</td>' for key, _ in COLUMNS)
                        + "</tr>")
    if rows:
        out.append('<table class="conv scale-table"><caption>The figures per cell and step (every node: '
                   "the delay until the last node served the change; connect times pooled over the nodes; "
                   "network programming p99 with its bucket)</caption>"
                   f"<thead><tr><th>cell</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    out.append("</section>")
    return "".join(out)


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def scale_markdown(runs: Sequence[ScaleRun]) -> list[str]:
    """The Scale section of summary.md: the runs and one table row per cell and step."""
    if not runs:
        return []
    out = ["### Scale (beside the conformance verdict)", "",
           "The scale benchmark (`python -m fixtures.scale`): per ladder step, the figures below. Every "
           "node = until the last node served the change; kube-proxy's network programming histogram "
           "pooled across nodes (clusterloader2's way), its p99 with the bucket holding it.", ""]
    out += [f"- `{_md(run.key)}`: {_md(_run_line(run))}" for run in runs]
    out.append("")
    out.append("| cell | " + " | ".join(title for _, title in COLUMNS) + " |")
    out.append("| --- | " + " | ".join("--:" for _ in COLUMNS) + " |")
    for run in runs:
        for step in run.steps:
            values = row_values(step)
            out.append(f"| `{_md(run.key)}` | " + " | ".join(_md(values[k]) for k, _ in COLUMNS) + " |")
    out.append("")
    return out
