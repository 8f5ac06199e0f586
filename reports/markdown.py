"""``summary.md``: the verdict as GitHub-flavoured Markdown, for ``$GITHUB_STEP_SUMMARY``.

Matrix table (families x cells with the cell verdict and profile), the cells that did not
run with their reasons, the failures (each message truncated to :data:`MESSAGE_LINES` lines
and :data:`MESSAGE_CHARS` characters, at most :data:`MAX_FAILURES` listed) and the
convergence p50/p90/max table.  The whole page stays far below GitHub's 1 MiB limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from reports.analysis import (
    cell_verdict,
    families_of,
    family_stats,
    only_extended_failed,
    profile_of,
)
from reports.convergence import convergence_of
from reports.model import Cell
from reports.repro import tox_command
from reports.scale import ScaleRun, scale_markdown
from reports.svg import fmt
from reports.vendor import VendorInfo

MESSAGE_LINES = 25
MESSAGE_CHARS = 2000
MAX_FAILURES = 40
REASON_CHARS = 300

ICONS = {
    "passed": "✅",
    "failed": "❌",
    "ext-failed": "⚠️",
    "skipped": "⏭️",
    "not-run": "⬜",
    "unsupported": "🚫",
    "error": "💥",
}


def cell_text(text: str) -> str:
    """Safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def truncate(message: str, lines: int = MESSAGE_LINES, chars: int = MESSAGE_CHARS) -> str:
    """At most ``lines`` lines and ``chars`` characters, saying how much was cut."""
    text = message.rstrip()
    kept = text.splitlines()
    cut_lines = len(kept) - lines
    if cut_lines > 0:
        kept = kept[:lines]
    out = "\n".join(kept)
    if len(out) > chars:
        out = out[:chars].rstrip()
        return out + f"\n… (truncated; {len(text) - len(out)} more characters in report.html)"
    if cut_lines > 0:
        return out + f"\n… ({cut_lines} more lines in report.html)"
    return out


