"""svcconform's pytest wiring: options → ClusterSpec → provider → session fixtures → results.

Options live in one group (``pytest --help``, section "svcconform").  A run that targets
``suite/`` is a *cell* run: it writes ``<results-dir>/<cell>/results.json`` and ``junit.xml``,
and a cell the environment cannot run (ipvs without ``ip_vs``) has every test skipped with
the reason and is reported ``unsupported`` — no cluster is created for it.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fixtures import cni, providers, results
from fixtures.diagnostics import DiagnosticsSource, NamespaceRegistry, capture
from fixtures.errors import SvcconformError, UnsupportedEnvironment
from fixtures.kube import Kube
from fixtures.providers import ClusterFacts, ExistingProvider, KindProvider, Provider
from fixtures.spec import (
    CNIS,
    CREATED_BY_LABEL,
    CREATED_BY_VALUE,
    DEFAULT_NODES,
    FAMILIES,
    FAMILY_LABEL,
    IP_FAMILIES,
    MAX_NODES,
    MIN_NODES,
    PROXY_MODE_NONE,
    PROXY_MODES,
    RUN_ID_LABEL,
    ClusterSpec,
    InvalidSpec,
    is_dns_label,
    namespace_name,
    new_run_id,
    spec_from_options,
)

MARKERS: dict[str, str] = {
    "dns": "Service DNS records (A/AAAA, SRV, search paths) as seen from pods",
    "env": "docker-link style environment variables a Service gives pods",
    "clusterip": "ClusterIP reachability from every node, TCP and UDP, named ports",
    "nodeport": "NodePort reachability on every node, from pods and from the host",
    "etp": "externalTrafficPolicy Cluster/Local: reachability and the source IP backends see",
    "selectorless": "Services without selectors, backed by hand-made EndpointSlices/Endpoints",
    "convergence": "how fast the data plane follows Service/EndpointSlice changes (measured)",
    "properties": "property-based checks (hypothesis) of Service behaviour",
}

SESSION_KEY = pytest.StashKey["CellSession"]()


class SvcconformCleanupWarning(UserWarning):
    """A test namespace could not be deleted; it is left for ``kubectl delete ns -l ...``."""


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if pluginmanager.has_plugin("pytest-kind-ng"):
        raise pytest.UsageError(
            "pytest-kind-ng's plugin is active and its --kubeconfig/--keep-cluster options "
            "collide with svcconform's: run pytest with -p no:pytest-kind-ng "
            "(pyproject.toml's addopts does this)"
        )
    group = parser.getgroup("svcconform", "svcconform: Kubernetes Service conformance cell")
    group.addoption(
        "--proxy-mode", dest="svcc_proxy_mode", default=None, metavar="MODE",
        help=f"kube-proxy mode of the cell: {', '.join(PROXY_MODES)} (default: iptables), or "
        f"{PROXY_MODE_NONE} with --cni=cilium (its kube-proxy replacement). "
        "With --kubeconfig it is detected from the cluster.",
    )
    group.addoption(
        "--cni", dest="svcc_cni", default=None, metavar="CNI",
        help=f"CNI of the cell: {', '.join(CNIS)} (default: kindnet). "
        "With --kubeconfig it is detected from the cluster.",
    )
    group.addoption(
        "--kubeconfig", dest="svcc_kubeconfig", default=None, metavar="PATH",
        help="test an existing cluster (provider 'existing') instead of creating a kind "
        "cluster; nothing outside the suite's own namespaces is created or deleted",
    )
    group.addoption(
        "--keep-cluster", dest="svcc_keep_cluster", action="store_true", default=False,
        help="do not delete the kind cluster at the end (a rerun of the cell reuses it)",
    )
    group.addoption(
        "--nodes", dest="svcc_nodes", default=None, metavar="N",
        help=f"total kind nodes, one of them the control-plane: {MIN_NODES}..{MAX_NODES} "
        f"(default: {DEFAULT_NODES} = 1 control-plane + 2 workers)",
    )
    group.addoption(
        "--k8s-version", dest="svcc_k8s_version", default=None, metavar="VERSION",
        help="Kubernetes version of the kind nodes, e.g. v1.34.4 (default: the version of the "
        "node image from images/; another version uses kindest/node:<version>)",
    )
    group.addoption(
        "--node-image", dest="svcc_node_image", default=None, metavar="IMAGE",
        help="kind node image to use as is (overrides --k8s-version and images/)",
    )
    group.addoption(
        "--results-dir", dest="svcc_results_dir", default="results", metavar="DIR",
        help="where <cell>/results.json, junit.xml and diagnostics go (default: ./results)",
    )
    group.addoption(
        "--ip-family", dest="svcc_ip_family", default=None, metavar="FAMILY",
        help=f"IP family of the kind cluster: {', '.join(IP_FAMILIES)} (default: ipv4)",
    )


@dataclass
class CellSession:
    """Everything one pytest session knows about its cell and cluster."""

    spec: ClusterSpec
    run_id: str
    provider: Provider
    keep_cluster: bool
    registry: NamespaceRegistry = field(default_factory=NamespaceRegistry)
    #: Namespaces whose deletion was started but not waited for (waited at the session's end).
    doomed: list[str] = field(default_factory=list)
    results: results.ResultsPlugin | None = None
    unsupported: UnsupportedEnvironment | None = None
    error: SvcconformError | None = None
    _prepared: bool = False

    def prepare(self) -> None:
        """Check once that the cell can run here (no side effects)."""
        if self._prepared:
            return
        self._prepared = True
        try:
            self.provider.prepare()
        except UnsupportedEnvironment as exc:
            self.unsupported = exc
            if self.results is not None:
                self.results.mark_unsupported(str(exc))
        except SvcconformError as exc:
            self.fail(exc)
        if self.results is not None:
            self.results.update_cell(
                images=self.provider.images(), kubernetes_version=self.provider.expected_version()
            )

    def fail(self, exc: SvcconformError) -> None:
        self.error = exc
        if self.results is not None:
            self.results.mark_error(str(exc))


def _state(config: pytest.Config) -> CellSession:
    try:
        return config.stash[SESSION_KEY]
    except KeyError:
        raise pytest.UsageError("svcconform's conftest was not configured") from None


def _targets_suite(config: pytest.Config) -> bool:
    """Does this run collect from ``suite/`` (then it is a cell run with results)?"""
    suite = (config.rootpath / "suite").resolve()
    invocation = config.invocation_params.dir
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        path = (path if path.is_absolute() else invocation / path).resolve()
        if path == suite or path.is_relative_to(suite) or suite.is_relative_to(path):
            return True
    return False


def _connect_existing(provider: ExistingProvider, config: pytest.Config) -> ClusterSpec:
    try:
        detected = provider.connect()
    except SvcconformError as exc:
        raise pytest.UsageError(str(exc)) from None
    for option, given, found in (
        ("--proxy-mode", config.option.svcc_proxy_mode, detected.proxy_mode),
        ("--cni", config.option.svcc_cni, detected.cni),
    ):
        if given is not None and given != found:
            raise pytest.UsageError(
                f"{option}={given} was given but the cluster in {provider.kubeconfig} runs "
                f"{found} ({detected.evidence}); drop {option} to test what it runs"
            )
    return provider.spec


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for family in FAMILIES:
        config.addinivalue_line("markers", f"{family}: {MARKERS[family]}")
    if config.option.help:
        return
    option = config.option
    try:
        spec = spec_from_options(
            proxy_mode=option.svcc_proxy_mode,
            cni=option.svcc_cni,
            nodes=option.svcc_nodes,
            ip_family=option.svcc_ip_family,
            k8s_version=option.svcc_k8s_version,
            node_image=option.svcc_node_image,
            kubeconfig=option.svcc_kubeconfig,
            name_suffix=os.environ.get("SVCCONFORM_CLUSTER_SUFFIX", ""),
        )
        run_id = new_run_id(os.environ.get("SVCCONFORM_RUN_ID"))
    except InvalidSpec as exc:
        raise pytest.UsageError(str(exc)) from None
    provider = providers.make_provider(spec, cni_installers=cni.INSTALLERS)
    if isinstance(provider, ExistingProvider):
        spec = _connect_existing(provider, config)
    state = CellSession(spec=spec, run_id=run_id, provider=provider, keep_cluster=option.svcc_keep_cluster)
    config.stash[SESSION_KEY] = state
    if not _targets_suite(config):
        return
    cell_dir = Path(option.svcc_results_dir).expanduser()
    if not cell_dir.is_absolute():
        cell_dir = config.invocation_params.dir / cell_dir
    cell_dir = cell_dir / spec.cell
    collect_only = bool(option.collectonly)
    plugin = results.ResultsPlugin(
        cell_dir=cell_dir,
        cell={
            "name": spec.cell,
            "proxy_mode": spec.proxy_mode,
            "cni": spec.cni,
            "provider": spec.provider,
            "kubernetes_version": None,
            "nodes": spec.nodes,
            "kernel": provider.kernel() if isinstance(provider, KindProvider) else None,
        },
        suite_root=config.rootpath / "suite",
        write=not collect_only,
    )
    seed = config.getoption("hypothesis_seed", default=None)
    if seed is not None:
        plugin.set_hypothesis_seed(int(seed) if str(seed).isdigit() else str(seed))
    if not collect_only:
        results.configure_junit(config, cell_dir)
    config.pluginmanager.register(plugin, "svcconform-results")
    state.results = plugin


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or state.results is None or config.option.collectonly:
        return
    suite_items = [item for item in items if state.results.is_suite_item(item)]
    if not suite_items:
        return
    state.prepare()
    if state.unsupported is not None:
        skip = pytest.mark.skip(reason=str(state.unsupported))
        for item in suite_items:
            item.add_marker(skip)


# --- session fixtures ----------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster_spec(pytestconfig: pytest.Config) -> ClusterSpec:
    """The cell's spec (for an existing cluster: with the proxy mode and CNI it runs)."""
    return _state(pytestconfig).spec


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Iterator[Provider]:
    """The cluster provider, up: a kind cluster created (or reused) once per session and
    deleted at the end unless --keep-cluster, or the existing cluster of --kubeconfig."""
    state = _state(pytestconfig)
    state.prepare()
    if state.unsupported is not None:
        pytest.skip(str(state.unsupported))
    if state.error is not None:
        raise state.error
    provider = state.provider
    started = time.monotonic()
    try:
        provider.up()
        facts = provider.facts()
    except Exception as exc:
        error = exc if isinstance(exc, SvcconformError) else SvcconformError(
            f"cluster setup failed: {type(exc).__name__}: {exc}"
        )
        state.fail(error)
        if provider.created and not state.keep_cluster:
            _teardown(provider)
        raise error from (None if error is exc else exc)
    plugin = state.results
    if plugin is not None:
        plugin.set_timing("cluster_create_s", time.monotonic() - started)
        plugin.update_cell(
            kubernetes_version=facts.kubernetes_version,
            nodes=len(facts.nodes),
            kernel=facts.kernel,
            images=provider.images(),
        )
        plugin.capture = functools.partial(_capture, state, facts)
    yield provider
    if plugin is not None:
        plugin.capture = None
    if state.keep_cluster or provider.name != "kind":  # a cluster that stays: leave it clean
        wait_for_doomed_namespaces(state)
    if state.keep_cluster:
        provider.close()
    else:
        _teardown(provider)


