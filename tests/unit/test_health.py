"""The data-plane health pass (fixtures/health.py): the verdict per node and layer, the probe
script, and how failing checks use the verdict (early stop with the layer named, capped waits)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence

import pytest

from fixtures import health, poll, reachability
from fixtures.health import (
    BROKEN,
    DIRECT,
    DNS,
    DNS_POD,
    DNS_SERVICE,
    KUBE_PROXY,
    NODE_PORT,
    NODE_PORTS,
    OK,
    POD_NETWORK,
    SERVICE_PROXY,
    UNKNOWN,
    VIA_SERVICE,
    KubeProxyState,
    Outcome,
    Probe,
)
from fixtures.observations import ExecResult, MetricSample, MetricSamples
from fixtures.probes import Vantage
from fixtures.reachability import Mark, Table, TablesMismatch
from fixtures.timeouts import (
    BROKEN_LAYER_WAIT,
    DNS_PROPAGATION_TIMEOUT,
    KUBE_PROXY_ENDPOINT_LAG_TIMEOUT,
    POD_START_TIMEOUT,
)

NODES = ["cp", "worker", "worker2"]
GOOD = Outcome(True, "answered")


def bad(detail: str = "curl exit 28: timeout") -> Outcome:
    return Outcome(False, detail, "kubectl exec ... -- curl ...")


def all_ok(nodes: Sequence[str] = NODES, coredns: Sequence[str] = ("10.244.0.2",)) -> dict:
    out = {}
    for a in nodes:
        for b in nodes:
            out[(DIRECT, a, b)] = GOOD
            out[(VIA_SERVICE, a, b)] = GOOD
            if a != b:
                out[(NODE_PORT, a, b)] = GOOD
        out[(DNS_SERVICE, a, "svc")] = GOOD
        for ip in coredns:
            out[(DNS_POD, a, ip)] = GOOD
    return out


def proxies(**override: KubeProxyState) -> dict[str, KubeProxyState]:
    states = {n: KubeProxyState(pod=f"kube-proxy-{n}", ready=True, status="Running",
                                first=(100.0, 99.0), last=(110.0, 109.0)) for n in NODES}
    states.update(override)
    return states


def verdict(outcomes: dict, **kw) -> health.Health:
    kw.setdefault("service_ready", dict.fromkeys(NODES, True))
    kw.setdefault("coredns_pods", ["10.244.0.2"])
    kw.setdefault("kube_proxy", proxies())
    return health.judge(NODES, outcomes, **kw)


@pytest.fixture(autouse=True)
def _no_installed_verdict() -> Iterator[None]:
    yield
    health.install(None)


# --------------------------------------------------------------------------- the verdict


def test_a_working_cluster_is_healthy_on_every_node_and_layer() -> None:
    h = verdict(all_ok())
    assert h.healthy, h.broken()
    assert all(h.get(n, layer).status == OK for n in NODES for layer in health.LAYERS)  # type: ignore[union-attr]
    doc = h.to_json()
    assert doc["healthy"]
    assert doc["broken"] == []
    assert set(doc["nodes"]) == set(NODES)
    assert doc["nodes"]["worker"][SERVICE_PROXY]["status"] == "ok"


def test_clusterips_that_fail_where_pods_answer_directly_are_the_client_nodes_service_proxy() -> None:
    outcomes = all_ok()
    for b in NODES:
        outcomes[(VIA_SERVICE, "worker2", b)] = bad()
    h = verdict(outcomes)
    assert [f.line().split(":")[0] for f in h.broken()] == ["Service proxy on worker2"]
    finding = h.get("worker2", SERVICE_PROXY)
    assert finding is not None
    assert "though their pods answer directly" in finding.evidence
    assert finding.command.startswith("kubectl")
    assert h.get("worker2", POD_NETWORK).status == OK  # type: ignore[union-attr]
    assert h.summary() == "Service proxy broken on worker2"


def test_a_cut_between_two_nodes_is_the_pod_network_and_not_the_service_proxy() -> None:
    outcomes = all_ok()
    outcomes[(DIRECT, "worker", "worker2")] = bad()
    outcomes[(VIA_SERVICE, "worker", "worker2")] = bad()  # the Service cannot help either
    h = verdict(outcomes)
    pod_net = h.get("worker", POD_NETWORK)
    assert pod_net is not None
    assert pod_net.status == BROKEN
    assert "pods on worker do not reach pods on worker2" in pod_net.evidence
    assert h.get("worker", SERVICE_PROXY).status == OK  # type: ignore[union-attr]  # judged on the pairs that answer
    assert h.summary() == "pod network broken on worker"


def test_a_dead_data_plane_is_the_service_proxy_on_every_node() -> None:
    outcomes = all_ok()
    for key in list(outcomes):
        if key[0] in (VIA_SERVICE, NODE_PORT, DNS_SERVICE):
            outcomes[key] = bad()
    h = verdict(outcomes, kube_proxy=proxies(**{n: KubeProxyState() for n in NODES}))
    assert h.broken_everywhere(SERVICE_PROXY)
    assert h.broken_everywhere(NODE_PORTS)
    assert h.broken_everywhere(KUBE_PROXY)
    assert h.get("cp", KUBE_PROXY).evidence == "no kube-proxy pod runs on cp"  # type: ignore[union-attr]
    # the DNS Service fails because the Service proxy does, while CoreDNS answers directly
    assert h.get("cp", DNS).status == UNKNOWN  # type: ignore[union-attr]
    assert "Service proxy broken on every node" in h.summary()


def test_dns_with_no_coredns_pod_is_dns_broken_everywhere() -> None:
    outcomes = {k: v for k, v in all_ok().items() if k[0] != DNS_POD}
    for n in NODES:
        outcomes[(DNS_SERVICE, n, "svc")] = bad("dig exit 9: ;; connection timed out; no servers could be reached")
    h = verdict(outcomes, coredns_pods=[])
    assert h.broken_everywhere(DNS)
    assert "no CoreDNS pod" in h.get("worker", DNS).evidence  # type: ignore[union-attr]


def test_node_ports_are_judged_by_the_target_node() -> None:
    outcomes = all_ok()
    outcomes[(NODE_PORT, "cp", "worker2")] = bad()
    outcomes[(NODE_PORT, "worker", "worker2")] = bad()
    h = verdict(outcomes)
    finding = h.get("worker2", NODE_PORTS)
    assert finding is not None
    assert finding.status == BROKEN
    assert "does not answer from cp, worker" in finding.evidence
    assert h.get("worker", NODE_PORTS).status == OK  # type: ignore[union-attr]


def test_a_missing_or_not_ready_kube_proxy_is_named_per_node() -> None:
    states = proxies(worker2=KubeProxyState(pod="kube-proxy-x", ready=False, status="Pending"))
    del states["worker"]
    h = verdict(all_ok(), kube_proxy=states)
    assert h.get("worker", KUBE_PROXY).evidence == "no kube-proxy pod runs on worker"  # type: ignore[union-attr]
    assert "not Ready (Pending)" in h.get("worker2", KUBE_PROXY).evidence  # type: ignore[union-attr]
    assert h.get("cp", KUBE_PROXY).status == OK  # type: ignore[union-attr]


def test_metrics_that_answer_elsewhere_but_not_here_name_a_stopped_kube_proxy() -> None:
    states = proxies(worker=KubeProxyState(pod="kube-proxy-w", ready=True, status="Running",
                                           scrape_error="curl: (28) Operation timed out"))
    h = verdict(all_ok(), kube_proxy=states)
    finding = h.get("worker", KUBE_PROXY)
    assert finding is not None
    assert finding.status == BROKEN
    assert "stopped or hung" in finding.evidence
    # nowhere answering is not evidence against one node
    lone = {n: KubeProxyState(pod="p", ready=True, scrape_error="refused") for n in NODES}
    assert verdict(all_ok(), kube_proxy=lone).get("worker", KUBE_PROXY).status == UNKNOWN  # type: ignore[union-attr]


def test_changes_queued_and_not_programmed_at_both_reads_are_kube_proxy_not_programming() -> None:
    stuck = KubeProxyState(pod="kube-proxy-w", ready=True, status="Running",
                           first=(100.0, 105.0), last=(100.0, 112.0))
    h = verdict(all_ok(), kube_proxy=proxies(worker=stuck))
    finding = h.get("worker", KUBE_PROXY)
    assert finding is not None
    assert finding.status == BROKEN
    assert "does not program queued changes" in finding.evidence
    # a change queued after the first read and programmed by the second is fine
    moving = KubeProxyState(pod="p", ready=True, first=(100.0, 105.0), last=(106.0, 105.0))
    assert verdict(all_ok(), kube_proxy=proxies(worker=moving)).get("worker", KUBE_PROXY).status == OK  # type: ignore[union-attr]


def test_without_kube_proxy_the_layer_is_not_applicable() -> None:
    h = verdict(all_ok(), kube_proxy=None, proxy_mode="none")
    assert h.get("cp", KUBE_PROXY).status == "n/a"  # type: ignore[union-attr]
    assert h.healthy


# --------------------------------------------------------------------------- the probe script


def test_the_probe_script_runs_every_probe_in_parallel_and_reports_each() -> None:
    probes = [
        Probe(DIRECT, "a", "worker", ("sh", "-c", "echo backend-1")),
        Probe(VIA_SERVICE, "a", "worker", ("sh", "-c", "echo 'curl: (7) refused' >&2; exit 7")),
        Probe(DNS_SERVICE, "a", "svc", ("sh", "-c", "printf '10.96.0.1\\n'")),
    ]
    argv = health.probe_script(probes)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    got = health.parse_script_output(out)
    assert got[(DIRECT, "worker")] == (0, "backend-1")
    assert got[(VIA_SERVICE, "worker")][0] == 7
    assert "refused" in got[(VIA_SERVICE, "worker")][1]
    assert health.judge_output(DNS_SERVICE, *got[(DNS_SERVICE, "svc")]).ok
    assert not health.judge_output(DNS_SERVICE, 0, "").ok  # answered, but no address
    assert not health.judge_output(DIRECT, 0, "").ok


def test_probes_are_planned_per_node_with_brackets_for_ipv6() -> None:
    targets = health.Targets(pod_ips={"a": "fd00::5", "b": "10.244.1.5"}, cluster_ips={"a": "fd00:10::1"},
                             node_ports={"b": 31000}, node_ips={"a": "fc00::2", "b": "172.18.0.3"},
                             coredns_ips=["10.244.0.2"], service_ready={"a": True, "b": True})
    plan = health.plan_probes(["a", "b"], targets)
    urls = [p.argv[-1] for p in plan["a"] if p.kind in (DIRECT, VIA_SERVICE)]
    assert "http://[fd00::5]:8080/hostname" in urls
    assert "http://[fd00:10::1]:80/hostname" in urls
    assert [p.argv[-1] for p in plan["host:a"]] == ["http://172.18.0.3:31000/hostname"]
    assert plan["host:b"] == []  # a has no nodePort
    assert [p.target for p in plan["a"] if p.kind == DNS_POD] == ["10.244.0.2"]


def test_pod_and_service_manifests_pin_one_pod_per_node() -> None:
    pod = health.pod_manifest("Worker.2", "agnhost:2.56", run_id="r1")
    svc = health.service_manifest("Worker.2")
    assert pod["metadata"]["name"] == "health-worker-2"
    assert pod["spec"]["nodeName"] == "Worker.2"
    assert svc["spec"]["selector"] == {health.POD_LABEL: "health-worker-2"} == {
        health.POD_LABEL: pod["metadata"]["labels"][health.POD_LABEL]}
    assert svc["spec"]["type"] == "NodePort"


# --------------------------------------------------------------------------- using the verdict


def table(title: str, marks: dict[tuple[str, str], Mark]) -> Table:
    t = Table(title, [], [])
    for (r, c), m in marks.items():
        t.set(r, c, m)
    return t


def test_mismatches_on_a_broken_node_are_explained_and_others_are_not() -> None:
    outcomes = all_ok()
    for b in NODES:
        outcomes[(VIA_SERVICE, "worker2", b)] = bad()
    health.install(verdict(outcomes))
    expected = table("t", {("worker", "web-1"): Mark.REACHED, ("worker2", "web-1"): Mark.REACHED})
    on_broken = reachability.compare(expected, table("t", {("worker", "web-1"): Mark.REACHED,
                                                           ("worker2", "web-1"): Mark.BLOCKED}))
    reason = health.explain_mismatches(on_broken)
    assert reason is not None
    assert reason.startswith("Service proxy on worker2")
    on_healthy = reachability.compare(expected, table("t", {("worker", "web-1"): Mark.BLOCKED,
                                                            ("worker2", "web-1"): Mark.BLOCKED}))
    assert health.explain_mismatches(on_healthy) is None
    # an answer that should not come is never explained by a broken layer
    unexpected = reachability.compare(table("t", {("worker2", "web-1"): Mark.BLOCKED}),
                                      table("t", {("worker2", "web-1"): Mark.REACHED}))
    assert health.explain_mismatches(unexpected) is None
    # a column naming a node whose node ports are broken explains a node-port cell
    assert health.nodes_named("worker2 172.18.0.4:31000", NODES) == ["worker2"]


def test_a_table_wait_stops_early_naming_the_layer_once_two_observations_are_explained() -> None:
    outcomes = all_ok()
    outcomes[(DIRECT, "worker", "worker2")] = bad()
    health.install(verdict(outcomes))
    expected = table("clients -> web", {("worker", "web-1"): Mark.REACHED, ("cp", "web-1"): Mark.REACHED})
    calls = []

    def check() -> tuple[bool, str]:
        calls.append(1)
        cmp = reachability.compare(expected, table("clients -> web", {("worker", "web-1"): Mark.BLOCKED,
                                                                      ("cp", "web-1"): Mark.REACHED}))
        return cmp.ok, cmp.render()

    with pytest.raises(TablesMismatch) as err:
        reachability.wait_for_tables(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what="every client",
                                     interval=0.01)
    message = str(err.value)
    assert len(calls) == reachability.EXPLAINED_TRIES
    assert "stopped after 2 observations" in message
    assert "pod network on worker: pods on worker do not reach pods on worker2" in message
    assert "mismatching cell" in message  # the tables are still there


def test_a_healthy_verdict_cuts_nothing() -> None:
    health.install(verdict(all_ok()))
    assert health.cap_wait(KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, BROKEN_LAYER_WAIT) is None
    assert reachability._hooks == {}
    assert poll._hooks == {}


def test_a_layer_broken_everywhere_caps_the_data_plane_waits_that_depend_on_it() -> None:
    outcomes = all_ok()
    for n in NODES:
        outcomes[(DNS_SERVICE, n, "svc")] = bad("dig exit 9")
        outcomes[(DNS_POD, n, "10.244.0.2")] = bad("dig exit 9")
    health.install(verdict(outcomes))
    assert health.cap_wait(KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, BROKEN_LAYER_WAIT) is None  # DNS only
    cut = health.cap_wait(DNS_PROPAGATION_TIMEOUT, BROKEN_LAYER_WAIT)
    assert cut is not None
    assert cut[0] == BROKEN_LAYER_WAIT
    assert "DNS broken on every node" in cut[1]
    assert health.cap_wait(POD_START_TIMEOUT, BROKEN_LAYER_WAIT) is None  # not a data-plane wait
    clock = iter(range(1000)).__next__
    with pytest.raises(poll.WaitTimeout) as err:
        poll.wait_until(lambda: (False, "no answer"), timeout=DNS_PROPAGATION_TIMEOUT, what="a record",
                        clock=lambda: float(clock()), pause=lambda s: None)
    assert "3s (BROKEN_LAYER_WAIT)" in str(err.value)
    assert "cut from 30s (DNS_PROPAGATION_TIMEOUT)" in str(err.value)


# --------------------------------------------------------------------------- the pass against fakes


class PassKube:
    """The API reads of the pass: health pods with IPs, Services, slices, CoreDNS, kube-proxy."""

    kubeconfig = "/nonexistent"

    def __init__(self) -> None:
        self.created: list[str] = []

    def list_objects(self, kind: str, namespace: str, *, label_selector: str = "", field_selector: str = ""):
        if kind == "pods" and label_selector == health.POD_LABEL:
            return [{"metadata": {"name": health.pod_name(n)}, "spec": {"nodeName": n},
                     "status": {"podIP": f"10.244.{i}.9"}} for i, n in enumerate(NODES)]
        if kind == "pods" and label_selector == "k8s-app=kube-dns":
            return [{"status": {"podIP": "10.244.0.2", "phase": "Running"}}]
        if kind == "endpointslices":
            return [{"endpoints": [{"conditions": {"ready": True}}]}]
        if kind == "daemonsets":
            return [{"metadata": {"name": "kube-proxy"}}]
        if kind == "pods" and label_selector == "k8s-app=kube-proxy":
            return [{"metadata": {"name": f"kube-proxy-{n}"}, "spec": {"nodeName": n},
                     "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
                    for n in NODES]
        return []

    def get_service(self, namespace: str, name: str):
        i = [health.pod_name(n) for n in NODES].index(name)
        return {"spec": {"clusterIP": f"10.96.0.{20 + i}", "ports": [{"nodePort": 31000 + i}]}}


def scripted_vantage(node: str, fails: set[str]) -> Vantage:
    """Answers every probe of the script, except the URLs in ``fails`` (curl exit 28)."""

    def run(argv: Sequence[str], timeout: float) -> ExecResult:
        lines = []
        for line in argv[2].splitlines():
            if line.startswith("p "):
                kind, target = line.split()[1:3]
                url = line.split()[-2]
                if any(f in line for f in fails):
                    lines.append(f"{kind} {target} 28 curl: (28) Connection timed out")
                else:
                    lines.append(f"{kind} {target} 0 {'10.96.0.1' if kind.startswith('dns') else 'health-x'} {url}")
        return ExecResult(tuple(argv), 0, "\n".join(lines) + "\n", "", node)

    return Vantage(run, where=f"pod on {node}", reproduce_prefix=("kubectl", "exec", "p", "--"), node=node)


def samples(sync: float, queued: float) -> MetricSamples:
    return MetricSamples((MetricSample(health.LAST_SYNC, {}, sync), MetricSample(health.LAST_QUEUED, {}, queued)))


def test_the_pass_names_a_node_whose_clusterips_are_not_served_and_stops_at_its_timeout() -> None:
    pods = {n: scripted_vantage(n, {"10.96.0.2"} if n == "worker2" else set()) for n in NODES}
    hosts = {n: scripted_vantage(n, set()) for n in NODES}
    ticks = iter(x * 0.7 for x in range(1000))
    h = health.run(PassKube(), "ns", NODES, node_ips={n: f"172.18.0.{i + 2}" for i, n in enumerate(NODES)},
                   pod_vantages=pods, host_vantages=hosts,
                   scrape=lambda: {n: samples(100.0, 99.0) for n in NODES}, proxy_mode="iptables",
                   timeout=3, clock=lambda: next(ticks))
    assert [f.line().split(":")[0] for f in h.broken()] == ["Service proxy on worker2"]
    assert h.rounds >= 2  # the failing probes were retried, the answered ones not
    assert "10.96.0.2" in h.get("worker2", SERVICE_PROXY).command  # type: ignore[union-attr]


def test_the_pass_on_a_working_cluster_ends_after_one_round() -> None:
    pods = {n: scripted_vantage(n, set()) for n in NODES}
    h = health.run(PassKube(), "ns", NODES, node_ips={n: f"172.18.0.{i + 2}" for i, n in enumerate(NODES)},
                   pod_vantages=pods, host_vantages=pods, scrape=None, proxy_mode="iptables")
    assert h.healthy
    assert h.rounds == 1
    assert h.get("worker", KUBE_PROXY).evidence.endswith("(sync metrics not read)")  # type: ignore[union-attr]


def test_dns_that_fails_from_a_node_whose_pod_network_is_cut_is_not_blamed_on_dns() -> None:
    outcomes = all_ok()
    outcomes[(DIRECT, "worker", "cp")] = bad()
    outcomes[(DNS_SERVICE, "worker", "svc")] = bad("dig exit 9")
    outcomes[(DNS_POD, "worker", "10.244.0.2")] = bad("dig exit 9")
    h = verdict(outcomes)
    assert h.get("worker", DNS).status == UNKNOWN  # type: ignore[union-attr]
    assert "pod network is broken" in h.get("worker", DNS).evidence  # type: ignore[union-attr]
    assert h.summary() == "pod network broken on worker"


def test_a_text_wait_that_names_only_broken_nodes_stops_after_two_observations() -> None:
    outcomes = all_ok()
    for b in NODES:
        outcomes[(VIA_SERVICE, "worker2", b)] = bad()
    health.install(verdict(outcomes))
    detail = "clients with no answer yet: ['worker2']"
    assert health.explain_detail(KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, detail) is not None
    assert health.explain_detail(KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, "clients with no answer yet: ['worker']") is None
    assert health.explain_detail(KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, "client on worker: ok; on worker2: no") is None
    assert health.explain_detail(POD_START_TIMEOUT, detail) is None  # not a data-plane wait
    calls = []

    def check() -> tuple[bool, str]:
        calls.append(1)
        return False, detail

    with pytest.raises(poll.WaitTimeout) as err:
        poll.wait_until(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what="answers on every client",
                        pause=lambda s: None)
    assert len(calls) == poll.EXPLAINED_TRIES
    message = str(err.value)
    assert message.startswith("stopped after ")
    assert "of 32s (KUBE_PROXY_ENDPOINT_LAG_TIMEOUT)" in message
    assert "the health pass explains it: Service proxy on worker2" in message
