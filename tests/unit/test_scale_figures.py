"""The scale benchmark's figures, offline: kube-proxy's histograms pooled across nodes from
bucket deltas (clusterloader2's way) with quantiles read from the pooled buckets, per node
and pooled; sync durations full/partial with the fallback; rules, CPU and RSS; the
served-from-every-node samples and first-packet latency percentiles."""

from __future__ import annotations

import math

import pytest

from fixtures.convergence import Event, Measurement, Outcome
from fixtures.observations import Histogram
from fixtures.probes.metrics import parse_metrics
from fixtures.probes.traffic import target_of
from fixtures.scale import figures
from fixtures.scale.connect import connect_argv, parse_connect
from fixtures.scale.figures import (
    ConnectSamples,
    ServedFigure,
    bucket_quantile,
    connect_summary,
    histogram_figure,
    histogram_summary,
    sync_figures,
)

NP = "kubeproxy_network_programming_duration_seconds"


def hist_text(name: str, buckets: dict[str, float], total: float, count: float, family: str = "IPv4") -> str:
    lines = [f"# TYPE {name} histogram"]
    lines += [f'{name}_bucket{{ip_family="{family}",le="{le}"}} {c}' for le, c in buckets.items()]
    lines += [f'{name}_bucket{{ip_family="{family}",le="+Inf"}} {count}',
              f'{name}_sum{{ip_family="{family}"}} {total}', f'{name}_count{{ip_family="{family}"}} {count}']
    return "\n".join(lines) + "\n"


def scrape(*parts: str, where: str = "") -> figures.MetricSamples:
    return parse_metrics("".join(parts), where=where)


# Node a: before 2 observations (both <=0.25); after 12: 2 more <=0.25, 6 in (0.5, 1], 2 in (1, 2].
A0 = scrape(hist_text(NP, {"0.25": 2, "0.5": 2, "1": 2, "2": 2}, 0.3, 2))
A1 = scrape(hist_text(NP, {"0.25": 4, "0.5": 4, "1": 10, "2": 12}, 9.0, 12))
# Node b: before nothing; after 10 observations, all in (1, 2].
B0 = scrape("")
B1 = scrape(hist_text(NP, {"0.25": 0, "0.5": 0, "1": 0, "2": 10}, 15.0, 10))


def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    h = Histogram(NP, {}, ((0.25, 2.0), (0.5, 2.0), (1.0, 8.0), (2.0, 10.0), (math.inf, 10.0)), 10.0, 10.0)
    # rank 5 of 10 lies in (0.5, 1] which holds observations 3..8: 0.5 + 0.5 * (5 - 2) / 6
    assert bucket_quantile(0.5, h) == pytest.approx(0.75)
    # rank 9.9 in (1, 2] holding 9..10: 1 + 1 * (9.9 - 8) / 2
    assert bucket_quantile(0.99, h) == pytest.approx(1.95)
    # rank 1 in the first bucket: interpolated from 0
    assert bucket_quantile(0.1, h) == pytest.approx(0.125)


def test_a_quantile_past_the_last_bucket_is_its_highest_finite_bound() -> None:
    h = Histogram(NP, {}, ((1.0, 1.0), (2.0, 1.0), (math.inf, 4.0)), 4.0, 40.0)
    assert bucket_quantile(0.9, h) == 2.0
    assert figures.bucket_of(0.9, h) == [2.0, None]  # the bucket says "over 2 s", honestly


def test_no_observations_no_quantile() -> None:
    assert bucket_quantile(0.5, None) is None
    assert bucket_quantile(0.5, Histogram(NP, {}, ((1.0, 0.0), (math.inf, 0.0)), 0.0, 0.0)) is None
    assert histogram_summary(None)["p99"] is None


