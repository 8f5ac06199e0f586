"""The pytest wiring end to end, in-process with pytester and a fake provider: options,
markers, results.json/junit.xml, unsupported and error cells, diagnostics, namespaces."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from framework_fakes import FakeKube, FakeProvider, write_kubeconfig

import fixtures.providers
from fixtures.families import DEFAULT_PROFILES, FAMILIES
from fixtures.results import validate
from fixtures.spec import ClusterSpec

pytest_plugins = ["pytester"]

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"
NO_KIND_PLUGIN = ("-p", "no:pytest-kind-ng")

SUITE = '''
import pytest

pytestmark = pytest.mark.clusterip

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_reaches_the_service(test_namespace, record_measurement, cluster_facts):
    ns = test_namespace()
    assert ns.startswith("svcc-clusterip-")
    record_measurement("endpoint_add", [0.5, 1.5, 1.0])
    assert cluster_facts.kubernetes_version == "v1.34.4"

def test_sees_every_backend(test_namespace):
    test_namespace()
    assert 2 == 3, "expected 3 backends, saw 2"

@pytest.mark.dns
def test_dns_family_marker_wins(kube):
    pytest.skip("no DNS today")

@pytest.mark.xfail(reason="known kube-proxy bug", strict=True)
def test_known_bug(kube):
    raise AssertionError("still broken")

def test_setup_error(broken):
    pass

def test_without_cluster():
    pass
'''


@pytest.fixture(autouse=True)
def no_plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry-point plugin loading costs ~0.7s per in-process run; our conftest needs none."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def cell(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A repo-like pytester dir (our conftest, a suite) with the provider faked."""
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    suite = pytester.mkdir("suite")
    (suite / "test_cell.py").write_text(SUITE)
    made: dict[str, Any] = {"options": {}, "providers": []}

    def make_provider(spec: ClusterSpec, **_: Any) -> FakeProvider:
        provider = FakeProvider(spec, **made["options"])
        made["providers"].append(provider)
        return provider

    monkeypatch.setattr(fixtures.providers, "make_provider", make_provider)
    return made


def results_of(pytester: pytest.Pytester, cell: str = "iptables-kindnet") -> dict[str, Any]:
    doc = json.loads((pytester.path / "results" / cell / "results.json").read_text())
    assert validate(doc) == []
    return doc


def partial_runs_of(pytester: pytest.Pytester, cell: str = "iptables-kindnet") -> list[dict[str, Any]]:
    """The partial runs of a cell (``<cell>/runs/<stamp>/results.json``), oldest first."""
    files = sorted((pytester.path / "results" / cell / "runs").glob("*/results.json"))
    docs = [json.loads(f.read_text()) for f in files]
    assert all(validate(d) == [] for d in docs)
    return docs


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["id"].split("::")[-1]: t for t in doc["tests"]}


