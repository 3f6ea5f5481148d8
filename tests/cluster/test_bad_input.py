"""Bad input: a clear condition and Event naming the field; nothing written or deleted for
that tenant; other tenants carry on; no secret material anywhere."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tenant_registry.localcluster.controlplane import KubectlError
from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster, registry
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster


def _frozen(k8s: Cluster, name: str, reason: str, field: str) -> dict[str, Any]:
    cond = wait_for(
        lambda: (c := k8s.condition(name, "Ready")).get("reason") == reason and c,
        what=f"Ready reason {reason}",
    )
    assert cond["status"] == "False"
    assert field in cond["message"], cond["message"]
    wait_for(
        lambda: any(e["reason"] == reason and field in e["message"] for e in k8s.events(name)),
        what=f"{reason} Event naming {field}",
    )
    return dict(cond)


@pytest.mark.parametrize(
    ("case", "credentials", "server", "reason", "field"),
    [
        ("missing", None, "m.example", "CredentialsInvalid", "spec.registries[0].credentialsRef"),
        (
            "nopassword",
            {"type_": "Opaque", "password": None},
            "n.example",
            "CredentialsInvalid",
            "spec.registries[0].credentialsRef",
        ),
        (
            "noentry",
            {
                "type_": "kubernetes.io/dockerconfigjson",
                "username": None,
                "password": None,
                ".dockerconfigjson": '{"auths":{"other.example":{"auth":"dTpw"}}}',
            },
            "e.example",
            "CredentialsInvalid",
            "spec.registries[0].credentialsRef",
        ),
        ("badport", {}, "registry.example:99999", "InvalidSpec", "spec.registries[0].server"),
        ("badglob", {}, "registry.*x.example/with space", "InvalidSpec", "server"),
        ("huge", {"password": "p" * 700_000}, "h.example", "CredentialsInvalid", "spec.registries"),
    ],
)
def test_bad_input_freezes_only_that_tenant(
    k8s: Cluster,
    unique: str,
    case: str,
    credentials: dict[str, Any] | None,
    server: str,
    reason: str,
    field: str,
) -> None:
    good, bad = f"good{case}-{unique}", f"bad{case}-{unique}"
    ns = f"bad{case}-{unique}"
    k8s.namespace(ns)
    k8s.credentials(good)
    k8s.tenant(
        good,
        secret_name="good-pull",
        registries=[registry("good.example", good)],
        namespaces={"names": [ns]},
    )
    if credentials is not None:
        k8s.credentials(bad, **credentials)
    mark = k8s.audit_mark()
    try:
        k8s.tenant(
            bad,
            secret_name="bad-pull",
            registries=[registry(server, bad)],
            namespaces={"names": [ns]},
        )
    except KubectlError as e:  # rejected at admission by the CRD schema: fine, and named
        assert "server" in str(e)
        return
    _frozen(k8s, bad, reason, field)
    wait_for(lambda: k8s.copy(ns, "good-pull") is not None, what="the other tenant carries on")
    assert k8s.copy(ns, "bad-pull") is None
    assert not [w for w in k8s.operator_writes(mark) if w["objectRef"].get("name") == "bad-pull"]


def test_invalid_secret_name_is_rejected_at_admission(k8s: Cluster, unique: str) -> None:
    with pytest.raises(KubectlError, match="secretName"):
        k8s.tenant(
            f"badname-{unique}",
            secret_name="Not_A_Name",
            registries=[registry("x.example", "x")],
            namespaces={"names": ["x"]},
        )


def test_credentials_breaking_later_keep_existing_copies(k8s: Cluster, unique: str) -> None:
    name = f"broke-{unique}"
    ns = k8s.onboard_one(name)
    k8s.cp.kubectl("delete", "secret", name, "-n", "tenant-registry-system")
    _frozen(k8s, name, "CredentialsInvalid", "spec.registries[0].credentialsRef")
    assert k8s.condition(name, "CredentialsResolved")["status"] == "False"
    time.sleep(1)
    assert k8s.copy(ns, f"{name}-pull") is not None, "nothing deleted on bad input"
    assert f"{name}-pull" in k8s.pull_secrets(ns)
    k8s.credentials(name)
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="recovered")


def test_no_secret_material_in_logs_events_or_status(
    k8s: Cluster, operator: RunningOperator, unique: str
) -> None:
    name = f"leak-{unique}"
    password = f"Very-Secret-{unique}"
    k8s.namespace(f"{name}-a")
    k8s.credentials(name, username="leaky", password=password)
    k8s.tenant(
        name,
        secret_name=f"{name}-pull",
        registries=[registry("leak.example", name)],
        namespaces={"names": [f"{name}-a"]},
    )
    wait_for(lambda: k8s.condition(name, "Ready").get("status") == "True", what="Ready")
    # Break it in a way that puts the Secret's name and keys into messages.
    k8s.credentials(name, username="leaky:colon", password=password)
    wait_for(
        lambda: k8s.condition(name, "Ready").get("reason") == "CredentialsInvalid",
        what="invalid username reported",
    )
    import base64

    needles = [
        password,
        base64.b64encode(f"leaky:{password}".encode()).decode(),
        base64.b64encode(password.encode()).decode(),
    ]
    haystacks = {
        "operator log": operator.log_text(),
        "events": json.dumps(k8s.events(name)),
        "status": json.dumps(k8s.status(name)),
    }
    for where, text in haystacks.items():
        for needle in needles:
            assert needle not in text, f"secret material in {where}"


def test_credentials_nested_too_deeply_freeze_only_that_tenant(k8s: Cluster, unique: str) -> None:
    """A .dockerconfigjson nested 2,000 levels deep (the API server accepts it) must stay one
    tenant's CredentialsInvalid; tenants after it keep getting rotations."""
    bad, good = f"deep-{unique}", f"deepgood-{unique}"
    ns = f"deep-{unique}"
    k8s.namespace(ns)
    k8s.tenant(
        bad,
        secret_name="deep-pull",
        registries=[registry("deep.example", bad)],
        namespaces={"names": [ns]},
    )
    _frozen(k8s, bad, "CredentialsInvalid", "spec.registries[0].credentialsRef")
    k8s.credentials(good, password="before")
    k8s.tenant(
        good,
        secret_name="deepgood-pull",
        registries=[registry("good.example", good)],
        namespaces={"names": [ns]},
    )
    wait_for(lambda: k8s.copy(ns, "deepgood-pull") is not None, what="the good tenant's copy")

    nested = '{"a":' * 2000 + "1" + "}" * 2000
    k8s.credentials(
        bad,
        type_="kubernetes.io/dockerconfigjson",
        username=None,
        password=None,
        **{".dockerconfigjson": '{"auths":{"deep.example":' + nested + "}}"},
    )
    k8s.credentials(good, password="after")
    wait_for(
        lambda: (
            (k8s.dockerconfig(ns, "deepgood-pull") or {})
            .get("auths", {})
            .get("good.example", {})
            .get("password")
            == "after"
        ),
        what="the other tenant's rotation",
    )
    wait_for(
        lambda: "too deeply" in k8s.condition(bad, "Ready").get("message", ""),
        what="the bad tenant's condition naming the problem",
    )
    cond = _frozen(k8s, bad, "CredentialsInvalid", "spec.registries[0].credentialsRef")
    assert f"tenant-registry-system/{bad}" in cond["message"]
    assert k8s.copy(ns, "deep-pull") is None


def test_tenant_name_longer_than_a_label_value_is_rejected_at_admission(
    k8s: Cluster, unique: str
) -> None:
    name = f"long-{unique}-" + "x" * 60
    assert len(name) > 63
    with pytest.raises(KubectlError, match="63"):
        k8s.tenant(
            name,
            secret_name="long-pull",
            registries=[registry("x.example", "x")],
            namespaces={"names": [f"nowhere-{unique}"]},
        )
    k8s.cp.kubectl("delete", "tenantregistry", name, "--ignore-not-found", "--wait=false")
