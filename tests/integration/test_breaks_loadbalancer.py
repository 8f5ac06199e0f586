"""The LoadBalancer checks fail, with their tables, when the Service proxy is misled.

A namespace-local break, on the cell's usual (shared) cluster: while
``suite/test_loadbalancer.py`` runs, a background actor (:mod:`saboteur`)

* points the ``lb`` Services' ports at a closed container port (``targetPort: 1``): the load
  balancer still reaches the NodePorts, but the Service proxy forwards to a port nobody
  listens on, so every TCP connection and UDP datagram through the load balancer fails;
* rewrites the ``lb-local`` Services' ``status.loadBalancer.ingress[].ipMode`` from ``Proxy`` to
  ``VIP``: kube-proxy then short-circuits pods' and nodes' traffic to the load-balancer IP
  straight to the backends, which see the pods' (or the nodes') addresses instead of the load
  balancer's -- the suite judges its own cloud-provider-kind as the proxy it is, whatever the
  status says;
* drops ``loadBalancerSourceRanges`` from the ``lbranges`` Service whenever the test has set
  ranges that exclude this machine, as an admission webhook that strips the field would.

So the TCP and UDP checks (from every vantage), the pods' ipMode check, the source-ranges check
and the ``Local`` check must FAIL with their tables -- the last only in its hostNetwork rows: this
machine's traffic does not cross a node's Service rules before the load balancer, so its row
stays right -- and the type-change check must still pass.
Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (needs the cell's running kind cluster).
"""

from __future__ import annotations

import json
from pathlib import Path

from breakkit import SHARED_CLUSTER_REASON, family_argv, only_results, opt_in, outcomes, run_suite
from saboteur import Kubectl, Saboteur, shared_kubectl

pytestmark = opt_in(SHARED_CLUSTER_REASON)

FAMILY_RUN_TIMEOUT_S = 900
TCP = "test_tcp_through_the_load_balancer_reaches_every_backend"
UDP = "test_udp_through_the_load_balancer_reaches_every_backend"
PROXY_MODE = "test_pods_reach_the_load_balancer_ip_the_way_its_ip_mode_says"
LOCAL = "test_local_policy_load_balancer_uses_only_nodes_with_endpoints_and_keeps_the_source"
TYPES = "test_type_and_port_changes_reprovision_and_release_the_load_balancer"
RANGES = "test_load_balancer_source_ranges_admit_only_the_listed_clients"


def mislead(kubectl: Kubectl) -> list[str]:
    done = []
    for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        if svc["spec"].get("type") != "LoadBalancer":
            continue
        if name == "lb":
            ports = svc["spec"]["ports"]
            if all(p.get("targetPort") == 1 for p in ports):
                continue
            patch = [{"op": "replace", "path": f"/spec/ports/{i}/targetPort", "value": 1} for i in range(len(ports))]
            kubectl("-n", ns, "patch", "service", name, "--type=json", "-p", json.dumps(patch))
            done.append(f"{ns}/{name}: targetPort 1")
        elif name == "lbranges" and "192.0.2.0/24" in (svc["spec"].get("loadBalancerSourceRanges") or []):
            kubectl("-n", ns, "patch", "service", name, "--type=json",
                    "-p", json.dumps([{"op": "remove", "path": "/spec/loadBalancerSourceRanges"}]))
            done.append(f"{ns}/{name}: loadBalancerSourceRanges removed")
        elif name == "lb-local":
            ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
            patch = [{"op": "replace", "path": f"/status/loadBalancer/ingress/{i}/ipMode", "value": "VIP"}
                     for i, ing in enumerate(ingress) if ing.get("ipMode") != "VIP"]
            if patch:
                kubectl("-n", ns, "patch", "service", name, "--subresource=status", "--type=json",
                        "-p", json.dumps(patch))
                done.append(f"{ns}/{name}: ipMode VIP")
    return done


def test_load_balancer_checks_fail_with_tables_when_the_service_proxy_is_misled(tmp_path: Path) -> None:
    kubectl = shared_kubectl()
    results_dir = tmp_path / "results"
    argv = family_argv("loadbalancer", results_dir)
    with Saboteur(kubectl, mislead) as actor:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S)
    acts = " ".join(actor.actions)
    for act in ("targetPort 1", "ipMode VIP", "loadBalancerSourceRanges removed"):
        assert act in acts, f"the actor never did {act!r}: {actor.actions} (errors: {actor.errors[-3:]})"
    tests = outcomes(only_results(results_dir, argv, proc))
    assert proc.returncode != 0, f"LoadBalancer checks passed while broken:\n{proc.stdout[-3000:]}"
    for name in (TCP, UDP):
        outcome, message = tests[name]
        assert outcome == "failed", f"{name}: {outcome} {message[:500]}"
        for part in ("attempts failed", "try  1", "reproduce: kubectl"):
            assert part in message, f"{name} failed without its table: {message[:1500]}"
    for name, vantage in ((PROXY_MODE, "client pod on"), (LOCAL, "(hostNetwork)")):
        outcome, message = tests[name]
        assert outcome == "failed", f"{name}: {outcome} {message[:500]}"
        for part in ("the backend must see source", vantage, "is ipMode Proxy; its status says ipMode VIP",
                     "reproduce: kubectl"):
            assert part in message, f"{name} failed without its table ({part!r}): {message[:1500]}"
    local = tests[LOCAL][1]
    assert "this machine (" in local, f"{LOCAL} has no row of this machine: {local[:1500]}"
    assert not any(line.startswith("  this machine (") and line.endswith("WRONG") for line in local.splitlines()), (
        f"this machine's row of {LOCAL} must stay right (its traffic meets no node's Service rules "
        f"before the load balancer): {local[:1500]}")
    outcome, message = tests[RANGES]
    assert outcome == "failed", f"{RANGES}: {outcome} {message[:500]}"
    assert "served from outside the source ranges" in message, f"{RANGES} without its table: {message[:1500]}"
    assert tests[TYPES][0] == "passed", f"{TYPES} is not broken but {tests[TYPES][0]}: {tests[TYPES][1][:800]}"
    print(f"actor: {actor.actions}\n" + "\n".join(
        f"{name}: {msg[:2500]}" for name, (outcome, msg) in sorted(tests.items()) if outcome == "failed"))
