"""svcconform's pytest wiring: options → ClusterSpec → provider → session fixtures → results.

Options live in one group (``pytest --help``, section "svcconform").  A run that targets
``suite/`` is a *cell* run: it writes ``<results-dir>/<cell>/results.json`` and ``junit.xml``,
and a cell the environment cannot run (ipvs without ``ip_vs``) has every test skipped with
the reason and is reported ``unsupported`` — no cluster is created for it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fixtures import cni, markers, outside, performance, podsecurity, preflight, providers, results
from fixtures.diagnostics import DiagnosticsSource, NamespaceRegistry, capture
from fixtures.errors import AdmissionRefused, SvcconformError, UnsupportedEnvironment
from fixtures.kube import Kube
from fixtures.probes import Vantage
from fixtures.providers import ClusterFacts, ExistingProvider, KindProvider, Provider
from fixtures.providers.existing import read_component_versions, read_min_sync_period
from fixtures.spec import (
    CNIS,
    CREATED_BY_LABEL,
    CREATED_BY_VALUE,
    DEFAULT_NODES,
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
from images import catalog

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
    group.addoption(
        "--image-registry", dest="svcc_image_registry", default=None, metavar="REGISTRY",
        help="pull the suite's pod images from REGISTRY (a host, optionally with a path), "
        "e.g. registry.example.com/mirror: names keep their path under it "
        "(see 'python -m images push REGISTRY'); default $SVCCONFORM_IMAGE_REGISTRY, "
        "else the names the nodes have preloaded",
    )
    group.addoption(
        "--image", dest="svcc_images", action="append", default=[], metavar="ROLE=IMAGE",
        help=f"use exactly IMAGE for one of the suite's images ({', '.join(catalog.SUITE_IMAGES)}); "
        "repeatable, applied after --image-registry",
    )
    group.addoption(
        "--budget", dest="svcc_budgets", action="append", default=[], metavar="NAME=SECONDS",
        help="performance budget of one measurement (repeatable), replacing its default "
        "(fixtures/performance.py RULES); the performance verdict never changes the conformance status",
    )
    group.addoption(
        "--budget-basis", dest="svcc_budget_basis", default="reference", choices=performance.BASES,
        help="minSyncPeriod the default budgets assume: 'reference' (kube-proxy's default, 1 s: a "
        "cluster configured slower is over budget) or 'configured' (the value detected on the cluster)",
    )
    group.addoption(
        "--baseline", dest="svcc_baseline", default=None, metavar="RESULTS_JSON",
        help="an earlier run's results.json: report each measurement's p50/p90 change against it "
        "and flag regressions (results.json performance.baseline)",
    )
    group.addoption(
        "--regression-factor", dest="svcc_regression_factor", type=float,
        default=performance.DEFAULT_REGRESSION_FACTOR, metavar="FACTOR",
        help=f"with --baseline: a p50 or p90 more than FACTOR times the baseline's (and "
        f"{performance.REGRESSION_FLOOR_S:g} s more) is a regression (default "
        f"{performance.DEFAULT_REGRESSION_FACTOR:g})",
    )


#: Options that shape a kind cluster the suite creates: meaningless with --kubeconfig.
KIND_ONLY_OPTIONS = (
    ("--nodes", "svcc_nodes"),
    ("--ip-family", "svcc_ip_family"),
    ("--k8s-version", "svcc_k8s_version"),
    ("--node-image", "svcc_node_image"),
    ("--keep-cluster", "svcc_keep_cluster"),
)


def unwritable(directory: Path) -> str:
    """Why results cannot be written under ``directory`` ("" when they can): checked before a
    cluster is created, so a bad path costs seconds, not a whole cell run."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".svcc-write-check-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return f"cannot write {exc.filename or directory}: {exc.strerror or exc}"
    return ""


def kind_only_conflicts(option: Any) -> list[str]:
    """The kind-only options given together with --kubeconfig (pure)."""
    if not getattr(option, "svcc_kubeconfig", None):
        return []
    return [flag for flag, dest in KIND_ONLY_OPTIONS if getattr(option, dest, None) not in (None, False)]


