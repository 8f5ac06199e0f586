"""The terminating-endpoint and publishNotReadyAddresses checks (clusterip, etp) fail, with
tables, when the fallback is taken away behind their back.

A namespace-local break, on the cell's shared cluster, scoped to this run's namespaces (its
own ``SVCCONFORM_RUN_ID``, so other runs on the cluster are untouched).  While the two
modules run, a background actor (:mod:`saboteur`):

* points the four fallback Services' port at a container port nothing listens on, long before
  their backend terminates: the slices keep exactly the conditions the checks verify, but the
  serving, terminating backend can no longer be reached (connections refused);
* the moment the etp backend terminates, adds a hand-written EndpointSlice to Service ``local``
  listing one *ready* endpoint on that node (the client pod there): the node's
  healthCheckNodePort then counts a ready local endpoint and answers 200 (a polling actor can
  land this after the check verified its slices, or before, when the check names the ready
  endpoint instead of a table: both are accepted);
* flips ``publishNotReadyAddresses`` to false on every Service that has it, so the unready
  backends drop out of the data plane.

Every check of the two modules must FAIL, with its expected/observed table (or the health
check table) and the slices as they now are.  Stopping the actor is the restore; the suite
deletes its namespaces (and force-deletes the terminating pods) as usual.
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1``.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

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

#: Both modules take ~2 min; broken, each of their six checks waits out its 32 s timeout.
FAMILY_RUN_TIMEOUT_S = 900
BROKEN = {
    "test_cluster_policy_falls_back_to_terminating_endpoints_when_none_is_ready":
        ("expected ., observed X", "refused", "EndpointSlices of term now list", "is terminating, serving"),
    "test_local_policy_falls_back_to_the_local_terminating_endpoint_only_on_its_node":
        ("expected ., observed X", "refused", "EndpointSlices of term-local now list"),
    "test_publish_not_ready_addresses_sends_cluster_ip_traffic_to_unready_backends":
        ("expected ., observed X", "now has publishNotReadyAddresses: false"),
    "test_cluster_policy_node_port_falls_back_to_the_terminating_endpoint_on_every_node":
        ("expected ., observed X", "refused", "EndpointSlices of cluster now list"),
    "test_local_policy_node_port_falls_back_to_the_terminating_endpoint_only_on_its_node":
        ("expected ., observed X", "refused", "EndpointSlices of local now list"),
    "test_health_check_node_port_answers_503_while_the_only_local_endpoint_is_terminating":
        ("expected HTTP 503, observed HTTP 200",),
}
#: The message when the decoy lands before the check has verified its slices: the Service is
#: not in the only-terminating state any more, which the check names instead of a table.
PRECONDITION = "the Service still has a ready endpoint"
#: The decoy actor polls faster than the usual actor: it must land before the check's first look.
DECOY_INTERVAL_S = 0.1
#: Services the retarget actor breaks (the four fallback checks) and the one that gets a decoy
#: ready endpoint (the healthCheckNodePort check: its node then counts a ready local endpoint).
RETARGETED = {"term", "term-local", "cluster", "local"}
DECOYED = "local"
DEAD_PORT = 9999
PNR_PRECONDITION = ("publishNotReadyAddresses: true", "expected ready=true serving=false")
SELECT = ("-k", "test_terminating_clusterip or test_terminating_etp")


class Scope:
    def __init__(self, run_id: str) -> None:
        self.prefixes = tuple(f"svcc-{f}-{run_id}-" for f in ("clusterip", "etp"))

    def ours(self, obj: dict[str, Any]) -> bool:
        return str(obj["metadata"].get("namespace", "")).startswith(self.prefixes)


class FlipPublishNotReady(Scope):
    def __call__(self, kubectl: Kubectl) -> list[str]:
        done: list[str] = []
        for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
            if self.ours(svc) and svc["spec"].get("publishNotReadyAddresses"):
                ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
                kubectl("-n", ns, "patch", "service", name, "--type=merge",
                        "-p", json.dumps({"spec": {"publishNotReadyAddresses": False}}))
                done.append(f"{ns}/{name}: publishNotReadyAddresses true -> false")
        return done


class RetargetServices(Scope):
    """Points every terminating-check Service's port at a container port nothing listens on,
    long before its backend terminates: the slices keep the right conditions (so the checks get
    past them) while the terminating backend can no longer be reached through the Service."""

    def __call__(self, kubectl: Kubectl) -> list[str]:
        done: list[str] = []
        for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            port = svc["spec"]["ports"][0]
            if self.ours(svc) and name in RETARGETED and port.get("targetPort") != DEAD_PORT:
                kubectl("-n", ns, "patch", "service", name, "--type=json", "-p", json.dumps(
                    [{"op": "replace", "path": "/spec/ports/0/targetPort", "value": DEAD_PORT}]))
                done.append(f"{ns}/{name}: targetPort {port.get('targetPort')} -> {DEAD_PORT} (nothing listens)")
        return done


class AddReadyDecoys(Scope):
    """Prepares a decoy slice per (Service, backend node) while the pods run, and applies it the
    moment that backend is terminating (one kubectl call), to win the race against the checks."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.services: dict[str, list[dict[str, Any]]] = {}
        self.injected: set[tuple[str, str]] = set()

    def __call__(self, kubectl: Kubectl) -> list[str]:
        done: list[str] = []
        pods = [p for p in kubectl.items("pods", "-A", "-l", "app.kubernetes.io/created-by=svcconform")
                if self.ours(p)]
        for ns in {p["metadata"]["namespace"] for p in pods} - set(self.services):
            found = kubectl.items("services", "-n", ns)
            if found:
                self.services[ns] = found
        for pod in pods:
            meta = pod["metadata"]
            ns, labels = meta["namespace"], meta.get("labels", {})
            if not meta.get("deletionTimestamp") or labels.get("app.kubernetes.io/component") != "backend":
                continue
            node = pod["spec"]["nodeName"]
            client = next((p for p in pods if p["metadata"]["namespace"] == ns and p["spec"].get("nodeName") == node
                           and p["status"].get("podIP")
                           and p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "client"), None)
            if client is None:
                continue
            for svc in self.services.get(ns, []):
                selector, name = svc["spec"].get("selector") or {}, svc["metadata"]["name"]
                if name != DECOYED or not selector or (ns, name) in self.injected or any(labels.get(k) != v for k, v in selector.items()):
                    continue
                kubectl("apply", "-f", "-", stdin=json.dumps(decoy_slice(ns, name, client, node)))
                self.injected.add((ns, name))
                done.append(f"{ns}/{name}: added a ready endpoint {client['status']['podIP']}:8080 on {node} "
                            f"({client['metadata']['name']}, nothing listens) beside terminating {meta['name']}")
        return done


