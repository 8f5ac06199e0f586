"""kube-proxy's view of its zone (fixtures/kubeproxyzone.py): its log line, its verbosity, the
verdict per node, and the restart on clusters the suite created."""

from __future__ import annotations

from typing import Any

from fixtures import kubeproxyzone as kz

#: What kube-proxy v1.34 at -v=4 writes (klog text format; labels as a Go map or JSON).
LINE_MAP = ('I1207 23:40:01.123456       1 proxier.go:812] "Updated proxier node topology labels" '
            'ipFamily="IPv4" labels={"topology.kubernetes.io/zone":"zone-a"}')
LINE_GO = ('I1207 23:40:01.123456       1 proxier.go:812] "Updated proxier node topology labels" '
           'labels=map[topology.kubernetes.io/zone:zone-b]')
LINE_EMPTY = 'I1207 23:40:01.1       1 proxier.go:812] "Updated proxier node topology labels" labels={}'


def test_the_zone_is_read_from_each_log_line_in_order() -> None:
    assert kz.zones_in_log("\n".join(["noise", LINE_MAP, "more", LINE_GO, LINE_EMPTY])) == ["zone-a", "zone-b", ""]
    assert kz.zones_in_log("I1207 nothing here") == []


def test_verbosity_comes_from_the_flag_then_the_configuration() -> None:
    ds = {"spec": {"template": {"spec": {"containers": [{"command": ["/usr/local/bin/kube-proxy", "--v=4"]}]}}}}
    assert kz.verbosity(ds, {"logging": {"verbosity": 2}}) == (4, "kube-proxy flag --v=4")
    split = {"spec": {"template": {"spec": {"containers": [{"command": ["kube-proxy"], "args": ["-v", "3"]}]}}}}
    assert kz.verbosity(split, None) == (3, "kube-proxy flag -v 3")
    plain = {"spec": {"template": {"spec": {"containers": [{"command": ["kube-proxy", "--config=/x"]}]}}}}
    assert kz.verbosity(plain, {"logging": {"verbosity": 4}}) == (4, "KubeProxyConfiguration logging.verbosity: 4")
    assert kz.verbosity(plain, {}) == (0, "kube-proxy's default verbosity (0)")
    assert kz.verbosity(None, None)[0] is None


def test_the_verdict_per_node() -> None:
    assert kz.judge("w", "zone-a", "kube-proxy-1", LINE_MAP, 4).status == kz.OK
    wrong = kz.judge("w", "zone-b", "kube-proxy-1", LINE_MAP, 4)
    assert wrong.status == kz.LOST
    assert "last logged zone zone-a" in wrong.evidence
    lost = kz.judge("w", "zone-a", "kube-proxy-1", "I1207 started\n", 4)
    assert lost.status == kz.LOST
    assert "start-up race" in lost.evidence
    quiet = kz.judge("w", "zone-a", "kube-proxy-1", "I1207 started\n", 0)
    assert quiet.status == kz.UNKNOWN
    assert "cannot be read" in quiet.evidence
    assert kz.judge("w", "zone-a", "", "", 4).status == kz.UNKNOWN


class ZoneKube:
    """kube-proxy pods and their logs; deleting a pod makes its replacement, whose log shows
    the zone (a restart fixes the race)."""

    kubeconfig = "/tmp/kubeconfig"

    def __init__(self, logs: dict[str, str]) -> None:
        self.pods = {"cp": "kube-proxy-a", "w": "kube-proxy-b"}
        self.logs = logs
        self.deleted: list[str] = []

    def list_objects(self, kind: str, namespace: str, *, label_selector: str = "", field_selector: str = ""):
        return [{"metadata": {"name": p}, "spec": {"nodeName": n}} for n, p in self.pods.items()]

    def pod_logs(self, namespace: str, pod: str, **_: Any) -> str:
        return self.logs.get(pod, "")

    def delete_pod(self, namespace: str, name: str, **_: Any) -> None:
        self.deleted.append(name)
        node = next(n for n, p in self.pods.items() if p == name)
        self.pods[node] = name + "-new"
        self.logs[name + "-new"] = LINE_GO.replace("zone-b", "zone-a")


V4 = {"logging": {"verbosity": 4}}
DS = {"spec": {"template": {"spec": {"containers": [{"command": ["kube-proxy", "--config=/c"]}]}}}}


def test_a_lost_zone_is_repaired_by_a_restart_on_the_suites_clusters_and_recorded() -> None:
    kube = ZoneKube({"kube-proxy-a": LINE_MAP, "kube-proxy-b": "I1207 no topology line\n"})
    report = kz.check(kube, {"cp": "zone-a", "w": "zone-a"}, repair=True, daemonset=DS, configuration=V4,
                      settle=5)
    assert kube.deleted == ["kube-proxy-b"]
    assert report.views["w"].status == kz.OK
    assert len(report.actions) == 1
    assert report.actions[0].startswith("restarted kube-proxy on w (pod kube-proxy-b)")
    assert "finding" not in report.detection()


def test_elsewhere_a_lost_zone_is_a_finding_and_nothing_is_restarted() -> None:
    kube = ZoneKube({"kube-proxy-a": LINE_MAP, "kube-proxy-b": "I1207 no topology line\n"})
    report = kz.check(kube, {"cp": "zone-a", "w": "zone-a"}, repair=False, daemonset=DS, configuration=V4)
    assert kube.deleted == []
    assert report.actions == []
    fact = report.detection()
    assert "kube-proxy on w does not use its zone" in fact["finding"]
    assert fact["source"] == "kube-proxy's log (KubeProxyConfiguration logging.verbosity: 4)"


def test_a_kube_proxy_that_is_not_working_is_not_restarted_for_its_zone() -> None:
    kube = ZoneKube({"kube-proxy-a": LINE_MAP, "kube-proxy-b": ""})
    report = kz.check(kube, {"cp": "zone-a", "w": "zone-a"}, repair=True, daemonset=DS, configuration=V4,
                      not_running={"w": "its metrics do not answer"})
    assert kube.deleted == []
    assert report.views["w"].status == kz.UNKNOWN
    assert "not working (health pass: its metrics do not answer)" in report.views["w"].evidence