def wait_for_doomed_namespaces(state: CellSession) -> None:
    """Wait until every namespace the session deleted is gone (a warning names any left)."""
    kube = state.provider.kube
    for name in state.doomed:
        try:
            kube.delete_namespace(name)
        except SvcconformError as exc:
            warnings.warn(
                SvcconformCleanupWarning(
                    f"namespace {name} was not deleted: {exc} (leftovers: kubectl delete ns "
                    f"-l {RUN_ID_LABEL}={state.run_id})"
                ),
                stacklevel=1,
            )
    state.doomed.clear()


def _teardown(provider: Provider) -> None:
    try:
        provider.down()
    except SvcconformError as exc:
        warnings.warn(SvcconformCleanupWarning(f"cluster teardown failed: {exc}"), stacklevel=1)


def _capture(state: CellSession, facts: ClusterFacts, item: pytest.Item, bundle: Path, failure: str) -> Path:
    provider = state.provider
    source = DiagnosticsSource(
        kube=provider.kube,
        nodes=provider.nodes,
        node_exec=provider.node_exec if provider.supports_node_exec else None,
        proxy_mode=facts.proxy_mode,
        ip_family=facts.ip_family,
        node_exec_unavailable=f"the {provider.name} provider has no access to nodes",
    )
    namespaces = state.registry.for_chain([node.nodeid for node in item.listchain()])
    return capture(source, bundle, namespaces, test_id=item.nodeid, failure=failure)