def test_a_completed_cell(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    doc = results_of(pytester)
    assert doc["status"] == "completed"
    assert doc["cell"]["kubernetes_version"] == "v1.34.4"
    images = doc["cell"]["images"]
    assert {k: images[k] for k in ("node", "airgapped")} == {"node": "svcconform/kind-node:v1.34.4", "airgapped": True}
    # the preflight ran the suite's images on every node and recorded what the kubelets resolved
    assert images["suite"]["client"]["image"] == "svcconform/client:1"
    assert images["suite"]["agnhost"]["image_ids"] == [f"registry.k8s.io/e2e-test-images/agnhost@sha256:{'0' * 64}"]
    assert doc["cell"]["detection"]["proxy_mode_probe"]["value"] == "iptables"
    assert doc["timings"]["cluster_create_s"] is not None
    assert doc["timings"]["suite_s"] is not None
    tests = by_name(doc)
    assert {name: t["outcome"] for name, t in tests.items()} == {
        "test_reaches_the_service": "passed", "test_sees_every_backend": "failed",
        "test_dns_family_marker_wins": "skipped", "test_known_bug": "skipped",
        "test_setup_error": "error", "test_without_cluster": "passed",
    }
    assert tests["test_dns_family_marker_wins"]["family"] == "dns"
    assert tests["test_dns_family_marker_wins"]["message"] == "no DNS today"
    assert tests["test_known_bug"]["message"] == "xfail: known kube-proxy bug"
    assert tests["test_reaches_the_service"]["family"] == "clusterip"
    assert tests["test_reaches_the_service"]["profile"] == "core"
    assert doc["families"] == DEFAULT_PROFILES  # the registry this run had
    assert tests["test_reaches_the_service"]["profile_reason"].startswith("clusterip: ")
    assert tests["test_setup_error"]["message"] == "RuntimeError: fixture exploded"
    measurement = tests["test_reaches_the_service"]["measurements"]["endpoint_add"]
    assert (measurement["p50"], measurement["max"], measurement["unit"]) == (1.0, 1.5, "s")
    failed = tests["test_sees_every_backend"]
    assert "expected 3 backends, saw 2" in failed["message"]
    bundle = pytester.path / "results" / "iptables-kindnet" / failed["diagnostics"]
    assert failed["diagnostics"].startswith("diagnostics/")
    assert (bundle / "README.txt").exists()
    assert (bundle / "nodes" / "n-worker" / "iptables-save.txt").exists()
    assert "svcc-clusterip-" in (bundle / "README.txt").read_text()
    assert tests["test_reaches_the_service"]["diagnostics"] is None
    result.stdout.fnmatch_lines(["*diagnostics: *results/iptables-kindnet/diagnostics/*"])
    result.stdout.fnmatch_lines(["*svcconform: cell iptables-kindnet COMPLETED*"])
    assert (pytester.path / "results" / "iptables-kindnet" / "junit.xml").exists()
    provider = cell["providers"][0]
    assert provider.events == ["prepare", "up", "down"]
    kube: FakeKube = provider._fake
    tests_namespaces = {n: v for n, v in kube.namespaces.items() if not n.startswith("svcc-preflight-")}
    assert set(kube.deleted) == set(tests_namespaces)  # every test namespace cleaned up
    labels = next(iter(tests_namespaces.values()))["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    preflight_ns = next(v for n, v in kube.namespaces.items() if n.startswith("svcc-preflight-"))
    assert preflight_ns["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["app.kubernetes.io/created-by"] == "svcconform"
    assert labels["svcconform/family"] == "clusterip"


def test_an_unsupported_cell_skips_everything_and_creates_nothing(
    pytester: pytest.Pytester, cell: dict[str, Any]
) -> None:
    reason = "kernel lacks ip_vs (CONFIG_IP_VS not set) — kube-proxy ipvs mode cannot run"
    cell["options"] = {"unsupported": reason}
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite", "--proxy-mode=ipvs")
    assert result.ret == pytest.ExitCode.OK
    doc = results_of(pytester, "ipvs-kindnet")
    assert doc["status"] == "unsupported"
    assert doc["reason"] == f"unsupported environment: {reason}"
    assert {t["outcome"] for t in doc["tests"]} == {"skipped"}
    assert {t["message"] for t in doc["tests"]} == {f"unsupported environment: {reason}"}
    assert doc["timings"]["cluster_create_s"] is None
    assert cell["providers"][0].events == ["prepare"]
    result.stdout.fnmatch_lines(["*cell ipvs-kindnet UNSUPPORTED: unsupported environment: kernel lacks ip_vs*"])


def test_a_cluster_that_cannot_be_made_is_an_error_cell(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    cell["options"] = {"up_error": "kind create cluster svcc-iptables-kindnet failed: ERROR: no node image"}
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    doc = results_of(pytester)
    assert doc["status"] == "error"
    assert doc["reason"] == "kind create cluster svcc-iptables-kindnet failed: ERROR: no node image"
    tests = by_name(doc)
    assert tests["test_reaches_the_service"]["outcome"] == "error"
    assert tests["test_reaches_the_service"]["message"] == doc["reason"]
    assert tests["test_reaches_the_service"]["diagnostics"] is None
    assert tests["test_without_cluster"]["outcome"] == "passed"
    assert cell["providers"][0].events.count("up") == 1  # created once, failure cached


def test_keep_cluster_keeps_it(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite", "--keep-cluster", "-k", "reaches")
    assert cell["providers"][0].events == ["prepare", "up", "close"]


def test_no_tests_collected_fails_loudly(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite", "-m", "etp")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    doc = partial_runs_of(pytester)[-1]
    assert doc["status"] == "error"
    assert "no tests were collected" in doc["reason"]
    result.stdout.fnmatch_lines(["*ERROR*no tests were collected for cell iptables-kindnet*"])


def test_collect_only_lists_a_family_and_writes_nothing(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "--collect-only", "-q", "-m", "dns", "suite")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["suite/test_cell.py::test_dns_family_marker_wins", "*1/6 tests collected*"])
    assert not (pytester.path / "results").exists()
    assert cell["providers"][0].events == []


PROFILED_SUITE = {
    "test_plain.py": '''
import pytest

pytestmark = pytest.mark.clusterip

def test_core_by_family():
    pass

@pytest.mark.extended(reason="an optional feature")
def test_declared_extended():
    pass
''',
    "test_measured.py": '''
import pytest

pytestmark = pytest.mark.convergence

def test_extended_by_family():
    pass

@pytest.mark.core(reason="promised after all")
def test_declared_core():
    pass
''',
}


def test_declared_profiles_are_recorded_and_select_with_m(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    (pytester.path / "suite" / "test_cell.py").unlink()
    for name, text in PROFILED_SUITE.items():
        (pytester.path / "suite" / name).write_text(text)
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite")
    assert result.ret == pytest.ExitCode.OK
    tests = by_name(results_of(pytester))
    assert {n: (t["profile"], t["profile_reason"]) for n, t in tests.items()} == {
        "test_core_by_family": ("core", "clusterip: a ClusterIP reaches the Service's ready endpoints from every node"),
        "test_declared_extended": ("extended", "an optional feature"),
        "test_extended_by_family": ("extended", "convergence: convergence ceilings are service-level "
                                                "expectations, not API promises"),
        "test_declared_core": ("core", "promised after all"),
    }
    # every check carries its resolved profile as a marker, so -m selects by profile
    extended = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "--collect-only", "-q", "-m", "extended", "suite")
    extended.stdout.fnmatch_lines(["suite/test_measured.py::test_extended_by_family",
                                   "suite/test_plain.py::test_declared_extended", "*2/4 tests collected*"])
    core = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "--collect-only", "-q", "-m", "not extended", "suite")
    core.stdout.fnmatch_lines(["suite/test_measured.py::test_declared_core",
                               "suite/test_plain.py::test_core_by_family", "*2/4 tests collected*"])


BAD_MARKERS = '''
import pytest

def test_without_family():
    pass

@pytest.mark.dns
@pytest.mark.extended
def test_extended_without_reason():
    pass

@pytest.mark.dns
@pytest.mark.extended("positional")
def test_extended_with_a_positional_reason():
    pass

@pytest.mark.dns
@pytest.mark.extended(reason="  ")
def test_extended_with_a_blank_reason():
    pass

@pytest.mark.convergence
@pytest.mark.extended(reason="it is")
def test_extended_in_an_extended_family():
    pass

@pytest.mark.dns
@pytest.mark.core(reason="x")
@pytest.mark.extended(reason="y")
def test_both():
    pass

@pytest.mark.dns
def test_fine():
    pass
'''


@pytest.mark.parametrize("args", [["--collect-only", "-q"], ["-k", "test_fine"]])
def test_bad_markers_are_a_usage_error_naming_each_check(pytester: pytest.Pytester, cell: dict[str, Any],
                                                        args: list[str]) -> None:
    (pytester.path / "suite" / "test_cell.py").write_text(BAD_MARKERS)
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, *args, "suite")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: suite checks with bad markers (fixtures/markers.py):",
        "  suite/test_cell.py::test_without_family: no family marker; mark it * with one of dns, env, *",
        "  suite/test_cell.py::test_extended_without_reason: @pytest.mark.extended needs a non-empty reason=*",
        "  suite/test_cell.py::test_extended_with_a_positional_reason: @pytest.mark.extended needs a non-empty*",
        "  suite/test_cell.py::test_extended_with_a_blank_reason: @pytest.mark.extended needs a non-empty*",
        "  suite/test_cell.py::test_extended_in_an_extended_family: @pytest.mark.extended repeats its family "
        "'convergence'*",
        "  suite/test_cell.py::test_both: marked both core and extended*",
    ])
    assert "test_fine" not in result.stderr.str()
    assert all(p.events == [] for p in cell["providers"])  # refused before any cluster


def test_a_cell_run_refused_for_bad_markers_is_an_error_cell(pytester: pytest.Pytester,
                                                            cell: dict[str, Any]) -> None:
    (pytester.path / "suite" / "test_cell.py").write_text(BAD_MARKERS)
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    doc = results_of(pytester)
    assert (doc["status"], doc["tests"]) == ("error", [])
    assert doc["reason"].startswith("suite checks with bad markers (fixtures/markers.py): "
                                    "suite/test_cell.py::test_without_family: no family marker")
    assert cell["providers"][0].events == []


def test_runs_outside_suite_write_no_results(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "test_plain.py")
    assert result.ret == pytest.ExitCode.OK
    assert not (pytester.path / "results").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--proxy-mode=userspace"], "ERROR: --proxy-mode: unknown value 'userspace'; valid values: "
                                     "iptables, nftables, ipvs, none"),
        (["--cni=weave"], "ERROR: --cni: unknown value 'weave'; valid values: kindnet, calico, cilium, flannel"),
        (["--ip-family=ipv5"], "ERROR: --ip-family: unknown value 'ipv5'; valid values: ipv4, ipv6, dual"),
        (["--nodes=1"], "ERROR: --nodes: 1 is out of range; valid values: 2..10*"),
        (["--kubeconfig=/nonexistent/kc"], "ERROR: --kubeconfig: /nonexistent/kc does not exist*"),
    ],
)
def test_bad_options_are_rejected_up_front(pytester: pytest.Pytester, cell: dict[str, Any],
                                           args: list[str], message: str) -> None:
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert cell["providers"] == []


