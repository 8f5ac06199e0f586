"""Vendor mode, offline: images from any registry, the preflight, outside vantages, Pod
Security levels, admission refusals and what an existing cluster is detected to run."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest

from fixtures import options, outside, podsecurity, preflight
from fixtures.errors import SvcconformError, admission_refusal
from fixtures.observations import ExecResult
from fixtures.probes import Vantage
from fixtures.providers.existing import detect_ip_family_evidence, detect_proxy_mode
from images import catalog

# --------------------------------------------------------------------------- images


@pytest.mark.parametrize(("ref", "registry", "want"), [
    ("registry.k8s.io/e2e-test-images/agnhost:2.56", "localhost:5000",
     "localhost:5000/e2e-test-images/agnhost:2.56"),
    ("svcconform/client:1", "localhost:5000", "localhost:5000/svcconform/client:1"),
    ("svcconform/client:1", "reg.example.com/mirror/", "reg.example.com/mirror/svcconform/client:1"),
    ("localhost/x:1", "r.io", "r.io/x:1"),
])
def test_relocate_keeps_the_path_under_the_new_registry(ref: str, registry: str, want: str) -> None:
    assert catalog.relocate(ref, registry) == want


def test_suite_images_apply_the_registry_then_exact_overrides() -> None:
    images = catalog.suite_images("r.io", {"client": "mine/client:2"})
    assert images == {"agnhost": "r.io/e2e-test-images/agnhost:2.56", "client": "mine/client:2"}
    assert catalog.suite_images() == catalog.SUITE_IMAGES
    with pytest.raises(ValueError, match="unknown image role"):
        catalog.suite_images(None, {"pause": "x"})


def _options(**kw: Any) -> SimpleNamespace:
    base = {"svcc_image_registry": None, "svcc_images": [], "svcc_kubeconfig": None, "svcc_nodes": None,
            "svcc_ip_family": None, "svcc_k8s_version": None, "svcc_node_image": None,
            "svcc_keep_cluster": False}
    base.update(kw)
    return SimpleNamespace(**base)


def test_image_options_and_the_environment() -> None:
    from fixtures.spec import InvalidSpec

    images = options.suite_images_from_options(_options(), {"SVCCONFORM_IMAGE_REGISTRY": "env.io"})
    assert images["client"] == "env.io/svcconform/client:1"
    images = options.suite_images_from_options(
        _options(svcc_image_registry="opt.io", svcc_images=["agnhost=a/b:1"]), {"SVCCONFORM_IMAGE_REGISTRY": "env.io"})
    assert images == {"agnhost": "a/b:1", "client": "opt.io/svcconform/client:1"}
    for bad in (["client"], ["pause=x:1"], ["client="]):
        with pytest.raises(InvalidSpec, match="--image"):
            options.suite_images_from_options(_options(svcc_images=bad), {})
    with pytest.raises(InvalidSpec, match="--image-registry"):
        options.suite_images_from_options(_options(svcc_image_registry="a b"), {})


def test_kind_only_options_contradict_an_existing_cluster() -> None:
    assert options.kind_only_conflicts(_options(svcc_nodes="4")) == []  # a kind cell: fine
    got = options.kind_only_conflicts(_options(svcc_kubeconfig="/kc", svcc_nodes="4", svcc_keep_cluster=True,
                                               svcc_ip_family="ipv6", svcc_k8s_version="v1.33.0"))
    assert got == ["--nodes", "--ip-family", "--k8s-version", "--keep-cluster"]


# --------------------------------------------------------------------------- preflight


def _pod(name: str, role: str, image: str, node: str, state: dict[str, Any], *,
         image_id: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {preflight.ROLE_LABEL: role}},
            "spec": {"nodeName": node, "containers": [{"name": role, "image": image}]},
            "status": {"phase": "Pending", "containerStatuses": [{"state": state, "imageID": image_id}]}}


def test_the_plan_pins_a_host_network_client_and_an_agnhost_pod_to_every_node() -> None:
    pods = preflight.plan(["cp", "w1"], {"client": "c:1", "agnhost": "a:1"}, run_id="r1")
    assert [p["metadata"]["name"] for p in pods] == ["vantage-cp", "agnhost-cp", "vantage-w1", "agnhost-w1"]
    vantage, agnhost = pods[0]["spec"], pods[1]["spec"]
    assert vantage["hostNetwork"] is True
    assert vantage["nodeName"] == "cp"
    assert vantage["tolerations"] == [{"operator": "Exists"}]
    assert "hostNetwork" not in agnhost
    assert "args" not in agnhost["containers"][0]  # agnhost's default command must be pause
    assert pods[0]["metadata"]["labels"]["svcconform/run-id"] == "r1"


def test_a_pull_failure_is_one_line_naming_the_image_node_and_the_push_command() -> None:
    pods = [
        _pod("vantage-w1", "client", "r.io/svcconform/client:1", "w1",
             {"waiting": {"reason": "ErrImagePull", "message": "failed to pull\n  r.io/svcconform/client:1: 404"}}),
        _pod("agnhost-w1", "agnhost", "r.io/a:1", "w1", {"waiting": {"reason": "ImagePullBackOff"}}),
        _pod("agnhost-w2", "agnhost", "r.io/a:1", "w2", {"waiting": {"reason": "ContainerCreating"}}),
    ]
    failures = preflight.pull_failures(pods)
    assert [(f.role, f.node, f.reason) for f in failures] == [("agnhost", "w1", "ImagePullBackOff"),
                                                              ("client", "w1", "ErrImagePull")]
    line = preflight.images_error(failures)
    assert "\n" not in line
    assert line.startswith("image r.io/a:1 (agnhost) cannot be pulled on node w1: ImagePullBackOff")
    assert "(and 1 more" in line
    assert "python -m images push REGISTRY" in line
    assert "--image agnhost=IMAGE" in line


def test_running_and_the_image_ids_the_kubelets_resolved() -> None:
    running = {"running": {"startedAt": "now"}}
    pods = [_pod("vantage-w1", "client", "c:1", "w1", running, image_id="r.io/c@sha256:aa"),
            _pod("vantage-w2", "client", "c:1", "w2", running, image_id="r.io/c@sha256:aa"),
            _pod("agnhost-w1", "agnhost", "a:1", "w1", {"waiting": {"reason": "ContainerCreating"}})]
    ok, detail = preflight.running(pods)
    assert not ok
    assert "agnhost-w1: Pending ContainerCreating" in detail
    assert preflight.image_ids(pods) == {"agnhost": {"image": "a:1", "image_ids": []},
                                         "client": {"image": "c:1", "image_ids": ["r.io/c@sha256:aa"]}}


def test_the_proxy_mode_verdict_needs_agreeing_nodes() -> None:
    def answer(node: str, mode: str | None) -> preflight.ProxyModeAnswer:
        return preflight.ProxyModeAnswer(node, mode, "http://127.0.0.1:10249/proxyMode" if mode else "refused")

    mode, evidence = preflight.proxy_mode_verdict([answer("a", "nftables"), answer("b", "nftables"), answer("c", None)])
    assert mode == "nftables"
    assert "2/3 nodes" in evidence
    assert "no answer on c" in evidence
    mode, evidence = preflight.proxy_mode_verdict([answer("a", None)])
    assert mode is None
    assert "answered on no node" in evidence
    with pytest.raises(SvcconformError, match="different modes"):
        preflight.proxy_mode_verdict([answer("a", "ipvs"), answer("b", "iptables")])


def test_parse_proxy_mode_reads_curl_output() -> None:
    ok = ExecResult(("sh",), 0, "http://[::1]:10249/proxyMode ipvs\n", "")
    assert preflight.parse_proxy_mode("n", ok) == preflight.ProxyModeAnswer("n", "ipvs", "http://[::1]:10249/proxyMode")
    bad = ExecResult(("sh",), 7, "", "http://127.0.0.1:10249/proxyMode: curl: (7) Failed to connect\n")
    assert preflight.parse_proxy_mode("n", bad).mode is None


# --------------------------------------------------------------------------- detection


def test_proxy_mode_from_the_eks_style_config_map() -> None:
    ds = {"spec": {"template": {"spec": {"containers": [{"command": ["kube-proxy", "--config=/var/lib/x"]}]}}}}
    eks = {"metadata": {"name": "kube-proxy-config"},
           "data": {"config": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n"}}
    assert detect_proxy_mode(ds, [eks]) == ("ipvs", "kube-proxy ConfigMap kube-proxy-config mode: ipvs")
    unrelated = {"metadata": {"name": "kube-proxy"}, "data": {"kubeconfig.conf": "apiVersion: v1\nkind: Config\n"}}
    assert detect_proxy_mode(ds, [unrelated, eks])[0] == "ipvs"
    assert detect_proxy_mode(ds, [])[0] == "iptables"


def test_ip_family_from_nodes_and_the_kubernetes_service() -> None:
    nodes = [{"spec": {"podCIDRs": ["fd00:10:244::/64"]}}]
    family, evidence = detect_ip_family_evidence(nodes, {"spec": {"ipFamilies": ["IPv6"]}})
    assert family == "ipv6"
    assert "ipFamilies ['IPv6']" in evidence
    family, _ = detect_ip_family_evidence([{"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}],
                                          {"spec": {"ipFamilies": ["IPv6"]}})
    assert family == "ipv6"  # nodes with IPv4 addresses but an IPv6-only service network


# --------------------------------------------------------------------------- outside vantages


def test_peers_send_to_the_next_node() -> None:
    assert outside.peers(["a", "b", "c"]) == {"a": "b", "b": "c", "c": "a"}
    assert outside.peers(["a"]) == {"a": "a"}


def _vantage(node: str) -> Vantage:
    return Vantage(lambda argv, timeout: ExecResult(tuple(argv), 0, "", ""), where=f"pod on {node}", node=node)


def test_vantages_without_this_machine_say_why() -> None:
    ips = {"a": "10.0.0.1", "b": "10.0.0.2"}
    nodes = {n: _vantage(n) for n in ips}
    host = outside.HostReach(False, "this machine does not reach the node addresses: a 10.0.0.1:10250: unreachable")
    per = outside.vantages(ips, nodes, host)
    assert {t: [(v.row, v.source_ip) for v in vs] for t, vs in per.items()} == {
        "a": [("node b (hostNetwork)", "10.0.0.2")], "b": [("node a (hostNetwork)", "10.0.0.1")]}
    assert "not tried" in outside.title_note(host)
    assert [v.row for v in outside.everyone(ips, nodes, host)] == ["node a (hostNetwork)", "node b (hostNetwork)"]
    reach = outside.HostReach(True, "ok")
    passes = outside.passes(ips, nodes, reach, host_source=lambda ip: "192.0.2.1")
    assert len(passes) == 2
    assert {v.row for v in passes[1].values()} == {"this machine"}
    assert passes[1]["a"].source_ip == "192.0.2.1"


def test_the_node_port_matrix_skips_a_nodes_own_address() -> None:
    ips = {"a": "10.0.0.1", "b": "10.0.0.2"}
    vs = outside.everyone(ips, {n: _vantage(n) for n in ips}, outside.HostReach(False, "x"))
    got = outside.node_port_matrix(vs, {f"{n} col": (n, ip) for n, ip in ips.items()}, lambda v, ip: (v.node, ip))
    assert got == {("node a (hostNetwork)", "b col"): ("a", "10.0.0.2"),
                   ("node b (hostNetwork)", "a col"): ("b", "10.0.0.1")}


def test_host_reach_counts_a_refusal_as_reachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        assert outside.host_reach({"n": "127.0.0.1"}, port=port).reachable


def test_health_check_from_a_pod_parses_kube_proxys_answer() -> None:
    body = '{"service": {"namespace": "ns", "name": "local"}, "localEndpoints": 0, "serviceProxyHealthy": true}'
    from fixtures.probes.traffic import CURL_MARK

    stdout = (f"{body}\n{CURL_MARK} exit=0 code=503 conns=1 connect=0.001 total=0.002 remote=10.0.0.1 "
              "rport=31000 local=10.0.0.2 lport=40000 url=http://10.0.0.1:31000/healthz\n")

    def run(argv: Any, timeout: float) -> ExecResult:
        return ExecResult(tuple(argv), 0, stdout, "")

    reply = outside.health_check_from(Vantage(run, where="pod x on a"), "10.0.0.1", 31000)
    assert reply.where == "pod x on a"
    assert (reply.status, reply.local_endpoints, reply.service_name) == (503, 0, "local")


# --------------------------------------------------------------------------- Pod Security and admission


def test_pod_security_level_follows_host_network() -> None:
    assert podsecurity.level_for({}) == "baseline"
    assert podsecurity.level_for({"clients": {"hostNetwork": True}}) == "privileged"
    assert podsecurity.level_for({"backend": {"hostNetwork": True}}) == "privileged"
    assert podsecurity.labels("baseline") == {"pod-security.kubernetes.io/enforce": "baseline"}


def test_admission_refusals_are_told_from_rbac() -> None:
    assert admission_refusal('Error: pods "c" is forbidden: violates PodSecurity "baseline:latest": host')
    assert admission_refusal('admission webhook "validate.kyverno.svc" denied the request: no hostNetwork')
    assert admission_refusal('pods is forbidden: User "ci" cannot create resource "pods"') is None


def test_a_container_that_exits_with_its_default_command_is_named() -> None:
    pods = [_pod("agnhost-w1", "agnhost", "a:1", "w1", {"waiting": {"reason": "CrashLoopBackOff"}}),
            _pod("agnhost-w2", "agnhost", "a:1", "w2", {"terminated": {"exitCode": 0}})]
    got = preflight.crashes(pods)
    assert got == ["image a:1 (agnhost) does not keep running on node w1 with its default command "
                   "(CrashLoopBackOff); agnhost's must be 'pause' as upstream's",
                   "image a:1 (agnhost) does not keep running on node w2 with its default command "
                   "(exit code 0); agnhost's must be 'pause' as upstream's"]
    assert preflight.crashes([_pod("x", "client", "c:1", "w1", {"running": {}})]) == []


def test_component_versions_from_the_daemonset_images() -> None:
    from fixtures.providers.existing import component_versions

    def ds(ns: str, name: str, image: str) -> dict[str, Any]:
        return {"metadata": {"namespace": ns, "name": name},
                "spec": {"template": {"spec": {"containers": [{"image": image}]}}}}

    got = component_versions([ds("kube-system", "kube-proxy", "registry.k8s.io/kube-proxy:v1.34.4"),
                              ds("kube-system", "kindnet", "svcconform/kindnetd:0.1.0")])
    assert got["kube_proxy_version"]["value"] == "v1.34.4"
    assert got["cni_version"] == {"value": "kindnet 0.1.0",
                                  "evidence": "DaemonSet kube-system/kindnet image svcconform/kindnetd:0.1.0"}
    assert component_versions([ds("kube-system", "cilium", "quay.io/cilium/cilium@sha256:ab")]) == {
        "cni_version": {"value": "cilium sha256:ab", "evidence": "DaemonSet kube-system/cilium image "
                        "quay.io/cilium/cilium@sha256:ab"}}
