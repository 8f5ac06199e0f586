"""Kube against a loopback fake API server (real official client), and its pure helpers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from framework_fakes import FakeApiServer, pod, write_kubeconfig

from fixtures.errors import KubeError, NeverReady
from fixtures.kube import (
    RC_TRANSPORT_ERROR,
    ApiError,
    Kube,
    deployment_available,
    exec_status,
    pod_info,
    pod_status_summary,
    ready_endpoint_addresses,
)
from fixtures.poll import WaitTimeout
from fixtures.tools import RC_CANNOT_EXECUTE, RC_NOT_FOUND, RC_TIMED_OUT


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kube(api: FakeApiServer, tmp_path: Path) -> Iterator[Kube]:
    k = Kube(api.kubeconfig(tmp_path / "kubeconfig"))
    yield k
    k.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- through the client ----------------------------------------------------------


def test_server_version_sends_the_token(kube: Kube, api: FakeApiServer) -> None:
    assert kube.server_version() == "v1.34.4"
    assert api.requests[-1].headers.get("authorization") == "Bearer test-token"


def test_list_objects_passes_selectors_and_fills_kind(kube: Kube, api: FakeApiServer) -> None:
    api.collections["/api/v1/namespaces/ns1/pods"] = [
        pod("web-1", "ns1", "w1", "10.244.1.5", labels={"app": "web"}),
        pod("client", "ns1", "w2", "10.244.2.9", labels={"app": "client"}),
    ]
    items = kube.list_objects("pods", "ns1", label_selector="app=web")
    assert [i["metadata"]["name"] for i in items] == ["web-1"]
    assert items[0]["kind"] == "Pod"
    assert api.requests[-1].query["labelSelector"] == ["app=web"]
    infos = kube.pods("ns1")
    assert [(p.name, p.node, p.ip, p.ready) for p in infos] == [
        ("client", "w2", "10.244.2.9", True), ("web-1", "w1", "10.244.1.5", True)]


def test_endpoint_slices_are_selected_by_service_name(kube: Kube, api: FakeApiServer) -> None:
    api.collections["/apis/discovery.k8s.io/v1/namespaces/ns1/endpointslices"] = [
        {"metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
         "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}}]},
        {"metadata": {"name": "other-x", "labels": {"kubernetes.io/service-name": "other"}},
         "endpoints": [{"addresses": ["10.244.9.9"]}]},
    ]
    assert kube.wait_endpoints("ns1", "web", addresses={"10.244.1.5"}, timeout=1) >= 0
    with pytest.raises(WaitTimeout, match=r"EndpointSlices of service ns1/web .*want \['10.244.1.6'\]"):
        kube.wait_endpoints("ns1", "web", addresses={"10.244.1.6"}, timeout=0.3)


def test_get_object_is_none_when_missing_and_errors_are_one_line(kube: Kube, api: FakeApiServer) -> None:
    assert kube.get_object("services", "ns1", "nope") is None
    with pytest.raises(ApiError) as err:
        kube.get_service("ns1", "nope")
    assert err.value.not_found
    service = {"kind": "Service", "spec": {"clusterIP": "10.96.0.10"}}
    api.objects["/api/v1/namespaces/ns1/services/web"] = service
    assert kube.get_service("ns1", "web")["spec"]["clusterIP"] == "10.96.0.10"


def test_namespace_lifecycle_creates_labels_and_waits_until_gone(kube: Kube, api: FakeApiServer) -> None:
    kube.create_namespace("svcc-dns-abc123-x1y2", labels={"app.kubernetes.io/created-by": "svcconform"},
                          annotations={"svcconform/test-id": "suite/test_dns.py::test_a"})
    created = next(r for r in api.requests if r.method == "POST")
    assert created.path == "/api/v1/namespaces"
    assert created.body["metadata"]["labels"] == {"app.kubernetes.io/created-by": "svcconform"}
    assert kube.namespace_exists("svcc-dns-abc123-x1y2")
    api.namespace_linger = 2  # still terminating for two more reads
    elapsed = kube.delete_namespace("svcc-dns-abc123-x1y2", timeout=10)
    assert elapsed >= 0
    assert not kube.namespace_exists("svcc-dns-abc123-x1y2")
    # already gone is fine
    assert kube.delete_namespace("svcc-dns-abc123-x1y2", timeout=1) >= 0


def test_a_new_namespace_is_ready_once_its_default_service_account_exists(kube: Kube, api: FakeApiServer) -> None:
    api.service_account_after = 3  # the serviceaccount controller is a little late
    kube.create_namespace("svcc-dns-abc123-late")
    reads = [r for r in api.requests if r.path.endswith("/svcc-dns-abc123-late/serviceaccounts/default")]
    assert len(reads) >= 4, [r.path for r in api.requests]  # three misses, then found


def test_a_namespace_without_a_default_service_account_is_one_clear_line(kube: Kube, api: FakeApiServer) -> None:
    api.service_account_after = None  # kube-controller-manager is down
    api.collections["/api/v1/namespaces/kube-system/pods"] = [
        pod("kube-controller-manager-cp", "kube-system", "cp", "10.0.0.2", ready=False,
            labels={"component": "kube-controller-manager"}, waiting="CrashLoopBackOff")]
    kube.create_namespace("svcc-dns-abc123-none", wait_service_account=False)
    with pytest.raises(NeverReady) as err:
        kube.wait_default_service_account("svcc-dns-abc123-none", timeout=0.3)
    message = str(err.value)
    assert "\n" not in message
    assert "namespace svcc-dns-abc123-none has no ServiceAccount 'default' after 0s" in message
    assert "kube-controller-manager-cp Pending: CrashLoopBackOff" in message or \
        "kube-controller-manager-cp Running: CrashLoopBackOff" in message, message


def test_wait_pods_ready_reports_the_pods_that_are_not(kube: Kube, api: FakeApiServer) -> None:
    api.collections["/api/v1/namespaces/ns1/pods"] = [
        pod("web-1", "ns1", "w1", "10.244.1.5", labels={"app": "web"}),
        pod("web-2", "ns1", "w2", "", ready=False, labels={"app": "web"}, waiting="ContainerCreating"),
    ]
    with pytest.raises(WaitTimeout) as err:
        kube.wait_pods_ready("ns1", "app=web", count=2, timeout=0.3)
    assert "1/2 Ready" in str(err.value)
    assert "web-2 on w2" in str(err.value)
    assert "ContainerCreating" in str(err.value)
    ready = pod("web-2", "ns1", "w2", "10.244.2.4", labels={"app": "web"})
    api.collections["/api/v1/namespaces/ns1/pods"][1] = ready
    assert [p.name for p in kube.wait_pods_ready("ns1", "app=web", count=2, timeout=1)] == ["web-1", "web-2"]


def test_pod_logs_are_text(kube: Kube, api: FakeApiServer) -> None:
    api.texts["/api/v1/namespaces/kube-system/pods/kube-proxy-x/log"] = "I1122 synced\n"
    assert kube.pod_logs("kube-system", "kube-proxy-x", tail_lines=10) == "I1122 synced\n"
    assert api.requests[-1].query["tailLines"] == ["10"]


def test_unreachable_server_is_a_quick_one_line_error(tmp_path: Path) -> None:
    k = Kube(write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{closed_port()}"))
    started = time.monotonic()
    with pytest.raises(ApiError) as err:
        k.server_version()
    assert time.monotonic() - started < 10
    assert "cannot reach the API server at http://127.0.0.1:" in str(err.value)
    assert "\n" not in str(err.value)


def test_exec_never_raises_when_the_transport_fails(tmp_path: Path) -> None:
    k = Kube(write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{closed_port()}"))
    result = k.exec("ns1", "client", ["dig", "+short", "web"], timeout=5)
    assert result.returncode == RC_TRANSPORT_ERROR
    assert result.argv == ("dig", "+short", "web")
    assert result.where == "pod ns1/client"
    assert "svcconform: exec failed" in result.stderr


def test_bad_kubeconfig_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "kc").write_text("this: is: not: a kubeconfig")
    with pytest.raises(KubeError, match="cannot load kubeconfig"):
        Kube(tmp_path / "kc")


def test_unknown_kinds_are_programming_errors(kube: Kube) -> None:
    with pytest.raises(ValueError, match="unsupported kind"):
        kube.list_objects("widgets", "ns1")


# --- pure helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('{"metadata":{},"status":"Success"}', 0),
        ('{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: '
         'error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode",'
         '"details":{"causes":[{"reason":"ExitCode","message":"3"}]}}', 3),
        ('{"metadata":{},"status":"Failure","message":"failed to exec in container: failed to start exec: '
         'OCI runtime exec failed: exec failed: unable to start container process: exec: \\"dig\\": '
         'executable file not found in $PATH: unknown","reason":"InternalError"}', RC_NOT_FOUND),
        ('{"status":"Failure","message":"permission denied","reason":"InternalError"}', RC_CANNOT_EXECUTE),
        ("", RC_TRANSPORT_ERROR),
        ("not json at all {", RC_TRANSPORT_ERROR),
    ],
)
def test_exec_status_maps_the_status_channel_to_exit_codes(raw: str, code: int) -> None:
    assert exec_status(raw)[0] == code


def test_pod_status_summary_names_the_waiting_reason() -> None:
    assert pod_status_summary(pod("a", "n", "w", "1.2.3.4")) == "Running"
    assert pod_status_summary(pod("a", "n", "w", "", ready=False, waiting="ImagePullBackOff")) == (
        "Pending: ImagePullBackOff")
    terminating = pod("a", "n", "w", "1.2.3.4")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert pod_info(terminating).terminating
    unscheduled = {"metadata": {"name": "a"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}}
    assert pod_status_summary(unscheduled) == "Pending: Unschedulable"


def test_pod_info_handles_dual_stack_and_missing_fields() -> None:
    p = pod("a", "n", "w1", "10.244.1.5")
    p["status"]["podIPs"] = [{"ip": "10.244.1.5"}, {"ip": "fd00:10:244:1::5"}]
    info = pod_info(p)
    assert info.ips == ("10.244.1.5", "fd00:10:244:1::5")
    empty = pod_info({"metadata": {"name": "x"}})
    assert (empty.node, empty.ip, empty.ready, empty.phase) == ("", "", False, "Unknown")


def test_ready_endpoint_addresses_treat_unset_ready_as_ready() -> None:
    slices = [
        {"endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "serving": True}},
            {"addresses": ["10.0.0.3"]},
        ]},
        {"endpoints": None},
    ]
    assert ready_endpoint_addresses(slices) == {"10.0.0.1", "10.0.0.3"}


def test_deployment_available_needs_the_rollout_observed() -> None:
    done = {"metadata": {"generation": 2}, "spec": {"replicas": 3},
            "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}}
    assert deployment_available(done)[0]
    stale = {**done, "status": {**done["status"], "observedGeneration": 1}}
    ok, detail = deployment_available(stale)
    assert not ok
    assert "observed=False" in detail
    assert not deployment_available({**done, "status": {**done["status"], "availableReplicas": 2}})[0]


# --- exec over a websocket ---------------------------------------------------------


def test_exec_returns_output_and_exit_codes(kube: Kube, api: FakeApiServer) -> None:
    ok = kube.exec("ns1", "client", ["echo", "hello", "world"], container="tools", timeout=10)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "hello world\n", "")
    assert ok.where == "pod ns1/client container tools"
    exec_request = api.requests[-1]
    assert exec_request.path == "/api/v1/namespaces/ns1/pods/client/exec"
    assert exec_request.query["command"] == ["echo", "hello", "world"]
    assert exec_request.query["container"] == ["tools"]
    failed = kube.exec("ns1", "client", ["fail"], timeout=10)
    assert (failed.returncode, failed.stderr) == (3, "boom\n")
    missing = kube.exec("ns1", "client", ["dig", "x"], timeout=10)
    assert missing.returncode == RC_NOT_FOUND
    assert "executable file not found" in missing.stderr


def test_exec_is_bounded_by_its_timeout(kube: Kube) -> None:
    started = time.monotonic()
    result = kube.exec("ns1", "client", ["hang"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert result.returncode == RC_TIMED_OUT
    assert result.stdout == "started\n"
    assert "timed out after 0.5s" in result.stderr


def test_exec_from_many_threads_at_once(kube: Kube) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: kube.exec("ns1", f"client-{i}", ["echo", str(i)], timeout=10),
                                range(40)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(40)]
    assert all(r.returncode == 0 for r in results)
    # regular API calls keep working alongside (exec never patches the shared client)
    assert kube.server_version() == "v1.34.4"
