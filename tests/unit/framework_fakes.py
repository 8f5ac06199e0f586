"""Test doubles for the framework core's unit tests (no cluster, no Docker, no network).

* :class:`FakeApiServer` — a tiny Kubernetes-shaped HTTP server on loopback, so ``Kube`` is
  exercised through the real official client (URLs, query parameters, auth, JSON).
* :class:`FakeKube` / :class:`FakeProvider` — in-memory stand-ins for the session fixtures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from fixtures.kube import PodInfo, pod_info
from fixtures.observations import ExecResult
from fixtures.providers.base import ClusterFacts, Node, Provider
from fixtures.spec import ClusterSpec


def _matches(obj: dict[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class FakeApiServer:
    """Serves ``objects`` (path → JSON) and ``collections`` (list path → items)."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {"/version": {"gitVersion": "v1.34.4", "major": "1"}}
        self.collections: dict[str, list[dict[str, Any]]] = {}
        self.texts: dict[str, str] = {}
        self.requests: list[Request] = []
        #: namespace deletes survive this many GETs before the namespace is gone
        self.namespace_linger = 0
        #: a new namespace's ServiceAccount ``default`` appears after this many reads of it
        #: (kube-controller-manager's serviceaccount controller); None: never
        self.service_account_after: int | None = 0
        #: what kube-proxy's /proxyMode answers in the nodes (exec in a preflight pod)
        self.proxy_mode = "iptables"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self, path: str) -> None:
                self._send(404, {
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": f"{path} not found", "reason": "NotFound", "code": 404,
                })

            def _record(self, method: str) -> Request:
                url = urlparse(self.path)
                path = url.path.rstrip("/") or "/"
                req = Request(method, path, parse_qs(url.query), dict(self.headers), self._body())
                server.requests.append(req)
                return req

            def do_GET(self) -> None:
                req = self._record("GET")
                server._provision_service_account(req.path)
                if req.path.endswith("/exec") and self.headers.get("Upgrade", "").lower() == "websocket":
                    self._exec(req)
                elif req.path in server.texts:
                    self._send(200, server.texts[req.path], "text/plain")
                elif req.path in server.objects:
                    obj = server.objects[req.path]
                    if isinstance(obj, dict) and obj.get("_linger", 0) > 0:
                        obj["_linger"] -= 1
                    elif isinstance(obj, dict) and "_linger" in obj:
                        del server.objects[req.path]
                        self._not_found(req.path)
                        return
                    self._send(200, {k: v for k, v in obj.items() if k != "_linger"})
                elif req.path in server.collections:
                    selector = req.query.get("labelSelector", [""])[0]
                    items = [i for i in server.collections[req.path] if _matches(i, selector)]
                    kind = req.path.rsplit("/", 1)[-1]
                    self._send(200, {"kind": f"{kind}List", "apiVersion": "v1", "items": items})
                else:
                    self._not_found(req.path)

            def _frame(self, payload: bytes, opcode: int = 0x2) -> None:
                head = bytes([0x80 | opcode])
                if len(payload) < 126:
                    head += bytes([len(payload)])
                elif len(payload) < 65536:
                    head += bytes([126]) + struct.pack("!H", len(payload))
                else:
                    head += bytes([127]) + struct.pack("!Q", len(payload))
                self.wfile.write(head + payload)
                self.wfile.flush()

            def _exec(self, req: Request) -> None:
                """A websocket exec speaking the v4 channel protocol; behaviour by command."""
                key = self.headers["Sec-WebSocket-Key"]
                accept = base64.b64encode(
                    hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
                ).decode()
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept)
                self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
                self.end_headers()
                argv = req.query.get("command", [])
                status: dict[str, Any] = {"metadata": {}, "status": "Success"}
                if argv[:1] == ["echo"]:
                    self._frame(b"\x01" + (" ".join(argv[1:]) + "\n").encode())
                elif argv[:1] == ["fail"]:
                    self._frame(b"\x02boom\n")
                    status = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                              "message": "command terminated with non-zero exit code: exit code 3",
                              "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
                elif argv[:1] == ["sh"] and "/proxyMode" in " ".join(argv):
                    self._frame(b"\x01" + f"http://127.0.0.1:10249/proxyMode {server.proxy_mode}\n".encode())
                elif argv[:1] == ["hang"]:
                    self._frame(b"\x01started\n")
                    self.connection.settimeout(10)
                    try:
                        while self.rfile.read(1):
                            pass
                    except OSError:
                        pass
                    return
                else:
                    status = {"metadata": {}, "status": "Failure", "reason": "InternalError",
                              "message": f'exec: "{argv[0]}": executable file not found in $PATH'}
                self._frame(b"\x03" + json.dumps(status).encode())
                self._frame(struct.pack("!H", 1000), opcode=0x8)

            def do_POST(self) -> None:
                req = self._record("POST")
                if req.path == "/api/v1/namespaces":
                    name = req.body["metadata"]["name"]
                    server.objects[f"/api/v1/namespaces/{name}"] = req.body
                    self._send(201, req.body)
                    server.pending_service_accounts[name] = server.service_account_after
                elif req.path.startswith("/api/v1/namespaces/") and req.path.endswith("/pods"):
                    pod = running_pod(req.body)
                    server.collections.setdefault(req.path, []).append(pod)
                    self._send(201, pod)
                else:
                    self._not_found(req.path)

            def do_DELETE(self) -> None:
                req = self._record("DELETE")
                obj = server.objects.get(req.path)
                if obj is None:
                    self._not_found(req.path)
                    return
                obj["_linger"] = server.namespace_linger
                self._send(200, {"kind": "Status", "status": "Success"})

        self.pending_service_accounts: dict[str, int | None] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def _provision_service_account(self, path: str) -> None:
        """The serviceaccount controller: ``default`` shows up after the configured reads."""
        parts = path.split("/")
        if len(parts) != 7 or parts[5] != "serviceaccounts" or parts[6] != "default":
            return
        namespace = parts[4]
        if namespace not in self.pending_service_accounts:
            return
        left = self.pending_service_accounts[namespace]
        if left is None:
            return
        if left <= 0:
            del self.pending_service_accounts[namespace]
            self.objects[path] = {"kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}}
        else:
            self.pending_service_accounts[namespace] = left - 1

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, path: Path, *, token: str = "test-token") -> Path:
        return write_kubeconfig(path, f"http://127.0.0.1:{self.port}", token=token)


