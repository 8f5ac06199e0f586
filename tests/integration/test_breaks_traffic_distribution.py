"""The trafficDistribution checks fail, with their tables, when the field is dropped.

A namespace-local break, on the cell's usual (shared) cluster: while the
``suite/test_traffic_distribution.py`` checks run, a background actor (:mod:`saboteur`)
removes ``spec.trafficDistribution`` from every Service those checks created with one, as a
controller that "normalises" Services (or an API server without the field) would.  The
EndpointSlice controller then drops the hints, and kube-proxy, correctly, spreads the
traffic over every endpoint.  The Services were created promising PreferClose /
PreferSameZone / PreferSameNode, so:

* every "stays in the client's zone or on its node" check must FAIL with its tables (a
  client reached a backend outside its zone);
* every hints check must FAIL, naming the hints that are missing;
* the control check (a Service that never had a distribution) must still pass.

Stopping the actor is the restore; the suite deletes its namespaces as usual.
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (needs the cell's running kind cluster).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from breakkit import SHARED_CLUSTER_REASON, family_argv, only_results, opt_in, outcomes, run_suite
from saboteur import Kubectl, Saboteur, in_family, shared_kubectl

pytestmark = opt_in(SHARED_CLUSTER_REASON)

#: The module takes ~1 min; broken, 6 checks wait out their 32 s / 30 s timeouts.
FAMILY_RUN_TIMEOUT_S = 900
STAYS = "test_traffic_stays_in_the_clients_zone_or_on_its_node_when_an_endpoint_is_there"
HINTS = "test_the_endpointslice_controller_hints_each_endpoint_for_its_zone_and_for_prefer_same_node_its_node"
CONTROL = "test_a_service_without_traffic_distribution_carries_no_hints_and_spreads_over_every_zone"
DISTRIBUTIONS = ("PreferClose", "PreferSameZone", "PreferSameNode")


def drop_traffic_distribution(kubectl: Kubectl) -> list[str]:
    done = []
    for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
        if in_family(svc, "topology") and svc["spec"].get("trafficDistribution"):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            kubectl("-n", ns, "patch", "service", name, "--type=json",
                    "-p", json.dumps([{"op": "remove", "path": "/spec/trafficDistribution"}]))
            done.append(f"{ns}/{name}: trafficDistribution {svc['spec']['trafficDistribution']} removed")
    return done


def test_traffic_distribution_checks_fail_with_tables_when_the_field_is_dropped(tmp_path: Path) -> None:
    kubectl = shared_kubectl()
    results_dir = tmp_path / "results"
    argv = family_argv("topology", results_dir)
    with Saboteur(kubectl, drop_traffic_distribution) as actor:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S)
    assert actor.actions, f"the actor never changed a Service (errors: {actor.errors[-3:]}); the break did not happen"
    tests = outcomes(only_results(results_dir, argv, proc))

    assert proc.returncode != 0, f"trafficDistribution checks passed with the field dropped:\n{proc.stdout[-3000:]}"
    for dist in DISTRIBUTIONS:
        outcome, message = tests[f"{STAYS}[{dist}]"]
        assert outcome == "failed", f"{STAYS}[{dist}]: {outcome} {message[:500]}"
        assert "mismatching cell" in message, f"{STAYS}[{dist}] failed without its tables: {message[:1500]}"
        assert re.search(r"^expected +observed$", message, re.MULTILINE), f"tables flattened: {message[:800]}"
        outcome, message = tests[f"{HINTS}[{dist}]"]
        assert outcome == "failed", f"{HINTS}[{dist}]: {outcome} {message[:500]}"
        assert "hints.forZones []" in message, f"{HINTS}[{dist}] failed without naming the hints: {message[:800]}"
    assert tests[CONTROL][0] == "passed", f"{CONTROL} is not broken: {tests[CONTROL]}"
    print(f"actor: {actor.actions}\n" + "\n".join(
        f"{name}: {msg[:2500]}" for name, (outcome, msg) in sorted(tests.items()) if outcome == "failed"))
