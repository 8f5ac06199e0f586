"""The etp family fails, naming answering nodes and source IPs, when Local is not honoured.

A namespace-local break, on the cell's usual (shared) cluster: while ``-m etp`` runs, a
background actor (:mod:`saboteur`) watches the suite's etp namespaces and flips every
Service created with ``externalTrafficPolicy: Local`` to ``Cluster`` within a fraction of
a second, as an admission policy or an operator "normalising" Services would.  kube-proxy
then, correctly, serves the Service as Cluster: every node answers and the backend sees a
SNATed source.  The Service the test created promised Local, so:

* the Local test must FAIL naming nodes that answered but must not, and the source IP the
  backend saw instead of this machine's;
* the healthCheckNodePort test must FAIL (Cluster Services have no health check port);
* the Cluster test must still pass: the failure points at the one broken behaviour.

Stopping the actor is the restore; the suite deletes its namespaces as usual.
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (needs the cell's running kind cluster).
"""

from __future__ import annotations

import json
from pathlib import Path

from breakkit import SHARED_CLUSTER_REASON, family_argv, only_results, opt_in, outcomes, run_suite
from saboteur import Kubectl, Saboteur, in_family, shared_kubectl

pytestmark = opt_in(SHARED_CLUSTER_REASON)

#: The etp family takes ~20 s; broken, its two Local tests wait out their 32 s timeouts.
FAMILY_RUN_TIMEOUT_S = 600
LOCAL_TEST = "test_local_policy_node_port_answers_only_on_nodes_with_a_local_endpoint_and_preserves_the_client_ip"
HEALTH_TEST = "test_health_check_node_port_reports_local_endpoints"
CLUSTER_TEST = "test_cluster_policy_node_port_answers_on_every_node_and_snats_traffic_from_other_nodes"


def flip_local_to_cluster(kubectl: Kubectl) -> list[str]:
    done = []
    for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
        if in_family(svc, "etp") and svc["spec"].get("externalTrafficPolicy") == "Local":
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            kubectl("-n", ns, "patch", "service", name, "--type=merge",
                    "-p", json.dumps({"spec": {"externalTrafficPolicy": "Cluster"}}))
            done.append(f"{ns}/{name}: externalTrafficPolicy Local -> Cluster")
    return done


def test_etp_family_fails_naming_answering_nodes_and_source_ip_when_local_is_flipped_to_cluster(
    tmp_path: Path,
) -> None:
    kubectl = shared_kubectl()
    results_dir = tmp_path / "results"
    argv = family_argv("etp", results_dir)
    with Saboteur(kubectl, flip_local_to_cluster) as actor:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S)
    assert actor.actions, f"the actor never flipped a Service (errors: {actor.errors[-3:]}); the break did not happen"
    tests = outcomes(only_results(results_dir, argv, proc))

    assert proc.returncode != 0, f"etp family passed with Local flipped to Cluster:\n{proc.stdout[-3000:]}"
    outcome, message = tests[LOCAL_TEST]
    assert outcome == "failed", f"{LOCAL_TEST}: {outcome} {message[:500]}"
    for needle in ("answered but must not", "source IP: backend saw", "expected the client's own",
                   "externalTrafficPolicy: Cluster"):
        assert needle in message, f"{LOCAL_TEST} failed without naming {needle!r}: {message[:3000]}"
    assert tests[HEALTH_TEST][0] == "failed", f"{HEALTH_TEST}: {tests[HEALTH_TEST]}"
    assert tests[CLUSTER_TEST][0] == "passed", f"{CLUSTER_TEST} is not broken: {tests[CLUSTER_TEST]}"
    print(f"actor: {actor.actions}\n{LOCAL_TEST}: {message[:4000]}\n{HEALTH_TEST}: {tests[HEALTH_TEST][1][:1000]}")
