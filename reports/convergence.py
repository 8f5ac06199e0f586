"""What the convergence section shows, derived from a cell's measurements (pure).

- **Change kinds** (black-box): for each change the suite made (service created, service
  deleted, endpoint added, endpoint removed, readiness lost) the delays until the data
  plane showed it, per node it was measured from and over all nodes: n, p50, p90, p99, max
  (linear interpolation, as the suite records them) and the resolution (the largest gap
  between two tries, the delays' error bound).
- **kube-proxy histograms** (white-box): per node, how many observations, their mean
  (exact: sum / count) and the bucket ``(lower, upper]`` holding p50 and p99 — a histogram
  knows a quantile only to within its bucket, so no single number is claimed.
- Counts and sums are never plotted; kube-proxy statistics recorded before results.json
  schema 3 (``…_seconds.count``/``.sum``/``.mean``/``.p50``/``.p90``, one sample per node)
  are listed as ``legacy`` rows, their p50/p90 as the bucket upper bounds they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reports.analysis import MeasurementView, measurements
from reports.model import Cell

#: Change kinds of measurements recorded before schema 3 named them (``kind``).
LEGACY_KINDS: dict[str, str] = {
    "service_created_to_served": "service created",
    "service_deleted_to_rejected": "service deleted",
    "pod_deleted_to_no_traffic": "endpoint removed (pod deleted)",
    "readiness_failed_to_no_traffic": "readiness lost",
    "scale_up_to_new_backend_served": "endpoint added (scale-up)",
}
#: Before schema 3 a scenario's resolution was its own measurement.
LEGACY_RESOLUTIONS: dict[str, tuple[str, ...]] = {
    "service_created_to_served": ("service_lifecycle.resolution",),
    "service_deleted_to_rejected": ("service_lifecycle.resolution",),
}
LEGACY_STATS = (".count", ".sum", ".mean", ".p50", ".p90")
ALL_NODES = "all nodes"


def interpolated(samples: Sequence[float], q: float) -> float | None:
    """Linear-interpolation percentile, ``q`` in 0..1 (what the suite records)."""
    ordered = sorted(samples)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Row:
    label: str  # a node, or ALL_NODES
    samples: tuple[float, ...]
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @property
    def n(self) -> int:
        return len(self.samples)


def _row(label: str, samples: Sequence[float]) -> Row:
    s = tuple(samples)
    return Row(label, s, interpolated(s, 0.5), interpolated(s, 0.9), interpolated(s, 0.99),
               max(s) if s else None)


@dataclass(frozen=True)
class ChangeKind:
    """One black-box measurement: a change kind, over all nodes and per node."""

    kind: str
    view: MeasurementView
    resolution: float | None
    nodes: tuple[Row, ...]  # empty before schema 3 (no per-node split recorded)

    @property
    def overall(self) -> Row:
        m = self.view.measurement
        s = m.samples
        p99 = m.p99 if m.p99 is not None else interpolated(s, 0.99)
        return Row(ALL_NODES, s, m.p50 if m.p50 is not None else interpolated(s, 0.5),
                   m.p90 if m.p90 is not None else interpolated(s, 0.9), p99,
                   m.max if m.max is not None else (max(s) if s else None))


@dataclass(frozen=True)
class Bucket:
    lower: float
    upper: float | None  # None: past the last bucket

    def text(self) -> str:
        upper = "+Inf" if self.upper is None else f"{self.upper:g}"
        return f"({self.lower:g}, {upper}] s"


@dataclass(frozen=True)
class HistogramNode:
    node: str
    count: float
    mean: float | None
    p50: Bucket | None
    p99: Bucket | None


@dataclass(frozen=True)
class HistogramView:
    metric: str
    kind: str
    bounds: tuple[float, ...]
    nodes: tuple[HistogramNode, ...]


@dataclass(frozen=True)
class Legacy:
    """A kube-proxy statistic as results.json before schema 3 recorded it (one value per node)."""

    key: str
    unit: str
    values: tuple[float, ...]
    note: str


@dataclass(frozen=True)
class Convergence:
    changes: tuple[ChangeKind, ...]
    histograms: tuple[HistogramView, ...]
    legacy: tuple[Legacy, ...]
    others: tuple[MeasurementView, ...]  # any other measurement (e.g. counts of another kind)

    @property
    def empty(self) -> bool:
        return not (self.changes or self.histograms or self.legacy or self.others)


def _bucket(raw: Any) -> Bucket | None:
    if not isinstance(raw, list | tuple) or len(raw) != 2 or not isinstance(raw[0], int | float):
        return None
    upper = raw[1]
    return Bucket(float(raw[0]), float(upper) if isinstance(upper, int | float) else None)


def _histogram(view: MeasurementView) -> HistogramView | None:
    h = view.measurement.histogram
    if not h:
        return None
    nodes = []
    for node, data in sorted((h.get("by_node") or {}).items()):
        if not isinstance(data, dict):
            continue
        mean = data.get("mean")
        nodes.append(HistogramNode(node, float(data.get("count") or 0),
                                   float(mean) if isinstance(mean, int | float) else None,
                                   _bucket(data.get("p50")), _bucket(data.get("p99"))))
    bounds = tuple(float(b) for b in h.get("bounds") or () if isinstance(b, int | float))
    return HistogramView(str(h.get("metric") or view.key), view.measurement.kind or view.key, bounds,
                         tuple(nodes))


def convergence_of(cell: Cell) -> Convergence:
    views = measurements(cell)
    by_name = {v.measurement.name: v for v in views}
    changes, histograms, legacy, others = [], [], [], []
    for v in views:
        m = v.measurement
        name = m.name
        if m.histogram:
            if (h := _histogram(v)) is not None:
                histograms.append(h)
            continue
        if name.startswith("kubeproxy_") and name.endswith(LEGACY_STATS):
            stat = name.rsplit(".", 1)[1]
            note = {"p50": "bucket upper bound of p50 (the p50 is at most this)",
                    "p90": "bucket upper bound of p90 (the p90 is at most this)",
                    "count": "observations", "sum": "sum of observed seconds",
                    "mean": "sum / count"}[stat]
            legacy.append(Legacy(v.key, m.unit, m.samples, note))
            continue
        if name.endswith(".resolution"):
            continue  # folded into its change kind
        kind = m.kind or LEGACY_KINDS.get(name)
        if m.unit != "s":
            others.append(v)
            continue
        resolution = m.resolution
        if resolution is None:
            for key in (f"{name}.resolution", *LEGACY_RESOLUTIONS.get(name, ())):
                if key in by_name and by_name[key].samples:
                    resolution = max(by_name[key].samples)
                    break
        nodes = tuple(_row(node, samples) for node, samples in sorted(m.by_node.items())) if m.by_node else ()
        changes.append(ChangeKind(kind or name, v, resolution, nodes))
    order = list(LEGACY_KINDS.values())
    changes.sort(key=lambda c: (order.index(c.kind) if c.kind in order else len(order), c.kind))
    return Convergence(tuple(changes), tuple(histograms), tuple(legacy), tuple(others))
