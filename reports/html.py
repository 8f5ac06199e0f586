"""``report.html``: one self-contained page — inline CSS and SVG, no scripts, no external
assets — that a vendor can hand to someone else.

Layout, top to bottom: header (vendor, suite version, checksum), the families x cells
matrix, the list of failures, convergence compared across cells, then one section per cell
with its cluster facts, its charts and a ``<details>`` drill-down to every test (outcome,
message, reproduction commands, diagnostics link).  Every text that comes from a results
file is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from reports.analysis import (
    FamilyStats,
    MeasurementView,
    cell_counts,
    cell_verdict,
    families_of,
    family_stats,
    only_extended_failed,
    profile_of,
    profile_of_test,
)
from reports.convergence import ALL_NODES, ChangeKind, Row, convergence_of
from reports.model import Cell, TestResult
from reports.profiles import CORE_FAMILIES, EXTENDED_FAMILIES
from reports.repro import diagnostics_target, href, pytest_command, tox_command
from reports.scale import ScaleRun, scale_html
from reports.svg import Series, distribution_chart, fmt
from reports.vendor import VendorInfo

TITLE = "svcconform — Service networking conformance report"
REASON_CLIP = 160

CSS = """
:root { --fg:#1f2328; --muted:#57606a; --line:#d0d7de; --bg2:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: var(--fg); margin: 0 auto; padding: 24px 32px 64px; max-width: 1600px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 12px; border-top: 2px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 8px; }
a { color: #0969da; }
code, pre { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.muted { color: var(--muted); }
.meta { display: flex; flex-wrap: wrap; gap: 4px 24px; color: var(--muted); margin: 6px 0 12px; }
.vendor { border: 1px solid var(--line); border-left: 4px solid #0969da; background: var(--bg2);
          padding: 10px 14px; margin: 12px 0; border-radius: 4px; }
.vendor dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0 0; }
.vendor dt { color: var(--muted); font-weight: normal; text-align: left; }
.vendor dd { margin: 0; }
table { border-collapse: collapse; }
.matrix { margin: 8px 0 4px; }
.matrix th, .matrix td { border: 1px solid var(--line); padding: 6px 10px; text-align: center;
                         vertical-align: middle; min-width: 118px; }
.matrix thead th { background: var(--bg2); }
.matrix th.family { text-align: left; min-width: 0; white-space: nowrap; }
.matrix td a { color: inherit; text-decoration: none; display: block; }
.matrix .cellname { font-family: ui-monospace, monospace; }
.matrix .sub { display: block; font-size: 11.5px; font-weight: normal; color: var(--muted); }
.matrix td .sub { color: inherit; opacity: .85; }
.matrix td.reason { font-size: 12.5px; text-align: left; max-width: 220px; }
.num { font-weight: 600; font-size: 15px; }
.v-passed { background: #dafbe1; color: #116329; }
.v-failed { background: #ffebe9; color: #a40e26; }
.v-failed.ext-only { background: #fff8c5; color: #7d4e00; }
.v-skipped { background: #f6f8fa; color: #57606a; }
.v-not-run { background: #fff; color: #8c959f; }
.v-unsupported { color: #512a97;
  background: repeating-linear-gradient(135deg, #fbefff, #fbefff 8px, #f1e4fa 8px, #f1e4fa 16px); }
.v-error { background: #82071e; color: #fff; }
.badge { display: inline-block; border-radius: 10px; padding: 1px 9px; font-size: 12px;
         font-weight: 600; vertical-align: middle; border: 1px solid transparent; }
.badge.v-not-run { border-color: #d0d7de; }
.p-extended { background: #116329; color: #fff; }
.p-core { background: #4ac26b; color: #0b3d1a; }
.p-none { background: #eaeef2; color: #57606a; border-color: #d0d7de; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 12.5px; color: var(--muted);
          margin: 6px 0 18px; }
.legend .badge { font-weight: normal; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr));
         gap: 2px 24px; margin: 8px 0 12px; }
.fact { display: flex; gap: 10px; border-bottom: 1px dotted #eaeef2; padding: 1px 0; }
.fact .k { color: var(--muted); min-width: 128px; }
.fact .v { font-family: ui-monospace, monospace; font-size: 12.5px; word-break: break-all; }
.reasonbox { border-radius: 4px; padding: 8px 12px; margin: 8px 0; font-weight: 600; }
.reasonbox.findings { background: #fff8c5; border: 1px solid #d4a72c; font-weight: 400; }
.health { margin: 8px 0; font-size: 13px; }
.health table { border-collapse: collapse; margin: 4px 0; }
.health th, .health td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; }
.health td.h-ok { background: #dafbe1; } .health td.h-broken { background: #ffcecb; font-weight: 600; }
.health td.h-unknown { background: #eaeef2; color: #57606a; } .health td.h-na { color: #8c959f; }
.health.broken > .verdict { color: #a40e26; font-weight: 600; }
.configured { font-size: 13px; margin: 4px 0; }
details.family { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; }
details.family > summary { padding: 6px 10px; cursor: pointer; background: var(--bg2); }
details.family > .tests { padding: 4px 10px 8px; }
details.test { border-bottom: 1px solid #eaeef2; padding: 3px 0; }
details.test > summary { cursor: pointer; }
details.test > .body { padding: 6px 0 8px 22px; }
pre.msg { white-space: pre; overflow-x: auto; background: #fff8f7; border: 1px solid #ffcecb;
          padding: 8px 10px; max-height: 480px; overflow-y: auto; }
pre.cmd { white-space: pre-wrap; background: var(--bg2); border: 1px solid var(--line);
          padding: 6px 10px; margin: 4px 0; }
.dur { color: var(--muted); font-size: 12px; }
.tag { font-size: 11px; border: 1px solid var(--line); border-radius: 8px; padding: 0 6px;
       color: var(--muted); }
.charts { display: flex; flex-direction: column; gap: 8px; margin: 8px 0; }
svg.chart { max-width: 100%; height: auto; }
table.conv { border-collapse: collapse; margin: 10px 0; font-size: 13px; }
table.conv caption { text-align: left; padding: 4px 0; }
table.conv th, table.conv td { border: 1px solid #d0d7de; padding: 3px 8px; }
table.conv td.r { text-align: right; font-variant-numeric: tabular-nums; }
.budget[data-verdict="over budget"], .baseline[data-verdict="regression"] { color: #bc4c00; }
.v-ext-over { background: #fff8c5; }
ul.failures li { margin: 2px 0; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
.scale-charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 12px; }
.scale-figure { margin: 0; } .scale-figure figcaption { font-size: 12px; }
"""


def anchor(*parts: str) -> str:
    """An HTML id from ``parts``: lowercase letters, digits and ``-``; parts joined by ``--``.

    A cleaned part never contains ``--``, so ``("cell", "a-dns")`` and ``("cell", "a", "dns")``
    cannot collide.
    """
    return "--".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return fmt(value, "s")
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _badge(verdict: str, text: str | None = None) -> str:
    return f'<span class="badge v-{escape(verdict)}">{escape(text or verdict)}</span>'


def _profile_badge(profile: str) -> str:
    return f'<span class="badge p-{escape(profile)}">{escape(profile)}</span>'


# --- header ----------------------------------------------------------------------------


def _vendor_block(vendor: VendorInfo | None) -> str:
    if vendor is None:
        return ""
    contact = ", ".join(escape(c) for c in vendor.contact)
    notes = f"<dt>notes</dt><dd>{escape(vendor.notes)}</dd>" if vendor.notes else ""
    return (
        '<section class="vendor" id="vendor"><strong>Implementation under test</strong><dl>'
        f"<dt>implementation</dt><dd>{escape(vendor.implementation)}</dd>"
        f"<dt>version</dt><dd>{escape(vendor.version)}</dd>"
        f"<dt>contact</dt><dd>{contact}</dd>"
        f'<dt>url</dt><dd><a href="{escape(vendor.url)}">{escape(vendor.url)}</a></dd>'
        f"{notes}</dl></section>"
    )


def _legend() -> str:
    items = [
        _badge("passed") + " every test that ran passed",
        _badge("failed") + " a Core test failed",
        '<span class="badge v-failed ext-only">extended failed</span> only Extended tests failed',
        _badge("skipped") + " all skipped",
        _badge("not-run") + " no tests",
        _badge("unsupported") + " environment cannot run the cell",
        _badge("error") + " the run or its results broke",
        _profile_badge("extended")
        + " / "
        + _profile_badge("core")
        + " / "
        + _profile_badge("none")
        + " profile satisfied",
    ]
    return '<div class="legend">' + "".join(f"<span>{i}</span>" for i in items) + "</div>"


# --- matrix ----------------------------------------------------------------------------


def _family_td(cell: Cell, stats: FamilyStats) -> str:
    c = stats.counts
    ext_only = stats.verdict == "failed" and stats.core_verdict != "failed"
    classes = f"v-{stats.verdict}" + (" ext-only" if ext_only else "")
    if c.total == 0:
        body = '<span class="num">—</span><span class="sub">no tests</span>'
    else:
        details = [f"{c.failed} failed"] if c.failed else []
        if c.skipped:
            details.append(f"{c.skipped} skipped")
        if ext_only:
            details.append("core ok")
        body = (
            f'<span class="num">{c.passed}/{c.total}</span>'
            f'<span class="sub">{escape(" · ".join(details) or "passed")}</span>'
        )
    title = (
        f"{cell.key} / {stats.family}: {c.passed} passed, {c.failed} failed, "
        f"{c.skipped} skipped; core {stats.core_verdict}, extended {stats.extended_verdict}"
    )
    return (
        f'<td class="{classes}" data-cell="{escape(cell.key)}" '
        f'data-family="{escape(stats.family)}" data-verdict="{escape(stats.verdict)}" '
        f'data-passed="{c.passed}" data-failed="{c.failed}" data-skipped="{c.skipped}" '
        f'title="{escape(title)}"><a href="#{anchor("cell", cell.key, stats.family)}">'
        f"{body}</a></td>"
    )


def _performance_td(cell: Cell) -> str:
    """The budget verdict of a cell (results.json ``performance``), with what is over."""
    perf = cell.performance
    if not perf:
        return f'<td data-cell="{escape(cell.key)}" data-performance="none"><span class="sub">no budgets ' \
               "recorded (results.json before schema 3)</span></td>"
    verdict = str(perf.get("verdict") or "not measured")
    over = [r for r in perf.get("budgets") or () if r.get("verdict") == "over budget"]
    lines = [f"{r['measurement']} {r['statistic']} {_value_text(r)} > {fmt(float(r['budget_s']), 's')}"
             for r in over]
    baseline = perf.get("baseline") or {}
    if baseline:
        lines.append(f"{baseline.get('regressions', 0)} regressions against the baseline")
    sync = perf.get("min_sync_period_s")
    lines.append(f"minSyncPeriod {fmt(float(sync), 's')}" if isinstance(sync, int | float)
                 else "minSyncPeriod unknown")
    css = {"within budget": "v-passed", "over budget": "v-ext-over",
           "not measured": "v-not-run"}.get(verdict, "")
    return (f'<td class="{css} perf" data-cell="{escape(cell.key)}" data-performance="{escape(verdict)}">'
            f"<strong>{escape(verdict)}</strong>"
            + "".join(f'<span class="sub">{escape(line)}</span>' for line in lines) + "</td>")


def _value_text(row: Mapping[str, Any]) -> str:
    """A budget row's judged value (a histogram quantile may lie past the last bucket)."""
    return "past the last bucket" if row.get("value_s") is None else fmt(float(row["value_s"]), "s")


def _matrix(cells: Sequence[Cell], families: Sequence[str]) -> str:
    stats = {c.key: family_stats(c, families) for c in cells}
    head = ['<th class="family">family</th>']
    for c in cells:
        head.append(
            f'<th scope="col" data-cell="{escape(c.key)}"><a href="#{anchor("cell", c.key)}" '
            f'class="cellname">{escape(c.key)}</a>'
            f'<span class="sub">{escape(c.info.proxy_mode)} · {escape(c.info.cni)}</span></th>'
        )
    rows = ["<tr>" + "".join(head) + "</tr>"]
    verdict_row = ['<th class="family" scope="row">verdict</th>']
    profile_row = ['<th class="family" scope="row">profile</th>']
    for c in cells:
        v = cell_verdict(c)
        counts = cell_counts(c)
        amber = " ext-only" if only_extended_failed(c) else ""
        sub = (
            f"{counts.passed} passed · {counts.failed} failed · {counts.skipped} skipped"
            if c.status == "completed"
            else "did not run"
        )
        verdict_row.append(
            f'<td class="v-{escape(v)}{amber} cellverdict" data-cell="{escape(c.key)}" '
            f'data-verdict="{escape(v)}"><strong>{escape(v)}</strong>'
            f'<span class="sub">{escape(sub)}</span></td>'
        )
        partial = '<span class="sub partial">partial run: no profile</span>' if c.partial else ""
        profile_row.append(
            f'<td data-cell="{escape(c.key)}" data-profile="{escape(profile_of(c))}" '
            f'data-partial="{str(c.partial).lower()}">{_profile_badge(profile_of(c))}{partial}</td>'
        )
    perf_row = ['<th class="family" scope="row">performance <span class="tag">not conformance</span></th>']
    for c in cells:
        perf_row.append(_performance_td(c))
    body = ["<tr>" + "".join(verdict_row) + "</tr>", "<tr>" + "".join(profile_row) + "</tr>",
            "<tr>" + "".join(perf_row) + "</tr>"]
    for i, fam in enumerate(families):
        kind = "core" if fam in CORE_FAMILIES else "extended" if fam in EXTENDED_FAMILIES else "other"
        tds = [
            f'<th class="family" scope="row" data-family="{escape(fam)}">{escape(fam)} '
            f'<span class="tag">{kind}</span></th>'
        ]
        for c in cells:
            if c.status == "completed":
                tds.append(_family_td(c, stats[c.key][fam]))
            elif i == 0:
                reason = c.reason or c.status
                tds.append(
                    f'<td class="v-{escape(c.status)} reason" rowspan="{len(families)}" '
                    f'data-cell="{escape(c.key)}" data-verdict="{escape(c.status)}" '
                    f'title="{escape(reason)}"><strong>{escape(c.status)}</strong><br>'
                    f"{escape(_clip(reason, REASON_CLIP))}</td>"
                )
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        '<table class="matrix" id="matrix"><thead>'
        + rows[0]
        + "</thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )


# --- failures and charts ---------------------------------------------------------------


def _failures(cells: Sequence[Cell]) -> str:
    items = []
    for c in cells:
        for i, t in enumerate(c.tests):
            if t.failed:
                first = t.message.strip().splitlines()[0] if t.message.strip() else ""
                items.append(
                    f"<li>{_badge('failed', t.outcome)} <code>{escape(c.key)}</code> "
                    f'<a href="#{anchor("t", c.key, str(i))}"><code>{escape(t.id)}</code></a>'
                    f' <span class="muted">{escape(_clip(first, 160))}</span></li>'
                )
    broken = [
        f'<li>{_badge(c.status)} <a href="#{anchor("cell", c.key)}"><code>{escape(c.key)}</code>'
        f"</a> {escape(c.reason)}</li>"
        for c in cells
        if c.status != "completed"
    ]
    out = [f'<h2 id="failures">Failures ({len(items)})</h2>']
    out.append('<ul class="failures">' + "".join(items) + "</ul>" if items else "<p>No test failed.</p>")
    if broken:
        out.append(f"<h3>Cells that did not run ({len(broken)})</h3>")
        out.append('<ul class="failures">' + "".join(broken) + "</ul>")
    return "".join(out)


def _series(label: str, v: MeasurementView) -> Series:
    return Series(label=label, samples=v.samples, p50=v.p50, p90=v.p90, max=v.max)


def _comparison(cells: Sequence[Cell]) -> str:
    """One plot: for each change kind, one row per cell that measured it (latencies only)."""
    by_kind: dict[str, list[tuple[str, ChangeKind]]] = {}
    for c in cells:
        for change in convergence_of(c).changes:
            by_kind.setdefault(change.kind, []).append((c.key, change))
    if not by_kind:
        return ""
    kinds = list(by_kind)  # in the order they first appear across the cells
    series = [Series(label=cell_key, samples=ch.view.samples, p50=ch.overall.p50, p90=ch.overall.p90,
                     max=ch.overall.max, group=kind)
              for kind in kinds for cell_key, ch in by_kind[kind]]
    chart = distribution_chart(series, unit="s", title="Convergence: cells compared on each change kind")
    return (
        '<h2 id="convergence">Convergence across cells</h2>'
        '<p class="muted">One row per cell under each change kind, every node\'s samples together. '
        "Each dot is one sample; the box spans p25 to p75, the whisker min to max; solid line p50, "
        "dashed p90, dotted max.  kube-proxy's histograms are not plotted (a histogram knows its "
        "quantiles only to within a bucket): see each cell's tables.</p>"
        f'<figure class="compare" data-kinds="{escape(",".join(kinds))}">{chart}</figure>'
    )


def _num_cell(value: float | None) -> str:
    return "—" if value is None else escape(fmt(value, "s"))


def _stats_row(row: Row, resolution: float | None, *, strong: bool = False) -> str:
    """One row of a change kind's table; the resolution (worst over all nodes) on the first."""
    label = f"<strong>{escape(row.label)}</strong>" if strong else f"<code>{escape(row.label)}</code>"
    res = ("—" if resolution is None else f"±{resolution * 1000:.0f} ms") if strong else ""
    return (f'<tr data-node="{escape(row.label)}"><td>{label}</td><td class="r">{row.n}</td>'
            + "".join(f'<td class="r">{_num_cell(v)}</td>' for v in (row.p50, row.p90, row.p99, row.max))
            + f'<td class="r">{res}</td></tr>')


def _budget_of(cell: Cell, name: str) -> str:
    for r in (cell.performance or {}).get("budgets") or ():
        if r.get("measurement") == name:
            return (f'<span class="budget" data-verdict="{escape(str(r["verdict"]))}">'
                    f'{escape(r["statistic"])} {escape(_value_text(r))}, budget '
                    f'{escape(fmt(float(r["budget_s"]), "s"))}: '
                    f'<strong>{escape(str(r["verdict"]))}</strong></span>')
    return ""


def _baseline_of(cell: Cell, name: str) -> str:
    for r in ((cell.performance or {}).get("baseline") or {}).get("changes") or ():
        if r.get("measurement") != name:
            continue
        parts = []
        for key in ("p50", "p90"):
            b, a = r.get(f"{key}_before"), r.get(f"{key}_after")
            if isinstance(b, int | float) and isinstance(a, int | float):
                parts.append(f"{key} {fmt(float(b), 's')} → {fmt(float(a), 's')}")
        return (f'<span class="baseline" data-verdict="{escape(str(r["verdict"]))}">baseline: '
                f'{escape(", ".join(parts))} <strong>{escape(str(r["verdict"]))}</strong></span>')
    return ""


def _cell_convergence(cell: Cell) -> str:
    conv = convergence_of(cell)
    if conv.empty:
        return ""
    out = ['<div class="convergence"><h3>Convergence</h3>']
    perf = cell.performance
    if perf:
        sync = perf.get("min_sync_period_s")
        out.append(
            f'<p class="perfline" data-performance="{escape(str(perf.get("verdict")))}">Performance '
            f'(beside the conformance verdict, never changing it): <strong>{escape(str(perf.get("verdict")))}'
            f"</strong>; budgets assume minSyncPeriod "
            f"{'1 s (kube-proxy default)' if perf.get('basis') == 'reference' else 'as configured'}; "
            f"the cluster's: {escape(fmt(float(sync), 's')) if isinstance(sync, int | float) else 'unknown'} "
            f'({escape(str(perf.get("min_sync_period_evidence") or ""))}).'
            + (f' Baseline: <code>{escape(str(perf["baseline"].get("source")))}</code> '
               f'(regression: p50 or p90 over {perf["baseline"].get("factor")} times and '
               f'+{perf["baseline"].get("floor_s")} s).' if perf.get("baseline") else "")
            + "</p>")
    if conv.changes:
        out.append('<p class="muted">Black-box: a sampling loop on every node while the suite made each '
                   "change a few times; the delay from the API request to the first try showing it. "
                   "p50/p90/p99 by linear interpolation over n samples (with n of 3, p90 and p99 are near "
                   "the max); resolution is the largest gap between two tries: each delay is late by at "
                   "most that much.</p>")
        for change in conv.changes:
            v = change.view
            rows = [_stats_row(change.overall, change.resolution, strong=True)]
            rows += [_stats_row(r, None) for r in change.nodes]
            notes = " ".join(x for x in (_budget_of(cell, v.measurement.name),
                                         _baseline_of(cell, v.measurement.name)) if x)
            out.append(
                f'<table class="conv" data-kind="{escape(change.kind)}" data-measurement="{escape(v.key)}">'
                f"<caption><strong>{escape(change.kind)}</strong> <code>{escape(v.key)}</code> "
                f"{notes}</caption>"
                "<thead><tr><th>from node</th><th>n</th><th>p50</th><th>p90</th><th>p99</th><th>max</th>"
                "<th>resolution (worst)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
        chart = distribution_chart(
            [Series(label=ch.kind, samples=ch.view.samples, p50=ch.overall.p50, p90=ch.overall.p90,
                    max=ch.overall.max) for ch in conv.changes],
            unit="s", title=f"{cell.key}: delay per change kind ({ALL_NODES})")
        out.append(f'<div class="charts">{chart}</div>')
    for h in conv.histograms:
        shown = [f"{b:g}" for b in h.bounds[:8]] + (["…", f"{h.bounds[-1]:g}"] if len(h.bounds) > 8 else [])
        bounds = ", ".join(shown) or "not recorded"
        hist_rows = "".join(
            f'<tr data-node="{escape(n.node)}"><td><code>{escape(n.node)}</code></td>'
            f'<td class="r">{n.count:g}</td><td class="r">{_num_cell(n.mean)}</td>'
            f'<td class="r">{escape(n.p50.text()) if n.p50 else "—"}</td>'
            f'<td class="r">{escape(n.p99.text()) if n.p99 else "—"}</td></tr>'
            for n in h.nodes)
        out.append(
            f'<table class="conv hist" data-metric="{escape(h.metric)}"><caption><strong>{escape(h.kind)}'
            f"</strong> <code>{escape(h.metric)}</code> {_budget_of(cell, h.metric)}"
            f'<br><span class="muted">kube-proxy\'s histogram over this family, per node; its buckets '
            f"(upper bounds, s): {escape(bounds)}; a percentile is only known to lie "
            "in its bucket (lower, upper].</span></caption>"
            "<thead><tr><th>node</th><th>observations</th><th>mean</th><th>p50 in</th><th>p99 in</th></tr>"
            f"</thead><tbody>{hist_rows}</tbody></table>")
    if conv.legacy:
        legacy_rows = "".join(
            f'<tr><td><code>{escape(item.key)}</code></td><td>{escape(item.note)}</td>'
            f'<td>{escape(", ".join(fmt(x, "" if item.unit == "count" else item.unit) for x in item.values))}'
            "</td></tr>" for item in conv.legacy)
        out.append('<table class="conv legacy"><caption>kube-proxy statistics as recorded before '
                   "results.json schema 3 (one value per node; not plotted)</caption><thead><tr>"
                   "<th>statistic</th><th>meaning</th><th>per node</th></tr></thead>"
                   f"<tbody>{legacy_rows}</tbody></table>")
    for v in conv.others:
        out.append(f'<p class="muted">measurement <code>{escape(v.key)}</code> ({escape(v.unit)}): '
                   f"{escape(', '.join(fmt(x) for x in v.samples))}</p>")
    out.append("</div>")
    return "".join(out)


# --- per cell --------------------------------------------------------------------------


_HEALTH_CLASS = {"ok": "h-ok", "broken": "h-broken", "unknown": "h-unknown", "n/a": "h-na"}
_HEALTH_MARK = {"ok": "✓ ok", "broken": "✗ broken", "unknown": "? unknown", "n/a": "n/a"}


def _health(cell: Cell) -> str:
    """The data-plane health pass on top of the cell: node x layer, each cell's evidence as
    its tooltip, the broken ones spelled out below."""
    h = cell.info.health
    if h is None:
        return ""
    state = "healthy" if h.healthy else "broken"
    head = "".join(f"<th>{escape(layer)}</th>" for layer in h.layers)
    rows = []
    for node, cells in h.nodes:
        by_layer = {layer: (status, evidence) for layer, status, evidence in cells}
        tds = []
        for layer in h.layers:
            status, evidence = by_layer.get(layer, ("", ""))
            tds.append(f'<td class="{_HEALTH_CLASS.get(status, "")}" title="{escape(evidence)}" '
                       f'data-layer="{escape(layer)}" data-status="{escape(status)}">'
                       f"{escape(_HEALTH_MARK.get(status, status or '—'))}</td>")
        rows.append(f"<tr><th>{escape(node)}</th>{''.join(tds)}</tr>")
    broken = "".join(f"<li>{escape(b)}</li>" for b in h.broken)
    actions = "".join(f"<li>{escape(a)}</li>" for a in h.actions)
    return (f'<div class="health {state}" data-health="{state}"><div class="verdict">Data-plane health pass '
            f"({fmt_seconds(h.seconds)}): {escape(h.summary)}</div>"
            f"<table><tr><th>node</th>{head}</tr>{''.join(rows)}</table>"
            + (f"<ul>{broken}</ul>" if broken else "")
            + (f"<div>What the harness did:</div><ul>{actions}</ul>" if actions else "") + "</div>")


def _facts(cell: Cell, profile: str, verdict: str) -> str:
    info = cell.info

    def yesno(v: bool | None) -> str:
        return "—" if v is None else ("yes" if v else "no")

    rows: list[tuple[str, str]] = [
        ("status", cell.status),
        ("verdict", verdict),
        ("profile", profile),
        ("tox env", info.name),
        ("proxy mode", info.proxy_mode),
        ("CNI", info.cni),
        ("provider", info.provider or "—"),
        ("Kubernetes", info.kubernetes_version or "—"),
        ("nodes", "—" if info.nodes is None else str(info.nodes)),
        ("kernel", info.kernel or "—"),
        ("node image", info.node_image or "—"),
        ("images air-gapped", yesno(info.airgapped)),
        ("suite version", info.suite_version or "—"),
    ]
    rows += [(k.replace("_", " "), v) for k, v in info.extra]
    rows += [
        ("started", cell.started or "—"),
        ("finished", cell.finished or "—"),
        ("duration", fmt_seconds(cell.duration_s)),
    ]
    rows += [(k.removesuffix("_s").replace("_", " "), fmt_seconds(v)) for k, v in cell.timings]
    if cell.hypothesis_seed is not None:
        rows.append(("hypothesis seed", cell.hypothesis_seed))
    rows.append(("results.json sha256", cell.sha256 or "—"))
    return (
        '<div class="facts">'
        + "".join(
            f'<div class="fact" data-fact="{escape(anchor(k))}"><span class="k">{escape(k)}</span>'
            f'<span class="v">{escape(v)}</span></div>'
            for k, v in rows
        )
        + "</div>"
    )


def _test(cell: Cell, index: int, test: TestResult, out_dir: Path) -> str:
    profile = profile_of_test(test)
    parts = []
    if test.message.strip():
        parts.append(f'<pre class="msg">{escape(test.message.rstrip())}</pre>')
    parts.append(f'<div class="muted">node id: <code>{escape(test.id)}</code></div>')
    parts.append("<div>Reproduce:</div>")
    parts.append(f'<pre class="cmd">{escape(tox_command(cell, test))}</pre>')
    direct = pytest_command(cell, test)
    if direct:
        parts.append(f'<pre class="cmd">{escape(direct)}</pre>')
    target = diagnostics_target(cell, test)
    if target is not None:
        path, exists = target
        note = "" if exists else ' <span class="muted">(not found beside this report)</span>'
        parts.append(
            f'<div>Diagnostics: <a class="diag" href="{escape(href(path, out_dir))}">'
            f"{escape(test.diagnostics or '')}</a>{note}</div>"
        )
    if test.configuration:
        items = "".join(f"<li>{escape(line)}</li>" for line in test.configuration)
        parts.append('<div class="configured">Judged against the cluster\'s configuration:'
                     f"<ul>{items}</ul></div>")
    for m in test.measurements:
        parts.append(
            f'<div class="muted">measurement <code>{escape(m.name)}</code>: '
            f"{len(m.samples)} samples in {escape(m.unit)}</div>"
        )
    opened = " open" if test.failed else ""
    verdict = "failed" if test.failed else test.outcome
    why = f' title="{escape(test.profile_reason)}"' if test.profile_reason else ""
    return (
        f'<details class="test" id="{anchor("t", cell.key, str(index))}" '
        f'data-outcome="{escape(test.outcome)}"{opened}><summary>'
        f"{_badge(verdict, test.outcome)} <code>{escape(test.name)}</code> "
        f'<span class="tag"{why}>{profile}</span> <span class="dur">{fmt_seconds(test.duration_s)}'
        f'</span></summary><div class="body">{"".join(parts)}</div></details>'
    )


def _reruns(cell: Cell) -> str:
    """Later partial reruns, beside the full verdict (which they never replace)."""
    if not cell.reruns:
        return ""
    items = []
    for r in cell.reruns:
        tests = "".join(
            f'<li data-test="{escape(t.id)}">{_badge("failed" if t.failed else t.outcome, t.outcome)} '
            f"<code>{escape(t.name)}</code></li>" for t in r.tests
        )
        items.append(
            f'<li class="rerun" data-rerun="{escape(r.stamp)}"><strong>rerun {escape(r.stamp)}</strong> '
            f"({escape(r.selection)}; {escape(r.status)}): <ul>{tests}</ul></li>"
        )
    return ('<div class="reruns"><h3>Later partial reruns (beside the verdict above, not replacing it)</h3>'
            f"<ul>{''.join(items)}</ul></div>")


def _cell_section(cell: Cell, families: Sequence[str], out_dir: Path) -> str:
    verdict = cell_verdict(cell)
    profile = profile_of(cell)
    out = [
        f'<section class="cell" id="{anchor("cell", cell.key)}" data-cell="{escape(cell.key)}" '
        f'data-status="{escape(cell.status)}" data-verdict="{escape(verdict)}">',
        f"<h2>{escape(cell.key)} {_badge(verdict)} {_profile_badge(profile)}</h2>",
    ]
    if cell.status != "completed":
        out.append(
            f'<div class="reasonbox v-{escape(cell.status)}">{escape(cell.status)}: '
            f"{escape(cell.reason)}</div>"
        )
    if cell.partial:
        out.append(
            f'<div class="reasonbox partial" data-partial="true">partial run: only '
            f"{escape(cell.selection or 'part of the suite')} ran, so this cell earns no profile</div>"
        )
    if cell.info.findings:
        items = "".join(f"<li>{escape(f)}</li>" for f in cell.info.findings)
        out.append(f'<div class="reasonbox findings" data-findings="{len(cell.info.findings)}">'
                   f"Findings about the cluster (its own sources disagree):<ul>{items}</ul></div>")
    out.append(_health(cell))
    out.append(_facts(cell, profile, verdict))
    out.append(_reruns(cell))
    out.append(_cell_convergence(cell))
    stats = family_stats(cell, families)
    indexed = list(enumerate(cell.tests))
    for fam in families:
        tests = [(i, t) for i, t in indexed if t.family == fam]
        if not tests:
            continue
        s = stats[fam]
        opened = " open" if s.counts.failed else ""
        out.append(
            f'<details class="family" id="{anchor("cell", cell.key, fam)}" '
            f'data-family="{escape(fam)}"{opened}><summary><strong>{escape(fam)}</strong> '
            f"{_badge(s.verdict)} {s.counts.passed} passed · {s.counts.failed} failed · "
            f"{s.counts.skipped} skipped</summary>"
            '<div class="tests">' + "".join(_test(cell, i, t, out_dir) for i, t in tests) + "</div></details>"
        )
    if not cell.tests:
        out.append('<p class="muted">No tests were recorded for this cell.</p>')
    out.append("</section>")
    return "".join(out)


def render_html(
    cells: Sequence[Cell],
    *,
    summary: Mapping[str, Any],
    vendor: VendorInfo | None,
    out_dir: Path,
    scale: Sequence[ScaleRun] = (),
) -> str:
    """The whole page as a string (``scale``: the cells' scale.json, its own section)."""
    families = families_of(cells)
    verdicts: dict[str, int] = {}
    for c in cells:
        v = cell_verdict(c)
        verdicts[v] = verdicts.get(v, 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    meta = [
        f"generated {escape(str(summary['generated']))}",
        f"suite version {escape(str(summary.get('suite_version') or 'unknown'))}",
        f"{len(cells)} cells: {escape(tally)}",
    ]
    title = TITLE + (f" — {vendor.implementation} {vendor.version}" if vendor else "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{escape(TITLE)}</h1>",
        '<div class="meta">' + "".join(f"<span>{m}</span>" for m in meta) + "</div>",
        _vendor_block(vendor),
        "</header>",
        '<h2 id="overview">Matrix</h2>',
        _legend(),
        _matrix(cells, families),
        _failures(cells),
        _comparison(cells),
        scale_html(scale),
        "".join(_cell_section(c, families, out_dir) for c in cells),
        f"<footer>results sha256 <code>{escape(str(summary['results_sha256']))}</code> — "
        "check with <code>python -m reports &lt;results-dir&gt; --verify summary.json</code>."
        "</footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"