def fence(text: str) -> str:
    """A code fence longer than any backtick run inside ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _verdict_icon(cell: Cell) -> str:
    return ICONS["ext-failed"] if only_extended_failed(cell) else ICONS[cell_verdict(cell)]


def _family_cell(cell: Cell, fam: str, stats: Mapping[str, Any]) -> str:
    s = stats[fam]
    if cell.status != "completed":
        return f"{ICONS[cell.status]} {cell.status}"
    if s.counts.total == 0:
        return "—"
    icon = ICONS["ext-failed"] if s.verdict == "failed" and s.core_verdict != "failed" else (ICONS[s.verdict])
    text = f"{icon} {s.counts.passed}/{s.counts.total}"
    if s.counts.skipped:
        text += f" ({s.counts.skipped} skipped)"
    return text


def render_markdown(cells: Sequence[Cell], *, summary: Mapping[str, Any], vendor: VendorInfo | None,
                    scale: Sequence[ScaleRun] = ()) -> str:
    families = families_of(cells)
    out: list[str] = ["## svcconform — Service networking conformance", ""]
    header = (
        f"Generated {summary['generated']} · suite version "
        f"{summary.get('suite_version') or 'unknown'} · {len(cells)} cells"
    )
    out += [header, ""]
    if vendor:
        out += [
            f"**Implementation:** [{cell_text(vendor.implementation)} "
            f"{cell_text(vendor.version)}]({vendor.url}) · contact: "
            f"{cell_text(', '.join(vendor.contact))}",
            "",
        ]
        if vendor.notes:
            out += [f"> {cell_text(vendor.notes)}", ""]

    # matrix
    out.append("| family | " + " | ".join(f"`{cell_text(c.key)}`" for c in cells) + " |")
    out.append("| --- | " + " | ".join(":-:" for _ in cells) + " |")
    out.append("| **verdict** | " + " | ".join(f"{_verdict_icon(c)} {cell_verdict(c)}" for c in cells) + " |")
    out.append("| **profile** | " + " | ".join(
        f"**{profile_of(c)}**" + (" (partial run)" if c.partial else "") for c in cells) + " |")
    out.append("| **performance** (not conformance) | "
               + " | ".join(_performance_cell(c) for c in cells) + " |")
    stats = {c.key: family_stats(c, families) for c in cells}
    for fam in families:
        out.append(f"| {fam} | " + " | ".join(_family_cell(c, fam, stats[c.key]) for c in cells) + " |")
    out += [
        "",
        "✅ passed · ❌ Core failed · ⚠️ only Extended failed · ⏭️ skipped · "
        "🚫 unsupported · 💥 error. Profile: `extended` ⊃ `core` ⊃ `none`.",
        "",
    ]

    partial = [c for c in cells if c.partial or c.reruns]
    if partial:
        out += ["### Partial runs", ""]
        for c in partial:
            if c.partial:
                ran = cell_text(c.selection or "part of the suite")
                out.append(f"- **{cell_text(c.key)}** ran only {ran}: no profile until a whole-suite run")
            for r in c.reruns:
                outcomes = ", ".join(f"`{cell_text(t.name)}` {t.outcome}" for t in r.tests[:8])
                more = f" and {len(r.tests) - 8} more" if len(r.tests) > 8 else ""
                out.append(f"- **{cell_text(c.key)}** rerun `{r.stamp}` ({cell_text(r.selection)}, "
                           f"beside the full verdict above, not replacing it): {outcomes}{more}")
        out.append("")

    broken = [c for c in cells if c.status != "completed"]
    if broken:
        out += [f"### Cells that did not run ({len(broken)})", ""]
        for c in broken:
            reason = cell_text(c.reason)
            if len(reason) > REASON_CHARS:
                reason = reason[: REASON_CHARS - 1] + "…"
            out.append(f"- {ICONS[c.status]} **{cell_text(c.key)}** — {c.status}: {reason}")
        out.append("")

    checked = [c for c in cells if c.info.health is not None]
    if checked:
        out += ["### Data-plane health pass", ""]
        for c in checked:
            h = c.info.health
            assert h is not None
            icon = "✅" if h.healthy else "❌"
            out.append(f"- {icon} **{cell_text(c.key)}**: {cell_text(h.summary)}")
            out += [f"  - {cell_text(b)}" for b in h.broken]
            out += [f"  - harness: {cell_text(a)}" for a in h.actions]
        out.append("")

    findings = [(c, f) for c in cells for f in c.info.findings]
    if findings:
        out += [f"### Findings about the clusters ({len(findings)})", ""]
        out += [f"- **{cell_text(c.key)}**: {cell_text(f)}" for c, f in findings]
        out.append("")

    failed = [(c, t) for c in cells for t in c.tests if t.failed]
    out += [f"### Failures ({len(failed)})", ""]
    if not failed:
        out += ["No test failed.", ""]
    for c, t in failed[:MAX_FAILURES]:
        message = truncate(t.message) or "(no message)"
        f = fence(message)
        out += [
            f"<details><summary><code>{_html(c.key)}</code> "
            f"<code>{_html(t.id)}</code> ({t.outcome})</summary>",
            "",
            f + "text",
            message,
            f,
            "",
            f"Reproduce: `{tox_command(c, t)}`"
            + (f" · diagnostics: `{c.key}/{t.diagnostics}`" if t.diagnostics else ""),
            "",
            "</details>",
            "",
        ]
    if len(failed) > MAX_FAILURES:
        out += [f"… and {len(failed) - MAX_FAILURES} more failures in report.html.", ""]

    out += _convergence(cells)
    out += scale_markdown(scale)
    out.append(f"results sha256 `{summary['results_sha256']}`")
    return "\n".join(out) + "\n"


def _performance_cell(cell: Cell) -> str:
    perf = cell.performance
    if not perf:
        return "—"
    verdict = str(perf.get("verdict") or "not measured")
    over = [r for r in perf.get("budgets") or () if r.get("verdict") == "over budget"]
    text = ("⚠️ " if over else "") + verdict
    if over:
        text += ": " + ", ".join(f"`{r['measurement']}`" for r in over)
    baseline = perf.get("baseline")
    if baseline:
        text += f"; {baseline.get('regressions', 0)} regressions vs baseline"
    return cell_text(text)


def _convergence(cells: Sequence[Cell]) -> list[str]:
    """Per change kind and node: n, p50/p90/p99/max and resolution; kube-proxy's histogram
    as the buckets holding p50/p99; the budgets and baseline changes."""
    out: list[str] = []
    views = [(c, convergence_of(c)) for c in cells]
    changes = [(c, ch) for c, conv in views for ch in conv.changes]
    if changes:
        out += ["### Convergence", "",
                "Delay from the API request until a node's sampling loop showed the change "
                "(linear-interpolation percentiles; resolution = the delays' error bound).", "",
                "| cell | change kind | from node | n | p50 | p90 | p99 | max | resolution |",
                "| --- | --- | --- | --: | --: | --: | --: | --: | --: |"]
        for c, ch in changes:
            res = "—" if ch.resolution is None else f"±{ch.resolution * 1000:.0f} ms"
            for i, row in enumerate((ch.overall, *ch.nodes)):
                vals = [fmt(x, "s") if x is not None else "—" for x in (row.p50, row.p90, row.p99, row.max)]
                out.append(f"| `{cell_text(c.key)}` | {cell_text(ch.kind)} | "
                           + (f"**{row.label}**" if i == 0 else f"`{cell_text(row.label)}`")
                           + f" | {row.n} | " + " | ".join(vals) + f" | {res if i == 0 else ''} |")
        out.append("")
    hists = [(c, h) for c, conv in views for h in conv.histograms]
    if hists:
        out += ["kube-proxy's own histograms over the convergence family (a percentile is known only "
                "to lie in its bucket (lower, upper]):", "",
                "| cell | metric | node | observations | mean | p50 in | p99 in |",
                "| --- | --- | --- | --: | --: | --: | --: |"]
        for c, h in hists:
            for n in h.nodes:
                out.append(f"| `{cell_text(c.key)}` | `{h.metric}` | `{cell_text(n.node)}` | {n.count:g} | "
                           f"{fmt(n.mean, 's') if n.mean is not None else '—'} | "
                           f"{n.p50.text() if n.p50 else '—'} | {n.p99.text() if n.p99 else '—'} |")
        out.append("")
    judged = [c for c in cells if c.performance and c.performance.get("budgets")]
    if judged:
        out += ["### Performance budgets", "",
                "Beside the conformance verdict, never changing it (fixtures/performance.py).", "",
                "| cell | measurement | statistic | value | budget | verdict |",
                "| --- | --- | --- | --: | --: | --- |"]
        for c in judged:
            assert c.performance is not None
            for r in c.performance.get("budgets") or ():
                value = "past the last bucket" if r.get("value_s") is None else fmt(float(r["value_s"]), "s")
                mark = "⚠️ " if r.get("verdict") == "over budget" else ""
                out.append(f"| `{cell_text(c.key)}` | `{r['measurement']}` | {r['statistic']} | {value} | "
                           f"{fmt(float(r['budget_s']), 's')} | {mark}{r['verdict']} |")
            sync = c.performance.get("min_sync_period_s")
            out.append(f"| `{cell_text(c.key)}` | kube-proxy minSyncPeriod | | "
                       f"{fmt(float(sync), 's') if isinstance(sync, int | float) else 'unknown'} | | "
                       f"{cell_text(str(c.performance.get('min_sync_period_evidence') or ''))} |")
        out.append("")
    compared = [c for c in cells if c.performance and c.performance.get("baseline")]
    for c in compared:
        assert c.performance is not None
        base = c.performance["baseline"]
        out += [f"Against baseline `{cell_text(str(base.get('source')))}` ({base.get('regressions', 0)} "
                f"regressions: p50 or p90 over {base.get('factor')} times and +{base.get('floor_s')} s):", "",
                "| cell | measurement | p50 before → after | p90 before → after | verdict |",
                "| --- | --- | --- | --- | --- |"]
        for r in base.get("changes") or ():
            pairs = []
            for key in ("p50", "p90"):
                b, a = r.get(f"{key}_before"), r.get(f"{key}_after")
                pairs.append(" → ".join(fmt(float(x), "s") if isinstance(x, int | float) else "—"
                                        for x in (b, a)))
            mark = "⚠️ " if r.get("verdict") == "regression" else ""
            out.append(f"| `{cell_text(c.key)}` | `{r['measurement']}` | {pairs[0]} | {pairs[1]} | "
                       f"{mark}{r['verdict']} |")
        out.append("")
    return out


def _html(text: str) -> str:
    return escape(text)
