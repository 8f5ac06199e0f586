"""trafficDistribution expectations: what each distribution promises a client, and the hints."""

from __future__ import annotations

import pytest

from fixtures.expectations.model import Endpoint
from fixtures.expectations.topology import distribution_backends, hint_problems, node_zones

ZONES = {"cp": "zone-a", "w1": "zone-a", "w2": "zone-b"}
NEAR = (Endpoint("10.0.0.1", node="cp", name="b-cp"), Endpoint("10.0.2.1", node="w2", name="b-w2"))
FAR = (Endpoint("10.0.0.1", node="cp", name="b-cp"), Endpoint("10.0.1.1", node="w1", name="b-w1"))


def reach(endpoints, distribution, client):
    return set(distribution_backends(endpoints, traffic_distribution=distribution, client_node=client, zones=ZONES))


@pytest.mark.parametrize("distribution", ["PreferClose", "PreferSameZone"])
def test_zone_distributions_keep_each_client_in_its_zone(distribution):
    assert reach(NEAR, distribution, "cp") == {"b-cp"}
    assert reach(NEAR, distribution, "w1") == {"b-cp"}
    assert reach(NEAR, distribution, "w2") == {"b-w2"}
    assert reach(FAR, distribution, "w1") == {"b-cp", "b-w1"}


def test_prefer_same_node_falls_back_to_the_zone_then_to_everything():
    assert reach(NEAR, "PreferSameNode", "cp") == {"b-cp"}
    assert reach(NEAR, "PreferSameNode", "w1") == {"b-cp"}  # no local endpoint: its zone's
    assert reach(FAR, "PreferSameNode", "w1") == {"b-w1"}
    assert reach(FAR, "PreferSameNode", "w2") == {"b-cp", "b-w1"}  # nothing in zone-b: all


@pytest.mark.parametrize("distribution", [None, "", "SomethingNew"])
def test_without_a_known_distribution_every_ready_endpoint_is_reached(distribution):
    unready = Endpoint("10.0.1.9", node="w1", name="b-unready", ready=False)
    assert reach((*NEAR, unready), distribution, "w2") == {"b-cp", "b-w2"}


def test_zones_are_read_from_the_node_labels_and_unlabelled_nodes_are_left_out():
    nodes = [{"metadata": {"name": "cp", "labels": {"topology.kubernetes.io/zone": "zone-a"}}},
             {"metadata": {"name": "w9", "labels": {}}}]
    assert node_zones(nodes) == {"cp": "zone-a"}


def slice_with(hints, node="w2", ready=True):
    return {"metadata": {"name": "s1"},
            "endpoints": [{"addresses": ["10.0.2.1"], "nodeName": node, "conditions": {"ready": ready},
                           **({"hints": hints} if hints is not None else {})}]}


def test_hints_must_name_the_endpoints_zone_and_for_prefer_same_node_its_node():
    zone_only = {"forZones": [{"name": "zone-b"}]}
    both = {"forZones": [{"name": "zone-b"}], "forNodes": [{"name": "w2"}]}
    assert hint_problems([slice_with(zone_only)], traffic_distribution="PreferSameZone", zones=ZONES) == []
    assert hint_problems([slice_with(both)], traffic_distribution="PreferSameNode", zones=ZONES) == []
    assert hint_problems([slice_with(None)], traffic_distribution=None, zones=ZONES) == []
    [wrong_zone] = hint_problems([slice_with({"forZones": [{"name": "zone-a"}]})],
                                 traffic_distribution="PreferClose", zones=ZONES)
    assert "expected ['zone-b']" in wrong_zone
    [no_node] = hint_problems([slice_with(zone_only)], traffic_distribution="PreferSameNode", zones=ZONES)
    assert "forNodes [], expected ['w2']" in no_node
    [stray] = hint_problems([slice_with(zone_only)], traffic_distribution=None, zones=ZONES)
    assert "without trafficDistribution" in stray
    assert hint_problems([slice_with(None, ready=False)], traffic_distribution="PreferClose", zones=ZONES) == []
