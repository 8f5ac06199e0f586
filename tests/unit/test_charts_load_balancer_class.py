"""The service-selectors chart's ``service.loadBalancerClass`` (``--load-balancer-class``)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from fixtures.charts import SERVICE_SELECTORS, ChartError, template
from fixtures.errors import ToolMissing
from fixtures.tools import find_tool

try:
    HELM: str | None = str(find_tool("helm"))
except ToolMissing:  # reported by the skip reason below
    HELM = shutil.which("helm")

pytestmark = pytest.mark.skipif(
    HELM is None, reason="helm not found: run 'tox -e images' to build the pinned tools"
)


def service_spec(service: dict[str, Any]) -> dict[str, Any]:
    objs = template(SERVICE_SELECTORS, {"service": service}, release="r1", namespace="svcc-test")
    (svc,) = [o for o in objs if o["kind"] == "Service"]
    return dict(svc["spec"])


def test_load_balancer_class_is_rendered_only_when_given() -> None:
    spec = service_spec({"type": "LoadBalancer", "loadBalancerClass": "example.com/internal-vip"})
    assert spec["loadBalancerClass"] == "example.com/internal-vip"
    assert "loadBalancerClass" not in service_spec({"type": "LoadBalancer"})


def test_load_balancer_class_is_a_string_even_when_it_looks_like_a_number() -> None:
    assert service_spec({"type": "LoadBalancer", "loadBalancerClass": "123"})["loadBalancerClass"] == "123"


@pytest.mark.parametrize("kind", ["ClusterIP", "NodePort"])
def test_load_balancer_class_on_another_type_fails_with_a_clear_message(kind: str) -> None:
    with pytest.raises(ChartError, match=r"loadBalancerClass needs service\.type LoadBalancer"):
        service_spec({"type": kind, "loadBalancerClass": "example.com/internal-vip"})
