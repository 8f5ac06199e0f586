"""scale.json documents for the scale benchmark's offline tests, made by the benchmark's own
figure code from synthetic observations (so the schema and the report are tested against
what the runner really writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fixtures.convergence import Event, Measurement, Outcome
from fixtures.probes.metrics import parse_metrics
from fixtures.scale import figures
from fixtures.scale.document import ScaleDocument
from fixtures.scale.load import CreationStats
from fixtures.scale.runner import ScaleConfig, ScaleRun

NODES = ("kind-control-plane", "kind-worker", "kind-worker2")


def _hist(name: str, counts: dict[float, float], family: str = "IPv4") -> str:
    total = max(counts.values()) if counts else 0
    out = [f"# TYPE {name} histogram"]
    out += [f'{name}_bucket{{ip_family="{family}",le="{le:g}"}} {c:g}' for le, c in sorted(counts.items())]
    out += [f'{name}_bucket{{ip_family="{family}",le="+Inf"}} {total:g}',
            f'{name}_sum{{ip_family="{family}"}} {total * 0.4:g}', f'{name}_count{{ip_family="{family}"}} {total:g}']
    return "\n".join(out) + "\n"


def scrape(observed: float, *, cpu: float, rss: float, rules: float) -> figures.MetricSamples:
    """A kube-proxy scrape with ``observed`` network-programming observations so far."""
    np_buckets = {0.25: observed * 0.5, 0.5: observed * 0.8, 1.0: observed * 0.95, 2.0: observed}
    sync = {0.001: observed * 0.1, 0.032: observed * 0.6, 0.512: observed * 0.9, 1.024: observed}
    text = (_hist(figures.NETWORK_PROGRAMMING, np_buckets) + _hist(figures.SYNC_FULL, {k: v / 10 for k, v in sync.items()})
            + _hist(figures.SYNC_PARTIAL, sync)
            + "# TYPE process_cpu_seconds_total counter\n"
            f"process_cpu_seconds_total {cpu}\n# TYPE process_resident_memory_bytes gauge\n"
            f"process_resident_memory_bytes {rss}\n# TYPE kubeproxy_sync_proxy_rules_iptables_total gauge\n"
            f'kubeproxy_sync_proxy_rules_iptables_total{{ip_family="IPv4",table="nat"}} {rules}\n'
            f'kubeproxy_sync_proxy_rules_iptables_total{{ip_family="IPv4",table="filter"}} 12\n')
    return parse_metrics(text)


def served(delays: list[tuple[float, ...]], scenario: str) -> figures.ServedFigure:
    fig = figures.ServedFigure()
    for i, per_node in enumerate(delays):
        event = Event(scenario, 1000.0 + i, Outcome.SERVED, label=f"s{i}")
        fig.add({node: Measurement(event, node, d, 0.06) for node, d in zip(NODES, per_node, strict=True)})
    return fig


def step(size: int, *, slow: float) -> dict[str, Any]:
    """One ladder step whose latencies grow with ``slow`` (seconds per 1,000 Services)."""
    k = size / 1000 * slow
    s0 = {n: scrape(100, cpu=10, rss=40e6, rules=size * 4) for n in NODES}
    s1 = {n: scrape(100 + size, cpu=10 + k * 20, rss=40e6 + size * 4000, rules=size * 4 + 40) for n in NODES}
    s2 = {n: scrape(140 + size, cpu=12 + k * 20, rss=40e6 + size * 4000, rules=size * 4 + 40) for n in NODES}
    stats = CreationStats(objects=2 * size, seconds=size / 24.0, target_rate=50.0, batches=size // 100 + 1)
    connect = figures.connect_summary({n: figures.ConnectSamples(tuple(0.0002 + k * 0.0001 + i * 1e-6
                                                                       for i in range(200))) for n in NODES})
    sync_load = {key: f.to_json() for key, f in figures.sync_figures(s0, s1).items()}
    sync_steady = {key: f.to_json() for key, f in figures.sync_figures(s1, s2).items()}
    np_load = figures.histogram_figure(s0, s1, figures.NETWORK_PROGRAMMING)
    np_steady = figures.histogram_figure(s1, s2, figures.NETWORK_PROGRAMMING)
    assert np_load is not None
    assert np_steady is not None
    return {
        "services": size, "created": size, "seconds": size / 20.0, "creation": stats.to_json(),
        "bulk_convergence": {**served([(k, k * 1.1, k * 1.2)], "bulk").to_json(), "change": "the last create"},
        "one_more": {**served([(0.1 + k * 0.1 * i / 20, 0.12 + k * 0.1, 0.2) for i in range(20)],
                              "one more Service").to_json(), "change": "a new Service's EndpointSlice created"},
        "endpoint_change": {**served([(0.1 + k * 0.05, 0.11, 0.13) for _ in range(20)],
                                     "endpoint change").to_json(), "change": "one backend swapped"},
        "connect": {"first": {"service": "svc-00000", "cluster_ip": "10.96.0.20", **connect},
                    "last": {"service": f"svc-{size - 1:05d}", "cluster_ip": "10.96.40.1", **connect}},
        "network_programming": {"load": np_load.to_json(), "steady": np_steady.to_json()},
        "sync": {"load": sync_load, "steady": sync_steady},
        "rules": {"source": "kubeproxy_sync_proxy_rules_iptables_total (nat + filter)",
                  "by_node": dict.fromkeys(NODES, size * 4 + 52)},
        "kube_proxy": ScaleRun._process(s0, s1, s2),
        "notes": [],
    }


def document(tmp: Path, cell: str = "iptables-kindnet", *, ladder: tuple[int, ...] = (100, 300),
             slow: float = 1.0, status: str = "completed") -> dict[str, Any]:
    mode, cni = cell.split("-")[:2]
    doc = ScaleDocument(tmp / cell / "scale.json",
                        {"name": cell, "proxy_mode": mode, "cni": cni, "provider": "kind", "cluster": f"svcc-{cell}",
                         "kubernetes_version": "v1.34.4", "nodes": 3, "node_names": list(NODES), "kernel": "6.18.0",
                         "min_sync_period": "1s"},
                        ScaleConfig(ladder=ladder).to_json(), status=status, args=["--ladder", "100,300"])
    doc.preflight = {"quota_problems": [], "api_burst": {"writes": 60, "rate": 140.0, "throttled": 0},
                     "service_cidrs": ["10.96.0.0/16"], "metrics": "kube-proxy metrics at 127.0.0.1:10249",
                     "namespaces": ["svcc-scale-r1-abcd", "svcc-scaleload-r1-efgh"]}
    doc.steps = [step(size, slow=slow) for size in ladder]
    return doc.document()


def write(tmp: Path, cell: str = "iptables-kindnet", **kwargs: Any) -> Path:
    path = tmp / cell / "scale.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document(tmp, cell, **kwargs), indent=2))
    return path
