"""clusterip: a Service's virtual IP carries traffic to its ready endpoints, from every node."""

from __future__ import annotations

import pytest

from fixtures import clusterinfo, reachability
from fixtures.concurrency import run_all
from fixtures.expectations.model import TrafficPolicy
from fixtures.expectations.ranges import cluster_ip_problems
from fixtures.expectations.traffic import clusterip_backends
from fixtures.jig import ServiceJig
from fixtures.poll import wait_until
from fixtures.probes import http_get, udp_exchange
from fixtures.timeouts import KUBE_PROXY_ENDPOINT_LAG_TIMEOUT

pytestmark = pytest.mark.clusterip

# Requests per client when looking for every backend: with 2-3 random (iptables statistic /
# nftables numgen) choices, 24 tries miss a given backend with probability < 1e-4.
TRIES_PER_CLIENT = 24


def backends_seen(jig: ServiceJig, host: str, port: int, *, proto: str = "tcp",
                  tries: int = TRIES_PER_CLIENT) -> tuple[dict[str, set[str] | None], dict[str, str]]:
    """From the client on every node, which backends answered ``host:port`` (``None``: the
    client never got an answer) and the command that reproduces one probe."""

    def probe(node: str) -> tuple[set[str] | None, str]:
        vantage = jig.client(node)
        seen: set[str] = set()
        command = ""
        for _ in range(tries):
            reply = (udp_exchange(vantage, host, port) if proto == "udp" else http_get(vantage, host, port))
            command = reply.command
            if reply.ok and reply.backend:
                seen.add(reply.backend)
        return (seen or None), command

    results = run_all({n: (lambda n=n: probe(n)) for n in jig.clients()})
    seen: dict[str, set[str] | None] = {}
    commands: dict[str, str] = {}
    for node, res in results.items():
        if isinstance(res, tuple):
            seen[node], commands[node] = res
        else:
            seen[node] = None
            commands[node] = getattr(res, "command", "") or ""
    return seen, commands


def assert_backends(jig: ServiceJig, host: str, port: int, *, proto: str = "tcp", title: str) -> None:
    endpoints = jig.endpoints()
    names = sorted(e.name or e.ip for e in endpoints if e.ready)
    expected = {node: clusterip_backends(endpoints, client_node=node,
                                         internal_traffic_policy=TrafficPolicy.CLUSTER)
                for node in jig.clients()}

    def check() -> tuple[bool, str]:
        seen, commands = backends_seen(jig, host, port, proto=proto)
        cmp = reachability.compare(
            reachability.expected_backend_table(title, expected, names),
            reachability.backend_table(title, seen, names, commands=commands),
        )
        return cmp.ok, cmp.render()

    wait_until(check, timeout=KUBE_PROXY_ENDPOINT_LAG_TIMEOUT, what=title)


def test_cluster_ip_is_allocated_from_the_service_cidr_and_outside_the_pod_cidr(jig, kube):
    j = jig(backends=1, clients=False)
    info = clusterinfo.read(kube)
    svc = j.service()
    problems = cluster_ip_problems(svc.cluster_ip, service_cidrs=info.service_cidrs, pod_cidrs=info.pod_cidrs)
    assert not problems, f"service {j.namespace}/{j.name}: " + "; ".join(problems)


def test_every_node_reaches_every_ready_backend_over_tcp(jig):
    j = jig(backends=3)
    svc = j.service()
    assert_backends(j, svc.cluster_ip, 80, title=f"TCP {svc.cluster_ip}:80 (service {j.namespace}/{j.name})")


def test_every_node_reaches_every_ready_backend_over_udp(jig):
    j = jig(backends=3)
    svc = j.service()
    assert_backends(j, svc.cluster_ip, 81, proto="udp",
                    title=f"UDP {svc.cluster_ip}:81 (service {j.namespace}/{j.name})")