def test_network_programming_pools_bucket_deltas_across_nodes() -> None:
    fig = histogram_figure({"a": A0, "b": B0}, {"a": A1, "b": B1}, NP)
    assert fig is not None
    a, b, pooled = fig.by_node["a"], fig.by_node["b"], fig.pooled
    assert a.count == 10
    assert dict(a.buckets)[0.25] == 2  # only what the window added
    assert b.count == 10
    assert pooled is not None
    assert pooled.count == 20
    assert dict(pooled.buckets) == {0.25: 2, 0.5: 2, 1.0: 8, 2.0: 20, math.inf: 20}
    assert pooled.sum == pytest.approx(8.7 + 15.0)
    doc = fig.to_json()
    assert doc["bucket_bounds"] == [0.25, 0.5, 1.0, 2.0]
    # pooled p50: rank 10 of 20 in (1, 2], which holds observations 9..20: 1 + (10 - 8) / 12
    assert doc["pooled"]["p50"] == pytest.approx(1 + 2 / 12, abs=1e-6)
    assert doc["pooled"]["p50_bucket"] == [1.0, 2.0]
    assert doc["pooled"]["p99_bucket"] == [1.0, 2.0]
    # per node the same read of each node's own buckets: node a's p50 lies in (0.5, 1]
    assert doc["by_node"]["a"]["p50_bucket"] == [0.5, 1.0]
    assert doc["by_node"]["a"]["p50"] == pytest.approx(0.5 + 0.5 * (5 - 2) / 6, abs=1e-6)
    assert doc["by_node"]["b"]["p50_bucket"] == [1.0, 2.0]
    assert doc["missing_on"] == []


def test_pooling_is_not_averaging_the_nodes_quantiles() -> None:
    fig = histogram_figure({"a": A0, "b": B0}, {"a": A1, "b": B1}, NP)
    assert fig is not None
    per_node = [bucket_quantile(0.5, h) for h in fig.by_node.values()]
    assert bucket_quantile(0.5, fig.pooled) != pytest.approx(sum(v for v in per_node if v) / 2)


def test_a_kube_proxy_restarted_in_the_window_counts_from_zero() -> None:
    restarted = scrape(hist_text(NP, {"0.25": 1, "0.5": 1, "1": 1, "2": 1}, 0.1, 1))
    fig = histogram_figure({"a": A1}, {"a": restarted}, NP)
    assert fig is not None
    assert fig.by_node["a"].count == 1


def test_every_ip_family_series_is_added() -> None:
    dual = scrape(hist_text(NP, {"1": 1, "2": 1}, 0.5, 1), hist_text(NP, {"1": 0, "2": 3}, 4.5, 3, "IPv6"))
    fig = histogram_figure({}, {"a": dual}, NP)
    assert fig is not None
    assert fig.by_node["a"].count == 4


def test_a_node_without_the_histogram_is_named_and_none_at_all_is_no_figure() -> None:
    fig = histogram_figure({"a": A0, "b": B0}, {"a": A1, "b": scrape("")}, NP)
    assert fig is not None
    assert fig.missing == ("b",)
    assert histogram_figure({}, {"a": scrape("")}, NP) is None


def test_sync_durations_full_and_partial_where_exported() -> None:
    full, partial = figures.SYNC_FULL, figures.SYNC_PARTIAL
    before = {"a": scrape(hist_text(full, {"0.5": 1}, 0.2, 1), hist_text(partial, {"0.5": 0}, 0, 0))}
    after = {"a": scrape(hist_text(full, {"0.5": 2}, 0.6, 2), hist_text(partial, {"0.5": 5}, 0.5, 5),
                         hist_text(figures.SYNC_ANY, {"0.5": 7}, 1.1, 7))}
    out = sync_figures(before, after)
    assert set(out) == {"full", "partial"}
    assert out["full"].by_node["a"].count == 1
    assert out["partial"].by_node["a"].count == 5


def test_sync_duration_falls_back_to_the_combined_histogram() -> None:
    after = {"a": scrape(hist_text(figures.SYNC_ANY, {"0.5": 3}, 0.9, 3))}
    out = sync_figures({}, after)
    assert set(out) == {"all"}
    assert out["all"].metric == figures.SYNC_ANY
    assert sync_figures({}, {"a": scrape("")}) == {}


def test_rules_cpu_rss_and_pending_changes_from_the_gauges() -> None:
    text = ("# TYPE kubeproxy_sync_proxy_rules_iptables_total gauge\n"
            'kubeproxy_sync_proxy_rules_iptables_total{ip_family="IPv4",table="nat"} 40012\n'
            'kubeproxy_sync_proxy_rules_iptables_total{ip_family="IPv4",table="filter"} 9\n'
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 125.5\n"
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 8.3886e+07\n"
            "# TYPE kubeproxy_sync_proxy_rules_endpoint_changes_pending gauge\n"
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending 3\n"
            "# TYPE kubeproxy_sync_proxy_rules_service_changes_pending gauge\n"
            "kubeproxy_sync_proxy_rules_service_changes_pending 0\n")
    after = scrape(text)
    assert figures.iptables_rules(after) == {"nat": 40012, "filter": 9, "total": 40021}
    assert figures.iptables_rules(scrape("")) is None
    assert figures.pending_changes(after) == 3
    assert figures.pending_changes(scrape("")) is None
    before = scrape("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 100\n")
    assert figures.process_figures({"a": before}, {"a": after}) == {"a": {"cpu_seconds": 25.5, "rss_bytes": 83886000}}
    # a restarted kube-proxy (its counter went back): the CPU of the window is not known
    assert figures.process_figures({"a": after}, {"a": before})["a"]["cpu_seconds"] is None


