"""Pods on the real node, as a user creates them, and what the kubelet did with them.

The kubelet's verdict is read from the API (the Pod's container status: Running, or waiting
in ErrImagePull/ImagePullBackOff with the runtime's message) and from its pod log directory
(never `kubectl logs`, which would make the API server dial the kubelet)."""

from __future__ import annotations

import time
from typing import Any

import pykube

from tenant_registry.localcluster.node import Node
from tests.cluster.tenants import Cluster
from tests.waiting import wait_for

PULL_FAILED = ("ErrImagePull", "ImagePullBackOff")


class NodeCluster(Cluster):
    """The test's view of a control plane with a node."""

    def __init__(self, api: pykube.HTTPClient, cp: Any, node: Node) -> None:
        super().__init__(api, cp)
        self.node = node

    def pod(
        self,
        namespace: str,
        name: str,
        image: str,
        *,
        policy: str = "Always",
        pull_secrets: list[str] | None = None,
        service_account: str | None = None,
    ) -> None:
        """A Pod of one container; no pull secrets of its own unless given (then the
        ServiceAccount's are not added: admission copies them only into Pods without any)."""
        spec: dict[str, Any] = {
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [
                {"name": "app", "image": image, "imagePullPolicy": policy, "args": [name]}
            ],
        }
        if pull_secrets is not None:
            spec["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
        if service_account is not None:
            spec["serviceAccountName"] = service_account
        pykube.Pod(
            self.api, {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
        ).create()

    def pod_obj(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(pykube.Pod.objects(self.api, namespace=namespace).get(name=name).obj)

    def container_state(self, namespace: str, name: str) -> dict[str, Any]:
        statuses = self.pod_obj(namespace, name).get("status", {}).get("containerStatuses") or []
        return dict(statuses[0].get("state") or {}) if statuses else {}

    def wait_running(self, namespace: str, name: str, timeout: float = 60) -> float:
        """Until the kubelet runs the container (so it pulled the image); returns seconds."""
        started = time.monotonic()

        def running() -> bool:
            state = self.container_state(namespace, name)
            waiting = state.get("waiting") or {}
            assert waiting.get("reason") not in PULL_FAILED, (
                f"{namespace}/{name}: {waiting.get('reason')}: {waiting.get('message')}"
            )
            return "running" in state

        wait_for(running, what=f"{namespace}/{name} running", timeout=timeout, interval=0.05)
        return time.monotonic() - started

    def wait_pull_failed(self, namespace: str, name: str, timeout: float = 60) -> str:
        """Until the kubelet reports the pull failed; returns the runtime's message."""

        def failed() -> str:
            state = self.container_state(namespace, name)
            assert "running" not in state, f"{namespace}/{name} is running"
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in PULL_FAILED:
                return str(waiting.get("message") or waiting["reason"])
            return ""

        return wait_for(failed, what=f"{namespace}/{name} failing to pull", timeout=timeout)

    def assert_unauthorized(self, namespace: str, name: str) -> str:
        message = self.wait_pull_failed(namespace, name)
        assert "401 Unauthorized" in message, message
        return message

    def wait_default_sa(self, namespace: str) -> None:
        wait_for(lambda: self.sa(namespace) is not None, what=f"default SA in {namespace}")

    def user_pull_secret(self, namespace: str, name: str, server: str, user: str, pw: str) -> None:
        """A Secret the user made (`kubectl create secret docker-registry`)."""
        self.cp.kubectl(
            "create",
            "secret",
            "docker-registry",
            name,
            f"--namespace={namespace}",
            f"--docker-server={server}",
            f"--docker-username={user}",
            f"--docker-password={pw}",
        )

    def add_user_entry(self, namespace: str, name: str, sa: str = "default") -> None:
        """The user's own imagePullSecrets entry on a ServiceAccount."""
        self.cp.kubectl(
            "patch",
            "serviceaccount",
            sa,
            f"--namespace={namespace}",
            "--type=json",
            "-p",
            f'[{{"op":"add","path":"/imagePullSecrets","value":[{{"name":"{name}"}}]}}]',
        )
