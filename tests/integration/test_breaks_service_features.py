"""The service-proxy-name and externalIPs checks fail, naming the vantage points and targets,
when the suite's Services are changed behind its back.

A namespace-local break on the cell's running (shared) cluster: while suite/test_service_features.py
runs, a background actor (:mod:`saboteur`) watches the namespaces of *this run only* (its
own ``SVCCONFORM_RUN_ID``) and

* labels the suite's *served* Service ``proxied`` ``service.kubernetes.io/service-proxy-name``
  for a proxy that does not exist: kube-proxy, correctly, drops it;
* removes ``spec.externalIPs`` from the ``external`` Service.

So the proxy-name check must FAIL with its table showing ``proxied`` not reached from
pods and nodes, the externalIPs check must FAIL naming the missing externalIPs, and the
two checks the actor leaves alone (one port over TCP and UDP, the client pod's IP) must
still pass: the failures point at the broken behaviours.

The suite runs against the shared cluster through its kubeconfig (the existing-cluster
provider: it never creates, recreates or deletes a cluster).  Stopping the actor is the
restore; the suite deletes its namespaces as usual.
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from breakkit import SHARED_CLUSTER_REASON, family_argv, only_results, opt_in, outcomes, run_suite
from saboteur import Kubectl, Saboteur, shared_kubectl

pytestmark = opt_in(SHARED_CLUSTER_REASON)

#: The module takes ~1-2 min; broken, two checks wait out a 32 s data-plane timeout.
FAMILY_RUN_TIMEOUT_S = 900
LABEL = "service.kubernetes.io/service-proxy-name"
PROXY_NAME_TEST = "test_a_service_labelled_for_another_proxy_is_ignored_until_the_label_is_removed"
EXTERNAL_TEST = "test_external_ips_reach_the_backends_from_pods_nodes_and_this_machine"
UNTOUCHED = (
    "test_one_port_number_over_tcp_and_udp_reaches_the_backends_on_both_protocols",
    "test_backends_see_the_client_pod_ip_through_the_cluster_ip",
)


def sabotage(run_id: str):  # type: ignore[no-untyped-def]
    prefix = f"svcc-clusterip-{run_id}-"

    def act(kubectl: Kubectl) -> list[str]:
        done = []
        for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            if not ns.startswith(prefix):
                continue
            if name == "proxied" and LABEL not in (svc["metadata"].get("labels") or {}):
                kubectl("-n", ns, "label", "service", name, f"{LABEL}=svcconform-saboteur")
                done.append(f"{ns}/{name}: labelled {LABEL}")
            if name == "external" and svc["spec"].get("externalIPs"):
                kubectl("-n", ns, "patch", "service", name, "--type=json", "-p",
                        json.dumps([{"op": "remove", "path": "/spec/externalIPs"}]))
                done.append(f"{ns}/{name}: externalIPs removed")
        return done

    return act


def test_service_feature_checks_fail_when_the_served_service_is_labelled_away_and_external_ips_removed(
    tmp_path: Path,
) -> None:
    kubectl = shared_kubectl()
    run_id = f"brkfeat{uuid.uuid4().hex[:6]}"
    results_dir = tmp_path / "results"
    argv = family_argv("clusterip", results_dir, select=["-k", "test_service_features"],
                       cell_args=(f"--kubeconfig={kubectl.kubeconfig}",))
    env = {**os.environ, "SVCCONFORM_RUN_ID": run_id}
    with Saboteur(kubectl, sabotage(run_id)) as actor:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S, env=env)
    done = set(actor.actions)
    assert any("labelled" in a for a in done), f"the actor never labelled 'proxied' ({actor.errors[-3:]})"
    assert any("externalIPs removed" in a for a in done), f"the actor never removed externalIPs ({actor.errors[-3:]})"
    tests = outcomes(only_results(results_dir, argv, proc))

    assert proc.returncode != 0, f"the feature checks passed while broken:\n{proc.stdout[-3000:]}"
    outcome, message = tests[PROXY_NAME_TEST]
    assert outcome == "failed", f"{PROXY_NAME_TEST}: {outcome} {message[:1500]}"
    for needle in ("mismatching cell", "-> proxied ", "expected ., observed X", "node ", "proxied: svcconform-saboteur"):
        assert needle in message, f"{PROXY_NAME_TEST} failed without naming {needle!r}: {message[:3000]}"
    outcome, message = tests[EXTERNAL_TEST]
    assert outcome == "failed", f"{EXTERNAL_TEST}: {outcome} {message[:1500]}"
    assert "externalIPs None, expected" in message or "mismatching cell" in message, message[:3000]
    for name in UNTOUCHED:
        assert tests[name][0] == "passed", f"{name} is not broken: {tests[name]}"
    print(f"actor: {sorted(done)}")
    for name in (PROXY_NAME_TEST, EXTERNAL_TEST):
        print(f"--- {name}:\n{tests[name][1][:3000]}")
