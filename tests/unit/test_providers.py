"""Providers: detection of an existing cluster, and the kind provider's whole lifecycle
driven through fake ``kind``/``docker`` executables and a fake API server."""

from __future__ import annotations

import json
import shlex
import socket
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from framework_fakes import (
    FakeApiServer,
    daemonset,
    existing_cluster,
    node,
    pod,
    proxy_configmap,
    write_kubeconfig,
)

from fixtures.errors import SvcconformError, ToolMissing, UnsupportedEnvironment
from fixtures.providers import (
    ClusterFacts,
    ExistingProvider,
    KindProvider,
    Node,
    NodeExecUnavailable,
    PinnedKindCluster,
    detect_cni,
    detect_ip_family,
    detect_proxy_mode,
    make_provider,
    nodes_from_api,
)
from fixtures.providers.existing import kind_node_containers
from fixtures.providers.kind import NodeContainer, parse_node_ips, reuse_problems, version_from_image
from fixtures.spec import ClusterSpec
from images import catalog
from images.hostenv import HostEnv, KernelFeature

NO_IPVS = HostEnv("6.18.0", KernelFeature("ip_vs", False, "CONFIG_IP_VS not set"), 1, None)
WITH_IPVS = HostEnv("6.18.0", KernelFeature("ip_vs", True, "CONFIG_IP_VS=y"), 2, None)


# --- pure detection --------------------------------------------------------------


@pytest.mark.parametrize(
    ("ds", "cm", "mode"),
    [
        (None, None, "none"),
        (daemonset("kube-proxy", args=["--config=/var/lib/kube-proxy/config.conf"]), proxy_configmap("ipvs"), "ipvs"),
        (daemonset("kube-proxy"), proxy_configmap(""), "iptables"),
        (daemonset("kube-proxy"), proxy_configmap("nftables"), "nftables"),
        (daemonset("kube-proxy", args=["--proxy-mode=nftables"]), proxy_configmap("iptables"), "nftables"),
        (daemonset("kube-proxy", args=["--proxy-mode", "ipvs"]), None, "ipvs"),
        (daemonset("kube-proxy"), None, "iptables"),
    ],
)
def test_detect_proxy_mode(ds: dict[str, Any] | None, cm: dict[str, Any] | None, mode: str) -> None:
    found, evidence = detect_proxy_mode(ds, cm)
    assert found == mode
    assert evidence


@pytest.mark.parametrize(
    ("names", "cni"),
    [
        ([("kube-system", "kindnet"), ("kube-system", "kube-proxy")], "kindnet"),
        ([("kube-flannel", "kube-flannel-ds")], "flannel"),
        ([("calico-system", "calico-node"), ("calico-system", "csi-node-driver")], "calico"),
        ([("kube-system", "cilium"), ("kube-system", "cilium-envoy")], "cilium"),
        ([("kube-system", "cilium"), ("kube-flannel", "kube-flannel-ds")], "cilium"),
        ([("kube-system", "kube-proxy")], "unknown"),
    ],
)
def test_detect_cni(names: list[tuple[str, str]], cni: str) -> None:
    assert detect_cni(daemonset(n, ns) for ns, n in names)[0] == cni


def test_nodes_from_api_orders_control_plane_first_with_roles_and_ips() -> None:
    nodes = nodes_from_api([node("b-worker", "172.18.0.3"), node("a-cp", "172.18.0.2", control_plane=True),
                            node("a-worker", "172.18.0.4")])
    assert nodes == (
        Node("a-cp", "172.18.0.2", "control-plane", ("172.18.0.2",)),
        Node("a-worker", "172.18.0.4", "worker", ("172.18.0.4",)),
        Node("b-worker", "172.18.0.3", "worker", ("172.18.0.3",)),
    )
    facts = ClusterFacts("iptables", "kindnet", "kind", "v1.34.4", "6.18", nodes)
    assert [n.name for n in facts.workers] == ["a-worker", "b-worker"]
    assert facts.node("a-cp").is_control_plane
    with pytest.raises(KeyError, match="no node named"):
        facts.node("zzz")


