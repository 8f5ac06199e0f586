"""The dns family fails, naming the lost ``<hostname>.<subdomain>`` records, when the headless
Service behind a pod's subdomain stops selecting it.

A namespace-local break, on the cell's shared cluster: the suite runs with its own run id,
and while ``-m dns`` runs a background actor (:mod:`saboteur`) changes the selector of the
headless Service ``peers`` in that run's dns namespaces only (``svcc-dns-<run id>-*``), as an
operator "fixing" labels would.  The pods keep ``spec.hostname`` and ``spec.subdomain: peers``
(both immutable), but without endpoints CoreDNS has no ``<hostname>.peers.<ns>.svc`` records:

* the hostname/subdomain test must FAIL with the DNS table, naming NXDOMAIN where NOERROR
  was due and the Service's changed selector;
* every other dns test must still pass: the failure points at the one broken record set.

Stopping the actor is the restore; the suite deletes its namespaces as usual.
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (needs the cell's running kind cluster;
``SVCCONFORM_BREAK_KUBECONFIG`` points at another kubeconfig).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from breakkit import SHARED_CLUSTER_REASON, family_argv, only_results, opt_in, outcomes, run_suite
from saboteur import Kubectl, Saboteur, shared_kubectl

pytestmark = opt_in(SHARED_CLUSTER_REASON)

#: The dns family takes ~3 min on a loaded 2-core machine; broken, one test waits out its
#: 30 s DNS_PROPAGATION_TIMEOUT.
FAMILY_RUN_TIMEOUT_S = 900
HOSTNAME_TEST = "test_a_pod_with_hostname_and_subdomain_resolves_under_its_headless_service"
SERVICE = "peers"
NOTHING = {"svcconform/selects": "nothing"}


def unselect_peers(run_id: str):  # type: ignore[no-untyped-def]
    prefix = f"svcc-dns-{run_id}-"

    def act(kubectl: Kubectl) -> list[str]:
        done = []
        for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            if ns.startswith(prefix) and name == SERVICE and svc["spec"].get("selector") != NOTHING:
                kubectl("-n", ns, "patch", "service", name, "--type=json", "-p",
                        json.dumps([{"op": "replace", "path": "/spec/selector", "value": NOTHING}]))
                done.append(f"{ns}/{name}: selector -> {NOTHING}")
        return done

    return act


def test_dns_family_fails_naming_the_lost_hostname_records_when_the_subdomain_service_selects_nothing(
    tmp_path: Path,
) -> None:
    kubectl = shared_kubectl()
    run_id = f"brkdns{secrets.token_hex(3)}"
    results_dir = tmp_path / "results"
    argv = family_argv("dns", results_dir, cell_args=("--kubeconfig", str(kubectl.kubeconfig)))
    with Saboteur(kubectl, unselect_peers(run_id)) as actor:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S, env={**os.environ, "SVCCONFORM_RUN_ID": run_id})
    assert actor.actions, f"the actor never changed {SERVICE} (errors: {actor.errors[-3:]}); no break happened"
    tests = outcomes(only_results(results_dir, argv, proc))

    assert proc.returncode != 0, f"dns family passed with {SERVICE} selecting nothing:\n{proc.stdout[-3000:]}"
    outcome, message = tests[HOSTNAME_TEST]
    assert outcome == "failed", f"{HOSTNAME_TEST}: {outcome} {message[:500]}"
    for needle in ("DNS resolution", "mismatching cell", "status NXDOMAIN, expected NOERROR",
                   f"the Service now: selector {NOTHING}"):
        assert needle in message, f"{HOSTNAME_TEST} failed without naming {needle!r}: {message[:3000]}"
    others = {name: o for name, o in tests.items() if name != HOSTNAME_TEST and o[0] != "passed"}
    assert not others, f"tests other than {HOSTNAME_TEST} are not broken, yet: {others}"
    print(f"actor: {actor.actions}\n{HOSTNAME_TEST}: {message[:5000]}")
