"""fixtures.charts install/upgrade/uninstall and readiness waits, with a recording helm runner
and an in-memory cluster (the real helm/cluster path runs in the integration tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures import charts
from fixtures.charts import (
    SERVICE_NO_SELECTORS,
    SERVICE_SELECTORS,
    ChartError,
    Release,
    deep_merge,
    install,
    install_selectorless,
    selectorless_backend_names,
    uninstall,
    upgrade,
    wait_release_ready,
)
from fixtures.observations import ExecResult
from fixtures.poll import WaitTimeout

JSON = dict[str, Any]


class Helm:
    """Records helm calls (with the values file's content) and answers like helm does."""

    def __init__(self, manifest: list[JSON] | None = None, fail: str = "") -> None:
        self.calls: list[tuple[list[str], JSON | None]] = []
        self.manifest = manifest or []
        self.fail = fail
        self.revision = 0

    def __call__(self, argv: Sequence[str], *, timeout: float) -> ExecResult:
        args = list(argv)
        values = None
        if "-f" in args:
            values = yaml.safe_load(Path(args[args.index("-f") + 1]).read_text())
        self.calls.append((args, values))
        verb = args[1]
        if self.fail and verb == self.fail:
            return ExecResult(tuple(args), 1, "", 'Error: INSTALLATION FAILED: namespaces "x" not found')
        if verb in ("install", "upgrade"):
            self.revision += 1
            return ExecResult(tuple(args), 0, f'{{"name": "{args[2]}", "version": {self.revision}}}', "")
        if verb == "get":
            return ExecResult(tuple(args), 0, yaml.safe_dump_all(self.manifest), "")
        return ExecResult(tuple(args), 0, "", "")


def pod(name: str, *, ready: bool = True, ip: str = "", node: str = "w1", component: str = "backend") -> JSON:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": component}},
        "spec": {"nodeName": node},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def deployment(name: str, *, available: int) -> JSON:
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": available,
        },
    }


class Cluster:
    kubeconfig = Path("/tmp/svcc-kubeconfig")

    def __init__(self, objects: list[JSON], images: dict[str, str] | None = None) -> None:
        self.objects = objects
        self.images = dict(images or {})
        self.labelled: list[tuple[str, dict[str, str]]] = []

    def label_namespace(self, name: str, labels: Mapping[str, str]) -> None:
        self.labelled.append((name, dict(labels)))

    def get_object(self, kind: str, namespace: str, name: str) -> JSON | None:
        want = {"pods": "Pod", "deployments": "Deployment"}[kind]
        return next((o for o in self.objects if o["kind"] == want and o["metadata"]["name"] == name), None)

    def list_objects(
        self, kind: str, namespace: str, *, label_selector: str = "", field_selector: str = ""
    ) -> list[JSON]:
        return [o for o in self.objects if o["kind"] == "Pod"]


@pytest.fixture(autouse=True)
def fake_helm_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charts, "helm_binary", lambda: "helm")


def test_install_passes_kubeconfig_namespace_and_values_and_does_not_use_helm_wait() -> None:
    helm = Helm(manifest=[deployment("r1-backend", available=2), pod("client-w1")])
    cluster = Cluster([deployment("r1-backend", available=2), pod("client-w1")])
    rel = install(cluster, SERVICE_SELECTORS, "r1", "ns", {"backend": {"replicas": 2}}, runner=helm)
    argv, values = helm.calls[0]
    assert argv[:3] == ["helm", "install", "r1"]
    assert argv[3].endswith("charts/service-selectors")
    assert argv[argv.index("--kubeconfig") + 1] == "/tmp/svcc-kubeconfig"
    assert argv[argv.index("--namespace") + 1] == "ns"
    assert "--wait" not in argv
    assert values == {"backend": {"replicas": 2}}
    assert helm.calls[1][0][1:3] == ["get", "manifest"]
    assert rel == Release(
        "r1", "ns", argv_path(argv), Path("/tmp/svcc-kubeconfig"), {"backend": {"replicas": 2}}, 1
    )
    assert rel.selector == "app.kubernetes.io/instance=r1"


def argv_path(argv: list[str]) -> Path:
    return Path(argv[3])


def test_upgrade_merges_values_and_bumps_the_revision() -> None:
    helm = Helm()
    cluster = Cluster([])
    rel = install(
        cluster,
        SERVICE_SELECTORS,
        "r1",
        "ns",
        {"service": {"type": "ClusterIP", "name": "web"}},
        runner=helm,
        wait=False,
    )
    rel2 = upgrade(cluster, rel, {"service": {"type": "NodePort"}}, runner=helm, wait=False)
    assert rel2.values == {"service": {"type": "NodePort", "name": "web"}}
    assert rel2.revision == 2
    assert helm.calls[-1][1] == rel2.values
    rel3 = upgrade(cluster, rel2, {"service": {"type": "ClusterIP"}}, merge=False, runner=helm, wait=False)
    assert rel3.values == {"service": {"type": "ClusterIP"}}


def test_helm_failure_is_one_clear_error() -> None:
    with pytest.raises(ChartError, match=r"helm install r1 .*namespaces \"x\" not found"):
        install(Cluster([]), SERVICE_SELECTORS, "r1", "x", {}, runner=Helm(fail="install"))


def test_uninstall_waits_and_tolerates_a_missing_release() -> None:
    helm = Helm()
    rel = Release("r1", "ns", Path("charts/service-selectors"), Path("/k"))
    uninstall(Cluster([]), rel, runner=helm)
    assert helm.calls[0][0][:3] == ["helm", "uninstall", "r1"]
    assert "--wait" in helm.calls[0][0]

    def gone(argv: Sequence[str], *, timeout: float) -> ExecResult:
        return ExecResult(tuple(argv), 1, "", "Error: uninstall: Release not loaded: r1: release: not found")

    uninstall(Cluster([]), rel, runner=gone)