def decoy_slice(namespace: str, service: str, client: dict[str, Any], node: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-saboteur", "namespace": namespace, "labels": {
            "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "svcconform-saboteur",
            "app.kubernetes.io/created-by": "svcconform"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [client["status"]["podIP"]], "conditions": {"ready": True}, "nodeName": node}],
    }


def test_terminating_and_publish_not_ready_checks_fail_with_tables_when_the_fallback_is_taken_away(
    tmp_path: Path,
) -> None:
    kubectl = shared_kubectl()
    run_id = f"brkterm{secrets.token_hex(2)}"
    results_dir = tmp_path / "results"
    argv = family_argv("clusterip or etp", results_dir, select=SELECT,
                       cell_args=("--kubeconfig", str(kubectl.kubeconfig)))
    env = {**shared_cluster_env(), "SVCCONFORM_RUN_ID": run_id}
    with Saboteur(kubectl, AddReadyDecoys(run_id), interval=DECOY_INTERVAL_S) as actor, \
            Saboteur(kubectl, FlipPublishNotReady(run_id)) as flipper, \
            Saboteur(kubectl, RetargetServices(run_id)) as retargeter:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S, env=env)
    for who in (actor, flipper, retargeter):
        assert who.actions, f"an actor never acted (errors: {who.errors[-3:]}); the break did not happen"
    tests = outcomes(only_results(results_dir, argv, proc))
    for name, (outcome, message) in tests.items():  # shown with -s, whatever follows
        print(f"--- {outcome} {name}\n{message[:3000]}")
    assert proc.returncode != 0, f"the checks passed with the fallback taken away:\n{proc.stdout[-3000:]}"
    for name, needles in BROKEN.items():
        outcome, message = tests[name]
        assert outcome == "failed", f"{name}: {outcome} {message[:1500]}"
        # the break landed before the check verified its slices: it names the slices instead of a table
        early = (PRECONDITION, "is listed ready=true") if "publish" not in name else PNR_PRECONDITION
        assert any(all(n in message for n in alt) for alt in (needles, early)), (
            f"{name} failed without naming {needles} (table) or {early} (slices): {message[:4000]}")
    print("actors:\n  " + "\n  ".join([*retargeter.actions, *actor.actions, *flipper.actions][:12]))
    for name in BROKEN:
        print(f"\n{name}:\n{tests[name][1][:3000]}")
