"""Per-node NodePort verdicts (fixtures.ingress): answers, non-answers, source IPs, health checks."""

from __future__ import annotations

from fixtures.expectations.model import TrafficPolicy
from fixtures.expectations.traffic import nodeport_source
from fixtures.hostnet import source_address_towards
from fixtures.ingress import IngressExpectation, health_check_report, ingress_report
from fixtures.observations import ErrorKind, HealthCheckReply, HttpReply, Unknown

CLIENT = "172.18.0.1"


def ok(node_ip: str, seen: str) -> HttpReply:
    return HttpReply(target=f"{node_ip}:30080", ok=True, status=200, backend="web-0", client_ip=seen,
                     command=f"curl http://{node_ip}:30080/clientip")


def timeout(node_ip: str) -> HttpReply:
    return HttpReply(target=f"{node_ip}:30080", ok=False, error="ConnectTimeout", error_kind=ErrorKind.TIMEOUT,
                     command=f"curl http://{node_ip}:30080/clientip")


def local(node: str, ip: str, answers: bool) -> IngressExpectation:
    src = nodeport_source(external_traffic_policy=TrafficPolicy.LOCAL, client_ip=CLIENT, ingress_node=node,
                          endpoint_node="w1")
    return IngressExpectation(node, ip, answers, src, local_endpoints=int(answers))


EXPECTED = [local("cp", "172.18.0.4", False), local("w1", "172.18.0.2", True)]


def test_local_policy_conforms_when_only_the_endpoint_node_answers_with_the_client_ip() -> None:
    report = ingress_report("t", EXPECTED, {"cp": [timeout("172.18.0.4")], "w1": [ok("172.18.0.2", CLIENT)]})
    assert report.ok, report.render()
    assert "every node conforms" in report.render()


def test_an_snated_source_and_an_extra_answering_node_are_both_named() -> None:
    report = ingress_report("t", EXPECTED, {"cp": [ok("172.18.0.4", "172.18.0.4")],
                                            "w1": [ok("172.18.0.2", "10.244.1.1")]})
    text = report.render()
    assert not report.ok
    assert "cp (172.18.0.4) try 1: answered but must not" in text
    assert "w1 (172.18.0.2) try 1: source IP: backend saw 10.244.1.1, expected the client's own 172.18.0.1" in text
    assert "client IP seen 10.244.1.1" in text
    assert "reproduce on w1: curl http://172.18.0.2:30080/clientip" in text


def test_a_missing_answer_and_an_unknown_probe_are_problems() -> None:
    report = ingress_report("t", EXPECTED, {"cp": [Unknown("cp", "boom")], "w1": [timeout("172.18.0.2")]})
    assert len(report.problems) == 2
    assert "cannot tell" in report.problems[0]
    assert "no answer but must answer" in report.problems[1]
    assert ingress_report("t", EXPECTED, {}).problems == ("cp (172.18.0.4): not probed", "w1 (172.18.0.2): not probed")


def test_health_check_report_compares_status_count_and_service() -> None:
    good = HealthCheckReply("w1", 200, local_endpoints=1, service_namespace="ns", service_name="local")
    wrong = HealthCheckReply("cp", 200, local_endpoints=1, service_namespace="ns", service_name="local")
    problems, text = health_check_report(
        "hc", {"cp": 503, "w1": 200}, {"cp": wrong, "w1": good},
        node_ips={"cp": "172.18.0.4", "w1": "172.18.0.2"}, local_endpoints={"cp": 0, "w1": 1},
        service=("ns", "local"),
    )
    assert problems == ["cp (172.18.0.4): expected HTTP 503, observed HTTP 200, localEndpoints=1, service=ns/local"]
    assert "hc" in text
    none = HealthCheckReply("cp", None, error="refused", error_kind=ErrorKind.REFUSED)
    problems, _ = health_check_report("hc", {"cp": 503}, {"cp": none}, node_ips={}, local_endpoints={})
    assert problems == ["cp (?): expected HTTP 503, observed no answer (refused: refused)"]
    miscount = HealthCheckReply("w1", 200, local_endpoints=2, service_namespace="x", service_name="y")
    problems, _ = health_check_report("hc", {"w1": 200}, {"w1": miscount}, node_ips={},
                                      local_endpoints={"w1": 1}, service=("ns", "local"))
    assert len(problems) == 2


def test_source_address_towards_loopback_is_loopback() -> None:
    assert source_address_towards("127.0.0.1") == "127.0.0.1"
