"""svcconform's envoy-subset LB proxy: config parsing, balancing, and real traffic on loopback.

The configuration texts are what cloud-provider-kind v0.10.0's templates
(pkg/loadbalancer/proxy.go) render for a dual-port Service, byte for byte in structure.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from images.lbproxy import envoy_subset as lb

LDS = """
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: listener_IPv4_80_TCP
  address:
    socket_address:
      address: {addr}
      port_value: {tcp_port}
      protocol: TCP
  filter_chains:
  - filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        access_log:
        - name: envoy.file_access_log
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
        stat_prefix: tcp_proxy
        cluster: cluster_IPv4_80_TCP
{hash}{ranges}
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: listener_IPv4_53_UDP
  address:
    socket_address:
      address: {addr}
      port_value: {udp_port}
      protocol: UDP
  udp_listener_config:
    downstream_socket_config:
      max_rx_datagram_size: 9000
  listener_filters:
  - name: envoy.filters.udp_listener.udp_proxy
    typed_config:
      '@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig
      stat_prefix: udp_proxy
      matcher:
        on_no_match:
          action:
            name: route
            typed_config:
              '@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route
              cluster: cluster_IPv4_53_UDP
      upstream_socket_config:
        max_rx_datagram_size: 9000
"""

CLUSTER = """
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
  connect_timeout: 5s
  type: STATIC
  lb_policy: {policy}
  health_checks:
  - timeout: 1s
    interval: 0.2s
    unhealthy_threshold: 2
    healthy_threshold: 1
    no_traffic_interval: 0.2s
    always_log_health_check_failures: true
    event_log_path: /dev/stdout
    http_health_check:
      path: /healthz
  load_assignment:
    cluster_name: {name}
    endpoints:
{endpoints}"""

ENDPOINT = """      - lb_endpoints:
        - endpoint:
            health_check_config:
              port_value: {hc}
            address:
              socket_address:
                address: 127.0.0.1
                port_value: {port}
                protocol: {proto}
