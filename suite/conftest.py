"""Shared fixtures of the conformance families: a namespace and a Service jig per test."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from fixtures.jig import ServiceJig, Tweak
from fixtures.kube import Kube
from fixtures.providers.base import ClusterFacts
from fixtures.timeouts import CONVERGENCE_CEILING

JigFactory = Callable[..., ServiceJig]


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number), got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number of seconds, got {text!r}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("svcconform")
    group.addoption(
        "--convergence-ceiling", dest="svcc_convergence_ceiling", type=_positive_seconds,
        default=float(CONVERGENCE_CEILING), metavar="SECONDS",
        help="convergence family: fail a sample (change -> seen from a node) slower than this "
        f"(default: {float(CONVERGENCE_CEILING):g}s, the network programming latency SLO); "
        "samples are recorded in results.json whatever the ceiling",
    )


@pytest.fixture(scope="session")
def convergence_ceiling(pytestconfig: pytest.Config) -> float:
    """Seconds a convergence sample may take (``--convergence-ceiling``)."""
    return float(pytestconfig.getoption("svcc_convergence_ceiling", default=float(CONVERGENCE_CEILING)))


@pytest.fixture
def jig(test_namespace, kube: Kube, cluster_facts: ClusterFacts) -> JigFactory:
    """``jig(tweak=..., name=..., backends=...)``: install a Service with backends and a client
    pod on every node into a fresh namespace of this test (deleted afterwards)."""

    def make(*, tweak: Tweak | None = None, namespace: str | None = None, **kwargs) -> ServiceJig:
        ns = namespace or test_namespace()
        return ServiceJig.install(kube, cluster_facts, ns, tweak=tweak, **kwargs)

    return make