def test_nft_objects_are_the_lines_of_its_table() -> None:
    assert figures.nft_lines("table ip kube-proxy {\n\tchain a {\n\t}\n\n}\n") == 4


def _m(event: Event, node: str, delay: float | None, resolution: float | None = 0.05) -> Measurement:
    return Measurement(event, node, delay, resolution if delay is not None else None,
                       "" if delay is not None else "no successful try")


def test_served_figure_every_node_is_the_slowest_node_per_sample() -> None:
    fig = ServedFigure()
    for i, (a, b) in enumerate([(0.2, 0.4), (0.3, 0.1), (0.5, None)]):
        event = Event("one more Service", float(i), Outcome.SERVED, label=f"more-{i}")
        fig.add({"a": _m(event, "a", a), "b": _m(event, "b", b, 0.08)})
    assert fig.every_node() == [0.4, 0.3]  # the third sample never reached b
    assert fig.by_node() == {"a": [0.2, 0.3, 0.5], "b": [0.4, 0.1]}
    assert sorted(fig.pooled()) == [0.1, 0.2, 0.3, 0.4, 0.5]
    doc = fig.to_json()
    assert doc["every_node"]["n"] == 2
    assert doc["every_node"]["p50"] == pytest.approx(0.35)
    assert doc["pooled"]["p50"] == pytest.approx(0.3)
    assert doc["by_node"]["a"]["samples"] == [0.2, 0.3, 0.5]
    assert doc["resolution"] == 0.08
    assert doc["not_converged"] == ["one more Service (more-2) from b: not converged (no successful try)"]


def test_first_packet_percentiles_per_node_and_pooled() -> None:
    a = ConnectSamples(tuple(i / 10000 for i in range(1, 201)), failures=0)  # 0.1 ms .. 20 ms
    b = ConnectSamples(tuple(0.001 for _ in range(200)), failures=2, errors=("2x curl exit 28 (timed out)",))
    doc = connect_summary({"a": a, "b": b})
    assert set(doc["by_node"]["a"]) >= {"p01", "p10", "p50", "p90", "p99", "n", "failures"}
    assert doc["by_node"]["a"]["n"] == 200
    assert doc["by_node"]["a"]["p01"] == pytest.approx(0.0001 + 0.0199 * 0.01)
    assert doc["by_node"]["a"]["p50"] == pytest.approx(0.01005)
    assert doc["by_node"]["b"]["p99"] == pytest.approx(0.001)
    assert doc["pooled"]["n"] == 400
    assert doc["pooled"]["failures"] == 2
    assert doc["by_node"]["b"]["errors"] == ["2x curl exit 28 (timed out)"]


def test_the_connect_loop_times_each_fresh_connection_in_the_pod() -> None:
    argv = connect_argv("10.96.0.10", 80, count=200)
    assert argv[:2] == ["sh", "-c"]
    assert "%{time_connect}" in argv[2]
    assert argv[3:] == [f"http://{target_of('10.96.0.10', 80)}/", "200", "1"]
    assert connect_argv("fd00::10", 80, count=3)[3] == "http://[fd00::10]:80/"
    out = ("__svcc_connect__ start\nc 0 0.000412\nc 0 0.000398\nc 7 0.000000\nc 28 0.000000\n"
           "c 52 0.000511\nnoise\n__svcc_connect__ end\n")
    samples = parse_connect(out, where="pod x")
    assert samples.times == (0.000412, 0.000398, 0.000511)  # 52: connected, then an empty reply
    assert samples.failures == 2
    assert samples.errors == ("1x curl exit 7 (connection refused)", "1x curl exit 28 (timed out)")


def test_a_connect_loop_that_never_ran_is_a_probe_error() -> None:
    from fixtures.probes import ProbeError

    with pytest.raises(ProbeError, match="printed nothing"):
        parse_connect("sh: curl: not found\n", where="pod x")
