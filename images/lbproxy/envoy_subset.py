#!/usr/bin/env python3
"""svcconform's load-balancer proxy: the subset of envoy that cloud-provider-kind drives.

cloud-provider-kind (sigs.k8s.io/cloud-provider-kind) runs one container per LoadBalancer
Service and configures envoy in it through files: a bootstrap with ``dynamic_resources``
(``cds_config.path`` / ``lds_config.path``) and an admin port, then CDS and LDS files it
replaces (``mv``) on every change, and it polls the admin ``/ready`` until it says ``LIVE``.
Envoy cannot be built from the package registries these machines reach and no registry
serves its image, so this program implements exactly what cloud-provider-kind v0.10.0 writes
(``pkg/loadbalancer/proxy.go``), with envoy's documented semantics:

* listeners: TCP with one ``envoy.filters.network.tcp_proxy`` (optional ``hash_policy``
  ``source_ip`` and ``filter_chain_match.source_prefix_ranges``: a connection matching no
  filter chain is closed, as envoy does), and UDP with ``envoy.filters.udp_listener.udp_proxy``
  (a session per client address, 60 s idle timeout, optional ``hash_policies`` ``source_ip``);
* clusters: ``type: STATIC`` endpoints, ``lb_policy`` RANDOM, ROUND_ROBIN or RING_HASH
  (hashing the client's address), ``connect_timeout``, one active HTTP health check
  (``path``, ``interval``, ``no_traffic_interval``, ``timeout``, ``healthy_threshold``,
  ``unhealthy_threshold``, ``health_check_config.port_value``).  Hosts start failed until
  their first check passes; below 50 % healthy hosts the cluster is in panic mode and
  balances over every host (envoy's default ``healthy_panic_threshold``);
* admin: ``/ready`` (``LIVE`` once the first CDS/LDS load and its first health-check round
  are done), ``/clusters`` (each host's health, envoy's text layout), ``/config_dump`` (JSON).

Anything else in the files is reported on stdout and ignored; a resource of a kind this
program does not implement (another cluster type or network filter) is refused with a log
line, as envoy rejects an invalid update, so a silently different data plane cannot result.

Invoked as envoy is: ``envoy -c /home/envoy/envoy.yaml``.  Only Python's standard library and
PyYAML (Debian's python3-yaml).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import ipaddress
import json
import os
import random
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

try:
    import yaml
except ImportError:  # pragma: no cover - the image installs python3-yaml
    yaml = None  # type: ignore[assignment]

PANIC_THRESHOLD = 0.5
UDP_IDLE_TIMEOUT = 60.0
RING_SIZE = 1024
READ_CHUNK = 65536


def log(msg: str) -> None:
    print(f"[lbproxy] {time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}", flush=True)


class ConfigError(ValueError):
    """A resource this program does not implement, or a malformed one."""


def duration(value: Any, default: float) -> float:
    """Seconds from an envoy Duration in YAML: ``5s``, ``0.5s``, ``250ms`` or a number."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    if text.endswith("s"):
        return float(text[:-1])
    raise ConfigError(f"not a duration: {value!r}")


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Host:
    address: str
    port: int
    hc_port: int

    def label(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class HealthCheck:
    path: str = "/healthz"
    interval: float = 3.0
    no_traffic_interval: float = 60.0
    timeout: float = 5.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 2


@dataclass(frozen=True)
class Cluster:
    name: str
    hosts: tuple[Host, ...]
    lb_policy: str = "ROUND_ROBIN"
    connect_timeout: float = 5.0
    health_check: HealthCheck | None = None


@dataclass(frozen=True)
class FilterChain:
    cluster: str
    hash_source_ip: bool = False
    source_ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def matches(self, peer: str) -> bool:
        if not self.source_ranges:
            return True
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.source_ranges)


