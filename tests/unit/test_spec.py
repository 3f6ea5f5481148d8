"""TenantRegistry and credential Secrets -> values, or errors that name the field."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tenant_registry.spec import (
    CredentialsRef,
    InvalidInput,
    LabelSelector,
    Redacted,
    Registry,
    Requirement,
    parse_credentials,
    parse_tenant,
)

OPNS = "tenant-registry-system"


def tenant(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "secretName": "acme-pull",
        "registries": [{"server": "r.example", "credentialsRef": {"name": "creds"}}],
        "namespaces": {"names": ["acme-*", "!acme-sandbox"]},
    }
    base.update(spec)
    return {"metadata": {"name": "acme", "uid": "u-1", "generation": 3}, "spec": base}


def test_valid_spec_with_defaults() -> None:
    spec = parse_tenant(tenant(), OPNS)
    assert spec.secret_name == "acme-pull"
    assert spec.namespaces.include == ("acme-*",) and spec.namespaces.exclude == ("acme-sandbox",)
    assert spec.service_accounts.include == ("default",)
    assert spec.conflict_policy == "Skip" and spec.suspend is False
    assert spec.registries[0].credentials_ref.namespace == OPNS
    assert spec.generation == 3


def test_selector_is_parsed() -> None:
    spec = parse_tenant(
        tenant(
            namespaces={
                "selector": {
                    "matchLabels": {"tenant": "acme"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
                }
            }
        ),
        OPNS,
    )
    assert spec.namespaces.selector == LabelSelector(
        (("tenant", "acme"),), (Requirement("tier", "In", ("a", "b")),)
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"secretName": "Bad_Name"}, "spec.secretName"),
        ({"secretName": None}, "spec.secretName"),
        ({"registries": []}, "spec.registries"),
        ({"registries": [{"server": "bad server"}]}, "spec.registries[0].server"),
        ({"registries": [{"server": "r.example"}]}, "spec.registries[0].credentialsRef.name"),
        (
            {
                "registries": [
                    {"server": "r.example", "credentialsRef": {"name": "c", "namespace": "other"}}
                ]
            },
            "spec.registries[0].credentialsRef.namespace",
        ),
        (
            {
                "registries": [
                    {"server": "r.example", "credentialsRef": {"name": "c"}},
                    {"server": "https://r.example/v2/", "credentialsRef": {"name": "c"}},
                ]
            },
            "spec.registries[1].server",
        ),
        ({"namespaces": {}}, "spec.namespaces"),
        ({"namespaces": {"names": ["UPPER"]}}, "spec.namespaces.names[0]"),
        (
            {"namespaces": {"selector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}},
            "spec.namespaces.selector.matchExpressions[0].values",
        ),
        (
            {"namespaces": {"selector": {"matchExpressions": [{"key": "k", "operator": "Has"}]}}},
            "spec.namespaces.selector.matchExpressions[0].operator",
        ),
        ({"conflictPolicy": "Overwrite"}, "spec.conflictPolicy"),
        ({"suspend": "yes"}, "spec.suspend"),
    ],
)
def test_invalid_spec_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_tenant(tenant(**change), OPNS)
    assert any(e.path == field for e in err.value.errors), str(err.value)


REG = Registry("r.example", CredentialsRef("creds", OPNS))


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.mark.parametrize(
    ("secret", "user", "password", "email"),
    [
        (
            {
                "type": "kubernetes.io/basic-auth",
                "data": {"username": b64("u"), "password": b64("p")},
            },
            "u",
            "p",
            "",
        ),
        (
            {
                "type": "Opaque",
                "data": {"username": b64("u"), "password": b64("p"), "email": b64("e@x")},
            },
            "u",
            "p",
            "e@x",
        ),
        (
            {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {
                    ".dockerconfigjson": b64(
                        json.dumps({"auths": {"r.example": {"username": "u", "password": "p"}}})
                    )
                },
            },
            "u",
            "p",
            "",
        ),
        (
            {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {
                    ".dockerconfigjson": b64(
                        json.dumps({"auths": {"r.example": {"auth": b64("u:p:colon")}}})
                    )
                },
            },
            "u",
            "p:colon",
            "",
        ),
    ],
)
def test_credentials(secret: dict[str, Any], user: str, password: str, email: str) -> None:
    creds = parse_credentials(secret, REG, "spec.registries[0]")
    assert (creds.username, creds.password.reveal(), creds.email) == (user, password, email)


@pytest.mark.parametrize(
    ("secret", "words"),
    [
        (None, "not found"),
        ({"type": "Opaque", "data": {"username": b64("u")}}, "no key 'password'"),
        ({"type": "Opaque", "data": {"username": "!!", "password": b64("p")}}, "base64"),
        ({"type": "Opaque", "data": {"username": b64("u:x"), "password": b64("p")}}, "':'"),
        ({"type": "kubernetes.io/tls", "data": {}}, "type"),
        (
            {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("{")}},
            "JSON",
        ),
        (
            {
                "type": "kubernetes.io/dockerconfigjson",
                "data": {
                    ".dockerconfigjson": b64(
                        json.dumps({"auths": {"other.example": {"auth": b64("u:p")}}})
                    )
                },
            },
            "no auths entry",
        ),
    ],
)
def test_bad_credentials_name_the_field_not_the_value(
    secret: dict[str, Any] | None, words: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_credentials(secret, REG, "spec.registries[0]")
    assert str(err.value).startswith("spec.registries[0].credentialsRef: ")
    assert words in str(err.value)


def test_redacted_never_shows_its_value() -> None:
    secret = Redacted("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert "hunter2" not in repr(
        parse_credentials(
            {"type": "Opaque", "data": {"username": b64("u"), "password": b64("hunter2")}}, REG, "x"
        )
    )
