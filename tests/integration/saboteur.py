"""A background actor that changes the suite's objects behind its back, for break tests.

It runs in the break test's own process (never inside the suite under test), polls the
cluster with the pinned kubectl every ``interval`` seconds, and applies ``act`` to what it
finds; everything it did is kept in ``actions`` so the break test can prove the break
really happened.  Namespace-local: ``act`` only touches namespaces of one family.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from breakkit import cluster_kubeconfig, run_kubectl

from fixtures.spec import ClusterSpec

#: One kubectl call against a local kind API server.
KUBECTL_TIMEOUT_S = 30
#: How often the actor looks: the suite waits on its objects with a 0.5 s poll interval, so
#: 0.3 s wins nearly every race against the test's next look.
ACTOR_INTERVAL_S = 0.3


def shared_kubeconfig(proxy_mode: str = "iptables", cni: str = "kindnet") -> Path:
    """The kubeconfig the suite's kind provider writes for the cell's (shared) cluster."""
    return cluster_kubeconfig(ClusterSpec(proxy_mode=proxy_mode, cni=cni).cluster_name)


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        proc = run_kubectl(self.kubeconfig, args, timeout=KUBECTL_TIMEOUT_S, stdin=stdin)
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()[:500]}")
        return proc.stdout

    def items(self, *args: str) -> list[dict[str, Any]]:
        return list(json.loads(self("get", *args, "-o", "json")).get("items") or [])


def shared_kubectl() -> Kubectl:
    """kubectl for the cell's shared cluster (``SVCCONFORM_BREAK_KUBECONFIG`` overrides it)."""
    return Kubectl(Path(os.environ.get("SVCCONFORM_BREAK_KUBECONFIG", shared_kubeconfig())))


class Saboteur:
    """``with Saboteur(kubectl, act) as s: run the family`` — ``act(kubectl) -> [done]``."""

    def __init__(self, kubectl: Kubectl, act: Callable[[Kubectl], Sequence[str]],
                 *, interval: float = ACTOR_INTERVAL_S) -> None:
        self.kubectl = kubectl
        self.act = act
        self.interval = interval
        self.actions: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="saboteur", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.actions.extend(self.act(self.kubectl))
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                self.errors.append(str(exc)[:300])  # e.g. the object went away meanwhile
            self._stop.wait(self.interval)

    def __enter__(self) -> Saboteur:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=KUBECTL_TIMEOUT_S + 5)


def in_family(obj: dict[str, Any], family: str) -> bool:
    return str(obj["metadata"].get("namespace", "")).startswith(f"svcc-{family}-")
