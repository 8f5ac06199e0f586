""".github/workflows/nightly.yml: actionlint, and the matrix checked structurally.

actionlint is built from its Go module into the pinned tool dir::

    GOBIN=~/.cache/svcconform/tools/bin go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12

The actionlint test is skipped (saying so) when the binary is absent; the structural checks
always run.
"""

from __future__ import annotations

import configparser
import inspect
import itertools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.providers import KindProvider
from images import versions
from images.paths import tools_bin
from reports.model import CNIS, PROXY_MODES

REPO = Path(__file__).parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"
ACTIONLINT_VERSION = versions.ACTIONLINT
ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint"
README = REPO / "README.md"

#: CNIs the suite knows (``--cni``, the tox factors) that the nightly matrix leaves out, because
#: no cell of theirs can complete anywhere: the workflow's comments and the README say why.
#: Calico: no installer with registry access, not buildable without one (images/catalog.py).
LEFT_OUT_OF_NIGHTLY = frozenset({"calico"})


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(doc, dict)
    return doc


def _on(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as the boolean True
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict)
    return on


def _actionlint() -> Path | None:
    pinned = tools_bin() / "actionlint"
    if pinned.is_file():
        return pinned
    found = shutil.which("actionlint")
    return Path(found) if found else None


def test_actionlint_passes() -> None:
    binary = _actionlint()
    if binary is None:
        pytest.skip(
            f"actionlint not found in {tools_bin()} or on PATH; build it with: "
            f"GOBIN={tools_bin()} go install {ACTIONLINT_MODULE}@{ACTIONLINT_VERSION}"
        )
    proc = subprocess.run(
        [str(binary), "-no-color", str(WORKFLOW)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"actionlint found problems:\n{proc.stdout}{proc.stderr}"


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The lint test can fail: actionlint rejects an unknown matrix key in an expression."""
    binary = _actionlint()
    if binary is None:
        pytest.skip(f"actionlint not found in {tools_bin()} or on PATH")
    broken = tmp_path / "nightly.yml"
    broken.write_text(
        WORKFLOW.read_text().replace("matrix.proxy-mode == 'ipvs'", "matrix.proxy-mod == 'ipvs'")
    )
    proc = subprocess.run(
        [str(binary), "-no-color", str(broken)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode != 0
    assert "proxy-mod" in proc.stdout


# --- triggers ------------------------------------------------------------------------------


def test_runs_nightly_and_on_demand(workflow: dict[Any, Any]) -> None:
    on = _on(workflow)
    assert set(on) == {"schedule", "workflow_dispatch"}
    crons = [entry["cron"] for entry in on["schedule"]]
    assert len(crons) == 1
    assert len(crons[0].split()) == 5
    assert workflow["permissions"] == {"contents": "read"}


# --- the matrix ----------------------------------------------------------------------------


def expand_matrix(matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """GitHub's expansion: the product of the vectors, minus ``exclude``, then ``include``.

    An include entry extends every combination whose *original* values it does not
    overwrite; one that extends none becomes a new combination.
    """
    vectors = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    combos = [dict(zip(vectors, values, strict=True)) for values in itertools.product(*vectors.values())]
    for ex in matrix.get("exclude", []):
        combos = [c for c in combos if any(c.get(k) != v for k, v in ex.items())]
    originals = [dict(c) for c in combos]
    for inc in matrix.get("include", []):
        matched = False
        for combo, original in zip(combos, originals, strict=True):
            if all(original.get(k, v) == v for k, v in inc.items() if k in vectors):
                combo.update(inc)
                matched = True
        if not matched:
            combos.append(dict(inc))
            originals.append({k: v for k, v in inc.items() if k in vectors})
    return combos


def cell_name(combo: dict[str, Any]) -> str:
    """What the workflow's CELL expression evaluates to."""
    if combo.get("cell"):
        return str(combo["cell"])
    base = f"{combo['proxy-mode']}-{combo['cni']}"
    return base if combo["ip-family"] == "ipv4" else f"{base}-{combo['ip-family']}"


def tox_env(combo: dict[str, Any]) -> str:
    """What the workflow's TOX_ENV expression evaluates to."""
    return str(combo.get("tox-env") or f"{combo['proxy-mode']}-{combo['cni']}")


def test_expand_matrix_follows_github_rules() -> None:
    combos = expand_matrix(
        {
            "a": [1, 2],
            "b": ["x"],
            "include": [{"a": 1, "c": "extra"}, {"a": 3, "b": "y"}],
            "exclude": [{"a": 2}],
        }
    )
    assert combos == [{"a": 1, "b": "x", "c": "extra"}, {"a": 3, "b": "y"}]


@pytest.fixture(scope="module")
def cells(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return expand_matrix(workflow["jobs"]["cell"]["strategy"]["matrix"])


def test_matrix_covers_every_mode_and_every_cni_that_can_run(cells: list[dict[str, Any]]) -> None:
    ipv4 = {(c["proxy-mode"], c["cni"]) for c in cells if c["ip-family"] == "ipv4" and "cell" not in c}
    runnable = [cni for cni in CNIS if cni not in LEFT_OUT_OF_NIGHTLY]
    assert ipv4 == set(itertools.product(PROXY_MODES, runnable))


def test_matrix_has_no_calico_cell(cells: list[dict[str, Any]]) -> None:
    assert set(CNIS) >= LEFT_OUT_OF_NIGHTLY, "only CNIs the suite knows can be left out"
    for combo in cells:
        assert combo["cni"] not in LEFT_OUT_OF_NIGHTLY, cell_name(combo)
        assert not any(cni in tox_env(combo) for cni in LEFT_OUT_OF_NIGHTLY), tox_env(combo)
        assert not any(cni in cell_name(combo) for cni in LEFT_OUT_OF_NIGHTLY), cell_name(combo)


def _words(text: str) -> str:
    return " ".join(text.split())


def test_left_out_cnis_are_explained_in_the_workflow_and_readme() -> None:
    """Both quote the kind provider's refusal, which must still be what it says."""
    refusal = "no installer for CNI {self.spec.cni} is wired into the kind provider"
    assert refusal in _words(inspect.getsource(KindProvider.prepare))
    comments = _words(
        " ".join(
            line.strip().lstrip("#")
            for line in WORKFLOW.read_text().splitlines()
            if line.strip().startswith("#")
        )
    )
    readme = _words(README.read_text())
    for cni in LEFT_OUT_OF_NIGHTLY:
        assert f"no installer for CNI {cni}" in comments, f"nightly.yml does not say why {cni} is left out"
        assert f"{cni.capitalize()} is not in the matrix" in comments
        # The README's section on the CNI, and its account of what has run in CI.
        assert f"### {cni.capitalize()} cells" in README.read_text()
        assert refusal.replace("{self.spec.cni}", cni) in readme
        assert f"`*-{cni}`" in readme.split("## What has run: CI and the nightly matrix")[-1], (
            f"README: what has run says nothing of {cni}"
        )


def test_ipvs_cells_load_the_ipvs_modules_first(
    workflow: dict[Any, Any], cells: list[dict[str, Any]]
) -> None:
    """The ipvs cells stay because GitHub's Ubuntu runners have the ip_vs modules: loaded before the cell."""
    assert {c["cni"] for c in cells if c["proxy-mode"] == "ipvs"} == set(CNIS) - LEFT_OUT_OF_NIGHTLY
    steps = _steps(workflow, "cell")
    (load,) = [s for s in steps if "modprobe" in str(s.get("run", ""))]
    assert load["if"] == "matrix.proxy-mode == 'ipvs'"
    assert load["run"].split()[:3] == ["sudo", "modprobe", "-a"]
    assert "ip_vs" in load["run"].split()
    tox = next(s for s in steps if s.get("id") == "tox")
    assert steps.index(load) < steps.index(tox)


def test_matrix_has_cilium_kpr_and_ip_family_variants(cells: list[dict[str, Any]]) -> None:
    names = {cell_name(c): c for c in cells}
    kpr = names["cilium-kpr"]
    assert (kpr["proxy-mode"], kpr["cni"], tox_env(kpr)) == ("none", "cilium", "cilium-kpr")
    for family in ("ipv6", "dual"):
        variant = names[f"iptables-kindnet-{family}"]
        assert tox_env(variant) == "iptables-kindnet"
        assert variant["ip-family"] == family
    # 3 modes x 3 CNIs (calico left out), cilium-kpr, IPv6 and dual-stack kindnet for 2 modes
    assert len(cells) == 3 * 3 + 1 + 4


def test_cell_names_are_unique_and_artifact_safe(cells: list[dict[str, Any]]) -> None:
    names = [cell_name(c) for c in cells]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", name), name


def test_cell_and_tox_env_expressions_match_the_model(workflow: dict[Any, Any]) -> None:
    """The two expressions the helpers above model, so a change in one is seen here."""
    env = workflow["jobs"]["cell"]["env"]
    assert env["TOX_ENV"] == "${{ matrix.tox-env || format('{0}-{1}', matrix.proxy-mode, matrix.cni) }}"
    assert env["CELL"] == (
        "${{ matrix.cell || (matrix.ip-family == 'ipv4' && format('{0}-{1}', matrix.proxy-mode, matrix.cni))"
        " || format('{0}-{1}-{2}', matrix.proxy-mode, matrix.cni, matrix.ip-family) }}"
    )
    assert workflow["jobs"]["cell"]["name"] == env["CELL"]
    assert workflow["jobs"]["cell"]["strategy"]["fail-fast"] is False


# --- the steps -----------------------------------------------------------------------------


def _steps(workflow: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    steps = workflow["jobs"][job]["steps"]
    assert isinstance(steps, list)
    return steps


def _uses(steps: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in steps if str(s.get("uses", "")).split("@")[0] == action]


def test_cell_job_runs_tox_and_always_uploads(workflow: dict[Any, Any]) -> None:
    steps = _steps(workflow, "cell")
    for action in ("actions/checkout", "actions/setup-python", "actions/setup-go"):
        assert len(_uses(steps, action)) == 1, action
    runs = "\n".join(str(s.get("run", "")) for s in steps)
    assert "pip install tox" in runs
    tox = next(s for s in steps if s.get("id") == "tox")
    assert 'tox -e "$TOX_ENV" --' in tox["run"]
    assert '--ip-family="$IP_FAMILY"' in tox["run"]
    (upload,) = _uses(steps, "actions/upload-artifact")
    assert upload["if"] == "always()"
    assert upload["with"]["name"] == "results-${{ env.CELL }}"
    assert upload["with"]["path"] == "results/"
    assert steps.index(upload) > steps.index(tox)
    record = next(s for s in steps if "job.json" in str(s.get("run", "")))
    assert record["if"] == "always()"


def test_report_job_merges_reports_and_summarises(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["report"]
    assert job["needs"] == "cell"
    assert "!cancelled()" in job["if"]
    steps = _steps(workflow, "report")
    (download,) = _uses(steps, "actions/download-artifact")
    assert download["with"]["pattern"] == "results-*"
    artifacts = download["with"]["path"]
    order = [str(s.get("run", "")) for s in steps]
    collect = next(i for i, r in enumerate(order) if "python -m reports.collect" in r)
    assert order[collect].split()[-2:] == [artifacts, "results"]
    report = next(i for i, r in enumerate(order) if r.strip() == "tox -e report")
    verify = next(i for i, r in enumerate(order) if "--verify results/summary.json" in r)
    summary = next(i for i, r in enumerate(order) if "$GITHUB_STEP_SUMMARY" in r)
    assert steps.index(download) < collect < report < verify
    assert "results/summary.md" in order[summary]
    assert steps[summary]["if"] == "always()"
    (upload,) = _uses(steps, "actions/upload-artifact")
    assert upload["if"] == "always()"
    assert upload["with"]["path"] == "results/"


def test_actions_are_pinned_to_a_version(workflow: dict[Any, Any]) -> None:
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


# --- tox envs the workflow calls -------------------------------------------------------------


def _expand(spec: str) -> Iterator[str]:
    """tox's generative names: ``{a,b}-{c,d}`` → a-c, a-d, b-c, b-d."""
    parts = re.split(r"(\{[^}]*\})", spec.strip())
    choices = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts]
    for combo in itertools.product(*choices):
        yield "".join(s.strip() for s in combo)


def tox_envs(tox_ini: Path) -> set[str]:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(tox_ini)
    names: set[str] = set()
    if cfg.has_section("tox"):
        raw = cfg["tox"].get("env_list", cfg["tox"].get("envlist", ""))
        for line in re.split(r"[\n]+", raw):
            for item in re.split(r",\s*(?![^{]*\})", line):
                if item.strip():
                    names.update(_expand(item))
    for section in cfg.sections():
        if section.startswith("testenv:"):
            names.update(_expand(section[len("testenv:") :]))
    return names


def test_tox_envs_expand() -> None:
    assert sorted(_expand("{iptables,nftables}-{kindnet,flannel}")) == [
        "iptables-flannel",
        "iptables-kindnet",
        "nftables-flannel",
        "nftables-kindnet",
    ]


def test_workflow_calls_only_tox_envs_that_exist(cells: list[dict[str, Any]]) -> None:
    tox_ini = REPO / "tox.ini"
    if not tox_ini.exists():
        pytest.skip(f"{tox_ini} not present yet: nothing to cross-check the tox envs against")
    known = tox_envs(tox_ini)
    wanted = {tox_env(c) for c in cells} | {"report"}
    missing = sorted(wanted - known)
    assert not missing, f"nightly.yml runs tox envs that {tox_ini.name} does not define: {missing}"
