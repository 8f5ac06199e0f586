"""Cilium's LB map for the scale benchmark: sized so 10,000 Services fit, and only there."""

from __future__ import annotations

import dataclasses
import shutil
from typing import Any

import pytest
import yaml

from fixtures import charts, cni
from fixtures.spec import ClusterSpec
from images import cilium, paths


def test_the_default_lb_map_holds_about_3k_services_so_10k_need_four_times_it() -> None:
    assert cni.lb_map_max_for(1000) == cni.CILIUM_LB_MAP_DEFAULT  # never below the chart's
    assert cni.lb_map_max_for(3000) == 65536
    assert cni.lb_map_max_for(3001) == 131072
    assert cni.lb_map_max_for(10_000) == 262144  # 10k x 64k / 3k = 218,454 -> a power of two


def test_conformance_cells_keep_the_charts_lb_map() -> None:
    values = cni.cilium_values(ClusterSpec(proxy_mode="none", cni="cilium"), {}, api_server="172.18.0.3")
    assert "bpf" not in values
    assert cni.CILIUM.lb_map_max is None


def test_scale_cells_set_bpf_lb_map_max() -> None:
    values = cni.cilium_values(ClusterSpec(proxy_mode="none", cni="cilium"), {}, api_server="172.18.0.3",
                               lb_map_max=cni.lb_map_max_for(10_000))
    assert values["bpf"] == {"lbMapMax": 262144}


def test_the_installer_passes_its_lb_map_size_to_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_values(*args: Any, **kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(cni, "cilium_values", fake_values)
    installer = dataclasses.replace(cni.CILIUM, lb_map_max=262144)

    class Chart:
        def __truediv__(self, name: str) -> Any:
            return self

        def is_file(self) -> bool:
            return True

        def read_text(self) -> str:
            return "{}"

    class Provider:
        spec = ClusterSpec(proxy_mode="none", cni="cilium")

        class host:
            cap_bounding_set = None

        def nodes(self) -> list[Any]:
            return []

    installer = dataclasses.replace(installer, chart=Chart)
    with pytest.raises(RuntimeError, match="stop here"):
        installer(Provider())  # type: ignore[arg-type]
    assert seen["lb_map_max"] == 262144


@pytest.mark.skipif(
    not (cilium.chart_dir() / "Chart.yaml").is_file()
    or (shutil.which("helm") is None and not paths.tool("helm").exists()),
    reason="Cilium's chart is not in the cache: run 'python -m images ensure --cni cilium'",
)
def test_the_chart_writes_the_lb_map_size_into_the_agents_config() -> None:
    chart = cilium.chart_dir()
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    assert defaults["bpf"]["lbMapMax"] == cni.CILIUM_LB_MAP_DEFAULT
    values = cni.cilium_values(ClusterSpec(proxy_mode="none", cni="cilium"), defaults,
                               api_server="172.18.0.3", lb_map_max=262144)
    docs = charts.template(chart, values, release="cilium", namespace="kube-system")
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cilium-config")
    assert config["data"]["bpf-lb-map-max"] == "262144"