def write_kubeconfig(path: Path, server: str, *, token: str = "test-token") -> Path:
    path.write_text(
        json.dumps({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": server}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        })
    )
    return path


def pod(name: str, namespace: str, node: str, ip: str, *, ready: bool = True,
        labels: dict[str, str] | None = None, waiting: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Running" if ready else "Pending",
        "podIP": ip,
        "podIPs": [{"ip": ip}] if ip else [],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if waiting:
        status["containerStatuses"] = [{"name": "c", "state": {"waiting": {"reason": waiting}}}]
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                     "managedFields": [{"manager": "kubectl"}]},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": status,
    }


def node(name: str, ip: str, *, control_plane: bool = False, ready: bool = True,
         pod_cidrs: Sequence[str] = ()) -> dict[str, Any]:
    labels = {"node-role.kubernetes.io/control-plane": ""} if control_plane else {}
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDRs": list(pod_cidrs)},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "nodeInfo": {"kernelVersion": "6.1.0-test"},
        },
    }


def daemonset(name: str, namespace: str = "kube-system", args: list[str] | None = None,
              labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"template": {"spec": {"containers": [
            {"name": name, "command": ["/usr/local/bin/kube-proxy"], "args": args or []}]}}},
    }


def proxy_configmap(mode: str) -> dict[str, Any]:
    return {"kind": "ConfigMap", "data": {"config.conf": f"apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
                                                         f"kind: KubeProxyConfiguration\nmode: \"{mode}\"\n"}}


def existing_cluster(api: FakeApiServer, mode: str = "nftables") -> None:
    api.collections["/apis/apps/v1/namespaces/kube-system/daemonsets"] = [
        daemonset("kube-proxy", labels={"k8s-app": "kube-proxy"}), daemonset("kindnet")]
    api.collections["/apis/apps/v1/namespaces/kube-flannel/daemonsets"] = []
    api.collections["/apis/apps/v1/namespaces/calico-system/daemonsets"] = []
    api.objects["/api/v1/namespaces/kube-system/configmaps/kube-proxy"] = proxy_configmap(mode)
    api.proxy_mode = mode
    api.collections["/api/v1/nodes"] = [node("cp", "172.18.0.2", control_plane=True), node("w1", "172.18.0.3")]