def test_help_lists_the_option_group(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "--help")
    result.stdout.fnmatch_lines(["svcconform: Kubernetes Service conformance cell:", "*--proxy-mode=MODE*",
                                 "*--cni=CNI*", "*--kubeconfig=PATH*", "*--keep-cluster*", "*--nodes=N*",
                                 "*--k8s-version=VERSION*", "*--node-image=IMAGE*", "*--results-dir=DIR*",
                                 "*--ip-family=FAMILY*"])


def test_exactly_the_family_markers_are_registered(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "--markers")
    ours = [line.split(":")[0].removeprefix("@pytest.mark.") for line in result.stdout.lines
            if line.startswith("@pytest.mark.") and line.split(":")[0].removeprefix("@pytest.mark.") in FAMILIES]
    assert ours == list(FAMILIES)  # in the registry's order, each with its description
    result.stdout.fnmatch_lines(["@pytest.mark.dns: Service DNS records*",
                                 "@pytest.mark.core(reason): this check is Core although*",
                                 "@pytest.mark.extended(reason): this check is Extended*"])


def test_the_kind_plugin_must_be_off(pytester: pytest.Pytester, cell: dict[str, Any],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    result = pytester.runpytest_inprocess("suite")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*-p no:pytest-kind-ng*"])


def test_unreachable_kubeconfig_is_one_line_and_creates_nothing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = write_kubeconfig(pytester.path / "kc", f"http://127.0.0.1:{port}")
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, f"--kubeconfig={kubeconfig}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"ERROR: cannot use the cluster in kubeconfig {kubeconfig}: ")


def test_existing_cluster_decides_the_cell_and_contradictions_are_refused(pytester: pytest.Pytester) -> None:
    from framework_fakes import FakeApiServer, existing_cluster

    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.mkdir("suite")
    (pytester.path / "suite" / "test_one.py").write_text(
        "import pytest\n\n@pytest.mark.env\ndef test_spec(cluster_spec):\n"
        "    assert cluster_spec.cell == 'nftables-kindnet'\n"
    )
    with FakeApiServer() as api:
        existing_cluster(api, mode="nftables")
        kubeconfig = api.kubeconfig(pytester.path / "kc")
        result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite", f"--kubeconfig={kubeconfig}")
        assert result.ret == pytest.ExitCode.OK
        cell = results_of(pytester, "nftables-kindnet")["cell"]
        assert cell["provider"] == "existing"
        assert "health" in cell  # the preflight (and health pass) ran before the results existed
        refused = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite", f"--kubeconfig={kubeconfig}",
                                               "--proxy-mode=iptables")
        assert refused.ret == pytest.ExitCode.USAGE_ERROR
        refused.stderr.fnmatch_lines(["ERROR: --proxy-mode=iptables was given but the cluster in * runs nftables*"])
        # the only objects ever created are the suite's own: its preflight namespace and pods
        created = [r.path for r in api.requests if r.method == "POST"]
        assert created
        assert all(p == "/api/v1/namespaces" or p.startswith("/api/v1/namespaces/svcc-preflight-")
                               for p in created), created
        deleted = {r.path for r in api.requests if r.method == "DELETE"}
        assert deleted == {p for p in api.objects if p.startswith("/api/v1/namespaces/svcc-preflight-")
                           and p.count("/") == 4}
        assert {r.method for r in api.requests} == {"GET", "POST", "DELETE"}


