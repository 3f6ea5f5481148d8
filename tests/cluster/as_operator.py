"""Requests made with the operator's own ServiceAccount token, to prove what admission lets
through and what it denies. Raw requests, so a test can send what the operator's code never
would (a compromised or buggy operator)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pykube

from tenant_registry.localcluster import ControlPlane

OPERATOR_SA = "tenant-registry-operator"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Answer:
    code: int
    message: str

    @property
    def denied(self) -> bool:
        """Refused by a ValidatingAdmissionPolicy (HTTP 422 "... denied request: ...")."""
        return self.code == 422 and "denied request" in self.message


class AsOperator:
    """One ServiceAccount's identity (by default the operator's, in `namespace`)."""

    def __init__(self, cp: ControlPlane, namespace: str, name: str = OPERATOR_SA) -> None:
        kubeconfig = cp.serviceaccount_kubeconfig(namespace, name)
        self.api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(kubeconfig)), timeout=120)

    def _send(
        self, method: str, url: str, namespace: str, body: Any = None, content_type: str = ""
    ) -> Answer:
        kwargs: dict[str, Any] = {"url": url, "namespace": namespace}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": content_type or "application/json"}
        resp = getattr(self.api, method)(**kwargs)
        message = "" if resp.status_code < 300 else str(resp.json().get("message", resp.text))
        return Answer(resp.status_code, message)

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> Answer:
        return self._send("post", plural, namespace, body)

    def merge_patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> Answer:
        return self._send("patch", f"{plural}/{name}", namespace, patch, MERGE)

    def json_patch(
        self, plural: str, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> Answer:
        return self._send("patch", f"{plural}/{name}", namespace, ops, JSON_PATCH)

    def delete(self, plural: str, namespace: str, name: str) -> Answer:
        return self._send("delete", f"{plural}/{name}", namespace)


def assert_denied(answer: Answer, because: str) -> None:
    """Denied by the admission policy, for the reason expected (its message names the rule)."""
    assert answer.denied, f"not denied by admission: {answer}"
    assert because in answer.message, f"denied for another reason: {answer.message}"
