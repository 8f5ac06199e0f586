"""kube-proxy's metrics address read from its configuration (ConfigMap, flag, default, all
addresses), and the metrics read from on each node: through the provider's node access,
else the hostNetwork vantage pods, else skipped with the honest reason (issue 21 item 3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from framework_fakes import FakeKube, FakeProvider

from fixtures import nodemetrics, preflight
from fixtures.observations import ExecResult, MetricSamples, Unknown
from fixtures.probes import Vantage
from fixtures.probes.metrics import MetricsEndpoint, endpoint_from_bind, metrics_unavailable_reason
from fixtures.providers.existing import configured_metrics_endpoint, read_kube_proxy_metrics
from fixtures.session import CellSession
from fixtures.spec import ClusterSpec

METRICS = """\
# TYPE kubeproxy_network_programming_duration_seconds histogram
kubeproxy_network_programming_duration_seconds_bucket{le="1"} 2
kubeproxy_network_programming_duration_seconds_bucket{le="+Inf"} 3
kubeproxy_network_programming_duration_seconds_sum 2.5
kubeproxy_network_programming_duration_seconds_count 3
"""


def kube_proxy(*args: str, name: str = "kube-proxy") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
            "spec": {"template": {"spec": {"containers": [{"command": ["/usr/local/bin/kube-proxy", *args]}]}}}}


def configmap(conf: str, name: str = "kube-proxy", key: str = "config.conf") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "kube-system"},
            "data": {key: "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n" + conf}}


KUBEADM = "--config=/var/lib/kube-proxy/config.conf"
EKS = "--config=/var/lib/kube-proxy-config/config"


# --------------------------------------------------------------------------- the address


def test_the_kubeadm_configmap_sets_the_address() -> None:
    found = configured_metrics_endpoint(kube_proxy(KUBEADM, "--hostname-override=$(NODE_NAME)"),
                                        [configmap('metricsBindAddress: "127.0.0.1:10300"\n')])
    assert found.detection() == {"value": "127.0.0.1:10300",
                                 "evidence": "kube-proxy ConfigMap kube-proxy metricsBindAddress: 127.0.0.1:10300"}
    assert (found.hosts, found.port) == (("127.0.0.1",), 10300)


def test_the_eks_configmap_on_all_addresses_is_read_on_loopback() -> None:
    eks = configmap("metricsBindAddress: 0.0.0.0:10249\nmode: iptables\n", name="kube-proxy-config", key="config")
    found = configured_metrics_endpoint(kube_proxy(EKS), [eks])
    assert found.address == "127.0.0.1:10249"
    assert found.evidence == ("kube-proxy ConfigMap kube-proxy-config metricsBindAddress: 0.0.0.0:10249 "
                              "(all addresses: read on loopback 127.0.0.1)")


@pytest.mark.parametrize(("bind", "family", "address", "note"), [
    (":10249", "ipv4", "127.0.0.1:10249", "all addresses: read on loopback 127.0.0.1"),
    (":10249", "ipv6", "[::1]:10249", "all addresses: read on loopback [::1]"),
    ("[::]:10251", "ipv4", "127.0.0.1:10251", "all addresses"),  # Go's [::] listener is dual-stack
    ("[::]:10249", "ipv6", "[::1]:10249", "all addresses"),
    ("0.0.0.0", "ipv6", "127.0.0.1:10249", "no port: kube-proxy's default 10249"),  # 0.0.0.0 is IPv4 only
    ("[::1]:10249", "ipv6", "[::1]:10249", ""),
    ("10.0.0.5:10249", "ipv4", "10.0.0.5:10249", "a specific address"),
    ("fd00::5", "ipv6", "[fd00::5]:10249", "no port"),
])
def test_all_addresses_mean_loopback_and_a_specific_one_is_read_there(bind: str, family: str, address: str,
                                                                     note: str) -> None:
    found = endpoint_from_bind(bind, ip_family=family, source="kube-proxy flag --metrics-bind-address")
    assert found is not None
    assert found.address == address
    assert note in found.evidence


@pytest.mark.parametrize("bind", ["localhost:10249", "[::1", "127.0.0.1:http", "127.0.0.1:0", "1.2.3.4:99999"])
def test_what_kube_proxy_would_not_bind_is_not_an_address(bind: str) -> None:
    assert endpoint_from_bind(bind, source="x") is None


def test_the_flag_sets_the_address_without_a_config_file() -> None:
    found = configured_metrics_endpoint(kube_proxy("--metrics-bind-address=0.0.0.0:10255", "--proxy-mode=ipvs"), [])
    assert found.address == "127.0.0.1:10255"
    assert found.evidence.startswith("kube-proxy flag --metrics-bind-address: 0.0.0.0:10255 (all addresses")
    split = configured_metrics_endpoint(kube_proxy("--metrics-bind-address", "127.0.0.1:10256"), [])
    assert split.address == "127.0.0.1:10256"


def test_the_flag_is_ignored_with_a_config_file_as_kube_proxy_ignores_it() -> None:
    found = configured_metrics_endpoint(kube_proxy(KUBEADM, "--metrics-bind-address=127.0.0.1:10999"),
                                        [configmap("metricsBindAddress: 127.0.0.1:10300\n")])
    assert found.address == "127.0.0.1:10300"
    assert found.evidence.endswith("; --metrics-bind-address=127.0.0.1:10999 is ignored with --config")


def test_an_empty_flag_disables_the_metrics_and_they_are_skipped_saying_so() -> None:
    found = configured_metrics_endpoint(kube_proxy("--metrics-bind-address="), [])
    assert found.disabled
    assert found.detection()["value"] == ""
    why = metrics_unavailable_reason(proxy_mode="iptables", cni="kindnet", provider="existing", node_access=False,
                                     vantages=True, endpoint=found)
    assert why == "kube-proxy serves no metrics: kube-proxy flag --metrics-bind-address='' (empty: disabled)"


@pytest.mark.parametrize(("daemonset", "configmaps", "family", "address", "why"), [
    # kubeadm writes the zero values out: an empty metricsBindAddress is kube-proxy's default
    (kube_proxy(KUBEADM), [configmap('metricsBindAddress: ""\n')], "ipv4", "127.0.0.1:10249",
     "kube-proxy ConfigMap kube-proxy metricsBindAddress is empty: kube-proxy's default metricsBindAddress "
     "127.0.0.1:10249 (ipv4 cluster)"),
    (kube_proxy(KUBEADM), [configmap("mode: nftables\n")], "ipv4", "127.0.0.1:10249",
     "kube-proxy ConfigMap kube-proxy has no metricsBindAddress: kube-proxy's default"),
    (kube_proxy(KUBEADM), [configmap("bindAddress: '::'\n")], "ipv4", "[::1]:10249", "(bindAddress ::)"),
    (kube_proxy(KUBEADM), [configmap("bindAddress: 0.0.0.0\n")], "ipv6", "127.0.0.1:10249", "(bindAddress 0.0.0.0)"),
    (kube_proxy(KUBEADM), [], "ipv4", "127.0.0.1:10249",
     "kube-proxy --config=/var/lib/kube-proxy/config.conf is in none of the ConfigMaps kube-proxy, kube-proxy-config"),
    (kube_proxy(), [], "ipv6", "[::1]:10249", "kube-proxy without --metrics-bind-address or a configuration"),
    (None, [], "ipv4", "127.0.0.1:10249", "no kube-proxy DaemonSet in kube-system: kube-proxy's default"),
    (kube_proxy(KUBEADM), [configmap("metricsBindAddress: nowhere:x\n")], "ipv4", "127.0.0.1:10249",
     "metricsBindAddress: nowhere:x is not an address (unreadable)"),
])
def test_without_an_address_it_is_kube_proxys_default_and_the_evidence_says_so(
    daemonset: dict[str, Any] | None, configmaps: list[dict[str, Any]], family: str, address: str, why: str
) -> None:
    found = configured_metrics_endpoint(daemonset, configmaps, family)
    assert found.address == address
    assert why in found.evidence
    assert "default" in found.evidence


def test_the_address_is_read_from_the_cluster_by_the_daemonsets_name_or_label() -> None:
    kube = FakeKube(objects={("daemonsets", "kube-system"): [kube_proxy(KUBEADM, name="kube-proxy-linux")],
                             ("configmaps", "kube-system"): [configmap("metricsBindAddress: 127.0.0.1:10333\n")]})
    assert read_kube_proxy_metrics(kube).address == "127.0.0.1:10333"  # type: ignore[arg-type]
    assert "no kube-proxy DaemonSet" in read_kube_proxy_metrics(FakeKube()).evidence  # type: ignore[arg-type]


# --------------------------------------------------------------------------- where it is read


class NoNodeAccess(FakeProvider):
    """A cluster someone else runs: nodes cannot be entered."""

    name = "existing"
    supports_node_exec = False


@dataclass
class Pod:
    """A hostNetwork vantage pod on ``node`` whose kube-proxy answers on ``port`` only."""

    node: str
    port: int = 10249
    calls: list[tuple[str, ...]] | None = None

    def vantage(self) -> Vantage:
        def run(argv: Sequence[str], timeout: float) -> ExecResult:
            assert self.calls is not None
            self.calls.append(tuple(argv))
            if argv[-1] == f"http://127.0.0.1:{self.port}/metrics":
                return ExecResult(tuple(argv), 0, METRICS, "", self.where)
            return ExecResult(tuple(argv), 7, "", f"curl: (7) Failed to connect to {argv[-1]}", self.where)

        return Vantage(run, where=self.where, reproduce_prefix=("kubectl", "-n", "pre", "exec", f"vantage-{self.node}",
                                                                "--"), node=self.node)

    @property
    def where(self) -> str:
        return f"pod pre/vantage-{self.node} on {self.node}"


def test_without_node_access_the_metrics_are_read_from_the_vantage_pods_at_the_configured_port() -> None:
    provider = NoNodeAccess(ClusterSpec())
    calls: list[tuple[str, ...]] = []
    pods = {n: Pod(n, port=10300 if n != "n-worker2" else 10249, calls=calls).vantage()
            for n in ("n-control-plane", "n-worker", "n-worker2")}
    endpoint = MetricsEndpoint(("127.0.0.1",), 10300, "kube-proxy ConfigMap kube-proxy metricsBindAddress: ...")
    metrics = nodemetrics.kube_proxy_metrics(provider, provider.facts(), endpoint=endpoint, vantages=pods)
    assert (metrics.unavailable, metrics.via) == (None, nodemetrics.VIA_VANTAGE_PODS)
    got = metrics.scrape_all()
    assert {c[-1] for c in calls} == {"http://127.0.0.1:10300/metrics"}
    ok = got["n-worker"]
    assert isinstance(ok, MetricSamples)
    assert ok.where == "pod pre/vantage-n-worker on n-worker"
    assert ok.histogram("kubeproxy_network_programming_duration_seconds") is not None
    failed = got["n-worker2"]  # kube-proxy there does not answer on 10300: unknown, naming the node
    assert isinstance(failed, Unknown)
    assert "scrape of 127.0.0.1:10300 failed on pod pre/vantage-n-worker2 on n-worker2" in failed.error
    assert metrics.reproduce("n-worker2") == ("kubectl -n pre exec vantage-n-worker2 -- curl -sS --noproxy '*' "
                                              "--max-time 5 http://127.0.0.1:10300/metrics")


def test_with_node_access_the_metrics_are_read_through_it_not_the_pods() -> None:
    provider = FakeProvider(ClusterSpec())  # kind: docker exec
    pods = {"n-worker": Pod("n-worker", calls=[]).vantage()}
    metrics = nodemetrics.kube_proxy_metrics(provider, provider.facts(), vantages=pods)
    assert metrics.via == nodemetrics.VIA_NODE_ACCESS
    assert sorted(metrics.vantages) == ["n-control-plane", "n-worker", "n-worker2"]
    assert metrics.vantages["n-worker"].where == "node n-worker"
    assert metrics.reproduce("n-worker").startswith("docker exec n-worker curl ")


def test_a_node_without_a_vantage_pod_is_named() -> None:
    provider = NoNodeAccess(ClusterSpec())
    metrics = nodemetrics.kube_proxy_metrics(provider, provider.facts(),
                                             vantages={"n-worker": Pod("n-worker", calls=[]).vantage()})
    assert metrics.via == "the hostNetwork vantage pods (none on n-control-plane, n-worker2)"


@pytest.mark.parametrize(("spec", "refused", "why"), [
    (ClusterSpec(proxy_mode="none", cni="cilium"), "",
     "the cluster runs no kube-proxy (proxy mode none, CNI cilium): there are no kube-proxy metrics to read"),
    (ClusterSpec(), 'pods "vantage-n-worker" is forbidden: hostNetwork is not allowed',
     "the existing provider has no access to nodes and admission refused the hostNetwork vantage pods "
     '(pods "vantage-n-worker" is forbidden: hostNetwork is not allowed): kube-proxy\'s metrics '
     "(127.0.0.1:10249) are read from each node's own network namespace"),
])
def test_the_metrics_are_skipped_only_without_kube_proxy_or_without_node_access_and_vantages(
    spec: ClusterSpec, refused: str, why: str
) -> None:
    provider = NoNodeAccess(spec)
    metrics = nodemetrics.kube_proxy_metrics(provider, provider.facts(), vantages={}, vantages_refused=refused)
    assert metrics.unavailable == why
    assert metrics.scrape_all() == {}


def test_vantage_pods_make_the_metrics_available_without_node_access() -> None:
    assert metrics_unavailable_reason(proxy_mode="nftables", cni="kindnet", provider="existing",
                                      node_access=False, vantages=True) is None


# --------------------------------------------------------------------------- the session


class PortKube(FakeKube):
    """kube-proxy's /proxyMode answers on the configured port only; records every exec."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.execs: list[tuple[str, ...]] = []

    def exec(self, namespace: str, pod: str, argv: Sequence[str], *, container: str | None = None,
             timeout: float = 0) -> ExecResult:
        self.execs.append(tuple(argv))
        return super().exec(namespace, pod, argv, container=container, timeout=timeout)