VANTAGE_SUITE = '''
import pytest
from fixtures.errors import AdmissionRefused

pytestmark = pytest.mark.nodeport

def test_from_outside(node_vantages, host_reach):
    assert sorted(node_vantages) == ["n-control-plane", "n-worker", "n-worker2"]

def test_refused_release(kube):
    raise AdmissionRefused('pods "client-x" is forbidden: violates PodSecurity "baseline:latest": hostNetwork')
'''


def test_node_vantages_and_admission_refusals(pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    (pytester.path / "suite" / "test_cell.py").write_text(VANTAGE_SUITE)
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite")
    assert result.ret == pytest.ExitCode.OK
    tests = by_name(results_of(pytester))
    assert tests["test_from_outside"]["outcome"] == "passed"
    refused = tests["test_refused_release"]
    assert refused["outcome"] == "skipped"
    assert refused["message"].startswith("refused by the cluster's admission: pods \"client-x\" is forbidden")
    assert refused["diagnostics"] is None


def test_node_vantages_refused_by_admission_skip_their_checks(pytester: pytest.Pytester,
                                                             cell: dict[str, Any]) -> None:
    (pytester.path / "suite" / "test_cell.py").write_text(VANTAGE_SUITE)
    kube = FakeKube(refuse_host_network='pods "vantage-n" is forbidden: ValidatingAdmissionPolicy "x" denied')
    cell["options"]["kube"] = kube
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite")
    assert result.ret == pytest.ExitCode.OK
    doc = results_of(pytester)
    outside = by_name(doc)["test_from_outside"]
    assert outside["outcome"] == "skipped"
    assert outside["message"] == ("refused by the cluster's admission: no hostNetwork vantage pods: "
                                  'pods "vantage-n" is forbidden: ValidatingAdmissionPolicy "x" denied')
    assert "ValidatingAdmissionPolicy" in outside["message"]
    assert doc["cell"]["detection"]["proxy_mode_probe"]["value"] == ""  # nobody on the nodes to ask


def test_kind_only_options_with_a_kubeconfig_are_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    kubeconfig = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:9")
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, f"--kubeconfig={kubeconfig}", "--nodes=4",
                                          "--keep-cluster")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert errors == [f"ERROR: --nodes, --keep-cluster shape(s) a kind cluster the suite creates and cannot "
                      f"apply to the existing cluster of --kubeconfig {kubeconfig}: drop --nodes and --keep-cluster"]