"""


def cds(tcp: list[tuple[int, int]], udp: list[tuple[int, int]], policy: str = "RANDOM") -> str:
    out = "resources:"
    for name, hosts, proto in (("cluster_IPv4_80_TCP", tcp, "TCP"), ("cluster_IPv4_53_UDP", udp, "UDP")):
        eps = "".join(ENDPOINT.format(hc=hc, port=p, proto=proto) for p, hc in hosts)
        out += CLUSTER.format(name=name, policy=policy, endpoints=eps)
    return out


def lds(tcp_port: int, udp_port: int, hash_ip: bool = False, ranges: tuple[str, ...] = ()) -> str:
    hash_text = "        hash_policy:\n          source_ip: {}\n" if hash_ip else ""
    range_text = ""
    if ranges:
        range_text = "    filter_chain_match:\n      source_prefix_ranges:\n" + "".join(
            f'      - address_prefix: "{r.split("/")[0]}"\n        prefix_len: {r.split("/")[1]}\n' for r in ranges)
    return LDS.format(addr="127.0.0.1", tcp_port=tcp_port, udp_port=udp_port, hash=hash_text, ranges=range_text)


# ------------------------------------------------------------------------------ parsing


def test_parses_the_listeners_cloud_provider_kind_writes():
    got = lb.parse_listeners(yaml.safe_load(lds(80, 53, hash_ip=True, ranges=("10.0.0.0/8",))))
    tcp, udp = got["listener_IPv4_80_TCP"], got["listener_IPv4_53_UDP"]
    assert (tcp.protocol, tcp.port, udp.protocol, udp.port) == ("TCP", 80, "UDP", 53)
    assert tcp.chains[0].cluster == "cluster_IPv4_80_TCP"
    assert tcp.chains[0].hash_source_ip
    assert [str(r) for r in tcp.chains[0].source_ranges] == ["10.0.0.0/8"]
    assert udp.chains[0].cluster == "cluster_IPv4_53_UDP"
    assert not udp.chains[0].hash_source_ip


def test_parses_clusters_with_health_check_ports():
    got = lb.parse_clusters(yaml.safe_load(cds([(30080, 10256), (30081, 10256)], [(30053, 32000)])))
    c = got["cluster_IPv4_80_TCP"]
    assert (c.lb_policy, c.connect_timeout) == ("RANDOM", 5.0)
    assert [(h.port, h.hc_port) for h in c.hosts] == [(30080, 10256), (30081, 10256)]
    assert c.health_check == lb.HealthCheck("/healthz", 0.2, 0.2, 1.0, 1, 2)
    assert got["cluster_IPv4_53_UDP"].hosts[0].hc_port == 32000


def test_udp_hash_policies_as_cloud_provider_kind_writes_them():
    doc = yaml.safe_load(lds(80, 53).replace(
        "      upstream_socket_config:", "      hash_policies:\n        source_ip: true\n      upstream_socket_config:"))
    assert lb.parse_listeners(doc)["listener_IPv4_53_UDP"].chains[0].hash_source_ip


@pytest.mark.parametrize(("bad", "why"), [
    ("type: STATIC", "type: STRICT_DNS"),
    ("lb_policy: RANDOM", "lb_policy: MAGLEV"),
])
def test_unimplemented_cluster_features_are_refused_not_ignored(bad, why):
    text = cds([(1, 2)], [(3, 4)]).replace(bad, why, 1)
    with pytest.raises(lb.ConfigError):
        lb.parse_clusters(yaml.safe_load(text))


def test_unimplemented_network_filter_is_refused():
    text = lds(80, 53).replace("envoy.filters.network.tcp_proxy", "envoy.filters.network.http_connection_manager")
    with pytest.raises(lb.ConfigError):
        lb.parse_listeners(yaml.safe_load(text))


@pytest.mark.parametrize(("text", "seconds"),
                         [("5s", 5.0), ("0.5s", 0.5), ("250ms", 0.25), (3, 3.0), (None, 7.0)])
def test_durations(text, seconds):
    assert lb.duration(text, 7.0) == seconds


def test_filter_chain_source_ranges_match_by_family_and_mapped_addresses():
    chain = lb.FilterChain("c", source_ranges=(lb.ipaddress.ip_network("10.1.0.0/16"),))
    assert [chain.matches(a) for a in ("10.1.2.3", "::ffff:10.1.2.3", "10.2.0.1", "fd00::1")] == [
        True, True, False, False]


# ------------------------------------------------------------------------------ balancing


def hosts(n: int) -> tuple[lb.Host, ...]:
    return tuple(lb.Host(f"10.0.0.{i}", 30000, 10256) for i in range(1, n + 1))


def state(n: int, healthy: int) -> lb.ClusterState:
    s = lb.ClusterState(lb.Cluster("c", hosts(n), "RANDOM", 5.0, lb.HealthCheck()))
    for h in list(s.hosts)[:healthy]:
        s.hosts[h].healthy = True
    return s


def test_hosts_start_failed_until_their_first_check_passes():
    s = state(2, 0)
    assert not any(hs.healthy for hs in s.hosts.values())
    assert not s.initial_round_done()


def test_only_healthy_hosts_are_candidates_at_or_above_half():
    assert state(2, 1).candidates() == [hosts(2)[0]]
    assert state(4, 2).candidates() == list(hosts(4)[:2])


def test_panic_mode_below_half_healthy_balances_over_every_host():
    assert state(3, 1).candidates() == list(hosts(3))
    assert state(2, 0).candidates() == list(hosts(2))


def test_thresholds():
    hc = lb.HealthCheck(healthy_threshold=1, unhealthy_threshold=2)
    hs = lb.HostState()
    hs.record(True, hc, "HTTP 200")
    assert hs.healthy
    hs.record(False, hc, "HTTP 503")
    assert hs.healthy  # one failure of two
    hs.record(False, hc, "HTTP 503")
    assert not hs.healthy


def test_ring_hash_is_consistent_per_client_and_spreads_clients():
    hs = list(hosts(3))
    picks = {ip: lb.ring_pick(hs, ip) for ip in (f"172.18.0.{i}" for i in range(2, 60))}
    assert all(lb.ring_pick(hs, ip) == h for ip, h in picks.items())
    assert len(set(picks.values())) == 3


# ------------------------------------------------------------------------------ on loopback


class Backend(http.server.BaseHTTPRequestHandler):
    name = "?"
    healthy = True

    def do_GET(self):
        if self.path == "/healthz":
            code, body = (200, "ok") if type(self).healthy else (503, "no")
        else:
            code, body = 200, type(self).name
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def backend(name: str) -> tuple[http.server.ThreadingHTTPServer, type[Backend]]:
    handler = type(f"Backend_{name}", (Backend,), {"name": name, "healthy": True})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


def udp_echo(name: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))

    def loop():
        while True:
            try:
                data, addr = s.recvfrom(2048)
            except OSError:
                return
            s.sendto(name.encode() + b":" + data, addr)

    threading.Thread(target=loop, daemon=True).start()
    return s


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def proxy(tmp_path: Path):
    """A running proxy (own event loop thread) with files in ``tmp_path``: returns a helper."""
    admin = free_port()
    boot = {
        "dynamic_resources": {"cds_config": {"path": str(tmp_path / "cds.yaml")},
                              "lds_config": {"path": str(tmp_path / "lds.yaml")}},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
    }
    (tmp_path / "cds.yaml").write_text("")
    (tmp_path / "lds.yaml").write_text("")
    server = lb.Server(boot)
    loop = asyncio.new_event_loop()
    task = None

    def run():
        nonlocal task
        asyncio.set_event_loop(loop)
        task = loop.create_task(server.run())
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    t = threading.Thread(target=run, daemon=True)
    t.start()

    class P:
        admin_url = f"http://127.0.0.1:{admin}"

        @staticmethod
        def write(cds_text: str, lds_text: str) -> None:
            # as cloud-provider-kind does: write .tmp files, then mv them into place
            for name, text in (("cds.yaml", cds_text), ("lds.yaml", lds_text)):
                tmp = tmp_path / (name + ".tmp")
                tmp.write_text(text)
                tmp.rename(tmp_path / name)

        srv = server

    assert wait(lambda: _up(P.admin_url)), "admin port never answered"
    yield P
    loop.call_soon_threadsafe(lambda: task and task.cancel())
    t.join(5)


def _up(url: str) -> bool:
    try:
        get(url + "/ready", 0.5)
        return True
    except OSError:
        return False


def test_tcp_and_udp_traffic_reaches_only_healthy_backends(proxy):
    (a, _), (b, hb) = backend("a"), backend("b")
    ua, ub = udp_echo("ua"), udp_echo("ub")
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    hca, hcb = a.server_address[1], b.server_address[1]
    hb.healthy = False
    proxy.write(cds([(a.server_address[1], hca), (b.server_address[1], hcb)],
                    [(ua.getsockname()[1], hca), (ub.getsockname()[1], hcb)]),
                lds(tcp_port, udp_port))
    assert wait(lambda: _ok(f"http://127.0.0.1:{tcp_port}/hostname")), get(proxy.admin_url + "/clusters")
    assert get(proxy.admin_url + "/ready") == (200, "LIVE\n")
    # b fails its health check: 1 of 2 healthy (not panic), so every request goes to a
    assert {get(f"http://127.0.0.1:{tcp_port}/hostname")[1] for _ in range(12)} == {"a"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(3)
        c.sendto(b"hello", ("127.0.0.1", udp_port))
        assert c.recvfrom(2048)[0] == b"ua:hello"
        c.sendto(b"again", ("127.0.0.1", udp_port))  # same session
        assert c.recvfrom(2048)[0] == b"ua:again"
    hb.healthy = True
    assert wait(lambda: {get(f"http://127.0.0.1:{tcp_port}/hostname")[1] for _ in range(12)} == {"a", "b"})
    assert "failed_active_hc" not in get(proxy.admin_url + "/clusters")[1]


def test_source_ranges_close_unmatched_connections_and_ring_hash_sticks(proxy):
    (a, _), (b, _) = backend("a"), backend("b")
    ua = udp_echo("ua")
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    clusters = cds([(a.server_address[1], a.server_address[1]), (b.server_address[1], b.server_address[1])],
                   [(ua.getsockname()[1], a.server_address[1])], policy="RING_HASH")
    proxy.write(clusters, lds(tcp_port, udp_port, hash_ip=True))
    assert wait(lambda: _ok(f"http://127.0.0.1:{tcp_port}/hostname"))
    assert len({get(f"http://127.0.0.1:{tcp_port}/hostname")[1] for _ in range(12)}) == 1
    proxy.write(clusters, lds(tcp_port, udp_port, ranges=("10.0.0.0/8",)))
    assert wait(lambda: proxy.srv.listeners["listener_IPv4_80_TCP"].chains[0].source_ranges)
    with pytest.raises((ConnectionError, urllib.error.URLError, http.client.HTTPException)):
        get(f"http://127.0.0.1:{tcp_port}/hostname", 2)
    proxy.write(clusters, lds(tcp_port, udp_port, ranges=("127.0.0.0/8",)))
    assert wait(lambda: _ok(f"http://127.0.0.1:{tcp_port}/hostname"))


def _ok(url: str) -> bool:
    try:
        return get(url, 1)[0] == 200
    except OSError:
        return False


def test_rejected_update_keeps_the_last_good_configuration(proxy):
    (a, _) = backend("a")
    ua = udp_echo("ua")
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    good = cds([(a.server_address[1], a.server_address[1])], [(ua.getsockname()[1], a.server_address[1])])
    proxy.write(good, lds(tcp_port, udp_port))
    assert wait(lambda: _ok(f"http://127.0.0.1:{tcp_port}/hostname"))
    proxy.write(good.replace("type: STATIC", "type: EDS"), lds(tcp_port, udp_port))
    time.sleep(1.2)
    assert get(f"http://127.0.0.1:{tcp_port}/hostname") == (200, "a")
