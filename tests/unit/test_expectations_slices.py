"""EndpointSlice contents the controller promises for pods, and differences from observed ones."""

from __future__ import annotations

from dataclasses import dataclass

from fixtures.expectations.model import Endpoint
from fixtures.expectations.slices import describe_endpoints, endpoint_problems, expected_pod_endpoints


@dataclass(frozen=True)
class Pod:
    name: str
    node: str
    ip: str
    ready: bool = True
    terminating: bool = False


PODS = [Pod("a", "w1", "10.0.0.1"), Pod("b", "w2", "10.0.0.2", ready=False), Pod("c", "w2", "")]


def test_unready_pods_are_listed_not_ready_unless_published_anyway() -> None:
    eps = expected_pod_endpoints(PODS)
    assert set(eps) == {"10.0.0.1", "10.0.0.2"}  # no IP yet: not published
    assert (eps["10.0.0.2"].ready, eps["10.0.0.2"].is_serving) == (False, False)
    published = expected_pod_endpoints(PODS, publish_not_ready=True)
    assert (published["10.0.0.2"].ready, published["10.0.0.2"].is_serving) == (True, False)


def test_terminating_pods_are_not_ready_but_serving() -> None:
    eps = expected_pod_endpoints([Pod("t", "w1", "10.0.0.9", terminating=True)])
    e = eps["10.0.0.9"]
    assert (e.ready, e.is_serving, e.terminating) == (False, True, True)


def test_problems_name_missing_unexpected_duplicated_wrong_conditions_and_node() -> None:
    expected = expected_pod_endpoints(PODS[:2])
    observed = [
        Endpoint("10.0.0.2", "w1", ready=True),
        Endpoint("10.0.0.2", "w1", ready=True),
        Endpoint("10.0.0.7", "w3"),
    ]
    problems = endpoint_problems(expected, observed)
    assert "10.0.0.2 is listed more than once" in problems
    assert "a (10.0.0.1) is missing (expected ready=true serving=true terminating=false)" in problems
    assert ("b (10.0.0.2): ready=true serving=true terminating=false, expected ready=false serving=false "
            "terminating=false") in problems
    assert "b (10.0.0.2): nodeName w1, expected w2" in problems
    assert "10.0.0.7 is listed but should not be (ready=true serving=true terminating=false)" in problems
    assert endpoint_problems(expected, expected.values()) == []


def test_describe_endpoints() -> None:
    assert describe_endpoints([]) == "(none)"
    assert describe_endpoints([Endpoint("10.0.0.1", "w1", name="a")]) == (
        "a (10.0.0.1) on w1 ready=true serving=true terminating=false")
