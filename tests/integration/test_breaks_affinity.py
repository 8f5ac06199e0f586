"""The session-affinity checks fail, naming the client that was not kept on one backend, when
``sessionAffinity`` is flipped back to ``None`` behind the suite's back.

A namespace-local break on the cell's running (shared) cluster: while the three checks of
suite/test_session_affinity.py run, a background actor (:mod:`saboteur`) watches the
namespaces of *this run only* (its own ``SVCCONFORM_RUN_ID``) and sets every Service with
``sessionAffinity: ClientIP`` back to ``None`` (dropping its ``sessionAffinityConfig``, which
the API refuses on a ``None`` Service) within a fraction of a second, as an admission policy
"normalising" Services would.  kube-proxy then, correctly, balances every connection:

* the timeout check must FAIL before it ever idles: within the timeout a client was not
  kept on one backend;
* the live-switch check must FAIL after its switch to ClientIP (the actor undoes it);
* the NodePort check must FAIL: an outside client was not kept on one backend by a node.

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

#: The three checks take ~1 min; broken, each waits out a 32 s data-plane timeout at most.
FAMILY_RUN_TIMEOUT_S = 900
TIMEOUT_TEST = "test_session_affinity_timeout_keeps_a_client_within_it_and_releases_it_after_idling"
SWITCH_TEST = "test_switching_session_affinity_on_a_live_service_makes_it_sticky_then_spreads_it_again"
NODE_PORT_TEST = "test_client_ip_affinity_on_a_node_port_keeps_an_outside_client_on_one_backend_per_node"
SELECT = " or ".join((TIMEOUT_TEST, SWITCH_TEST, NODE_PORT_TEST))


def flip_client_ip_to_none(run_id: str):  # type: ignore[no-untyped-def]
    prefix = f"svcc-affinity-{run_id}-"

    def act(kubectl: Kubectl) -> list[str]:
        done = []
        for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            if ns.startswith(prefix) and svc["spec"].get("sessionAffinity") == "ClientIP":
                kubectl("-n", ns, "patch", "service", name, "--type=merge", "-p",
                        json.dumps({"spec": {"sessionAffinity": "None", "sessionAffinityConfig": None}}))
                done.append(f"{ns}/{name}: sessionAffinity ClientIP -> None")
        return done

    return act


def test_session_affinity_checks_fail_naming_the_client_when_affinity_is_flipped_to_none(tmp_path: Path) -> None:
    kubectl = shared_kubectl()
    run_id = f"brkaff{uuid.uuid4().hex[:6]}"
    results_dir = tmp_path / "results"
    argv = family_argv("affinity", results_dir, select=["-k", SELECT],
                       cell_args=(f"--kubeconfig={kubectl.kubeconfig}",))
    env = {**os.environ, "SVCCONFORM_RUN_ID": run_id}
    with Saboteur(kubectl, flip_client_ip_to_none(run_id)) as actor:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S, env=env)
    assert actor.actions, f"the actor never flipped a Service (errors: {actor.errors[-3:]}); the break did not happen"
    tests = outcomes(only_results(results_dir, argv, proc))

    assert proc.returncode != 0, f"session affinity passed with ClientIP flipped to None:\n{proc.stdout[-3000:]}"
    # Each check's failure names what was not kept (a client answered by several backends);
    # the switch may instead catch the actor undoing its update when it reads it back.
    expectations = {
        TIMEOUT_TEST: [("within the timeout a client was not kept on one backend", "answered by")],
        SWITCH_TEST: [("not every client was kept on one backend after the switch to ClientIP", "answered by"),
                      ("the update to ClientIP did not stick",)],
        NODE_PORT_TEST: [("an outside client was not kept on one backend by every node", "answered by")],
    }
    for name, choices in expectations.items():
        outcome, message = tests[name]
        assert outcome == "failed", f"{name}: {outcome} {message[:1500]}"
        assert any(all(n in message for n in needles) for needles in choices), (
            f"{name} failed without naming any of {choices}: {message[:3000]}")
    print(f"actor: {sorted(set(actor.actions))}")
    for name in expectations:
        print(f"--- {name}:\n{tests[name][1][:2500]}")


def lengthen_the_timeout(run_id: str):  # type: ignore[no-untyped-def]
    prefix = f"svcc-affinity-{run_id}-"

    def act(kubectl: Kubectl) -> list[str]:
        done = []
        for svc in kubectl.items("services", "-A", "-l", "app.kubernetes.io/created-by=svcconform"):
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            config = (svc["spec"].get("sessionAffinityConfig") or {}).get("clientIP") or {}
            if ns.startswith(prefix) and name == "timeout" and config.get("timeoutSeconds") != LONG_TIMEOUT_S:
                kubectl("-n", ns, "patch", "service", name, "--type=merge", "-p", json.dumps(
                    {"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": LONG_TIMEOUT_S}}}}))
                done.append(f"{ns}/{name}: timeoutSeconds -> {LONG_TIMEOUT_S}")
        return done

    return act


#: The API's default timeout (3 h): the check idles 8 s at a time, far inside it.
LONG_TIMEOUT_S = 10800


def test_the_affinity_timeout_check_fails_when_the_timeout_is_lengthened_behind_its_back(tmp_path: Path) -> None:
    """Stickiness holds (so the first half passes); the expiry half must FAIL after its 10
    idle periods, naming the backend every client stayed on and the odds of bad luck."""
    kubectl = shared_kubectl()
    run_id = f"brkaft{uuid.uuid4().hex[:6]}"
    results_dir = tmp_path / "results"
    argv = family_argv("affinity", results_dir, select=["-k", TIMEOUT_TEST],
                       cell_args=(f"--kubeconfig={kubectl.kubeconfig}",))
    env = {**os.environ, "SVCCONFORM_RUN_ID": run_id}
    with Saboteur(kubectl, lengthen_the_timeout(run_id)) as actor:
        proc = run_suite(argv, timeout=FAMILY_RUN_TIMEOUT_S, env=env)
    assert actor.actions, f"the actor never changed the timeout (errors: {actor.errors[-3:]})"
    outcome, message = outcomes(only_results(results_dir, argv, proc))[TIMEOUT_TEST]
    assert outcome == "failed", f"{TIMEOUT_TEST}: {outcome} {message[:1500]}"
    for needle in ("affinity did not expire after idling past the timeout", "still sent to",
                   "with probability", f"timeoutSeconds {LONG_TIMEOUT_S}"):
        assert needle in message, f"{TIMEOUT_TEST} failed without naming {needle!r}: {message[:3000]}"
    print(f"actor: {sorted(set(actor.actions))}\n--- {TIMEOUT_TEST}:\n{message[:3000]}")
