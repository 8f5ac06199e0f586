"""Service environment variables: kubelet's own golden table (envvars_test.go, v1.34.4),
the selection rules of getServiceEnvVarMap, and hypothesis properties over valid Services."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from fixtures.expectations import (
    Service,
    ServicePort,
    ServiceType,
    env_var_prefix,
    expected_env,
    service_env,
    service_env_names,
)
from fixtures.expectations.envvars import C_IDENTIFIER, DNS1035_LABEL
from fixtures.observations import EnvSnapshot

# --------------------------------------------------------------------------- kubelet's table


def _svc(name: str, ip: str, *ports: ServicePort) -> Service:
    return Service(name=name, namespace="ns", cluster_ip=ip, ports=ports)


KUBELET_SERVICES = [
    _svc("foo-bar", "1.2.3.4", ServicePort(8080, "TCP")),
    _svc("abc-123", "5.6.7.8", ServicePort(8081, "UDP", "u-d-p"), ServicePort(8081, "TCP", "t-c-p")),
    _svc("q-u-u-x", "9.8.7.6", ServicePort(8082, "TCP"), ServicePort(8083, "TCP", "8083")),
    _svc("svrc-clusterip-none", "None", ServicePort(8082, "TCP")),
    _svc("svrc-clusterip-empty", "", ServicePort(8082, "TCP")),
    _svc("super-ipv6", "2001:DB8::", ServicePort(8084, "UDP", "u-d-p"), ServicePort(8084, "TCP", "t-c-p")),
    _svc("sctp-1", "1.2.3.4", ServicePort(777, "SCTP")),
]

# pkg/kubelet/envvars/envvars_test.go TestFromServices, in order
KUBELET_EXPECTED = [
    ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
    ("FOO_BAR_SERVICE_PORT", "8080"),
    ("FOO_BAR_PORT", "tcp://1.2.3.4:8080"),
    ("FOO_BAR_PORT_8080_TCP", "tcp://1.2.3.4:8080"),
    ("FOO_BAR_PORT_8080_TCP_PROTO", "tcp"),
    ("FOO_BAR_PORT_8080_TCP_PORT", "8080"),
    ("FOO_BAR_PORT_8080_TCP_ADDR", "1.2.3.4"),
    ("ABC_123_SERVICE_HOST", "5.6.7.8"),
    ("ABC_123_SERVICE_PORT", "8081"),
    ("ABC_123_SERVICE_PORT_U_D_P", "8081"),
    ("ABC_123_SERVICE_PORT_T_C_P", "8081"),
    ("ABC_123_PORT", "udp://5.6.7.8:8081"),
    ("ABC_123_PORT_8081_UDP", "udp://5.6.7.8:8081"),
    ("ABC_123_PORT_8081_UDP_PROTO", "udp"),
    ("ABC_123_PORT_8081_UDP_PORT", "8081"),
    ("ABC_123_PORT_8081_UDP_ADDR", "5.6.7.8"),
    ("ABC_123_PORT_8081_TCP", "tcp://5.6.7.8:8081"),
    ("ABC_123_PORT_8081_TCP_PROTO", "tcp"),
    ("ABC_123_PORT_8081_TCP_PORT", "8081"),
    ("ABC_123_PORT_8081_TCP_ADDR", "5.6.7.8"),
    ("Q_U_U_X_SERVICE_HOST", "9.8.7.6"),
    ("Q_U_U_X_SERVICE_PORT", "8082"),
    ("Q_U_U_X_SERVICE_PORT_8083", "8083"),
    ("Q_U_U_X_PORT", "tcp://9.8.7.6:8082"),
    ("Q_U_U_X_PORT_8082_TCP", "tcp://9.8.7.6:8082"),
    ("Q_U_U_X_PORT_8082_TCP_PROTO", "tcp"),
    ("Q_U_U_X_PORT_8082_TCP_PORT", "8082"),
    ("Q_U_U_X_PORT_8082_TCP_ADDR", "9.8.7.6"),
    ("Q_U_U_X_PORT_8083_TCP", "tcp://9.8.7.6:8083"),
    ("Q_U_U_X_PORT_8083_TCP_PROTO", "tcp"),
    ("Q_U_U_X_PORT_8083_TCP_PORT", "8083"),
    ("Q_U_U_X_PORT_8083_TCP_ADDR", "9.8.7.6"),
    ("SUPER_IPV6_SERVICE_HOST", "2001:DB8::"),
    ("SUPER_IPV6_SERVICE_PORT", "8084"),
    ("SUPER_IPV6_SERVICE_PORT_U_D_P", "8084"),
    ("SUPER_IPV6_SERVICE_PORT_T_C_P", "8084"),
    ("SUPER_IPV6_PORT", "udp://[2001:DB8::]:8084"),
    ("SUPER_IPV6_PORT_8084_UDP", "udp://[2001:DB8::]:8084"),
    ("SUPER_IPV6_PORT_8084_UDP_PROTO", "udp"),
    ("SUPER_IPV6_PORT_8084_UDP_PORT", "8084"),
    ("SUPER_IPV6_PORT_8084_UDP_ADDR", "2001:DB8::"),
    ("SUPER_IPV6_PORT_8084_TCP", "tcp://[2001:DB8::]:8084"),
    ("SUPER_IPV6_PORT_8084_TCP_PROTO", "tcp"),
    ("SUPER_IPV6_PORT_8084_TCP_PORT", "8084"),
    ("SUPER_IPV6_PORT_8084_TCP_ADDR", "2001:DB8::"),
    ("SCTP_1_SERVICE_HOST", "1.2.3.4"),
    ("SCTP_1_SERVICE_PORT", "777"),
    ("SCTP_1_PORT", "sctp://1.2.3.4:777"),
    ("SCTP_1_PORT_777_SCTP", "sctp://1.2.3.4:777"),
    ("SCTP_1_PORT_777_SCTP_PROTO", "sctp"),
    ("SCTP_1_PORT_777_SCTP_PORT", "777"),
    ("SCTP_1_PORT_777_SCTP_ADDR", "1.2.3.4"),
]


def test_matches_kubelets_own_golden_table_in_order() -> None:
    got = [item for svc in KUBELET_SERVICES for item in service_env(svc).items()]
    assert got == KUBELET_EXPECTED


def test_upstream_e2e_fooservice_example() -> None:
    env = service_env(_svc("fooservice", "10.96.1.2", ServicePort(8765, "TCP")))
    assert env["FOOSERVICE_SERVICE_HOST"] == "10.96.1.2"
    assert env["FOOSERVICE_PORT_8765_TCP_PROTO"] == "tcp"
    assert env["FOOSERVICE_PORT"] == "tcp://10.96.1.2:8765"


# --------------------------------------------------------------------------- selection rules

KUBERNETES = Service(
    "kubernetes", "default", cluster_ip="10.96.0.1", ports=(ServicePort(443, "TCP", "https"),)
)
WEB = _svc("web", "10.96.5.5", ServicePort(80, "TCP", "http"), ServicePort(81, "UDP", "dns"))
HEADLESS = _svc("web-headless", "None", ServicePort(80, "TCP", "http"))
EXTERNAL = Service("ext", "ns", type=ServiceType.EXTERNAL_NAME, external_name="example.test")
OTHER_NS = Service("web", "other", cluster_ip="10.96.9.9", ports=(ServicePort(80),))


def test_pod_gets_same_namespace_services_and_the_master_service() -> None:
    exp = expected_env([KUBERNETES, WEB, HEADLESS, EXTERNAL, OTHER_NS], pod_namespace="ns")
    assert exp.present["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert exp.present["WEB_SERVICE_HOST"] == "10.96.5.5"
    assert exp.present["WEB_SERVICE_PORT_DNS"] == "81"
    assert exp.present["WEB_PORT_81_UDP"] == "udp://10.96.5.5:81"
    assert "WEB_HEADLESS_SERVICE_HOST" in exp.absent
    assert "EXT_SERVICE_HOST" not in exp.present
    assert not exp.ambiguous


def test_service_links_disabled_keeps_only_the_master_service() -> None:
    exp = expected_env([KUBERNETES, WEB], pod_namespace="ns", enable_service_links=False)
    assert set(exp.present) == set(service_env(KUBERNETES))
    assert service_env_names(WEB) <= exp.absent


def test_pod_started_before_the_service_has_none_of_its_variables() -> None:
    exp = expected_env([KUBERNETES], pod_namespace="ns", created_later=[WEB])
    assert "WEB_SERVICE_HOST" in exp.absent
    assert "WEB_PORT" in exp.absent


def test_problems_lists_missing_wrong_and_unexpected() -> None:
    exp = expected_env([KUBERNETES, WEB], pod_namespace="ns", created_later=[HEADLESS])
    observed = dict(exp.present)
    observed["WEB_SERVICE_HOST"] = "10.96.0.99"
    del observed["WEB_PORT"]
    observed["WEB_HEADLESS_SERVICE_HOST"] = "x"
    problems = exp.problems(EnvSnapshot(observed))
    assert len(problems) == 3
    assert any(p.startswith("WEB_PORT missing") for p in problems)
    assert any("10.96.0.99" in p for p in problems)
    assert any("WEB_HEADLESS_SERVICE_HOST" in p and "absent" in p for p in problems)
    assert exp.problems(EnvSnapshot(dict(exp.present))) == []


def test_colliding_names_are_ambiguous_not_asserted() -> None:
    # "a" (80/TCP) yields A_PORT_80_TCP_PORT=80; "a-port-80-tcp" yields A_PORT_80_TCP_PORT
    # = its first port's URL.  kubelet's map iteration order decides: we assert neither.
    a = _svc("a", "10.96.0.10", ServicePort(80))
    b = _svc("a-port-80-tcp", "10.96.0.11", ServicePort(90))
    exp = expected_env([a, b], pod_namespace="ns")
    assert exp.ambiguous == {"A_PORT_80_TCP_PORT"}
    assert "A_PORT_80_TCP_PORT" not in exp.present
    assert "A_PORT_80_TCP_PORT" not in exp.absent
    assert exp.present["A_PORT_80_TCP_SERVICE_HOST"] == "10.96.0.11"


def test_same_namespace_kubernetes_service_overrides_the_master_one() -> None:
    mine = Service("kubernetes", "ns", cluster_ip="10.96.7.7", ports=(ServicePort(443),))
    exp = expected_env([KUBERNETES, mine], pod_namespace="ns")
    assert exp.present["KUBERNETES_SERVICE_HOST"] == "10.96.7.7"


def test_dash_and_dot_free_prefixes() -> None:
    assert env_var_prefix("my-svc-2") == "MY_SVC_2"


# --------------------------------------------------------------------------- properties

dns1035 = st.from_regex(r"\A[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z", fullmatch=True)
# IANA_SVC_NAME: <= 15 chars, [a-z0-9-], at least one letter, no leading/trailing/double '-'
port_name = st.from_regex(r"\A[a-z0-9]([-]?[a-z0-9]){0,14}\Z", fullmatch=True).filter(
    lambda s: len(s) <= 15 and re.search("[a-z]", s) is not None
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)


@st.composite
def services(draw: st.DrawFn) -> Service:
    """A Service API validation accepts: unique port names, unique (port, protocol), all
    ports named when there are several."""
    n = draw(st.integers(1, 5))
    numbers = draw(
        st.lists(
            st.tuples(st.integers(1, 65535), st.sampled_from(["TCP", "UDP", "SCTP"])),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    names = draw(st.lists(port_name, min_size=n, max_size=n, unique=True))
    if n == 1 and draw(st.booleans()):
        names = [""]
    ports = tuple(ServicePort(p, proto, nm) for (p, proto), nm in zip(numbers, names, strict=True))
    return Service(name=draw(dns1035), namespace="ns", cluster_ip=draw(st.one_of(ipv4, ipv6)), ports=ports)


@given(dns1035)
def test_every_dns1035_name_maps_to_a_c_identifier_prefix(name: str) -> None:
    assert DNS1035_LABEL.match(name)
    assert C_IDENTIFIER.match(env_var_prefix(name))


@given(dns1035, dns1035)
def test_prefix_mapping_is_injective_on_service_names(a: str, b: str) -> None:
    assert (env_var_prefix(a) == env_var_prefix(b)) == (a == b)


@given(services())
def test_generated_services_yield_kubelets_variables(svc: Service) -> None:
    env = service_env(svc)
    prefix = env_var_prefix(svc.name)
    named = [p for p in svc.ports if p.name]
    assert len(env) == 3 + len(named) + 4 * len(svc.ports)  # no two rules produce one name
    assert all(C_IDENTIFIER.match(k) and k.startswith(prefix + "_") for k in env)
    assert env[f"{prefix}_SERVICE_HOST"] == svc.cluster_ip
    assert env[f"{prefix}_SERVICE_PORT"] == str(svc.ports[0].port)
    first = urlsplit(env[f"{prefix}_PORT"])
    assert first.scheme == svc.ports[0].protocol.lower()
    assert first.port == svc.ports[0].port
    assert first.hostname == (svc.cluster_ip or "").lower()
    for p in svc.ports:
        base = f"{prefix}_PORT_{p.port}_{p.protocol}"
        assert env[f"{base}_ADDR"] == svc.cluster_ip
        assert env[f"{base}_PORT"] == str(p.port)
        assert env[f"{base}_PROTO"] == p.protocol.lower()
        assert urlsplit(env[base]).port == p.port
    for p in named:
        assert env[f"{prefix}_SERVICE_PORT_{env_var_prefix(p.name)}"] == str(p.port)


@given(services(), st.booleans())
def test_headless_or_other_namespace_services_give_nothing(svc: Service, headless: bool) -> None:
    moved = (
        dataclasses.replace(svc, cluster_ip="None")
        if headless
        else dataclasses.replace(svc, namespace="elsewhere")
    )
    exp = expected_env([moved], pod_namespace="ns")
    assert exp.present == {}
    assert exp.absent == service_env_names(svc)
