"""The selectorless family fails, naming the endpoints, when the manual EndpointSlice is
rewritten behind its back.

A namespace-local break, on the cell's usual (shared) cluster: while ``-m selectorless``
runs, a background actor (:mod:`saboteur`) watches the suite's selectorless namespaces and
rewrites every manual EndpointSlice (``managed-by: svcconform-manual``) the moment it lists
addresses: it points the slice at the release's *other* backend pod (a wrong, but in-cluster,
address), or drops one endpoint when the slice already lists every backend.  kube-proxy then,
correctly, routes to what the slice now says, so:

* "reaches exactly the manual EndpointSlice addresses" and "editing re-routes" must FAIL with
  the expected/observed backend tables and the slice's addresses;
* "the controllers leave a manual EndpointSlice as written" must FAIL naming the endpoint
  that changed;
* the legacy-Endpoints (mirrored slice, not touched) and selector-Service tests must pass.

Stopping the actor is the restore; the suite deletes its namespace as usual.
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (needs the cell's running kind cluster).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from breakkit import SHARED_CLUSTER_REASON, family_argv, only_results, opt_in, outcomes, run_suite
from saboteur import Kubectl, Saboteur, in_family, shared_kubectl

pytestmark = opt_in(SHARED_CLUSTER_REASON)

#: The family takes ~2-3 min; broken, two traffic tests wait out their 32 s timeouts.
FAMILY_RUN_TIMEOUT_S = 900
BROKEN = {
    "test_traffic_to_a_selectorless_service_reaches_exactly_the_manual_endpointslice_addresses":
        ("must reach exactly", "EndpointSlices of reach now list"),
    "test_editing_the_manual_endpointslice_reroutes_traffic_within_the_endpoint_lag":
        ("must reach exactly", "EndpointSlices of reroute now list"),
    "test_the_controllers_leave_a_manual_endpointslice_as_written":
        ("manual EndpointSlice handsoff-manual", "stopped holding"),
}
IP = re.compile(r"\b10\.244\.\d+\.\d+\b")


class CorruptManualSlices:
    """Rewrites a manual slice whenever it lists something other than the actor's own last
    rewrite (so a wrong target stays put, and every re-point by the test is undone)."""

    def __init__(self) -> None:
        self.mine: dict[tuple[str, str], set[str]] = {}

    def __call__(self, kubectl: Kubectl) -> list[str]:
        return corrupt_manual_slices(kubectl, self.mine)


def corrupt_manual_slices(kubectl: Kubectl, mine: dict[tuple[str, str], set[str]]) -> list[str]:
    done = []
    selector = "endpointslice.kubernetes.io/managed-by=svcconform-manual"
    for eps in kubectl.items("endpointslices", "-A", "-l", selector):
        endpoints: list[dict[str, Any]] = eps.get("endpoints") or []
        if not in_family(eps, "selectorless") or not endpoints:
            continue
        meta = eps["metadata"]
        ns, name, release = meta["namespace"], meta["name"], meta["labels"]["app.kubernetes.io/instance"]
        listed = {a for e in endpoints for a in e.get("addresses") or []}
        if mine.get((ns, name)) == listed:
            continue  # still as the actor left it
        pods = kubectl.items("pods", "-n", ns, "-l", f"app.kubernetes.io/instance={release},"
                             "app.kubernetes.io/component=backend")
        others = [p for p in pods if p["status"].get("podIP") and p["status"]["podIP"] not in listed]
        if others:
            wrong = [{"addresses": [others[0]["status"]["podIP"]], "conditions": {"ready": True},
                      "nodeName": others[0]["spec"]["nodeName"]}]
            what = f"{sorted(listed)} -> {others[0]['status']['podIP']} ({others[0]['metadata']['name']})"
        elif len(endpoints) > 1:
            wrong = endpoints[:-1]
            what = f"{sorted(listed)} -> dropped {endpoints[-1]['addresses']}"
        else:
            continue
        kubectl("-n", ns, "patch", "endpointslice", name, "--type=merge", "-p", json.dumps({"endpoints": wrong}))
        mine[(ns, name)] = {a for e in wrong for a in e["addresses"]}
        done.append(f"{ns}/{name}: {what}")
    return done


def test_selectorless_family_fails_naming_the_endpoints_when_the_manual_slice_is_rewritten(tmp_path: Path) -> None:
    kubectl = shared_kubectl()
    results_dir = tmp_path / "results"
    argv = family_argv("selectorless", results_dir)
    with Saboteur(kubectl, CorruptManualSlices()) as actor:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S)
    assert actor.actions, f"the actor never rewrote a slice (errors: {actor.errors[-3:]}); the break did not happen"
    tests = outcomes(only_results(results_dir, argv, proc))

    assert proc.returncode != 0, f"selectorless family passed with its manual slices rewritten:\n{proc.stdout[-3000:]}"
    for name, needles in BROKEN.items():
        outcome, message = tests[name]
        assert outcome == "failed", f"{name}: {outcome} {message[:500]}"
        for needle in needles:
            assert needle in message, f"{name} failed without naming {needle!r}: {message[:3000]}"
        assert IP.search(message), f"{name} failed without naming an endpoint address: {message[:3000]}"
    others = {n: o for n, (o, _) in tests.items() if n not in BROKEN and o != "passed"}
    assert not others, f"only the manual-slice tests are broken, yet these did not pass: {others}"
    print("actor:\n  " + "\n  ".join(actor.actions[:10]))
    for name in BROKEN:
        print(f"{name}: {tests[name][1][:2500]}\n")