def running_pod(body: dict[str, Any]) -> dict[str, Any]:
    """A created pod as the kubelet reports it once its container runs (preflight pods)."""
    pod = json.loads(json.dumps(body))
    image = pod["spec"]["containers"][0]["image"]
    pod["status"] = {"phase": "Running", "containerStatuses": [
        {"name": pod["spec"]["containers"][0]["name"], "ready": True, "state": {"running": {}},
         "image": image, "imageID": f"{image.rsplit(':', 1)[0]}@sha256:{'0' * 64}"}]}
    return pod


@dataclass
class FakeKube:
    """In-memory ``Kube`` for fixtures and diagnostics tests."""

    kubeconfig = Path("/nonexistent/kubeconfig")
    #: what kube-proxy's /proxyMode answers (exec in a preflight pod)
    proxy_mode: str = "iptables"
    objects: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    fail_kinds: set[str] = field(default_factory=set)
    fail_delete: bool = False
    images: dict[str, str] = field(default_factory=dict)
    #: hostNetwork pods are refused with this admission message ("" = admitted)
    refuse_host_network: str = ""

    def create_pod(self, namespace: str, body: dict[str, Any]) -> None:
        from fixtures.errors import AdmissionRefused

        if self.refuse_host_network and body["spec"].get("hostNetwork"):
            raise AdmissionRefused(self.refuse_host_network)
        self.objects.setdefault(("pods", namespace), []).append(running_pod(body))

    def label_namespace(self, name: str, labels: dict[str, str]) -> None:
        self.namespaces.setdefault(name, {"labels": {}, "annotations": {}})["labels"].update(labels)

    def exec(self, namespace: str, pod: str, argv: Sequence[str], *, container: str | None = None,
             timeout: float = 0) -> ExecResult:
        if "/proxyMode" in " ".join(argv):
            return ExecResult(tuple(argv), 0, f"http://127.0.0.1:10249/proxyMode {self.proxy_mode}\n", "",
                              f"pod {namespace}/{pod}")
        if len(argv) == 3 and argv[0] == "sh" and "\np " in argv[2]:  # the health pass: all answer
            answers = []
            for line in argv[2].splitlines():
                if line.startswith("p "):
                    kind, target = line.split()[1:3]
                    answers.append(f"{kind} {target} 0 {'10.96.0.1' if kind.startswith('dns') else 'answer'}")
            return ExecResult(tuple(argv), 0, "\n".join(answers) + "\n", "", f"pod {namespace}/{pod}")
        if list(argv) == ["cat", "/etc/resolv.conf"]:  # what kubelet writes for ClusterFirst
            return ExecResult(tuple(argv), 0, f"search {namespace}.svc.cluster.local svc.cluster.local "
                              "cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n", "", f"pod {namespace}/{pod}")
        return ExecResult(tuple(argv), 127, "", f"fake: {argv[0]} not found", f"pod {namespace}/{pod}")

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.objects.get((kind, namespace), [])
                     if o.get("metadata", {}).get("name") == name), None)

    def list_objects(self, kind: str, namespace: str, *, label_selector: str = "",
                     field_selector: str = "") -> list[dict[str, Any]]:
        if kind in self.fail_kinds:
            raise RuntimeError(f"listing {kind} broke")
        return [o for o in self.objects.get((kind, namespace), []) if _matches(o, label_selector)]

    def pods(self, namespace: str, label_selector: str = "") -> list[PodInfo]:
        return [pod_info(p) for p in self.list_objects("pods", namespace, label_selector=label_selector)]

    def pod_logs(self, namespace: str, pod: str, *, container: str | None = None,
                 tail_lines: int | None = None, previous: bool = False) -> str:
        return self.logs[pod]

    def list_nodes(self) -> list[dict[str, Any]]:
        return self.objects.get(("nodes", ""), [])

    def server_version(self) -> str:
        return "v1.34.4"

    def list_service_cidrs(self) -> list[dict[str, Any]] | None:
        return [{"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/16"]}}]

    def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        from fixtures.kube import ApiError

        port = body["spec"]["ports"][0].get("nodePort")
        if port is not None and not 30000 <= port <= 32767:  # as kube-apiserver answers
            raise ApiError(f"create service {namespace}/{body['metadata']['name']}: 422 Unprocessable Entity: "
                           f"spec.ports[0].nodePort: Invalid value: {port}: provided port is not in the valid "
                           "range. The range of valid ports is 30000-32767", 422)
        self.objects.setdefault(("services", namespace), []).append(body)
        return body

    def get_service(self, namespace: str, name: str) -> dict[str, Any]:
        from fixtures.kube import ApiError

        found = self.get_object("services", namespace, name)
        if found is None:
            raise ApiError(f"service {namespace}/{name} not found", 404)
        return found

    def delete_service(self, namespace: str, name: str) -> None:
        self.objects[("services", namespace)] = [
            o for o in self.objects.get(("services", namespace), []) if o["metadata"]["name"] != name]

    def create_namespace(self, name: str, *, labels: dict[str, str] | None = None,
                         annotations: dict[str, str] | None = None) -> None:
        self.namespaces[name] = {"labels": dict(labels or {}), "annotations": dict(annotations or {})}

    def delete_namespace(self, name: str, *, wait: bool = True, timeout: float = 0) -> float:
        from fixtures.errors import KubeError

        if self.fail_delete and wait:
            raise KubeError(f"namespace {name} stuck terminating")
        self.deleted.append(name)
        return 0.0

    def close(self) -> None:
        pass