def test_readiness_wait_names_what_is_not_ready() -> None:
    objs = [deployment("r1-backend", available=1), pod("client-w1", ready=False, component="client")]
    helm = Helm(manifest=objs)
    rel = Release("r1", "ns", Path("x"), Path("/k"))
    with pytest.raises(WaitTimeout) as info:
        wait_release_ready(Cluster(objs), rel, timeout=0.05, runner=helm)
    message = str(info.value)
    assert "release r1 in ns to be ready" in message
    assert "deployment r1-backend" in message
    assert "pod client-w1 on w1: Running" in message


def test_readiness_wait_reports_missing_objects() -> None:
    helm = Helm(manifest=[pod("client-w2")])
    with pytest.raises(WaitTimeout, match="pod client-w2: missing"):
        wait_release_ready(Cluster([]), Release("r1", "ns", Path("x"), Path("/k")), timeout=0.05, runner=helm)


def test_selectorless_install_points_the_slice_at_the_backend_ips() -> None:
    backends = [
        pod("r2-backend-0", ip="10.244.1.5", node="w1"),
        pod("r2-backend-1", ip="10.244.2.6", node="w2"),
    ]
    helm = Helm(manifest=backends)
    rel = install_selectorless(
        Cluster(backends), "r2", "ns", {"backends": {"count": 2}}, targets=[1], runner=helm
    )
    verbs = [c[0][1] for c in helm.calls]
    assert verbs == ["install", "get", "upgrade", "get"]
    first, second = helm.calls[0][1], helm.calls[2][1]
    assert first is not None
    assert second is not None
    assert first["endpointSlice"]["endpoints"] == []
    assert second["endpointSlice"]["endpoints"] == [
        {"addresses": ["10.244.2.6"], "ready": True, "nodeName": "w2"}
    ]
    assert rel.revision == 2
    assert helm.calls[0][0][3].endswith(SERVICE_NO_SELECTORS)


def test_selectorless_legacy_endpoints_path() -> None:
    backends = [pod("r2-backend-0", ip="10.244.1.5", node="w1")]
    helm = Helm(manifest=backends)
    install_selectorless(Cluster(backends), "r2", "ns", {}, legacy_endpoints=True, runner=helm)
    first, second = helm.calls[0][1], helm.calls[2][1]
    assert first is not None
    assert second is not None
    assert first["endpointSlice"]["enabled"] is False
    assert first["endpoints"]["enabled"] is True
    assert second["endpoints"]["addresses"] == [{"ip": "10.244.1.5", "nodeName": "w1"}]


def test_selectorless_refuses_backends_without_ip() -> None:
    backends = [pod("r2-backend-0", ip="")]
    with pytest.raises(ChartError, match="has no IP"):
        install_selectorless(Cluster(backends), "r2", "ns", {}, runner=Helm(manifest=backends))


def test_helpers() -> None:
    assert deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "e": 2}) == {
        "a": {"b": 1, "c": [2]},
        "d": 1,
        "e": 2,
    }
    assert selectorless_backend_names("r2", 2) == ["r2-backend-0", "r2-backend-1"]
    assert selectorless_backend_names("r2", 1, "b") == ["b-0"]


# --------------------------------------------------------------------------- images, Pod Security, admission


def test_install_puts_the_clusters_images_under_the_values_and_the_test_values_win() -> None:
    helm = Helm()
    cluster = Cluster([], images={"agnhost": "reg.example/e2e-test-images/agnhost:2.56",
                                  "client": "reg.example/svcconform/client:1"})
    rel = install(cluster, SERVICE_SELECTORS, "r1", "ns",
                  {"images": {"client": "mine:1"}, "backend": {"replicas": 0}}, runner=helm, wait=False)
    _, values = helm.calls[0]
    assert values["images"] == {"agnhost": "reg.example/e2e-test-images/agnhost:2.56", "client": "mine:1"}
    assert rel.values["images"]["agnhost"].startswith("reg.example/")
    assert cluster.labelled == []  # no hostNetwork pods: the namespace keeps its baseline level


def test_a_release_with_host_network_pods_raises_its_namespace_to_privileged_first() -> None:
    helm = Helm()
    cluster = Cluster([])
    install(cluster, SERVICE_SELECTORS, "r1", "ns", {"clients": {"hostNetwork": True}}, runner=helm, wait=False)
    assert cluster.labelled == [("ns", {"pod-security.kubernetes.io/enforce": "privileged"})]


def test_helm_refused_by_pod_security_is_an_admission_refusal_not_a_chart_error() -> None:
    from fixtures.errors import AdmissionRefused

    class Refusing(Helm):
        def __call__(self, argv: Sequence[str], *, timeout: float) -> ExecResult:
            return ExecResult(tuple(argv), 1, "", 'Error: INSTALLATION FAILED: pods "client-w1" is forbidden: '
                              'violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)')

    with pytest.raises(AdmissionRefused, match="violates PodSecurity"):
        install(Cluster([]), SERVICE_SELECTORS, "r1", "ns", {}, runner=Refusing(), wait=False)


def test_a_deployment_whose_pods_admission_refuses_stops_the_wait_at_once() -> None:
    from fixtures.errors import AdmissionRefused

    dep = deployment("r1-backend", available=0)
    dep["status"]["conditions"] = [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                    "message": 'pods "r1-backend-x" is forbidden: violates PodSecurity '
                                               '"restricted:latest": allowPrivilegeEscalation != false'}]
    helm = Helm(manifest=[dep])
    with pytest.raises(AdmissionRefused, match="r1-backend"):
        install(Cluster([dep]), SERVICE_SELECTORS, "r1", "ns", {}, runner=helm)
