"""The hostNetwork checks of the clusterip and nodeport families fail with reachability
tables when their Services point at a port nothing listens on.

A namespace-local break, on the cell's shared cluster: the suite runs only the hostNetwork
checks (``-k host_network``) with its own run id, and a background actor (:mod:`saboteur`)
rewrites every port's ``targetPort`` to 1 on the Services in that run's clusterip and
nodeport namespaces only (``svcc-clusterip-<run id>-*``, ``svcc-nodeport-<run id>-*``), as
a bad edit of the Service would.  Endpoints stay ready at the same addresses, but every
ClusterIP and nodePort now leads to a closed port on the pod (or, for the hostNetwork
backends, on the node):

* every traffic check must FAIL with its table (``mismatching cell``, ``expected .,
  observed X``), from hostNetwork clients and to hostNetwork backends;
* the API check (a hostNetwork backend's endpoint is its node's IP) must still pass.

Stopping the actor is the restore; the suite deletes its namespaces as usual.
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (needs the cell's running kind cluster).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from breakkit import SHARED_CLUSTER_REASON, family_argv, only_results, opt_in, outcomes, run_suite
from saboteur import Kubectl, Saboteur, shared_kubectl

pytestmark = opt_in(SHARED_CLUSTER_REASON)

#: ~2 min of setup and checks; broken, each of the 6 traffic checks waits out its 32 s
#: KUBE_PROXY_ENDPOINT_LAG_TIMEOUT.
FAMILY_RUN_TIMEOUT_S = 900
CLOSED_PORT = 1  # tcpmux: nothing listens there on a pod or a kind node
API_TEST = "test_a_host_network_backends_endpoint_address_is_its_nodes_ip"


def close_target_ports(run_id: str):  # type: ignore[no-untyped-def]
    prefixes = (f"svcc-clusterip-{run_id}-", f"svcc-nodeport-{run_id}-")

    def act(kubectl: Kubectl) -> list[str]:
        done = []
        for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            ports = svc["spec"].get("ports") or []
            if not ns.startswith(prefixes) or all(p.get("targetPort") == CLOSED_PORT for p in ports):
                continue
            patch = [{"op": "replace", "path": f"/spec/ports/{i}/targetPort", "value": CLOSED_PORT}
                     for i in range(len(ports))]
            kubectl("-n", ns, "patch", "service", name, "--type=json", "-p", json.dumps(patch))
            done.append(f"{ns}/{name}: targetPort -> {CLOSED_PORT} on {len(ports)} port(s)")
        return done

    return act


def test_host_network_checks_fail_with_tables_when_the_services_target_a_closed_port(tmp_path: Path) -> None:
    kubectl = shared_kubectl()
    run_id = f"brkhn{secrets.token_hex(3)}"
    results_dir = tmp_path / "results"
    argv = family_argv("clusterip or nodeport", results_dir, select=("-k", "host_network"),
                       cell_args=("--kubeconfig", str(kubectl.kubeconfig)))
    with Saboteur(kubectl, close_target_ports(run_id)) as actor:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S, env={**os.environ, "SVCCONFORM_RUN_ID": run_id})
    assert actor.actions, f"the actor never changed a Service (errors: {actor.errors[-3:]}); no break happened"
    tests = outcomes(only_results(results_dir, argv, proc))

    assert proc.returncode != 0, f"hostNetwork checks passed with closed targetPorts:\n{proc.stdout[-3000:]}"
    traffic = {name: o for name, o in tests.items() if name != API_TEST}
    assert len(traffic) == 6, f"expected 6 hostNetwork traffic checks, ran {sorted(tests)}"
    for name, (outcome, message) in traffic.items():
        assert outcome == "failed", f"{name}: {outcome} {message[:500]}"
        for needle in ("mismatching cell", "expected ., observed X"):
            assert needle in message, f"{name} failed without {needle!r}: {message[:3000]}"
    assert tests[API_TEST][0] == "passed", f"{API_TEST} sends no traffic, yet: {tests[API_TEST]}"
    print(f"actor: {actor.actions}\n" + "\n".join(f"{n}: {m[:2500]}" for n, (_, m) in sorted(traffic.items())))