class FakeProvider(Provider):
    """A provider whose cluster is a :class:`FakeKube`; records what the session did."""

    name = "kind"
    supports_node_exec = True

    def __init__(self, spec: ClusterSpec, *, unsupported: str | None = None,
                 prepare_error: str | None = None, up_error: str | None = None,
                 kube: FakeKube | None = None) -> None:
        super().__init__(spec)
        self.events: list[str] = []
        self.unsupported = unsupported
        self.prepare_error = prepare_error
        self.up_error = up_error
        self._fake = kube or FakeKube()
        self._fake.proxy_mode = spec.proxy_mode
        self._kube = self._fake  # type: ignore[assignment]
        self._fake.objects.setdefault(("nodes", ""), [
            node("n-control-plane", "172.18.0.2", control_plane=True),
            node("n-worker", "172.18.0.3"),
            node("n-worker2", "172.18.0.4"),
        ])

    @property
    def kubeconfig(self) -> Path:
        return Path("/nonexistent/kubeconfig")

    def prepare(self) -> None:
        from fixtures.errors import SvcconformError, UnsupportedEnvironment

        self.events.append("prepare")
        if self.unsupported:
            raise UnsupportedEnvironment(self.unsupported)
        if self.prepare_error:
            raise SvcconformError(self.prepare_error)

    def up(self) -> None:
        from fixtures.errors import SvcconformError

        self.events.append("up")
        if self.up_error:
            raise SvcconformError(self.up_error)
        self.created = True

    def down(self) -> None:
        self.events.append("down")

    def close(self) -> None:
        self.events.append("close")

    def kernel(self) -> str:
        return "6.0.0-test"

    def images(self) -> dict[str, Any]:
        return {"node": "svcconform/kind-node:v1.34.4", "airgapped": True}

    def facts(self) -> ClusterFacts:
        return ClusterFacts(
            proxy_mode=self.spec.proxy_mode, cni=self.spec.cni, provider="kind",
            kubernetes_version="v1.34.4", kernel="6.0.0-test",
            nodes=(Node("n-control-plane", "172.18.0.2", "control-plane"),
                   Node("n-worker", "172.18.0.3", "worker"), Node("n-worker2", "172.18.0.4", "worker")),
        )

    def node_exec(self, node: str, argv: Sequence[str], *, timeout: float = 0) -> ExecResult:
        if argv[0] == "ipvsadm":
            return ExecResult(tuple(argv), 127, "", "exec: \"ipvsadm\": executable file not found in $PATH")
        return ExecResult(tuple(argv), 0, f"# rules of {node}\n-A KUBE-SERVICES\n", "", f"node {node}")
