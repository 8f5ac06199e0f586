"""The convergence family fails, naming the ceiling and the measured samples, when the
ceiling is below what the data plane can do.

Namespace-local (the family only ever touches its own namespaces), so it runs against the
shared cell cluster: ``-m convergence --convergence-ceiling=0.001`` — no data plane
converges within a millisecond, so every black-box scenario and the kube-proxy latency
check must fail, each message naming ``--convergence-ceiling`` and listing the samples it
measured (the samples themselves are still recorded in results.json).

Opt-in: skipped unless ``SVCCONFORM_BREAK_TESTS=1`` (it needs the cell's kind cluster and
about 2-4 minutes on a 2-core machine).
"""

from __future__ import annotations

import re
from pathlib import Path

from breakkit import by_test_name, cell_results, family_argv, opt_in, run_suite, shared_cluster_env

pytestmark = opt_in(
    "runs the convergence family with an impossible ceiling on the cell's kind cluster: "
    "set SVCCONFORM_BREAK_TESTS=1",
)

CEILING = "0.001"
#: One family run on a loaded 2-core machine (its own waits are bounded by
#: KUBE_PROXY_ENDPOINT_LAG_TIMEOUT per change); creates the cell's cluster if it is missing.
FAMILY_RUN_TIMEOUT_S = 1500
BLACK_BOX = {
    "test_a_service_is_served_on_every_node_once_created_and_rejected_once_deleted",
    "test_traffic_stops_reaching_a_deleted_pod_on_every_node_within_the_ceiling",
    "test_traffic_stops_reaching_a_pod_that_fails_readiness_on_every_node_within_the_ceiling",
    "test_a_new_backend_receives_traffic_from_every_node_after_scale_up_within_the_ceiling",
}
WHITE_BOX = "test_kube_proxy_on_every_node_reports_network_programming_within_the_ceiling"
SAMPLES = re.compile(r"measured samples \[s\]: \[(\d+\.\d+)(, \d+\.\d+)*\]")


def test_convergence_family_fails_naming_the_ceiling_and_the_samples_when_it_is_too_tight(
    tmp_path: Path,
) -> None:
    argv = family_argv("convergence", tmp_path, extra=(f"--convergence-ceiling={CEILING}",))
    proc = run_suite(argv, env=shared_cluster_env(), timeout=FAMILY_RUN_TIMEOUT_S)
    tests = by_test_name(cell_results(tmp_path, argv, proc))
    assert proc.returncode == 1, f"the family must fail with a {CEILING}s ceiling:\n{proc.stdout[-4000:]}"
    assert set(tests) == {*BLACK_BOX, WHITE_BOX}, sorted(tests)

    for name in sorted(BLACK_BOX):
        test = tests[name]
        message = test["message"]
        assert test["outcome"] == "failed", (name, test["outcome"], message[:2000])
        assert f"convergence ceiling {CEILING}s (--convergence-ceiling)" in message, (name, message[:2000])
        assert SAMPLES.search(message), f"{name}: the message must list the measured samples:\n{message[:2000]}"
        measured = [m for m in test["measurements"].values() if m["unit"] == "s" and m["samples"]]
        assert measured, f"{name}: the samples must still be recorded in results.json"

    white = tests[WHITE_BOX]
    assert white["outcome"] == "failed", (white["outcome"], white["message"][:2000])
    assert f"convergence ceiling {CEILING}s (--convergence-ceiling)" in white["message"], white["message"][:2000]