def test_detect_ip_family() -> None:
    assert detect_ip_family([node("a", "172.18.0.2", pod_cidrs=["10.244.0.0/24"])]) == "ipv4"
    assert detect_ip_family([node("a", "fc00:f853::2", pod_cidrs=["fd00:10:244::/64"])]) == "ipv6"
    assert detect_ip_family([node("a", "172.18.0.2", pod_cidrs=["10.244.0.0/24", "fd00:10:244::/64"])]) == "dual"
    assert detect_ip_family([node("a", "fc00:f853::2")]) == "ipv6"


def test_version_from_image() -> None:
    assert version_from_image("kindest/node:v1.34.0") == "v1.34.0"
    assert version_from_image("svcconform/kind-node:v1.34.4") == "v1.34.4"
    assert version_from_image("kindest/node:v1.34.0@sha256:abc") == "v1.34.0"
    assert version_from_image("my/node:latest") is None


# --- existing provider -----------------------------------------------------------


def test_existing_provider_detects_and_never_writes(tmp_path: Path) -> None:
    with FakeApiServer() as api:
        existing_cluster(api)
        provider = make_provider(ClusterSpec(kubeconfig=api.kubeconfig(tmp_path / "kc")))
        assert isinstance(provider, ExistingProvider)
        detected = provider.connect()
        assert (detected.proxy_mode, detected.cni) == ("nftables", "kindnet")
        assert provider.spec.cell == "nftables-kindnet"
        provider.up()
        facts = provider.facts()
        assert (facts.provider, facts.proxy_mode, facts.kubernetes_version, facts.kernel) == (
            "existing", "nftables", "v1.34.4", "6.1.0-test")
        assert [n.role for n in facts.nodes] == ["control-plane", "worker"]
        provider.down()
        assert {r.method for r in api.requests} == {"GET"}  # detection and facts only read
    with pytest.raises(NodeExecUnavailable, match="existing-cluster provider has no access to nodes"):
        provider.node_exec("w1", ["iptables-save"])


def test_existing_provider_unreachable_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = ExistingProvider(ClusterSpec(kubeconfig=write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}")))
    with pytest.raises(SvcconformError) as err:
        provider.connect()
    assert str(err.value).startswith(f"cannot use the cluster in kubeconfig {tmp_path / 'kc'}: ")
    assert "\n" not in str(err.value)


# --- kind provider: prepare --------------------------------------------------------


def images(**changes: Any) -> catalog.ImageSet:
    return replace(catalog.AIRGAPPED, **changes)


def kind_provider(spec: ClusterSpec, tmp_path: Path, *, host: HostEnv = WITH_IPVS,
                  image_set: catalog.ImageSet | Exception | None = None, **kwargs: Any) -> KindProvider:
    def resolve() -> catalog.ImageSet:
        if isinstance(image_set, Exception):
            raise image_set
        return image_set or images()

    def find(name: str, pinned_only: bool = False) -> Path:
        path = tmp_path / "bin" / name
        if not path.exists():
            raise ToolMissing(f"{name} not found: run 'tox -e images'")
        return path

    # prepare() checks that Docker answers and helm exists: stand-ins unless a test made its own
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool, script in (("docker", "#!/bin/sh\necho 28.0\n"), ("helm", "#!/bin/sh\nexit 0\n")):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).write_text(script)
            (bin_dir / tool).chmod(0o755)
    kwargs.setdefault("find", find)
    kwargs.setdefault("ready_timeout", 5)
    return KindProvider(spec, work_dir=tmp_path / "work", host=host, resolve_images=resolve, **kwargs)


def test_ipvs_without_ip_vs_is_unsupported_before_anything_else(tmp_path: Path) -> None:
    provider = kind_provider(ClusterSpec(proxy_mode="ipvs"), tmp_path, host=NO_IPVS,
                             image_set=catalog.ImagesMissing("no images"))
    with pytest.raises(UnsupportedEnvironment) as err:
        provider.prepare()
    assert str(err.value) == (
        "unsupported environment: kernel lacks ip_vs (CONFIG_IP_VS not set) — kube-proxy ipvs mode cannot run")
    assert not (tmp_path / "work").exists()