def budgeting_from_options(option: Any, cwd: Path) -> results.Budgeting:
    """The performance verdict's settings (pure but for reading ``--baseline``); a bad value
    raises :class:`InvalidSpec` naming the option."""
    try:
        overrides = performance.parse_budget_option(getattr(option, "svcc_budgets", None))
    except SvcconformError as exc:
        raise InvalidSpec("--budget", str(exc).split(": ", 1)[-1]) from None
    factor = float(getattr(option, "svcc_regression_factor", performance.DEFAULT_REGRESSION_FACTOR))
    if not factor > 1.0:
        raise InvalidSpec("--regression-factor", f"{factor:g} must be more than 1")
    raw = getattr(option, "svcc_baseline", None)
    baseline = None
    if raw:
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else cwd / path
        try:
            baseline = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidSpec("--baseline", f"cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise InvalidSpec("--baseline", f"{path} is not JSON: {exc}") from None
        if not isinstance(baseline, dict) or not isinstance(baseline.get("tests"), list):
            raise InvalidSpec("--baseline", f"{path} is not a results.json (no tests list)")
    return results.Budgeting(basis=str(getattr(option, "svcc_budget_basis", "reference") or "reference"),
                             overrides=overrides, baseline=baseline,
                             baseline_source=str(raw or ""), factor=factor)


def suite_images_from_options(option: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """Role → image for the suite's pods from --image-registry / --image (pure); a bad
    value raises :class:`InvalidSpec` naming the option."""
    registry = (getattr(option, "svcc_image_registry", None)
                or environ.get("SVCCONFORM_IMAGE_REGISTRY") or None)
    overrides: dict[str, str] = {}
    for raw in getattr(option, "svcc_images", None) or []:
        role, sep, ref = str(raw).partition("=")
        if not sep or not ref.strip() or role.strip() not in catalog.SUITE_IMAGES:
            raise InvalidSpec("--image", f"{raw!r} is not ROLE=IMAGE with ROLE one of "
                              f"{', '.join(catalog.SUITE_IMAGES)}")
        overrides[role.strip()] = ref.strip()
    if registry is not None and (not registry.strip() or any(c.isspace() for c in registry.strip())):
        raise InvalidSpec("--image-registry", f"{registry!r} is not a registry name (host[:port][/path])")
    return catalog.suite_images(registry.strip() if registry else None, overrides)


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
    #: role → image the suite's pods run (``--image-registry`` / ``--image``)
    images: dict[str, str] = field(default_factory=lambda: dict(catalog.SUITE_IMAGES))
    #: the preflight pods (image check, node vantages), once they ran
    preflight: preflight.Preflight | None = None
    #: what the cell is, and on what evidence (results.json ``cell.detection``)
    detection: dict[str, dict[str, str]] = field(default_factory=dict)
    #: whether this machine reaches the node addresses (an extra outside vantage)
    host_reach: outside.HostReach | None = None
    #: the cell-wide setup error was shown once already (later tests say "as above")
    error_reported: bool = False
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
                images=self.cell_images(), kubernetes_version=self.provider.expected_version()
            )

    def fail(self, exc: SvcconformError) -> None:
        self.error = exc
        if self.results is not None:
            self.results.mark_error(str(exc))

    def run_preflight(self) -> preflight.Preflight:
        """Once per session, before the first test: the suite's images run on every node
        (one line naming the image otherwise), node vantages up, kube-proxy's mode asked."""
        if self.preflight is not None:
            return self.preflight
        kube = self.provider.kube
        kube.images = dict(self.images)
        name = namespace_name("preflight", self.run_id)
        kube.create_namespace(name, labels={
            CREATED_BY_LABEL: CREATED_BY_VALUE, RUN_ID_LABEL: self.run_id, FAMILY_LABEL: "preflight",
            **podsecurity.labels(podsecurity.PRIVILEGED),
        })
        self.doomed.append(name)
        nodes = [node.name for node in self.provider.nodes()]
        self.preflight = preflight.run(kube, name, nodes, self.images, run_id=self.run_id)
        mode, evidence = preflight.proxy_mode_verdict(
            preflight.probe_proxy_modes(self.preflight.vantages, _loopbacks(self.spec.ip_family))
        ) if self.preflight.vantages else (None, self.preflight.vantages_refused)
        self.detection["proxy_mode_probe"] = {"value": mode or "", "evidence": evidence}
        self.detection.update(read_component_versions(kube))
        self.detection.update(read_min_sync_period(kube, self.spec.proxy_mode))
        if self.results is not None:
            self.results.update_cell(images=self.cell_images(), detection=self.detection)
        return self.preflight

    def cell_images(self) -> dict[str, Any]:
        """results.json ``cell.images``: the node image and, once the preflight ran, the
        image each suite pod role ran with the IDs the kubelets resolved it to."""
        images = dict(self.provider.images())
        if self.preflight is not None:
            images["suite"] = self.preflight.images
        return images


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


def _loopbacks(ip_family: str) -> list[str]:
    """Where kube-proxy's metrics (and ``/proxyMode``) listen on a node by default."""
    return {"ipv4": ["127.0.0.1"], "ipv6": ["[::1]"]}.get(ip_family, ["127.0.0.1", "[::1]"])


def _connect_existing(provider: ExistingProvider, config: pytest.Config, state: CellSession, *,
                      probe: bool) -> ClusterSpec:
    """Reach the cluster, detect what it runs (from the API, then, with ``probe``, from
    kube-proxy itself through the preflight pods) and check the options against it."""
    try:
        detected = provider.connect()
        state.provider = provider
        state.spec = provider.spec
        state.detection = {
            "proxy_mode": {"value": detected.proxy_mode, "evidence": detected.proxy_mode_evidence},
            "cni": {"value": detected.cni, "evidence": detected.cni_evidence},
            "ip_family": {"value": detected.ip_family, "evidence": detected.ip_family_evidence},
        }
        if probe:
            state.run_preflight()
    except SvcconformError as exc:
        raise pytest.UsageError(str(exc)) from None
    mode, evidence = detected.proxy_mode, detected.evidence
    probed = state.detection.get("proxy_mode_probe", {}).get("value")
    if probed:  # kube-proxy's own answer wins over flags and ConfigMaps
        if probed != mode:
            state.detection["proxy_mode"] = {
                "value": probed,
                "evidence": f"{state.detection['proxy_mode_probe']['evidence']} "
                f"(the API suggested {mode}: {detected.proxy_mode_evidence})",
            }
        mode = probed
        evidence = state.detection["proxy_mode_probe"]["evidence"] + f"; {detected.cni_evidence}"
        provider.spec = provider.spec.with_detected(proxy_mode=mode, cni=detected.cni)
    for option, given, found in (
        ("--proxy-mode", config.option.svcc_proxy_mode, mode),
        ("--cni", config.option.svcc_cni, detected.cni),
    ):
        if given is not None and given != found:
            raise pytest.UsageError(
                f"{option}={given} was given but the cluster in {provider.kubeconfig} runs "
                f"{found} ({evidence}); drop {option} to test what it runs"
            )
    return provider.spec


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    markers.configure(config)  # the families of fixtures/families.py, core/extended, and their check
    if config.option.help:
        return
    option = config.option
    conflicts = kind_only_conflicts(option)
    if conflicts:
        raise pytest.UsageError(
            f"{', '.join(conflicts)} shape(s) a kind cluster the suite creates and cannot apply to the "
            f"existing cluster of --kubeconfig {option.svcc_kubeconfig}: drop {' and '.join(conflicts)}"
        )
    try:
        images = suite_images_from_options(option, os.environ)
        budgeting = budgeting_from_options(option, config.invocation_params.dir)
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
    if _targets_suite(config) and not option.collectonly:
        results_root = Path(option.svcc_results_dir).expanduser()
        problem = unwritable(results_root if results_root.is_absolute()
                             else config.invocation_params.dir / results_root)
        if problem:  # before any cluster is created or contacted
            raise pytest.UsageError(f"--results-dir {option.svcc_results_dir}: {problem}; "
                                    "give a directory this user can write")
    provider = providers.make_provider(spec, cni_installers=cni.INSTALLERS)
    state = CellSession(spec=spec, run_id=run_id, provider=provider, keep_cluster=option.svcc_keep_cluster,
                        images=images)
    config.stash[SESSION_KEY] = state
    cell_run = _targets_suite(config) and not option.collectonly
    if isinstance(provider, ExistingProvider):
        # the cell's name is what the cluster runs: ask it before anything is written
        spec = state.spec = _connect_existing(provider, config, state, probe=cell_run)
    if not _targets_suite(config):
        return
    cell_dir = Path(option.svcc_results_dir).expanduser()
    if not cell_dir.is_absolute():
        cell_dir = config.invocation_params.dir / cell_dir
    cell_dir = cell_dir / spec.cell
    selection = results.selection_of(config, config.rootpath / "suite")
    if selection.partial:  # never overwrite the cell's full verdict with part of one
        cell_dir = cell_dir / results.RUNS_DIR / results.run_stamp()
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
    plugin.selection = selection
    plugin.budgeting = budgeting
    plugin.revision = results.source_revision(config.rootpath)
    if state.detection:
        plugin.update_cell(detection=state.detection)
    if state.preflight is not None:
        plugin.update_cell(images=state.cell_images())
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


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A check whose workload the cluster's admission refused is skipped with the refusal
    (the cluster's policy stopped it, not its Service implementation)."""
    report: pytest.TestReport = yield  # type: ignore[misc]
    excinfo = call.excinfo
    if excinfo is not None and call.when in ("setup", "call") and excinfo.errisinstance(AdmissionRefused):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {excinfo.value}")
    elif excinfo is not None and call.when == "setup":
        state = item.config.stash.get(SESSION_KEY, None)
        if state is not None and state.error is not None and excinfo.value is state.error:
            # the cell-wide setup error: its one line once, not the same traceback per test
            report.longrepr = ("cell setup failed (as above)" if state.error_reported
                               else f"cell setup failed: {state.error}")
            state.error_reported = True
    return report


def pytest_unconfigure(config: pytest.Config) -> None:
    """Namespaces still left on an existing cluster (e.g. the preflight's, when no test used
    the cluster) are deleted without waiting."""
    state = config.stash.get(SESSION_KEY, None)
    if state is None or state.provider.name != "existing" or not state.doomed:
        return
    for name in state.doomed:
        with contextlib.suppress(SvcconformError):
            state.provider.kube.delete_namespace(name, wait=False)
    state.provider.close()


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
        if not state.detection:
            made = "the suite's kind cluster"
            state.detection = {
                "proxy_mode": {"value": facts.proxy_mode,
                               "evidence": f"{made}, created with kubeProxyMode {facts.proxy_mode}"},
                "cni": {"value": facts.cni, "evidence": f"{made}, {facts.cni} installed by it"},
                "ip_family": {"value": facts.ip_family, "evidence": "nodes' podCIDRs/InternalIPs"},
            }
        state.run_preflight()
        _check_probed_mode(state, facts)
    except Exception as exc:
        error = exc if isinstance(exc, SvcconformError) else SvcconformError(
            f"cluster setup failed: {type(exc).__name__}: {exc}"
        )
        state.fail(error)
        if provider.created and not state.keep_cluster:
            _teardown(provider)
        if isinstance(error, preflight.ImagesUnavailable):  # one line, not one error per test
            pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)
        raise error from (None if error is exc else exc)
    plugin = state.results
    if plugin is not None:
        plugin.set_timing("cluster_create_s", time.monotonic() - started)
        plugin.update_cell(
            kubernetes_version=facts.kubernetes_version,
            nodes=len(facts.nodes),
            kernel=facts.kernel,
            images=state.cell_images(),
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


def _check_probed_mode(state: CellSession, facts: ClusterFacts) -> None:
    """kube-proxy's own ``/proxyMode`` must agree with the cell (a kind cluster the suite made)."""
    probed = state.detection.get("proxy_mode_probe", {}).get("value")
    if probed and probed != facts.proxy_mode:
        raise SvcconformError(
            f"the cell is {state.spec.cell} but kube-proxy reports mode {probed} "
            f"({state.detection['proxy_mode_probe']['evidence']})"
        )


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
def node_vantages(cluster: Provider, pytestconfig: pytest.Config) -> dict[str, Vantage]:
    """``{node: Vantage}``: a pod in each node's network namespace (the preflight's
    hostNetwork client pods), for probes that must leave from a node.  Where admission
    refused them, the checks using this fixture are skipped with the refusal."""
    found = _state(pytestconfig).run_preflight()
    if not found.vantages:
        raise AdmissionRefused(f"no hostNetwork vantage pods: {found.vantages_refused}")
    return found.vantages


@pytest.fixture(scope="session")
def host_reach(cluster_facts: ClusterFacts, pytestconfig: pytest.Config) -> outside.HostReach:
    """Whether this machine reaches the node addresses (then it is an extra outside vantage;
    else its rows are reported as not tried, with this reason).  Checked once a session."""
    state = _state(pytestconfig)
    if state.host_reach is None:
        state.host_reach = outside.host_reach({n.name: n.internal_ip for n in cluster_facts.nodes})
        if state.results is not None:
            state.results.update_cell(vantages={"this_machine": {
                "reachable": state.host_reach.reachable, "reason": state.host_reach.reason}})
    return state.host_reach


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
        self.family = markers.family_of(node) or "test"
        self.created: list[str] = []

    def __call__(self, family: str | None = None, *, labels: dict[str, str] | None = None) -> str:
        family = family or self.family
        if not is_dns_label(family):
            raise SvcconformError(f"namespace family {family!r} must be a lowercase DNS label")
        name = namespace_name(family, self.state.run_id)
        self.kube.create_namespace(
            name,
            labels={
                **podsecurity.labels(podsecurity.BASELINE),
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
