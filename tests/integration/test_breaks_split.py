"""The split-EndpointSlice checks (selectorless) fail, with tables or the slices they expected,
when one part of a split is taken away behind their back.

A namespace-local break, on the cell's shared cluster, scoped to this run's namespaces (its
own ``SVCCONFORM_RUN_ID``).  While ``test_endpointslice_split.py`` runs, a background actor
(:mod:`saboteur`):

* deletes the second hand-written slice of each manual split (``*-manual-b``) as soon as it
  appears, so the Service keeps only the first half of its endpoints;
* cuts the legacy Endpoints ``mirror`` back to its first subset, so the mirroring controller
  removes the second mirrored slice;
* removes the split label from the pods of the second Deployment (``selb``), so the selector
  Service loses the slice for port 9090.

kube-proxy then, correctly, routes to what is left; every check of the module must FAIL,
naming the missing backend (table, ``expected ., observed X``) or the missing port set
(port 9090).  Stopping the actor is the restore; the suite deletes its namespace.
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from breakkit import (
    SHARED_CLUSTER_REASON,
    family_argv,
    only_results,
    opt_in,
    outcomes,
    run_suite,
    shared_cluster_env,
)
from saboteur import Kubectl, Saboteur, shared_kubectl

pytestmark = opt_in(SHARED_CLUSTER_REASON)

#: The module takes ~2 min; broken, its checks wait out 32 s (traffic) or 120 s (slices) timeouts.
FAMILY_RUN_TIMEOUT_S = 900
BROKEN = {
    "test_a_selector_service_whose_pods_number_port_http_differently_gets_a_slice_per_port_and_reaches_all":
        ("9090", "selb"),
    "test_a_selectorless_service_split_by_port_across_two_manual_slices_reaches_both":
        ("expected ., observed X", "EndpointSlices of byport now list: byport-manual [http=8080/TCP]"),
    "test_a_selectorless_service_split_by_address_across_two_manual_slices_reaches_the_union":
        ("expected ., observed X", "EndpointSlices of byaddr now list: byaddr-manual [http=8080/TCP]"),
    "test_legacy_endpoints_with_two_subsets_are_mirrored_into_a_slice_per_subset_and_carry_traffic_to_both":
        ("9090", "mirror"),
}
SELECT = ("-k", "test_endpointslice_split")
SPLIT_LABEL = "svcconform/split"


class TakeAHalfAway:
    def __init__(self, run_id: str) -> None:
        self.prefix = f"svcc-selectorless-{run_id}-"

    def __call__(self, kubectl: Kubectl) -> list[str]:
        return [*self.slices(kubectl), *self.subsets(kubectl), *self.labels(kubectl)]

    def slices(self, kubectl: Kubectl) -> list[str]:
        done: list[str] = []
        for eps in kubectl.items("endpointslices", "-A", "-l",
                                 "endpointslice.kubernetes.io/managed-by=svcconform-manual"):
            ns, name = eps["metadata"]["namespace"], eps["metadata"]["name"]
            if ns.startswith(self.prefix) and name.endswith("-manual-b"):
                kubectl("-n", ns, "delete", "endpointslice", name, "--wait=false")
                addresses = [a for e in eps.get("endpoints") or [] for a in e.get("addresses") or []]
                done.append(f"{ns}/{name}: deleted (listed {addresses})")
        return done

    def subsets(self, kubectl: Kubectl) -> list[str]:
        done: list[str] = []
        for ep in kubectl.items("endpoints", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
            ns, name = ep["metadata"]["namespace"], ep["metadata"]["name"]
            if ns.startswith(self.prefix) and len(ep.get("subsets") or []) > 1:
                kubectl("-n", ns, "patch", "endpoints", name, "--type=json",
                        "-p", json.dumps([{"op": "remove", "path": "/subsets/1"}]))
                done.append(f"{ns}/{name}: removed subset 2 {ep['subsets'][1].get('ports')}")
        return done

    def labels(self, kubectl: Kubectl) -> list[str]:
        done: list[str] = []
        for pod in kubectl.items("pods", "-A", "-l", f"app.kubernetes.io/instance=selb,{SPLIT_LABEL}"):
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            if ns.startswith(self.prefix):
                kubectl("-n", ns, "label", "pod", name, f"{SPLIT_LABEL}-")
                done.append(f"{ns}/{name}: removed label {SPLIT_LABEL}")
        return done


@dataclass
class Actions:
    actions: list[str]
    errors: list[str]


def test_split_slice_checks_fail_naming_the_missing_half_when_a_slice_or_subset_is_taken_away(
    tmp_path: Path,
) -> None:
    kubectl = shared_kubectl()
    run_id = f"brksplit{secrets.token_hex(2)}"
    results_dir = tmp_path / "results"
    argv = family_argv("selectorless", results_dir, select=SELECT,
                       cell_args=("--kubeconfig", str(kubectl.kubeconfig)))
    env = {**shared_cluster_env(), "SVCCONFORM_RUN_ID": run_id}
    # One actor per kind of object: each polls one list, so a new manual slice is deleted
    # within one kubectl round trip of appearing (one actor for all three lost the race
    # against the manual-split checks' first look).
    take = TakeAHalfAway(run_id)
    with Saboteur(kubectl, take.slices) as slices, Saboteur(kubectl, take.subsets) as subsets, \
            Saboteur(kubectl, take.labels) as labels:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S, env=env)
    actor = Actions([*slices.actions, *subsets.actions, *labels.actions],
                    [*slices.errors, *subsets.errors, *labels.errors])
    assert actor.actions, f"the actor never acted (errors: {actor.errors[-3:]}); the break did not happen"
    tests = outcomes(only_results(results_dir, argv, proc))
    for name, (outcome, message) in tests.items():  # shown with -s, whatever follows
        print(f"--- {outcome} {name}\n{message[:3000]}")
    assert proc.returncode != 0, f"the split checks passed with a half taken away:\n{proc.stdout[-3000:]}"
    for name, needles in BROKEN.items():
        outcome, message = tests[name]
        assert outcome == "failed", f"{name}: {outcome} {message[:1500]}"
        for needle in needles:
            assert needle in message, f"{name} failed without naming {needle!r}: {message[:4000]}"
    print("actor:\n  " + "\n  ".join(actor.actions[:12]))
    for name in BROKEN:
        print(f"\n{name}:\n{tests[name][1][:3000]}")
