"""Both charts rendered with the pinned helm across representative values, checked
structurally; ``helm lint --strict``; chart validation errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.charts import (
    CHARTS,
    SERVICE_NO_SELECTORS,
    SERVICE_SELECTORS,
    ChartError,
    chart_path,
    client_pod_name,
    template,
)
from fixtures.errors import ToolMissing
from fixtures.tools import find_tool

try:
    HELM: str | None = str(find_tool("helm"))
except ToolMissing:  # reported by the skip reason below
    HELM = shutil.which("helm")

pytestmark = pytest.mark.skipif(
    HELM is None, reason="helm not found: run 'tox -e images' to build the pinned tools"
)

JSON = dict[str, Any]
NODES = [
    "svcc-iptables-kindnet-control-plane",
    "svcc-iptables-kindnet-worker",
    "svcc-iptables-kindnet-worker2",
]
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def render(chart: str, values: dict[str, Any] | None = None, release: str = "r1") -> list[JSON]:
    return template(chart, values or {}, release=release, namespace="svcc-test")


def by_kind(objs: list[JSON], kind: str) -> list[JSON]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[JSON], kind: str) -> JSON:
    (obj,) = by_kind(objs, kind)
    return obj


@pytest.mark.parametrize("chart", CHARTS)
def test_helm_lint_strict_is_clean(chart: str) -> None:
    assert HELM is not None
    proc = subprocess.run(
        [HELM, "lint", "--strict", str(chart_path(chart))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


# --------------------------------------------------------------------------- service-selectors


def test_defaults_render_a_backend_deployment_and_a_service() -> None:
    objs = render(SERVICE_SELECTORS)
    assert sorted(o["kind"] for o in objs) == ["Deployment", "Service"]
    dep, svc = one(objs, "Deployment"), one(objs, "Service")
    assert dep["metadata"]["name"] == "r1-backend"
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry.k8s.io/e2e-test-images/agnhost:2.56"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"] == ["netexec", "--http-port=8080", "--udp-port=8081"]
    assert container["readinessProbe"]["exec"]["command"] == ["/bin/sh", "-c", "test ! -e /tmp/unready"]
    assert container["readinessProbe"]["periodSeconds"] == 1
    assert pod["spec"]["terminationGracePeriodSeconds"] == 1
    spread = pod["spec"]["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["maxSkew"] == 1
    assert svc["metadata"]["name"] == "r1"
    assert svc["spec"]["type"] == "ClusterIP"
    # the Service selects exactly the Deployment's pods
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    labels = pod["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())


@pytest.mark.parametrize("chart", CHARTS)
def test_every_object_is_labelled_for_svcconform_and_the_release(chart: str) -> None:
    objs = render(chart, {"clients": {"nodes": NODES}, "commonLabels": {"svcconform/run-id": "r42"}})
    assert objs
    for o in objs:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/created-by"] == "svcconform", o["metadata"]["name"]
        assert labels["app.kubernetes.io/instance"] == "r1"
        assert labels["svcconform/run-id"] == "r42"
    for dep in by_kind(objs, "Deployment"):
        assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/created-by"] == "svcconform"


def test_named_target_ports_name_container_ports() -> None:
    objs = render(
        SERVICE_SELECTORS,
        {
            "backend": {"httpPortName": "web", "udpPortName": "dns"},
            "service": {
                "ports": [
                    {"name": "a", "port": 80, "targetPort": "web", "protocol": "TCP"},
                    {"name": "b", "port": 8080, "targetPort": 8080},
                    {"name": "c", "port": 53, "targetPort": "dns", "protocol": "UDP"},
                ]
            },
        },
    )
    container = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    names = {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]}
    ports = one(objs, "Service")["spec"]["ports"]
    for p in ports:
        if isinstance(p["targetPort"], str):
            assert names[p["targetPort"]][1] == p["protocol"]
    assert [p["protocol"] for p in ports] == ["TCP", "TCP", "UDP"]
    assert ports[1]["targetPort"] == 8080


def test_images_come_from_values() -> None:
    objs = render(
        SERVICE_SELECTORS,
        {
            "images": {"agnhost": "local/agnhost:dev", "client": "local/client:dev", "pullPolicy": "Never"},
            "clients": {"nodes": NODES[:1]},
        },
    )
    dep = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    client = one(objs, "Pod")["spec"]["containers"][0]
    assert (dep["image"], dep["imagePullPolicy"]) == ("local/agnhost:dev", "Never")
    assert (client["image"], client["imagePullPolicy"]) == ("local/client:dev", "Never")


def test_one_client_per_node_pinned_and_quick_to_stop() -> None:
    objs = render(SERVICE_SELECTORS, {"clients": {"nodes": NODES, "enableServiceLinks": False}})
    pods = by_kind(objs, "Pod")
    assert [p["metadata"]["name"] for p in pods] == [client_pod_name(n) for n in NODES]
    for pod, node in zip(pods, NODES, strict=True):
        spec = pod["spec"]
        assert spec["nodeName"] == node
        assert spec["enableServiceLinks"] is False
        assert spec["terminationGracePeriodSeconds"] == 1
        assert pod["metadata"]["annotations"]["svcconform/node"] == node
        command = spec["containers"][0]["command"]
        assert command[:2] == ["/bin/sh", "-c"]
        assert "trap 'exit 0' TERM" in command[2]
        assert {"operator": "Exists"} in spec["tolerations"]


@pytest.mark.parametrize("chart", CHARTS)
def test_host_network_clients_share_the_node_network_only_when_asked(chart: str) -> None:
    default = by_kind(render(chart, {"clients": {"nodes": NODES[:1]}}), "Pod")[-1]["spec"]
    assert "hostNetwork" not in default
    assert "dnsPolicy" not in default
    values = {"clients": {"nodes": NODES, "hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet",
                          "namePrefix": "hostclient"}}
    pods = [p for p in by_kind(render(chart, values), "Pod")
            if p["metadata"]["labels"]["app.kubernetes.io/component"] == "client"]
    assert [p["metadata"]["name"] for p in pods] == [client_pod_name(n, "hostclient") for n in NODES]
    for pod, node in zip(pods, NODES, strict=True):
        assert pod["spec"]["nodeName"] == node
        assert pod["spec"]["hostNetwork"] is True
        assert pod["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_client_pod_names_match_the_python_rule_for_odd_node_names() -> None:
    odd = ["Node.Example.COM", "ip-10-0-0-1.ec2.internal", "n" * 70, "a_b"]
    objs = render(
        SERVICE_SELECTORS,
        {
            "clients": {"nodes": odd, "namePrefix": "c2"},
            "backend": {"enabled": False},
            "service": {"enabled": False},
        },
    )
    names = [p["metadata"]["name"] for p in by_kind(objs, "Pod")]
    assert names == [client_pod_name(n, "c2") for n in odd]
    assert all(DNS1123_LABEL.match(n) and len(n) <= 63 for n in names)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,200}[a-z0-9])?\Z", fullmatch=True))
def test_client_pod_name_is_always_a_dns1123_label(node: str) -> None:
    name = client_pod_name(node)
    assert len(name) <= 63
    assert DNS1123_LABEL.match(name)
    assert name == client_pod_name(node)  # deterministic


def test_backends_can_be_pinned_to_chosen_nodes_without_spreading() -> None:
    objs = render(
        SERVICE_SELECTORS,
        {
            "backend": {
                "nodes": NODES[1:2],
                "spread": False,
                "replicas": 3,
                "tolerateControlPlane": False,
                "podLabels": {"svcconform/group": "a"},
            }
        },
    )
    spec = one(objs, "Deployment")["spec"]["template"]["spec"]
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert term["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": NODES[1:2]}
    ]
    assert "topologySpreadConstraints" not in spec
    assert "tolerations" not in spec
    labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["svcconform/group"] == "a"


def test_nodeport_with_local_policy_and_fixed_node_port() -> None:
    svc = one(
        render(
            SERVICE_SELECTORS,
            {
                "service": {
                    "type": "NodePort",
                    "externalTrafficPolicy": "Local",
                    "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}],
                }
            },
        ),
        "Service",
    )["spec"]
    assert svc["type"] == "NodePort"
    assert svc["externalTrafficPolicy"] == "Local"
    assert svc["ports"][0]["nodePort"] == 30080


def test_load_balancer_with_health_check_node_port() -> None:
    svc = one(
        render(
            SERVICE_SELECTORS,
            {
                "service": {
                    "type": "LoadBalancer",
                    "externalTrafficPolicy": "Local",
                    "healthCheckNodePort": 32000,
                    "allocateLoadBalancerNodePorts": True,
                    "loadBalancerSourceRanges": ["172.18.0.1/32"],
                }
            },
        ),
        "Service",
    )["spec"]
    assert svc["healthCheckNodePort"] == 32000
    assert svc["allocateLoadBalancerNodePorts"] is True
    assert svc["loadBalancerSourceRanges"] == ["172.18.0.1/32"]


def test_cluster_ip_options() -> None:
    svc = one(
        render(
            SERVICE_SELECTORS,
            {
                "service": {
                    "name": "web",
                    "internalTrafficPolicy": "Local",
                    "sessionAffinity": "ClientIP",
                    "sessionAffinityTimeoutSeconds": 30,
                    "publishNotReadyAddresses": True,
                    "selector": {"svcconform/group": "a"},
                }
            },
        ),
        "Service",
    )
    spec = svc["spec"]
    assert svc["metadata"]["name"] == "web"
    assert spec["internalTrafficPolicy"] == "Local"
    assert spec["sessionAffinity"] == "ClientIP"
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 30}}
    assert spec["publishNotReadyAddresses"] is True
    assert spec["selector"] == {"svcconform/group": "a"}
    assert "externalTrafficPolicy" not in spec


def test_headless_and_extra_external_name_services() -> None:
    objs = render(
        SERVICE_SELECTORS,
        {
            "service": {"headless": True},
            "extraServices": [
                {
                    "name": "ext",
                    "spec": {"type": "ExternalName", "externalName": "r1.svcc-test.svc.cluster.local"},
                },
            ],
        },
    )
    svcs = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    assert svcs["r1"]["spec"]["clusterIP"] == "None"
    assert svcs["ext"]["spec"] == {"type": "ExternalName", "externalName": "r1.svcc-test.svc.cluster.local"}
    assert svcs["ext"]["metadata"]["labels"]["app.kubernetes.io/created-by"] == "svcconform"


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ({"externalTrafficPolicy": "Local"}, "externalTrafficPolicy needs"),
        ({"type": "NodePort", "healthCheckNodePort": 32000}, "healthCheckNodePort needs"),
        ({"type": "ExternalName"}, "service.type must be"),
        ({"type": "NodePort", "headless": True}, "headless needs"),
        ({"type": "NodePort", "loadBalancerSourceRanges": ["10.0.0.0/8"]}, "loadBalancerSourceRanges needs"),
    ],
)
def test_invalid_service_values_fail_with_a_clear_message(service: dict[str, Any], message: str) -> None:
    with pytest.raises(ChartError, match=message):
        render(SERVICE_SELECTORS, {"service": service})


def test_unknown_chart_is_a_clear_error() -> None:
    with pytest.raises(ChartError, match="no Helm chart"):
        chart_path("nope")


# --------------------------------------------------------------------------- service-no-selectors


def test_selectorless_defaults() -> None:
    objs = render(SERVICE_NO_SELECTORS, release="r2")
    assert sorted(o["kind"] for o in objs) == ["EndpointSlice", "Pod", "Pod", "Service"]
    svc, eps = one(objs, "Service"), one(objs, "EndpointSlice")
    assert "selector" not in svc["spec"]
    assert eps["apiVersion"] == "discovery.k8s.io/v1"
    assert eps["metadata"]["name"] == "r2-manual"
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "r2"
    managed = eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
    assert managed not in ("endpointslice-controller.k8s.io", "endpointslicemirroring-controller.k8s.io")
    assert eps["endpoints"] == []
    # slice ports are matched to Service ports by name
    assert {p["name"] for p in eps["ports"]} == {p["name"] for p in svc["spec"]["ports"]}
    backends = by_kind(objs, "Pod")
    assert [p["metadata"]["name"] for p in backends] == ["r2-backend-0", "r2-backend-1"]
    assert all(p["metadata"]["labels"]["app.kubernetes.io/component"] == "backend" for p in backends)
    assert backends[0]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_selectorless_addresses_and_legacy_endpoints_from_values() -> None:
    objs = render(
        SERVICE_NO_SELECTORS,
        {
            "endpointSlice": {
                "endpoints": [
                    {"addresses": ["10.244.1.5"], "nodeName": NODES[1]},
                    {"addresses": ["10.244.2.6"], "ready": False, "serving": True, "terminating": True},
                ]
            },
            "endpoints": {
                "enabled": True,
                "addresses": ["10.244.1.5", {"ip": "10.244.2.6", "nodeName": NODES[2]}],
                "notReadyAddresses": ["10.244.3.7"],
            },
            "backends": {"count": 3, "nodes": NODES[1:]},
        },
    )
    eps = one(objs, "EndpointSlice")["endpoints"]
    assert eps[0] == {"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "nodeName": NODES[1]}
    assert eps[1]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    legacy = one(objs, "Endpoints")
    assert legacy["metadata"]["name"] == "r1"
    subset = legacy["subsets"][0]
    assert subset["addresses"] == [{"ip": "10.244.1.5"}, {"ip": "10.244.2.6", "nodeName": NODES[2]}]
    assert subset["notReadyAddresses"] == [{"ip": "10.244.3.7"}]
    assert subset["ports"] == [{"port": 8080, "name": "http", "protocol": "TCP"}]
    nodes = [p["spec"]["nodeName"] for p in by_kind(objs, "Pod")]
    assert nodes == [NODES[1], NODES[2], NODES[1]]


def test_selectorless_slice_can_be_switched_off_for_the_mirroring_path() -> None:
    objs = render(
        SERVICE_NO_SELECTORS,
        {"endpointSlice": {"enabled": False}, "endpoints": {"enabled": True, "addresses": ["10.244.1.5"]}},
    )
    assert not by_kind(objs, "EndpointSlice")
    assert one(objs, "Endpoints")["subsets"][0]["addresses"] == [{"ip": "10.244.1.5"}]


def test_selectorless_managed_by_a_controller_is_refused() -> None:
    with pytest.raises(ChartError, match="must not name a controller"):
        render(SERVICE_NO_SELECTORS, {"endpointSlice": {"managedBy": "endpointslice-controller.k8s.io"}})


def test_both_charts_render_identical_client_pods() -> None:
    values = {"clients": {"nodes": NODES, "enableServiceLinks": False}}
    a = list(by_kind(render(SERVICE_SELECTORS, values), "Pod"))
    b = [
        p
        for p in by_kind(render(SERVICE_NO_SELECTORS, values), "Pod")
        if p["metadata"]["labels"]["app.kubernetes.io/component"] == "client"
    ]

    def strip(pod: JSON) -> JSON:
        labels = {
            k: v
            for k, v in pod["metadata"]["labels"].items()
            if k not in ("app.kubernetes.io/name", "helm.sh/chart")
        }
        return {"name": pod["metadata"]["name"], "labels": labels, "spec": pod["spec"]}

    assert [strip(p) for p in a] == [strip(p) for p in b]


# --------------------------------------------------------------------------- pod DNS and host network


@pytest.mark.parametrize("chart", CHARTS)
def test_client_dns_and_host_network_values_render_into_every_client_pod(chart: str) -> None:
    dns_config = {"nameservers": ["10.96.0.10"], "searches": ["svc.cluster.local"],
                  "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    objs = render(chart, {"clients": {"nodes": NODES, "hostNetwork": True, "dnsPolicy": "None",
                                      "dnsConfig": dns_config, "setHostname": True, "subdomain": "peers"}})
    pods = [p for p in by_kind(objs, "Pod") if p["metadata"]["labels"]["app.kubernetes.io/component"] == "client"]
    assert len(pods) == len(NODES)
    for pod in pods:
        spec = pod["spec"]
        assert spec["hostNetwork"] is True
        assert spec["dnsPolicy"] == "None"
        assert spec["dnsConfig"] == dns_config
        assert spec["hostname"] == pod["metadata"]["name"]
        assert spec["subdomain"] == "peers"


@pytest.mark.parametrize("chart", CHARTS)
def test_client_dns_and_host_network_defaults_render_none_of_those_fields(chart: str) -> None:
    objs = render(chart, {"clients": {"nodes": NODES}})
    for pod in by_kind(objs, "Pod"):
        for key in ("hostNetwork", "dnsPolicy", "dnsConfig", "hostname", "subdomain"):
            assert key not in pod["spec"], (pod["metadata"]["name"], key)


def test_backends_can_run_in_the_host_network() -> None:
    default = one(render(SERVICE_SELECTORS), "Deployment")["spec"]["template"]["spec"]
    assert "hostNetwork" not in default
    objs = render(SERVICE_SELECTORS, {"backend": {"hostNetwork": True, "httpPort": 20376, "udpPort": 20377}})
    spec = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    container = spec["containers"][0]
    assert {p["containerPort"] for p in container["ports"]} == {20376, 20377}
    assert "--udp-listen-addresses=$(HOST_IP),$(POD_IPS)" in container["args"]
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]} == {
        "HOST_IP": "status.hostIP", "POD_IPS": "status.podIPs"}
    assert "env" not in one(render(SERVICE_SELECTORS), "Deployment")["spec"]["template"]["spec"]["containers"][0]

def test_selectorless_split_values_render_more_slices_subsets_and_per_pod_ports() -> None:
    objs = render(
        SERVICE_NO_SELECTORS,
        {
            "backends": {"count": 3, "httpPorts": [8080, 9090]},
            "endpointSlice": {"endpoints": [{"addresses": ["10.244.1.5"]}]},
            "extraEndpointSlices": [
                {"name": "r1-b", "ports": [{"name": "http", "port": 9090}],
                 "endpoints": [{"addresses": ["10.244.2.6"], "nodeName": NODES[2]}]},
                {"name": "r1-c"},
            ],
            "endpoints": {
                "enabled": True,
                "addresses": ["10.244.1.5"],
                "extraSubsets": [{"addresses": ["10.244.2.6"], "ports": [{"name": "http", "port": 9090}]},
                                 {"notReadyAddresses": ["10.244.3.7"]}],
            },
        },
    )
    pods = by_kind(objs, "Pod")
    ports = [p["spec"]["containers"][0]["ports"][0]["containerPort"] for p in pods]
    assert ports == [8080, 9090, 8080]
    assert [a for p in pods for a in p["spec"]["containers"][0]["args"] if a.startswith("--http-port")] == [
        "--http-port=8080", "--http-port=9090", "--http-port=8080"]
    slices = {s["metadata"]["name"]: s for s in by_kind(objs, "EndpointSlice")}
    assert sorted(slices) == ["r1-b", "r1-c", "r1-manual"]
    for s in slices.values():
        assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "r1"
        assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "svcconform-manual"
        assert s["metadata"]["labels"]["app.kubernetes.io/created-by"] == "svcconform"
    assert slices["r1-b"]["ports"] == [{"name": "http", "port": 9090, "protocol": "TCP"}]
    assert slices["r1-b"]["endpoints"] == [
        {"addresses": ["10.244.2.6"], "conditions": {"ready": True}, "nodeName": NODES[2]}]
    assert slices["r1-c"]["ports"] == slices["r1-manual"]["ports"]  # defaults to endpointSlice's
    assert slices["r1-c"]["endpoints"] == []
    subsets = one(objs, "Endpoints")["subsets"]
    assert [s["ports"][0]["port"] for s in subsets] == [8080, 9090, 8080]
    assert subsets[1]["addresses"] == [{"ip": "10.244.2.6"}]
    assert subsets[2] == {"ports": [{"port": 8080, "name": "http", "protocol": "TCP"}],
                          "notReadyAddresses": [{"ip": "10.244.3.7"}]}


def test_selectorless_split_values_default_to_what_rendered_before() -> None:
    """The new keys' defaults render the same objects as leaving them out."""
    values = {"backends": {"count": 2}, "endpoints": {"enabled": True, "addresses": ["10.244.1.5"]},
              "clients": {"nodes": NODES[:1]}}
    explicit = deep_values(values, {"backends": {"httpPorts": []}, "extraEndpointSlices": [],
                                    "endpoints": {"extraSubsets": []}})
    assert render(SERVICE_NO_SELECTORS, values) == render(SERVICE_NO_SELECTORS, explicit)
    only_extra = render(SERVICE_NO_SELECTORS, {"endpointSlice": {"enabled": False},
                                               "extraEndpointSlices": [{"name": "x"}]})
    assert [s["metadata"]["name"] for s in by_kind(only_extra, "EndpointSlice")] == ["x"]


def deep_values(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    from fixtures.charts import deep_merge

    return deep_merge(base, changes)