@pytest.fixture(scope="session")
def cluster_facts(cluster: Provider) -> ClusterFacts:
    """Proxy mode, CNI, provider, Kubernetes version, kernel, nodes (with IPs and roles)."""
    return cluster.facts()


@pytest.fixture(scope="session")
def kube(cluster: Provider) -> Kube:
    """The official-client wrapper for the cluster (thread-safe exec, waits, objects)."""
    return cluster.kube


# --- namespaces ----------------------------------------------------------------------


class NamespaceFactory:
    """Creates ``svcc-<family>-<runid>-<rand4>`` namespaces for one pytest node and deletes
    them (waiting until gone) when that node is torn down, whatever the outcome."""

    def __init__(self, kube: Kube, state: CellSession, node: pytest.Item | pytest.Collector) -> None:
        self.kube = kube
        self.state = state
        self.nodeid = node.nodeid
        marker = next((m.name for m in node.iter_markers() if m.name in FAMILIES), None)
        self.family = marker or "test"
        self.created: list[str] = []

    def __call__(self, family: str | None = None, *, labels: dict[str, str] | None = None) -> str:
        family = family or self.family
        if not is_dns_label(family):
            raise SvcconformError(f"namespace family {family!r} must be a lowercase DNS label")
        name = namespace_name(family, self.state.run_id)
        self.kube.create_namespace(
            name,
            labels={
                **(labels or {}),
                CREATED_BY_LABEL: CREATED_BY_VALUE,
                RUN_ID_LABEL: self.state.run_id,
                FAMILY_LABEL: family,
            },
            annotations={"svcconform/test-id": self.nodeid},
        )
        self.created.append(name)
        self.state.registry.add(self.nodeid, name)
        return name

    def cleanup(self) -> None:
        """Start deleting this test's (or module's) namespaces and go on: nothing outside a
        namespace depends on it, and waiting for its pods' graceful termination serially
        after every test and module cost minutes per cell.  The session waits for them all
        at its end (:func:`wait_for_doomed_namespaces`)."""
        for name in self.created:
            self._attempt(name, lambda n: self.kube.delete_namespace(n, wait=False))
            self.state.doomed.append(name)

    def _attempt(self, name: str, action: Callable[[str], Any]) -> None:
        try:
            action(name)
        except SvcconformError as exc:
            warnings.warn(
                SvcconformCleanupWarning(
                    f"namespace {name} was not deleted: {exc} (leftovers: kubectl delete ns "
                    f"-l {RUN_ID_LABEL}={self.state.run_id})"
                ),
                stacklevel=1,
            )


