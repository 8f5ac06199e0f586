"""The scale benchmark's load generator, offline: the objects, the rate, the progress, the batches."""

from __future__ import annotations

import io
import threading
from datetime import datetime
from typing import Any

import pytest

from fixtures.errors import SvcconformError
from fixtures.scale import load
from fixtures.scale.load import (
    Backend,
    LoadPlan,
    Pacer,
    Progress,
    Retryable,
    Throttled,
    batches,
    create_load,
    endpoints_for,
    endpoints_patch,
    ladder_problem,
    parse_ladder,
    progress_text,
    rfc3339,
    service_body,
    slice_body,
)

BACKENDS = [Backend("web-a", "10.244.1.5", "worker", "svcc-scale-x"),
            Backend("web-b", "10.244.2.6", "worker2", "svcc-scale-x"),
            Backend("web-c", "10.244.1.7", "worker", "svcc-scale-x")]


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


# --- the objects ---------------------------------------------------------------------------


def test_trigger_time_is_rfc3339_with_fractional_seconds_in_utc() -> None:
    text = rfc3339(1767323045.123456)
    assert text == "2026-01-02T03:04:05.123456Z"
    assert datetime.fromisoformat(text).timestamp() == pytest.approx(1767323045.123456)


def test_a_load_service_has_no_selector_and_maps_port_80_to_the_backends_8080() -> None:
    body = service_body("svc-00007", run_id="r1")
    assert "selector" not in body["spec"]
    assert body["spec"]["type"] == "ClusterIP"
    assert body["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert body["metadata"]["labels"]["app.kubernetes.io/created-by"] == "svcconform"
    assert body["metadata"]["labels"]["svcconform/run-id"] == "r1"


def test_a_slice_names_its_service_carries_the_trigger_time_and_points_at_real_pods() -> None:
    body = slice_body("svc-00007", BACKENDS[:2], trigger_time=1767323045.5, run_id="r1")
    meta = body["metadata"]
    assert meta["name"] == "svc-00007-scale"
    assert meta["labels"]["kubernetes.io/service-name"] == "svc-00007"
    # not a controller's value: neither the EndpointSlice nor the mirroring controller takes it over
    assert meta["labels"]["endpointslice.kubernetes.io/managed-by"] == "svcconform-scale"
    assert meta["annotations"] == {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-02T03:04:05.500000Z"}
    assert body["addressType"] == "IPv4"
    assert body["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]  # the Service port's name
    assert body["endpoints"] == [
        {"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "nodeName": "worker",
         "targetRef": {"kind": "Pod", "namespace": "svcc-scale-x", "name": "web-a"}},
        {"addresses": ["10.244.2.6"], "conditions": {"ready": True}, "nodeName": "worker2",
         "targetRef": {"kind": "Pod", "namespace": "svcc-scale-x", "name": "web-b"}},
    ]


def test_endpoints_rotate_over_the_backends_without_repeating_in_a_slice() -> None:
    assert [b.name for b in endpoints_for(0, BACKENDS, 2)] == ["web-a", "web-b"]
    assert [b.name for b in endpoints_for(1, BACKENDS, 2)] == ["web-b", "web-c"]
    assert [b.name for b in endpoints_for(2, BACKENDS, 2)] == ["web-c", "web-a"]
    assert [b.name for b in endpoints_for(5, BACKENDS, 3)] == ["web-c", "web-a", "web-b"]
    with pytest.raises(SvcconformError, match="4 endpoints per Service need as many backend pods"):
        endpoints_for(0, BACKENDS, 4)
    with pytest.raises(SvcconformError, match="at least one backend"):
        endpoints_for(0, [], 1)


def test_an_endpoint_change_replaces_the_list_and_restamps_the_trigger_time() -> None:
    patch = endpoints_patch([BACKENDS[0], BACKENDS[2]], trigger_time=1767323046.25)
    assert patch["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] \
        == "2026-01-02T03:04:06.250000Z"
    assert [e["addresses"] for e in patch["endpoints"]] == [["10.244.1.5"], ["10.244.1.7"]]


# --- the ladder -----------------------------------------------------------------------------


def test_the_ladder_parses_counts_and_thousands() -> None:
    assert parse_ladder("1000,5000,10000") == (1000, 5000, 10000)
    assert parse_ladder(" 1k, 5k ,10k ") == (1000, 5000, 10000)
    assert parse_ladder("100,300") == (100, 300)
    assert load.DEFAULT_LADDER == (1000, 5000, 10000)


@pytest.mark.parametrize(("text", "match"), [
    ("", "no sizes"), ("1000,500", "must grow"), ("100,100", "must grow"), ("ten", "not a number"),
    ("0", "positive"), ("1.5", "whole"),
])
def test_a_bad_ladder_is_one_clear_line(text: str, match: str) -> None:
    with pytest.raises(SvcconformError, match=match):
        parse_ladder(text)


def test_scale_max_is_a_ceiling_the_user_raises_on_purpose() -> None:
    assert load.DEFAULT_SCALE_MAX == 10000
    assert ladder_problem((1000, 5000, 10000), 10000) is None
    why = ladder_problem((1000, 20000), 10000)
    assert why is not None
    assert "20,000 Services, over --scale-max 10,000: raise --scale-max on purpose" in why


def test_batches_cut_a_range_into_consecutive_pieces() -> None:
    assert [list(b) for b in batches(0, 7, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [(b.start, b.stop) for b in batches(1000, 1250, 100)] == [(1000, 1100), (1100, 1200), (1200, 1250)]
    assert list(batches(5, 5, 10)) == []
    with pytest.raises(ValueError, match="batch size"):
        list(batches(0, 1, 0))


# --- rate control -----------------------------------------------------------------------------


def test_the_pacer_spaces_writes_one_over_rate_apart() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    slots = [pacer.acquire() for _ in range(5)]
    assert slots == pytest.approx([1000.0, 1000.1, 1000.2, 1000.3, 1000.4])
    assert clock.sleeps == pytest.approx([0.1, 0.1, 0.1, 0.1])
    assert len(slots) / (clock.t - 1000.0 + 0.1) == pytest.approx(10.0)


def test_the_pacer_never_bursts_to_catch_up_after_a_pause() -> None:
    clock = FakeClock()
    pacer = Pacer(4.0, clock=clock, sleep=clock.sleep)
    pacer.acquire()
    clock.t += 10.0  # the writer was busy elsewhere
    assert pacer.acquire() == pytest.approx(1010.0)
    assert pacer.acquire() == pytest.approx(1010.25)


def test_rate_zero_is_unpaced_and_a_bad_rate_is_refused() -> None:
    clock = FakeClock()
    pacer = Pacer(0, clock=clock, sleep=clock.sleep)
    assert [pacer.acquire() for _ in range(3)] == [1000.0, 1000.0, 1000.0]
    assert clock.sleeps == []
    with pytest.raises(ValueError, match="rate"):
        Pacer(-1)


def test_the_pacer_shares_its_slots_between_threads() -> None:
    clock = FakeClock()
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            clock.sleeps.append(seconds)

    pacer = Pacer(100.0, clock=clock, sleep=sleep)
    slots: list[float] = []
    threads = [threading.Thread(target=lambda: slots.append(pacer.acquire())) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(slots) == pytest.approx([1000.0 + i / 100 for i in range(20)])


# --- progress ----------------------------------------------------------------------------------


def test_progress_text_shows_objects_rate_and_eta() -> None:
    text = progress_text("step 1: Services 0 → 1,000", 500, 2000, 10.0, width=10)
    assert text == "step 1: Services 0 → 1,000 [##........] 500/2,000 objects 50.0 objects/s ETA 30s"
    assert progress_text("x", 2000, 2000, 40.0, width=4).endswith("[####] 2,000/2,000 objects 50.0 objects/s ETA 0s")
    assert progress_text("x", 0, 10, 0.0, width=2) == "x [..] 0/10 objects -- objects/s ETA --"
    assert "ETA 3m20s" in progress_text("x", 100, 10100, 2.0)
    assert "ETA 1h23m" in progress_text("x", 1, 5000, 1.0)


def test_progress_on_a_log_prints_a_line_every_interval_and_at_the_end() -> None:
    clock = FakeClock(0.0)
    out = io.StringIO()
    progress = Progress("load", 100, stream=out, clock=clock, every=15.0, tty=False)
    for i in range(1, 101):
        clock.t = i * 0.5  # 2 objects/s, 50 s in all
        progress.update(i)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # at 0.5 s, 15.5 s, 30.5 s, 45.5 s and the last
    assert lines[-1].startswith("load [")
    assert "100/100 objects 2.0 objects/s ETA 0s" in lines[-1]


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    out = io.StringIO()
    clock = FakeClock(0.0)
    progress = Progress("load", 10, stream=out, clock=clock, tty=True)
    clock.t = 1.0
    progress.update(5)
    progress.close()
    assert out.getvalue().startswith("\rload [")
    assert out.getvalue().endswith("\x1b[K\n")


# --- creating the load --------------------------------------------------------------------------


class FakeApi:
    def __init__(self, *, throttle: int = 0, fail_on: str = "", exists: set[str] | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.throttle = throttle
        self.fail_on = fail_on
        self.exists = exists or set()
        self.lock = threading.Lock()

    def __call__(self, kind: str, body: dict[str, Any]) -> str:
        name = body["metadata"]["name"]
        with self.lock:
            if self.throttle:
                self.throttle -= 1
                raise Throttled("429 Too Many Requests")
            self.calls.append((kind, name, body))
        if name == self.fail_on:
            raise SvcconformError("403 Forbidden: services is forbidden")
        return "exists" if name in self.exists else "created"


def plan(start: int, stop: int) -> LoadPlan:
    return LoadPlan(start=start, stop=stop, backends=BACKENDS, endpoints=2, run_id="r1")


def test_the_load_creates_each_service_before_its_slice_stamped_with_the_services_time() -> None:
    api = FakeApi()
    wall = iter(float(1767323000 + i) for i in range(1000))
    stats = create_load(plan(0, 6), api, rate=0, workers=1, batch=4, pause=lambda s: None,
                        wall=lambda: next(wall))
    kinds = [(k, n) for k, n, _ in api.calls]
    assert kinds[:2] == [("services", "svc-00000"), ("endpointslices", "svc-00000-scale")]
    assert len(kinds) == 12
    trigger = api.calls[1][2]["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
    assert trigger == rfc3339(1767323000.0)  # the Service's create time, as the controller stamps a new one's
    assert stats.objects == 12
    assert stats.batches == 2  # 4 + 2 Services
    assert stats.to_json()["target_rate"] == 0


def test_the_load_runs_at_the_paced_rate_and_records_it() -> None:
    clock = FakeClock(0.0)
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            clock.t += seconds

    pacer = Pacer(20.0, clock=clock, sleep=sleep)
    stats = create_load(plan(0, 50), FakeApi(), rate=20.0, workers=1, batch=10, clock=clock, pacer=pacer,
                        pause=lambda s: None)
    assert stats.objects == 100
    assert stats.seconds == pytest.approx(99 / 20.0)  # 100 writes, 1/20 s apart
    assert stats.to_json()["rate"] == pytest.approx(100 / (99 / 20.0), rel=1e-3)


def test_throttled_writes_are_retried_and_counted() -> None:
    api = FakeApi(throttle=2)
    pauses: list[float] = []
    stats = create_load(plan(0, 1), api, rate=0, workers=1, pause=pauses.append)
    assert stats.objects == 2
    assert stats.throttled == 2
    assert pauses == [0.5, 1.0]


def test_a_write_that_keeps_failing_with_a_5xx_stops_the_load() -> None:
    def create(kind: str, body: dict[str, Any]) -> str:
        raise Retryable("503 Service Unavailable")

    with pytest.raises(SvcconformError, match=r"stopped at Services 0\.\.1: 503 Service Unavailable"):
        create_load(plan(0, 2), create, rate=0, workers=1, batch=2, pause=lambda s: None)


def test_objects_that_exist_already_count_as_created() -> None:
    stats = create_load(plan(0, 2), FakeApi(exists={"svc-00001"}), rate=0, workers=2, pause=lambda s: None)
    assert stats.objects == 4
    assert stats.existing == 1


def test_a_refused_write_stops_the_load_at_the_end_of_its_batch() -> None:
    api = FakeApi(fail_on="svc-00003")
    with pytest.raises(SvcconformError, match=r"stopped at Services 2\.\.3: 403 Forbidden"):
        create_load(plan(0, 10), api, rate=0, workers=1, batch=2, pause=lambda s: None)
    names = {n for k, n, _ in api.calls if k == "services"}
    assert names == {"svc-00000", "svc-00001", "svc-00002", "svc-00003"}  # nothing after that batch


def test_progress_follows_every_write() -> None:
    out = io.StringIO()
    progress = Progress("load", 8, stream=out, tty=False, every=1e9)
    create_load(plan(0, 4), FakeApi(), rate=0, workers=2, progress=progress, pause=lambda s: None)
    assert progress.done == 8
    assert "8/8 objects" in out.getvalue().splitlines()[-1]