def test_an_unwritable_results_dir_is_a_usage_error_before_any_cluster(pytester: pytest.Pytester,
                                                                      cell: dict[str, Any]) -> None:
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite", "--results-dir=/proc/svcc-results")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1
    assert errors[0].startswith("ERROR: --results-dir /proc/svcc-results: cannot write ")
    assert cell["providers"] == []  # no provider was even made


def test_a_cell_wide_setup_error_is_one_line_per_test_not_a_traceback(pytester: pytest.Pytester,
                                                                     cell: dict[str, Any]) -> None:
    cell["options"]["up_error"] = "kind create cluster svcc-x failed: no space left (log: /tmp/kind.log)"
    result = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # the ERRORS section (pytest's short summary after it repeats messages, in full when $CI is set)
    out = result.stdout.str().split("short test summary info")[0]
    assert out.count("cell setup failed: kind create cluster svcc-x failed: no space left (log: /tmp/kind.log)") == 1
    assert out.count("cell setup failed (as above)") >= 2
    assert "Traceback" not in out
    assert "raise error" not in out


def test_a_partial_rerun_writes_beside_the_full_verdict_and_says_what_it_selected(
        pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    full = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite")
    assert full.ret == pytest.ExitCode.TESTS_FAILED
    before = (pytester.path / "results" / "iptables-kindnet" / "results.json").read_bytes()
    doc = json.loads(before)
    assert doc["run"]["partial"] is False
    assert doc["run"]["selection"] == "the whole suite"
    assert doc["run"]["collected"] == 6
    rerun = pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite", "-k", "sees_every_backend")
    assert rerun.ret == pytest.ExitCode.TESTS_FAILED
    # the full verdict is untouched, byte for byte; the rerun sits beside it
    assert (pytester.path / "results" / "iptables-kindnet" / "results.json").read_bytes() == before
    (partial,) = partial_runs_of(pytester)
    assert partial["run"]["partial"] is True
    assert partial["run"]["selection"] == "-k 'sees_every_backend'"
    assert (partial["run"]["collected"], partial["run"]["deselected"]) == (1, 5)
    assert [t["id"].split("::")[-1] for t in partial["tests"]] == ["test_sees_every_backend"]
    runs = pytester.path / "results" / "iptables-kindnet" / "runs"
    (stamp,) = [p.name for p in runs.iterdir()]
    assert (runs / stamp / "junit.xml").exists()


LAYER_SUITE = '''
import pytest

pytestmark = pytest.mark.clusterip

@pytest.fixture
def served(kube):
    raise AssertionError("TCP 10.96.0.9:80 from every node: no answer within 3s (BROKEN_LAYER_WAIT) "
                         "[cut from 32s (KUBE_PROXY_SERVICE_SYNC_TIMEOUT): the health pass found ...]")

@pytest.fixture
def exploded(kube):
    raise RuntimeError("fixture exploded")

def test_needs_the_data_plane(served):
    pass

def test_broken_fixture(exploded):
    pass
'''


def test_a_setup_that_waited_on_a_layer_the_health_pass_found_broken_fails_and_is_no_error(
        pytester: pytest.Pytester, cell: dict[str, Any]) -> None:
    (pytester.path / "suite" / "test_cell.py").write_text(LAYER_SUITE)
    pytester.runpytest_inprocess(*NO_KIND_PLUGIN, "suite")
    doc = results_of(pytester)
    tests = by_name(doc)
    assert tests["test_needs_the_data_plane"]["outcome"] == "failed"
    assert tests["test_needs_the_data_plane"]["message"].startswith("setup: ")
    assert tests["test_broken_fixture"]["outcome"] == "error"  # the suite's own failure stays an error
    health = doc["cell"]["health"]  # the fakes answer every probe
    assert health["healthy"] is True
    assert set(health["layers"]) == {"pod network", "Service proxy", "DNS", "node ports", "kube-proxy"}
