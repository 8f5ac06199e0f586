"""The env family fails, naming the missing variables, when pods come up without service links.

A namespace-local break, so on the usual cluster of the cell (the suite's own namespaces
only).  What a cluster-side mutation does to pods (e.g. a policy engine's "disable service
discovery" rule, which sets ``enableServiceLinks: false`` on every pod it admits) is done
here by a small pytest plugin loaded into the family's run: it wraps
``fixtures.charts.install`` and turns ``clients.enableServiceLinks`` off for every client
pod the suite installs, while the tests still expect what they asked for.  Kubelet then,
correctly, gives those pods only the master service's variables, and:

* "a pod started after the Service has its variables" must FAIL, naming the missing
  ``WEB_FRONT_*`` variables and the pod;
* the other env tests (nothing expected besides the master service's, which links=false
  keeps) must still pass, so the failure points at the one broken behaviour.

Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1``.  Cell options come from
``SVCCONFORM_BREAK_ARGS`` (default ``--proxy-mode=iptables --cni=kindnet --keep-cluster``).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from breakkit import CELL_ARGS, SHARED_CLUSTER_REASON, family_argv, only_results, opt_in, outcomes, run_suite

pytestmark = opt_in(SHARED_CLUSTER_REASON)

PLUGIN = "svcc_break_no_service_links"
PLUGIN_SOURCE = '''
"""Fault injection for tests/integration/test_breaks_env.py: client pods lose service links."""
import fixtures.charts as charts

_install = charts.install


def install(kube, chart, release, namespace, values, **kwargs):
    clients = dict(values.get("clients") or {})
    if clients.get("nodes"):
        clients["enableServiceLinks"] = False
        values = {**values, "clients": clients}
    return _install(kube, chart, release, namespace, values, **kwargs)


charts.install = install
'''
#: The env family takes under a minute; a reused cluster needs no create.  Generous.
FAMILY_RUN_TIMEOUT_S = 900
BROKEN_TEST = "test_pod_started_after_the_service_has_its_service_and_docker_link_variables"
MISSING = ("WEB_FRONT_SERVICE_HOST missing", "WEB_FRONT_SERVICE_PORT_HTTP_MAIN missing",
           "WEB_FRONT_PORT_81_UDP_ADDR missing")


def test_env_family_fails_naming_missing_variables_when_pods_lose_service_links(tmp_path: Path) -> None:
    (tmp_path / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    cell_args = shlex.split(os.environ.get("SVCCONFORM_BREAK_ARGS", shlex.join(CELL_ARGS)))
    results_dir = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    argv = family_argv("env", results_dir, select=("-p", PLUGIN), cell_args=cell_args)
    proc = run_suite(argv, env=env, timeout=FAMILY_RUN_TIMEOUT_S)
    tests = outcomes(only_results(results_dir, argv, proc))

    assert proc.returncode != 0, f"env family passed with service links off:\n{proc.stdout[-3000:]}"
    outcome, message = tests[BROKEN_TEST]
    assert outcome == "failed", f"{BROKEN_TEST}: {outcome} {message[:500]}"
    unnamed = [m for m in MISSING if m not in message]
    assert not unnamed, f"{BROKEN_TEST} failed without naming {unnamed}: {message[:1500]}"
    others = {name: o for name, (o, _) in tests.items() if name != BROKEN_TEST and o != "passed"}
    assert not others, f"only {BROKEN_TEST} is broken, yet these did not pass: {others}"
    print(f"{BROKEN_TEST}: {message[:2000]}")