@dataclass(frozen=True)
class Listener:
    name: str
    address: str
    port: int
    protocol: str  # TCP | UDP
    chains: tuple[FilterChain, ...]

    def chain_for(self, peer: str) -> FilterChain | None:
        """The filter chain a connection from ``peer`` uses (most specific match, as envoy
        picks: a chain with source ranges that match beats one without), or None."""
        ranged = [c for c in self.chains if c.source_ranges and c.matches(peer)]
        if ranged:
            return ranged[0]
        plain = [c for c in self.chains if not c.source_ranges]
        return plain[0] if plain else None


def resources(doc: Any, type_suffix: str) -> list[dict[str, Any]]:
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise ConfigError("top level is not a mapping")
    out = []
    for res in doc.get("resources") or []:
        kind = str(res.get("@type", ""))
        if not kind.endswith(type_suffix):
            raise ConfigError(f"resource of type {kind!r} where {type_suffix} was expected")
        out.append(res)
    return out


def parse_clusters(doc: Any) -> dict[str, Cluster]:
    clusters = {}
    for res in resources(doc, "envoy.config.cluster.v3.Cluster"):
        name = str(res["name"])
        ctype = res.get("type", "STATIC")
        if ctype != "STATIC":
            raise ConfigError(f"cluster {name}: type {ctype} is not implemented (STATIC only)")
        policy = str(res.get("lb_policy", "ROUND_ROBIN"))
        if policy not in ("ROUND_ROBIN", "RANDOM", "RING_HASH"):
            raise ConfigError(f"cluster {name}: lb_policy {policy} is not implemented")
        hc = None
        checks = res.get("health_checks") or []
        if len(checks) > 1:
            raise ConfigError(f"cluster {name}: more than one health check is not implemented")
        if checks:
            c = checks[0]
            http = c.get("http_health_check")
            if http is None:
                raise ConfigError(f"cluster {name}: only http_health_check is implemented")
            hc = HealthCheck(
                path=str(http.get("path", "/")),
                interval=duration(c.get("interval"), 3.0),
                no_traffic_interval=duration(c.get("no_traffic_interval"), 60.0),
                timeout=duration(c.get("timeout"), 5.0),
                healthy_threshold=int(c.get("healthy_threshold", 1)),
                unhealthy_threshold=int(c.get("unhealthy_threshold", 1)),
            )
        hosts = []
        assignment = res.get("load_assignment") or {}
        for locality in assignment.get("endpoints") or []:
            for lb in locality.get("lb_endpoints") or []:
                ep = lb.get("endpoint") or {}
                sa = (ep.get("address") or {}).get("socket_address") or {}
                port = int(sa["port_value"])
                hc_port = int((ep.get("health_check_config") or {}).get("port_value") or port)
                hosts.append(Host(str(sa["address"]), port, hc_port))
        clusters[name] = Cluster(name, tuple(hosts), policy,
                                 duration(res.get("connect_timeout"), 5.0), hc)
    return clusters


def _hash_source_ip(policy: Any) -> bool:
    """Whether a tcp_proxy ``hash_policy`` / udp_proxy ``hash_policies`` hashes the source IP
    (a list of policies, or the single mapping cloud-provider-kind writes)."""
    if not policy:
        return False
    items = policy if isinstance(policy, list) else [policy]
    for item in items:
        if not isinstance(item, dict) or "source_ip" not in item:
            raise ConfigError(f"hash policy {item!r} is not implemented (source_ip only)")
        if item["source_ip"] in (False, None) and item["source_ip"] != {}:
            continue
        return True
    return False


