"""Shared fixtures of the conformance families: a namespace and a Service jig per test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fixtures.jig import ServiceJig, Tweak
from fixtures.kube import Kube
from fixtures.providers.base import ClusterFacts

JigFactory = Callable[..., ServiceJig]


@pytest.fixture
def jig(test_namespace, kube: Kube, cluster_facts: ClusterFacts) -> JigFactory:
    """``jig(tweak=..., name=..., backends=...)``: install a Service with backends and a client
    pod on every node into a fresh namespace of this test (deleted afterwards)."""

    def make(*, tweak: Tweak | None = None, namespace: str | None = None, **kwargs) -> ServiceJig:
        ns = namespace or test_namespace()
        return ServiceJig.install(kube, cluster_facts, ns, tweak=tweak, **kwargs)

    return make