@pytest.fixture
def test_namespace(request: pytest.FixtureRequest, kube: Kube) -> Iterator[NamespaceFactory]:
    """Factory: ``ns = test_namespace()`` makes a labelled namespace for this test, deleted
    on teardown even if the test failed; diagnostics of a failure include it."""
    factory = NamespaceFactory(kube, _state(request.config), request.node)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="module")
def module_namespace(request: pytest.FixtureRequest, kube: Kube) -> Iterator[NamespaceFactory]:
    """Like ``test_namespace`` but shared by a module's tests (deleted after the last one)."""
    factory = NamespaceFactory(kube, _state(request.config), request.node)
    yield factory
    factory.cleanup()


# --- results -------------------------------------------------------------------------


@pytest.fixture
def record_measurement(request: pytest.FixtureRequest) -> Callable[..., dict[str, Any]]:
    """``record_measurement(name, samples, unit="s")``: samples for results.json (p50/p90/max)."""
    return functools.partial(results.record_measurement, request)


@pytest.fixture
def record_hypothesis_seed(pytestconfig: pytest.Config) -> Callable[[int | str], None]:
    """Record the hypothesis seed a property-based family used (results.json)."""

    def record(seed: int | str) -> None:
        plugin = _state(pytestconfig).results
        if plugin is not None:
            plugin.set_hypothesis_seed(seed)

    return record