def parse_listeners(doc: Any) -> dict[str, Listener]:
    listeners = {}
    for res in resources(doc, "envoy.config.listener.v3.Listener"):
        name = str(res["name"])
        sa = (res.get("address") or {}).get("socket_address") or {}
        protocol = str(sa.get("protocol", "TCP")).upper()
        address = str(sa["address"])
        port = int(sa["port_value"])
        chains: list[FilterChain] = []
        if protocol == "UDP":
            for lf in res.get("listener_filters") or []:
                if lf.get("name") != "envoy.filters.udp_listener.udp_proxy":
                    raise ConfigError(f"listener {name}: listener filter {lf.get('name')} is not implemented")
                cfg = lf.get("typed_config") or {}
                cluster = cfg.get("cluster")
                if cluster is None:
                    action = ((cfg.get("matcher") or {}).get("on_no_match") or {}).get("action") or {}
                    cluster = (action.get("typed_config") or {}).get("cluster")
                if cluster is None:
                    raise ConfigError(f"listener {name}: udp_proxy names no cluster")
                chains.append(FilterChain(str(cluster), _hash_source_ip(cfg.get("hash_policies"))))
        elif protocol == "TCP":
            for fc in res.get("filter_chains") or []:
                filters = fc.get("filters") or []
                if len(filters) != 1 or filters[0].get("name") != "envoy.filters.network.tcp_proxy":
                    raise ConfigError(f"listener {name}: only one tcp_proxy filter per chain is implemented")
                cfg = filters[0].get("typed_config") or {}
                ranges = []
                match = fc.get("filter_chain_match") or {}
                unknown = set(match) - {"source_prefix_ranges"}
                if unknown:
                    raise ConfigError(
                        f"listener {name}: filter_chain_match {sorted(unknown)} is not implemented")
                for r in match.get("source_prefix_ranges") or []:
                    ranges.append(ipaddress.ip_network(
                        f"{r['address_prefix']}/{int(r.get('prefix_len', 0))}", strict=False))
                chains.append(FilterChain(str(cfg["cluster"]), _hash_source_ip(cfg.get("hash_policy")),
                                          tuple(ranges)))
        else:
            raise ConfigError(f"listener {name}: protocol {protocol} is not implemented")
        if not chains:
            raise ConfigError(f"listener {name}: no filter chain")
        listeners[name] = Listener(name, address, port, protocol, tuple(chains))
    return listeners


# ---------------------------------------------------------------------------- balancing