def test_the_preflight_records_the_address_and_asks_proxy_mode_there() -> None:
    kube = PortKube(objects={("daemonsets", "kube-system"): [kube_proxy(KUBEADM)],
                             ("configmaps", "kube-system"): [configmap("metricsBindAddress: 0.0.0.0:10300\n")]})
    provider = NoNodeAccess(ClusterSpec(), kube=kube)
    state = CellSession(spec=ClusterSpec(), run_id="r1", provider=provider, keep_cluster=False)
    found = state.run_preflight()
    assert state.detection["kube_proxy_metrics"] == {
        "value": "127.0.0.1:10300",
        "evidence": "kube-proxy ConfigMap kube-proxy metricsBindAddress: 0.0.0.0:10300 "
                    "(all addresses: read on loopback 127.0.0.1)"}
    asked = [argv for argv in kube.execs if "/proxyMode" in " ".join(argv)]
    assert len(asked) == 3
    assert all("http://127.0.0.1:10300/proxyMode" in argv[-1] for argv in asked)
    assert state.detection["proxy_mode_probe"]["value"] == "iptables"
    metrics = nodemetrics.kube_proxy_metrics(provider, provider.facts(), endpoint=state.kube_proxy_metrics,
                                             vantages=found.vantages)
    assert metrics.via == nodemetrics.VIA_VANTAGE_PODS
    assert metrics.endpoint.port == 10300


def test_the_proxy_mode_probe_takes_the_port() -> None:
    argv = preflight.proxy_mode_argv(["127.0.0.1", "[::1]"], 10300)
    assert "http://127.0.0.1:10300/proxyMode http://[::1]:10300/proxyMode" in argv[-1]
