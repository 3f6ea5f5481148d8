"""cluster._classify: HTTP errors into the few outcomes the rest cares about."""

from __future__ import annotations

import json

from kubernetes.client.rest import ApiException

from tenant_registry import cluster

POLICY = "tenant-registry-operator-serviceaccounts"
RULE = (
    "too large for the operator: 1001 imagePullSecrets entries, 2 annotations, "
    "1 added-pull-secrets items (at most 1000, 1000 and 50)"
)


def _error(status: int, message: str) -> ApiException:
    e = ApiException(status=status, reason="x")
    e.body = json.dumps({"reason": "Invalid", "message": message})
    return e


def test_an_admission_denial_is_forbidden_and_keeps_the_whole_rule() -> None:
    message = (
        'serviceaccounts "default" is forbidden: ValidatingAdmissionPolicy '
        f"'{POLICY}' with binding '{POLICY}' denied request: {RULE}"
    )
    err = cluster._classify(_error(422, message))
    assert err.kind == cluster.FORBIDDEN
    assert err.message.endswith(RULE), err.message
    assert f"ValidatingAdmissionPolicy '{POLICY}' denied request" in err.message
    assert len(err.message) <= 300


def test_another_422_is_invalid() -> None:
    err = cluster._classify(_error(422, "the server rejected our request: with binding 'x'"))
    assert err.kind == cluster.INVALID
    assert "with binding 'x'" in err.message