def ring_hash(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def ring_pick(hosts: list[Host], key: str) -> Host:
    """The host owning ``key`` on a consistent-hash ring of ``hosts`` (RING_HASH)."""
    points: list[tuple[int, Host]] = []
    per_host = max(1, RING_SIZE // max(1, len(hosts)))
    for h in hosts:
        for i in range(per_host):
            points.append((ring_hash(f"{h.label()}_{i}"), h))
    points.sort(key=lambda p: p[0])
    keys = [p[0] for p in points]
    i = bisect.bisect(keys, ring_hash(key)) % len(points)
    return points[i][1]


@dataclass
class HostState:
    healthy: bool = False  # failed until the first check passes (active health checking)
    successes: int = 0
    failures: int = 0
    checked: bool = False
    last: str = "pending"

    def record(self, ok: bool, hc: HealthCheck, detail: str) -> None:
        self.checked = True
        self.last = detail
        if ok:
            self.failures = 0
            self.successes += 1
            if not self.healthy and self.successes >= hc.healthy_threshold:
                self.healthy = True
        else:
            self.successes = 0
            self.failures += 1
            if self.healthy and self.failures >= hc.unhealthy_threshold:
                self.healthy = False


@dataclass
class ClusterState:
    cluster: Cluster
    hosts: dict[Host, HostState] = field(default_factory=dict)
    rr: int = 0
    last_traffic: float = 0.0

    def __post_init__(self) -> None:
        for h in self.cluster.hosts:
            self.hosts.setdefault(h, HostState(healthy=self.cluster.health_check is None))

    def candidates(self) -> list[Host]:
        """Hosts to balance over: the healthy ones, or every host in panic mode."""
        all_hosts = list(self.cluster.hosts)
        if not all_hosts:
            return []
        healthy = [h for h in all_hosts if self.hosts[h].healthy]
        if len(healthy) < PANIC_THRESHOLD * len(all_hosts):
            return all_hosts
        return healthy

    def pick(self, client_ip: str, hash_source_ip: bool) -> Host | None:
        self.last_traffic = time.monotonic()
        hosts = self.candidates()
        if not hosts:
            return None
        if self.cluster.lb_policy == "RING_HASH":
            return ring_pick(hosts, client_ip if hash_source_ip else str(random.random()))
        if self.cluster.lb_policy == "RANDOM":
            return random.choice(hosts)
        self.rr = (self.rr + 1) % len(hosts)
        return hosts[self.rr]

    def initial_round_done(self) -> bool:
        return all(s.checked for s in self.hosts.values()) or self.cluster.health_check is None


# ---------------------------------------------------------------------------- runtime


async def http_get_status(host: str, port: int, path: str, timeout: float) -> tuple[int, str]:
    """Status code of ``GET path`` (HTTP/1.1, Connection: close); (0, why) on failure."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as exc:
        return 0, f"connect: {exc or 'timeout'}"
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Envoy/HC\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.decode(errors="replace").split()
        if len(parts) < 2 or not parts[1].isdigit():
            return 0, f"bad status line {line!r}"
        return int(parts[1]), "HTTP " + parts[1]
    except (TimeoutError, OSError) as exc:
        return 0, f"read: {exc or 'timeout'}"
    finally:
        writer.close()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        pass


class UdpSession(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpListener, client: tuple[Any, ...]) -> None:
        self.proxy = proxy
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.last = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.last = time.monotonic()
        if self.proxy.transport is not None:
            self.proxy.transport.sendto(data, self.client)


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, server: Server, listener: Listener) -> None:
        self.server = server
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[tuple[Any, ...], UdpSession] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        session = self.sessions.get(addr)
        if session is not None and session.transport is not None:
            session.last = time.monotonic()
            session.transport.sendto(data)
            return
        asyncio.get_running_loop().create_task(self.open_session(data, addr))

    async def open_session(self, data: bytes, addr: tuple[Any, ...]) -> None:
        chain = self.listener.chains[0]
        state = self.server.clusters.get(chain.cluster)
        host = state.pick(addr[0], chain.hash_source_ip) if state else None
        if host is None:
            log(f"udp {self.listener.name}: {addr[0]}:{addr[1]} dropped: no host in {chain.cluster}")
            return
        loop = asyncio.get_running_loop()
        transport, session = await loop.create_datagram_endpoint(
            lambda: UdpSession(self, addr), remote_addr=(host.address, host.port))
        self.sessions[addr] = session
        transport.sendto(data)
        log(f"udp {self.listener.name}: {addr[0]}:{addr[1]} -> {host.label()}")

    def expire(self) -> None:
        now = time.monotonic()
        for addr, s in list(self.sessions.items()):
            if now - s.last > UDP_IDLE_TIMEOUT:
                if s.transport is not None:
                    s.transport.close()
                del self.sessions[addr]


class Server:
    def __init__(self, bootstrap: dict[str, Any]) -> None:
        dyn = bootstrap.get("dynamic_resources") or {}
        self.cds_path = str((dyn.get("cds_config") or {}).get("path", ""))
        self.lds_path = str((dyn.get("lds_config") or {}).get("path", ""))
        admin = ((bootstrap.get("admin") or {}).get("address") or {}).get("socket_address") or {}
        self.admin_address = str(admin.get("address", "0.0.0.0"))
        self.admin_port = int(admin.get("port_value", 9901))
        self.clusters: dict[str, ClusterState] = {}
        self.listeners: dict[str, Listener] = {}
        self.servers: dict[str, Any] = {}  # listener name -> asyncio Server | UdpListener
        self.stamps: dict[str, tuple[int, int, int] | None] = {}
        self.loaded = False
        self.hc_tasks: dict[tuple[str, Host], asyncio.Task[None]] = {}

    # -- files
    def stamp(self, path: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self, path: str) -> Any:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        return yaml.safe_load(text) if text.strip() else None

    async def watch(self) -> None:
        while True:
            changed = False
            for path in (self.cds_path, self.lds_path):
                s = self.stamp(path)
                if s != self.stamps.get(path, "unset"):
                    self.stamps[path] = s
                    changed = True
            if changed:
                await self.reload()
            for srv in self.servers.values():
                if isinstance(srv, UdpListener):
                    srv.expire()
            await asyncio.sleep(0.5)

    async def reload(self) -> None:
        # CDS before LDS, as envoy applies them (listeners may name new clusters).
        try:
            clusters = parse_clusters(self.read(self.cds_path)) if self.cds_path else {}
        except (OSError, ConfigError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            log(f"CDS update rejected: {exc}")
            clusters = None
        if clusters is not None:
            self.apply_clusters(clusters)
        try:
            listeners = parse_listeners(self.read(self.lds_path)) if self.lds_path else {}
        except (OSError, ConfigError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            log(f"LDS update rejected: {exc}")
            listeners = None
        if listeners is not None:
            await self.apply_listeners(listeners)
        self.loaded = True

    def apply_clusters(self, clusters: dict[str, Cluster]) -> None:
        for name in list(self.clusters):
            if name not in clusters:
                del self.clusters[name]
                log(f"cluster {name} removed")
        for name, c in clusters.items():
            old = self.clusters.get(name)
            if old is not None and old.cluster == c:
                continue
            state = ClusterState(c)
            if old is not None and old.cluster.health_check == c.health_check:
                for h, hs in old.hosts.items():
                    if h in state.hosts:
                        state.hosts[h] = hs  # keep health across updates, as envoy does
            self.clusters[name] = state
            log(f"cluster {name}: {c.lb_policy}, hosts {[h.label() for h in c.hosts]}")
        wanted = {(n, h) for n, s in self.clusters.items() if s.cluster.health_check for h in s.hosts}
        for key, task in list(self.hc_tasks.items()):
            if key not in wanted:
                task.cancel()
                del self.hc_tasks[key]
        for key in wanted:
            if key not in self.hc_tasks:
                self.hc_tasks[key] = asyncio.get_running_loop().create_task(self.health_loop(*key))

    async def health_loop(self, cluster_name: str, host: Host) -> None:
        while True:
            state = self.clusters.get(cluster_name)
            if state is None or state.cluster.health_check is None:
                return
            hc = state.cluster.health_check
            code, detail = await http_get_status(host.address, host.hc_port, hc.path, hc.timeout)
            state = self.clusters.get(cluster_name)
            if state is None or host not in state.hosts:
                return
            hs = state.hosts[host]
            was = hs.healthy
            hs.record(code == 200, hc, detail)
            if hs.healthy != was:
                log(f"health check {cluster_name} {host.address}:{host.hc_port}{hc.path}: "
                    f"{'healthy' if hs.healthy else 'unhealthy'} ({detail})")
            # envoy: no_traffic_interval while the cluster has never carried traffic.
            await asyncio.sleep(hc.no_traffic_interval if state.last_traffic == 0.0 else hc.interval)

    async def apply_listeners(self, listeners: dict[str, Listener]) -> None:
        for name in list(self.listeners):
            new = listeners.get(name)
            old = self.listeners[name]
            if new is None or (new.address, new.port, new.protocol) != (old.address, old.port, old.protocol):
                self.close_listener(name)
        for name, lst in listeners.items():
            if name in self.servers:
                self.listeners[name] = lst  # same socket, new chains
                srv = self.servers[name]
                if isinstance(srv, UdpListener):
                    srv.listener = lst
                continue
            try:
                await self.open_listener(lst)
            except OSError as exc:
                log(f"listener {name} on {lst.address}:{lst.port}/{lst.protocol}: bind failed: {exc}")
                continue
            self.listeners[name] = lst
            log(f"listener {name}: {lst.protocol} {lst.address}:{lst.port} -> "
                f"{', '.join(c.cluster for c in lst.chains)}")

    def close_listener(self, name: str) -> None:
        srv = self.servers.pop(name, None)
        self.listeners.pop(name, None)
        if isinstance(srv, UdpListener):
            if srv.transport is not None:
                srv.transport.close()
            for s in srv.sessions.values():
                if s.transport is not None:
                    s.transport.close()
        elif srv is not None:
            srv.close()
        log(f"listener {name} removed")

    async def open_listener(self, lst: Listener) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in lst.address else socket.AF_INET
        if lst.protocol == "UDP":
            sock = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((lst.address, lst.port))
            proto = UdpListener(self, lst)
            await loop.create_datagram_endpoint(lambda: proto, sock=sock)
            self.servers[lst.name] = proto
            return
        name = lst.name

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.tcp_connection(name, reader, writer)

        sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((lst.address, lst.port))
        self.servers[name] = await asyncio.start_server(handle, sock=sock, backlog=512)

    async def tcp_connection(self, name: str, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        lst = self.listeners.get(name)
        chain = lst.chain_for(peer[0]) if lst else None
        if chain is None:
            log(f"tcp {name}: {peer[0]}:{peer[1]} closed: no matching filter chain")
            writer.close()
            return
        state = self.clusters.get(chain.cluster)
        host = state.pick(peer[0], chain.hash_source_ip) if state else None
        if host is None or state is None:
            log(f"tcp {name}: {peer[0]}:{peer[1]} closed: no host in cluster {chain.cluster}")
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host.address, host.port), state.cluster.connect_timeout)
        except (TimeoutError, OSError) as exc:
            log(f"tcp {name}: {peer[0]}:{peer[1]} -> {host.label()} connect failed: {exc or 'timeout'}")
            writer.close()
            return
        log(f"tcp {name}: {peer[0]}:{peer[1]} -> {host.label()}")
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()
            writer.close()

    # -- admin
    def ready(self) -> bool:
        return self.loaded and all(s.initial_round_done() for s in self.clusters.values())

    def clusters_text(self) -> str:
        lines = []
        for name, s in sorted(self.clusters.items()):
            for h, hs in s.hosts.items():
                flags = "healthy" if hs.healthy else "/failed_active_hc"
                lines.append(f"{name}::{h.label()}::health_flags::{flags}")
                lines.append(f"{name}::{h.label()}::last_check::{hs.last}")
        return "\n".join(lines) + "\n"

    def config_dump(self) -> str:
        return json.dumps({
            "clusters": {n: {"lb_policy": s.cluster.lb_policy,
                             "hosts": [h.label() for h in s.cluster.hosts],
                             "healthy": [h.label() for h, hs in s.hosts.items() if hs.healthy]}
                         for n, s in self.clusters.items()},
            "listeners": {n: {"address": f"{lst.address}:{lst.port}/{lst.protocol}",
                              "chains": [{"cluster": c.cluster, "hash_source_ip": c.hash_source_ip,
                                          "source_ranges": [str(r) for r in c.source_ranges]}
                                         for c in lst.chains]}
                          for n, lst in self.listeners.items()},
        }, indent=2) + "\n"

    async def admin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode(errors="replace")
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.split()
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else "/"
            if path == "/ready":
                live = self.ready()
                code, body = (200, "LIVE\n") if live else (503, "PRE_INITIALIZING\n")
            elif path == "/clusters":
                code, body = 200, self.clusters_text()
            elif path == "/config_dump":
                code, body = 200, self.config_dump()
            else:
                code, body = 404, "not implemented by svcconform lb-proxy\n"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
            data = body.encode()
            writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    async def run(self) -> None:
        await asyncio.start_server(self.admin, self.admin_address, self.admin_port)
        log(f"admin on {self.admin_address}:{self.admin_port}; CDS {self.cds_path}, LDS {self.lds_path}")
        await self.watch()


def main(argv: list[str]) -> int:
    if "--version" in argv:
        print("svcconform lb-proxy: the envoy file-xDS subset cloud-provider-kind uses")
        return 0
    if "-c" not in argv or argv.index("-c") + 1 >= len(argv):
        print("usage: envoy -c BOOTSTRAP.yaml", file=sys.stderr)
        return 2
    path = argv[argv.index("-c") + 1]
    if yaml is None:
        print("lbproxy: PyYAML is missing (Debian: python3-yaml)", file=sys.stderr)
        return 1
    with open(path, encoding="utf-8") as fh:
        bootstrap = yaml.safe_load(fh) or {}
    try:
        asyncio.run(Server(bootstrap).run())
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