def test_cni_without_images_is_unsupported(tmp_path: Path) -> None:
    provider = kind_provider(ClusterSpec(cni="calico"), tmp_path)
    with pytest.raises(UnsupportedEnvironment, match="calico images are unavailable"):
        provider.prepare()


def test_cni_without_installer_is_an_error(tmp_path: Path) -> None:
    provider = kind_provider(ClusterSpec(cni="flannel"), tmp_path)
    with pytest.raises(SvcconformError, match="no installer for CNI flannel"):
        provider.prepare()


def test_missing_images_and_missing_kind_are_errors_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SvcconformError, match="tox -e images"):
        kind_provider(ClusterSpec(), tmp_path, image_set=catalog.ImagesMissing("run 'tox -e images'")).prepare()
    with pytest.raises(ToolMissing, match="kind not found"):
        kind_provider(ClusterSpec(), tmp_path).prepare()


def test_node_image_precedence(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir(exist_ok=True)
    (tmp_path / "bin" / "kind").write_text("")
    p = kind_provider(ClusterSpec(), tmp_path)
    p.prepare()
    assert p.node_image == catalog.AIRGAPPED.node_image
    assert p.images() == {"node": catalog.AIRGAPPED.node_image, "airgapped": True}
    assert p.expected_version() == "v1.34.4"
    assert p.config is not None
    assert p.config["kubeadmConfigPatches"][0] == catalog.COREDNS_PATCH
    assert any("failCgroupV1" in patch for patch in p.config["kubeadmConfigPatches"]) is False  # cgroup v2 host
    other = kind_provider(ClusterSpec(k8s_version="v1.33.1"), tmp_path)
    other.prepare()
    assert other.node_image == "kindest/node:v1.33.1"
    assert other.images()["airgapped"] is False
    explicit = kind_provider(ClusterSpec(node_image="my/node:v1.34.2"), tmp_path,
                             image_set=catalog.ImagesMissing("none"))
    explicit.prepare()
    assert explicit.node_image == "my/node:v1.34.2"
    assert explicit.config is not None
    assert {n["image"] for n in explicit.config["nodes"]} == {"my/node:v1.34.2"}
    cgroup_v1 = kind_provider(ClusterSpec(), tmp_path, host=NO_IPVS)
    cgroup_v1.prepare()
    assert cgroup_v1.config is not None
    assert any("failCgroupV1: false" in patch for patch in cgroup_v1.config["kubeadmConfigPatches"])


def test_default_work_dir_is_in_the_cache_not_the_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SVCCONFORM_CACHE", str(tmp_path))
    provider = KindProvider(ClusterSpec(proxy_mode="nftables"))
    assert provider.work_dir == tmp_path / "clusters" / "svcc-nftables-kindnet"
    assert provider.kubeconfig == provider.work_dir / "kubeconfig"


# --- kind provider: up/down through fake executables ------------------------------


def fake_tool(path: Path, log: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho \"$(basename $0) $*\" >> {shlex.quote(str(log))}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_kind_env(tmp_path: Path) -> Iterator[tuple[FakeApiServer, Path]]:
    """kind that 'creates' a cluster by writing a kubeconfig for the fake API server."""
    with FakeApiServer() as api:
        template = api.kubeconfig(tmp_path / "template-kubeconfig")
        log = tmp_path / "calls.log"
        existing = tmp_path / "existing-clusters"
        existing.write_text("")
        fake_tool(tmp_path / "bin" / "kind", log, f"""
case "$1 $2" in
  "get clusters") cat {existing} ;;
  "create cluster"|"export kubeconfig")
    for a in "$@"; do case "$a" in --kubeconfig=*) cp {template} "${{a#--kubeconfig=}}" ;; esac; done
    [ "$1" = create ] && echo "svcc-iptables-kindnet" >> {existing}
    echo "Creating cluster ..." >&2 ;;
  "delete cluster") : > {existing} ;;
  "load docker-image") ;;
esac
""")
        # Node containers as Docker has them: "<name> <state> <address> <kubelet --node-ip>".
        containers = tmp_path / "node-containers"
        containers.write_text("".join(f"svcc-iptables-kindnet-{n} running 172.18.0.{i} 172.18.0.{i}\n"
                                      for i, n in enumerate(("control-plane", "worker", "worker2"), 2)))
        fake_tool(tmp_path / "bin" / "docker", log, f"""
case "$1" in
  info) echo 28.0 ;;
  ps) [ -s {existing} ] && cut -d' ' -f1 {containers} ;;
  inspect) shift 3; for c in "$@"; do
      grep "^$c " {containers} | awk '{{print "/" $1 "|" $2 "|sha256:node1|" $3 ","}}'; done ;;
  image) echo sha256:node1 ;;
  exec) shift; node=$1; shift
    if [ "$2" = /var/lib/kubelet/kubeadm-flags.env ]; then
      grep "^$node " {containers} | awk '{{print "KUBELET_KUBEADM_ARGS=\\"--node-ip=" $4 " --node-labels=\\""}}'
    else echo "ran $* on $node"; fi ;;
esac
""")
        existing_cluster(api, mode="iptables")
        api.collections["/api/v1/nodes"] = [
            node("svcc-iptables-kindnet-control-plane", "172.18.0.2", control_plane=True),
            node("svcc-iptables-kindnet-worker", "172.18.0.3"),
            node("svcc-iptables-kindnet-worker2", "172.18.0.4")]
        api.collections["/api/v1/namespaces/kube-system/pods"] = [
            pod(f"kube-proxy-{i}", "kube-system", f"n{i}", f"172.18.0.{i}", labels={"k8s-app": "kube-proxy"})
            for i in range(3)]
        api.objects["/apis/apps/v1/namespaces/kube-system/deployments/coredns"] = {
            "metadata": {"generation": 1}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}
        yield api, log


def test_kind_up_creates_waits_verifies_and_down_deletes(tmp_path: Path,
                                                           fake_kind_env: tuple[FakeApiServer, Path]) -> None:
    _, log = fake_kind_env
    provider = kind_provider(ClusterSpec(), tmp_path, image_set=images(load_images=("svcconform/client:1",)))
    provider.up()
    assert provider.created
    calls = log.read_text().splitlines()
    create = next(c for c in calls if c.startswith("kind create cluster"))
    assert "--name=svcc-iptables-kindnet" in create
    assert f"--config {tmp_path / 'work' / 'kind-config.yaml'}" in create
    assert f"--image={catalog.AIRGAPPED.node_image}" in create
    assert "kind load docker-image --name svcc-iptables-kindnet svcconform/client:1" in calls
    assert "kubeProxyMode: iptables" in (tmp_path / "work" / "kind-config.yaml").read_text()
    assert "Creating cluster" in (tmp_path / "work" / "kind-create.log").read_text()
    facts = provider.facts()
    assert (facts.kubernetes_version, facts.kernel, len(facts.nodes)) == ("v1.34.4", "6.18.0", 3)
    result = provider.node_exec("svcc-iptables-kindnet-worker", ["iptables-save"])
    assert result.stdout.strip() == "ran iptables-save on svcc-iptables-kindnet-worker"
    assert result.argv == ("iptables-save",)
    assert result.where == "node svcc-iptables-kindnet-worker"
    provider.down()
    assert log.read_text().splitlines()[-1].startswith("kind delete cluster --name=svcc-iptables-kindnet")
    # A rerun reuses: no second create, a fresh kubeconfig is exported.
    (tmp_path / "existing-clusters").write_text("svcc-iptables-kindnet\n")
    again = kind_provider(ClusterSpec(), tmp_path)
    again.up()
    assert not again.created
    assert sum(c.startswith("kind create") for c in log.read_text().splitlines()) == 1
    assert log.read_text().splitlines()[-1].startswith("kind export kubeconfig --name=svcc-iptables-kindnet")


MOVED = ("node svcc-iptables-kindnet-worker was set up with address 172.18.0.3 but its container now has "
         "172.18.0.4 (Docker restarted it with another address); node svcc-iptables-kindnet-worker2 was set "
         "up with address 172.18.0.4 but its container now has 172.18.0.3 (Docker restarted it with another "
         "address)")


@pytest.mark.parametrize(("containers", "because"), [
    pytest.param("control-plane running 172.18.0.2 172.18.0.2\nworker running 172.18.0.4 172.18.0.3\n"
                 "worker2 running 172.18.0.3 172.18.0.4\n", MOVED, id="nodes-changed-address"),
    pytest.param("control-plane running 172.18.0.2 172.18.0.2\nworker exited 172.18.0.3 172.18.0.3\n"
                 "worker2 running 172.18.0.4 172.18.0.4\n",
                 "node container svcc-iptables-kindnet-worker is exited", id="node-stopped"),
])
def test_a_kept_cluster_that_cannot_work_is_deleted_and_created_again(
        tmp_path: Path, fake_kind_env: tuple[FakeApiServer, Path], containers: str, because: str) -> None:
    """E.g. Docker restarted the node containers and handed out the kind network's addresses
    anew: the cluster is deleted and created again, not reused half-broken."""
    _, log = fake_kind_env
    (tmp_path / "existing-clusters").write_text("svcc-iptables-kindnet\n")
    (tmp_path / "node-containers").write_text(
        "".join(f"svcc-iptables-kindnet-{line}\n" for line in containers.splitlines()))
    provider = kind_provider(ClusterSpec(), tmp_path)
    provider.up()
    assert provider.created
    assert provider.recreated_because == because
    kind_calls = [c for c in log.read_text().splitlines() if c.startswith("kind ") and "get clusters" not in c]
    assert [c.split(" --")[0] for c in kind_calls] == ["kind delete cluster", "kind create cluster"]


def test_reuse_problems_name_each_reason() -> None:
    def c(name: str, state: str = "running", addrs: tuple[str, ...] = ("172.18.0.2",),
          node_ips: tuple[str, ...] = ("172.18.0.2",), image: str = "sha256:a") -> NodeContainer:
        return NodeContainer(name, state, addrs, node_ips, image)

    healthy = [c("cp"), c("w1", addrs=("172.18.0.3", "fc00::3"), node_ips=("172.18.0.3", "fc00::3"))]
    assert reuse_problems(healthy, want_nodes=2, image_id="sha256:a") == []
    assert reuse_problems(healthy, want_nodes=3) == ["it has 2 node containers, the cell wants 3"]
    assert reuse_problems([c("cp", node_ips=())], want_nodes=1) == []  # unreadable flags: no verdict
    assert reuse_problems([c("cp", state="restarting")], want_nodes=1) == ["node container cp is restarting"]
    assert reuse_problems([c("cp", image="sha256:old")], want_nodes=1, image_id="sha256:new") == [
        "node cp runs an older node image (sha256:old, current sha256:new)"]
    assert reuse_problems([c("cp", addrs=())], want_nodes=1) == [
        "node cp was set up with address 172.18.0.2 but its container now has none "
        "(Docker restarted it with another address)"]


def test_parse_node_ips_reads_the_kubelet_flag() -> None:
    assert parse_node_ips('KUBELET_KUBEADM_ARGS="--pod-infra-container-image=registry.k8s.io/pause:3.10.1 '
                          '--node-ip=172.18.0.4 --node-labels= --provider-id=kind://docker/x/y"\n') == (
        "172.18.0.4",)
    assert parse_node_ips('KUBELET_KUBEADM_ARGS="--node-ip=172.18.0.4,fc00:f853:ccd:e793::4"') == (
        "172.18.0.4", "fc00:f853:ccd:e793::4")
    assert parse_node_ips("KUBELET_KUBEADM_ARGS=\"\"") == ()


def test_reused_cluster_with_another_proxy_mode_is_refused(tmp_path: Path,
                                                           fake_kind_env: tuple[FakeApiServer, Path]) -> None:
    api, _ = fake_kind_env
    api.objects["/api/v1/namespaces/kube-system/configmaps/kube-proxy"] = proxy_configmap("nftables")
    provider = kind_provider(ClusterSpec(), tmp_path)
    with pytest.raises(SvcconformError) as err:
        provider.up()
    assert "runs kube-proxy mode nftables (want iptables)" in str(err.value)
    assert "kind delete cluster --name svcc-iptables-kindnet" in str(err.value)


def test_kind_create_failure_is_one_line_with_the_log(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    fake_tool(tmp_path / "bin" / "kind", log, 'case "$1" in get) ;; create) echo "ERROR: failed to create '
              'cluster: node image not present" >&2; echo "Stack Trace:" >&2; exit 1 ;; esac\n')
    fake_tool(tmp_path / "bin" / "docker", log, "echo 28.0\n")
    provider = kind_provider(ClusterSpec(), tmp_path)
    with pytest.raises(SvcconformError) as err:
        provider.up()
    message = str(err.value)
    assert message.startswith("kind create cluster svcc-iptables-kindnet failed: ERROR: failed to create "
                              "cluster: node image not present (log: ")
    assert (tmp_path / "work" / "kind-create.log").exists()


def test_docker_not_running_is_reported_before_kind(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    fake_tool(tmp_path / "bin" / "kind", log, "exit 0\n")
    fake_tool(tmp_path / "bin" / "docker", log, 'echo "Cannot connect to the Docker daemon" >&2; exit 1\n')
    with pytest.raises(SvcconformError, match=r"docker daemon not reachable .*python -m images docker-up"):
        kind_provider(ClusterSpec(), tmp_path).up()
    assert "kind" not in log.read_text()


def test_pinned_cluster_never_downloads_and_stays_out_of_the_cwd(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cluster = PinnedKindCluster("x", work_dir=tmp_path / "w", kind_path=tmp_path / "no-kind",
                                kubectl_path=tmp_path / "no-kubectl")
    with pytest.raises(ToolMissing, match=r"kind not found at .*no-kind: run 'tox -e images'"):
        cluster.ensure_kind()
    with pytest.raises(ToolMissing, match="kubectl not found"):
        cluster.kubectl("get", "nodes")
    assert not (tmp_path / ".pytest-kind").exists()
    assert json.dumps(str(cluster.kubeconfig_path)).endswith('w/kubeconfig"')


@pytest.mark.parametrize(
    ("output", "count", "expected"),
    [
        ("running|svcc\nrunning|svcc\n", 2, True),
        ("running|svcc\nexited|svcc\n", 2, False),  # a stopped node cannot be entered
        ("running|<no value>\n", 1, False),  # a container, but not a kind node
        ("running|svcc\n", 2, False),  # a node that is no container here
        ("", 0, False),
    ],
)
def test_an_existing_cluster_gets_node_access_only_when_every_node_is_a_running_kind_container(
    output, count, expected
):
    assert kind_node_containers(output, count) is expected


def test_docker_down_is_one_line_naming_docker_up_not_an_image_rebuild(tmp_path: Path) -> None:
    fake_tool(tmp_path / "bin" / "docker", tmp_path / "calls.log",
              'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1\n')
    provider = kind_provider(ClusterSpec(), tmp_path, image_set=catalog.ImagesMissing("run 'tox -e images'"))
    with pytest.raises(SvcconformError) as err:
        provider.prepare()
    assert "python -m images docker-up" in str(err.value)
    assert "tox -e images" not in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_helm_is_found_before_the_cluster(tmp_path: Path) -> None:
    provider = kind_provider(ClusterSpec(), tmp_path)
    (tmp_path / "bin" / "helm").unlink()
    with pytest.raises(ToolMissing, match="helm not found"):
        provider.prepare()
