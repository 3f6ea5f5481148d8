"""What is distributed, by the credential checks: the new content, the last verified, or nothing."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tenant_registry import handshake
from tenant_registry.desired import Active, Frozen, tenant_intent
from tenant_registry.spec import InvalidInput, parse_tenant
from tenant_registry.verification import (
    UNVERIFIED,
    VERIFYING,
    CheckResult,
    decide,
    targets,
)
from tests.unit.samples import OPNS as NS


def basic_secret(name: str, user: str, password: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "type": "kubernetes.io/basic-auth",
        "data": {
            "username": base64.b64encode(user.encode()).decode(),
            "password": base64.b64encode(password.encode()).decode(),
        },
    }


OK = CheckResult(handshake.VERIFIED, "basic auth", "2030-01-01T00:00:00Z")
BAD = CheckResult(handshake.UNAUTHORIZED, "GET /v2/: rejected (HTTP 401)", "2030-01-01T00:01:00Z")


def tenant(password: str, **registry: Any) -> Active:
    body = {
        "metadata": {"name": "acme", "uid": "u1", "generation": 1},
        "spec": {
            "secretName": "acme-pull",
            "registries": [{"server": "r.example", "credentialsRef": {"name": "c"}, **registry}],
            "namespaces": {"names": ["a"]},
        },
    }
    intent = tenant_intent(body, {"c": basic_secret("c", "bot", password)}, NS)
    assert isinstance(intent, Active)
    return intent


def results(intent: Active, result: CheckResult | None) -> dict[str, CheckResult | None]:
    return {t.fingerprint: result for t in targets(intent)}


def test_verified_content_is_distributed() -> None:
    new = tenant("pw")
    intent, verdict = decide(new, targets(new), results(new, OK), None, "")
    assert intent == new
    assert (verdict.status, verdict.reason) == ("True", handshake.VERIFIED)
    assert verdict.verified_hash == new.copy.content_hash
    assert verdict.checked_at == OK.checked_at


@pytest.mark.parametrize("result", [BAD, None])
def test_first_ever_failure_or_first_check_writes_nothing(result: CheckResult | None) -> None:
    new = tenant("pw")
    intent, verdict = decide(new, targets(new), results(new, result), None, "")
    assert isinstance(intent, Frozen)
    assert intent.reason == (UNVERIFIED if result else VERIFYING)
    assert intent.credentials_resolved
    assert verdict.status == ("False" if result else "Unknown")
    assert "nothing is distributed" in verdict.message
    assert verdict.verified_hash == ""


@pytest.mark.parametrize("result", [BAD, None])
def test_new_credentials_failing_or_unchecked_keep_the_last_good(
    result: CheckResult | None,
) -> None:
    old, new = tenant("old"), tenant("new")
    intent, verdict = decide(new, targets(new), results(new, result), old.copy, "")
    assert isinstance(intent, Active)
    assert intent.copy.content_hash == old.copy.content_hash
    assert intent.copy.content.reveal() == old.copy.content.reveal()
    assert intent.spec == new.spec
    assert verdict.verified_hash == old.copy.content_hash
    assert f"the content last verified ({old.copy.content_hash}) stays" in verdict.message


def test_after_a_restart_the_last_good_is_loaded_first() -> None:
    old, new = tenant("old"), tenant("new")
    stored = old.copy.content_hash
    intent, verdict = decide(new, targets(new), results(new, BAD), None, stored)
    assert isinstance(intent, Frozen) and intent.reason == VERIFYING
    assert verdict.load_last_good == stored
    assert verdict.verified_hash == stored


def test_the_content_verified_before_stays_while_rechecked_or_refused() -> None:
    same = tenant("pw")
    stored = same.copy.content_hash
    for result in (None, BAD):
        intent, verdict = decide(same, targets(same), results(same, result), None, stored)
        assert intent == same
        assert verdict.verified_hash == stored
        assert not verdict.load_last_good


def test_verify_false_checks_nothing() -> None:
    new = tenant("pw", verify=False)
    assert targets(new) == ()
    intent, verdict = decide(new, (), {}, None, "")
    assert intent == new
    assert verdict.status == "Unknown"


def test_a_check_is_known_by_everything_it_checks() -> None:
    base = targets(tenant("pw"))[0].fingerprint
    assert targets(tenant("pw"))[0].fingerprint == base
    assert targets(tenant("other"))[0].fingerprint != base
    assert targets(tenant("pw", probeImage="app:v1"))[0].fingerprint != base
    assert "pw" not in repr(targets(tenant("pw"))[0])


@pytest.mark.parametrize(
    ("registry", "path"),
    [
        ({"verify": "yes"}, "spec.registries[0].verify"),
        ({"probeImage": "registry.example/app:v1"}, "spec.registries[0].probeImage"),
        ({"probeImage": "app"}, "spec.registries[0].probeImage"),
        ({"caRef": {"kind": "Pod", "name": "x"}}, "spec.registries[0].caRef.kind"),
        ({"caRef": {"kind": "Secret"}}, "spec.registries[0].caRef.name"),
        ({"caRef": "x"}, "spec.registries[0].caRef"),
        ({"server": "*.r.example"}, "spec.registries[0].verify"),
    ],
)
def test_bad_verification_fields_name_the_field(registry: dict[str, Any], path: str) -> None:
    body = {
        "metadata": {"name": "acme"},
        "spec": {
            "secretName": "acme-pull",
            "registries": [{"server": "r.example", "credentialsRef": {"name": "c"}, **registry}],
            "namespaces": {"names": ["a"]},
        },
    }
    with pytest.raises(InvalidInput) as e:
        parse_tenant(body, NS)
    assert path in str(e.value)


def test_verification_fields_parse() -> None:
    body = {
        "metadata": {"name": "acme"},
        "spec": {
            "secretName": "acme-pull",
            "registries": [
                {
                    "server": "r.example",
                    "credentialsRef": {"name": "c"},
                    "probeImage": "team/app@sha256:" + "b" * 64,
                    "caRef": {"kind": "ConfigMap", "name": "ca"},
                },
                {"server": "*.s.example", "credentialsRef": {"name": "c"}, "verify": False},
            ],
            "namespaces": {"names": ["a"]},
        },
    }
    first, second = parse_tenant(body, NS).registries
    assert first.verify and first.probe_image is not None
    assert first.probe_image.repository == "team/app"
    assert first.ca is not None and (first.ca.kind, first.ca.key) == ("ConfigMap", "ca.crt")
    assert not second.verify
