"""`explain` from what was read: image lookups and namespace reports, pure."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tenant_registry import dockerconfig, names
from tenant_registry.explain import NamespaceFacts, explain_servers, keyring_lines, namespace_lines
from tenant_registry.imagerefs import parse_image_name
from tenant_registry.session import UsageError
from tenant_registry.spec import Credentials, Redacted

OPNS = "tenant-registry-system"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_issue_example_plain_prefix_and_most_specific_first() -> None:
    lines, code = explain_servers(
        "registry.io/team-x/app:v1", ["registry.io", "registry.io/team", "registry.io/team/"]
    )
    assert code == 0
    assert lines[:5] == [
        "image registry.io/team-x/app:v1: the kubelet looks up credentials for "
        "registry.io/team-x/app (tag v1)",
        "keys the kubelet tries, most specific first:",
        "  1. registry.io/team",
        "     quirk: the kubelet compares paths as plain strings: /team is a prefix of "
        "/team-x/app although /team-x/app is not under /team/",
        "  2. registry.io",
    ]
    assert "  - registry.io/team/: its path /team/ is not a prefix of the image's /team-x/app" in (
        lines
    )


def test_no_key_matches_exits_1() -> None:
    lines, code = explain_servers("nginx", ["registry.io"])
    assert code == 1
    assert "no key matches: the kubelet pulls docker.io/library/nginx anonymously" in lines


@pytest.mark.parametrize(
    ("image", "servers", "message"),
    [
        (
            "Bad Image!!",
            ["docker.io"],
            "IMAGE 'Bad Image!!' is not an image reference the kubelet accepts (couldn't parse "
            'image name "Bad Image!!": invalid reference format: repository name (library/Bad '
            "Image!!) must be lowercase); a Pod with it waits in InvalidImageName",
        ),
        (
            "nginx",
            ["docker.io", "bad key"],
            "SERVER 'bad key' is not a key the kubelet can use: Go's URL parser rejects it "
            '(invalid character " " in host name), so the kubelet ignores it',
        ),
    ],
)
def test_bad_arguments_are_named(image: str, servers: list[str], message: str) -> None:
    with pytest.raises(UsageError) as e:
        explain_servers(image, servers)
    assert str(e.value) == message


def pull_secret(name: str, servers: list[str], **meta: Any) -> dict[str, Any]:
    doc = dockerconfig.build([(s, Credentials("u", Redacted("s3cret"))) for s in servers])
    return {
        "metadata": {"name": name, "namespace": "team", **meta},
        "type": names.DOCKERCONFIGJSON_TYPE,
        "data": {names.DOCKERCONFIGJSON_KEY: base64.b64encode(doc).decode()},
    }


def test_pull_secrets_in_order_missing_ones_skipped_and_no_secret_shown() -> None:
    account = {
        "metadata": {"name": "default", "namespace": "team"},
        "imagePullSecrets": [{"name": "gone"}, {"name": "team"}, {"name": "all"}],
    }
    secrets = {
        "gone": None,
        "team": pull_secret("team", ["registry.io/team"]),
        "all": pull_secret("all", ["registry.io", "https://registry.io/v2/"]),
    }
    image = "registry.io/team/app"
    lines, found = keyring_lines(image, parse_image_name(image), "team", account, secrets)
    assert found
    text = "\n".join(lines)
    assert "s3cret" not in text and b64("u:s3cret") not in text
    assert (
        "  Secret gone: not found: the kubelet skips it and posts the Event "
        "FailedToRetrieveImagePullSecret"
    ) in lines
    tried = [line.strip() for line in lines if line.strip()[:2] in ("1.", "2.", "3.")]
    assert tried[0] == "1. registry.io/team (Secret team)"
    # One key, two entries of one Secret: Go's map order decides, so either may come first.
    assert {t[3:] for t in tried[1:]} == {
        "registry.io (Secret all)",
        "registry.io (Secret all, server https://registry.io/v2/)",
    }
    assert "note: several entries of one Secret read as this key" in text


def test_a_broken_pull_secret_fails_every_pull() -> None:
    broken = pull_secret("broken", ["r.io"])
    broken["data"][".dockerconfigjson"] = b64('{"auths": {"r.io": {"auth": "!!"}}}')
    account = {
        "metadata": {"name": "default", "namespace": "team"},
        "imagePullSecrets": [{"name": "broken"}],
    }
    lines, found = keyring_lines(
        "r.io/app", parse_image_name("r.io/app"), "team", account, {"broken": broken}
    )
    assert not found
    assert "every image pull of the Pod fails" in lines[1]


# -- explain namespace --------------------------------------------------------------------


def tenant(name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "secretName": f"{name}-pull",
        "registries": [{"server": f"{name}.example", "credentialsRef": {"name": name}}],
        "namespaces": {"names": [f"{name}-*"]},
    }
    body.update(spec)
    return {"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": body}


def credentials(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": OPNS},
        "type": names.BASIC_AUTH_TYPE,
        "data": {"username": b64("u"), "password": b64("pw")},
    }


def copy_of(tenant_name: str, ns: str, content_of: str = "") -> dict[str, Any]:
    doc = dockerconfig.build(
        [(f"{content_of or tenant_name}.example", Credentials("u", Redacted("pw")))]
    )
    return {
        "metadata": {
            "name": f"{tenant_name}-pull",
            "namespace": ns,
            "resourceVersion": "7",
            "labels": {
                names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE,
                names.LABEL_TENANT: tenant_name,
            },
            "annotations": {names.ANNOTATION_CONTENT_HASH: dockerconfig.content_hash(doc)},
            "ownerReferences": [
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.KIND,
                    "name": tenant_name,
                    "uid": f"uid-{tenant_name}",
                }
            ],
        },
        "type": names.DOCKERCONFIGJSON_TYPE,
        "data": {names.DOCKERCONFIGJSON_KEY: base64.b64encode(doc).decode()},
    }


def account(
    ns: str, name: str = "default", pulls: tuple[str, ...] = (), ours: str = ""
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "resourceVersion": "3"}
    if ours:
        meta["annotations"] = {names.ANNOTATION_SA_ENTRIES: ours}
    obj: dict[str, Any] = {"metadata": meta}
    if pulls:
        obj["imagePullSecrets"] = [{"name": p} for p in pulls]
    return obj


def facts(ns: str, tenants: list[dict[str, Any]], **kw: Any) -> NamespaceFacts:
    labels = kw.pop("labels", {})
    return NamespaceFacts(
        namespace={"metadata": {"name": ns, "labels": labels}, **kw.pop("ns_extra", {})},
        tenants=tenants,
        credentials={t["metadata"]["name"]: credentials(t["metadata"]["name"]) for t in tenants},
        copies=kw.pop("copies", []),
        accounts=kw.pop("accounts", [account(ns)]),
        in_the_way=kw.pop("in_the_way", {}),
    )


def test_a_synced_namespace() -> None:
    lines = namespace_lines(
        facts(
            "acme-web",
            [tenant("acme"), tenant("beta")],
            labels={"team": "web"},
            copies=[copy_of("acme", "acme-web")],
            accounts=[account("acme-web", pulls=("regcred", "acme-pull"), ours="acme/acme-pull")],
        ),
        OPNS,
    )
    assert lines[0] == "namespace acme-web (labels: team=web)"
    assert "TenantRegistry acme: selects acme-web" in lines
    assert "  - selected by the glob 'acme-*'" in lines
    assert any(
        line.startswith("  copy: Secret acme-pull is its copy; the content hash matches")
        for line in lines
    )
    assert (
        "  ServiceAccount default (selected): has the entry acme-pull, added by the operator"
        in lines
    )
    assert "  nothing left to do: the copy and entries are as the tenant wants" in lines
    assert lines[lines.index("ServiceAccounts in acme-web:") - 1] == (
        "TenantRegistry beta: does not select acme-web: no name or glob matches (beta-*)"
    )
    assert (
        "  default: imagePullSecrets regcred, acme-pull; the operator's: acme-pull "
        "(TenantRegistry acme)" in lines
    )


def test_a_stale_copy_and_a_missing_entry_show_the_planned_writes() -> None:
    lines = namespace_lines(
        facts("acme-web", [tenant("acme")], copies=[copy_of("acme", "acme-web", content_of="old")]),
        OPNS,
    )
    text = "\n".join(lines)
    assert "Secret acme-pull is its copy, but its content (sha256:" in text
    assert "  the operator would: update Secret acme-web/acme-pull: content sha256:" in text
    assert (
        "  the operator would: patch ServiceAccount acme-web/default: add imagePullSecrets "
        "entry acme-pull" in lines
    )


def test_excluded_and_system_namespaces_say_why() -> None:
    excluded = namespace_lines(
        facts("acme-sandbox", [tenant("acme", namespaces={"names": ["acme-*", "!acme-sandbox"]})]),
        OPNS,
    )
    assert (
        "TenantRegistry acme: does not select acme-sandbox: excluded by the name '!acme-sandbox'"
        in excluded
    )
    system = namespace_lines(
        facts("kube-acme", [tenant("acme", namespaces={"names": ["kube-*"]})]), OPNS
    )
    assert (
        "TenantRegistry acme: does not select kube-acme: kube-acme is a system namespace (kube-* "
        f"or the operator's own, {OPNS}): only an exact name selects it; the glob 'kube-*' "
        "matches, but only an exact name counts here"
    ) in system


@pytest.mark.parametrize(
    ("policy", "annotations", "owner", "expected", "blocked"),
    [
        ("Skip", {}, [], "conflictPolicy Skip leaves it untouched (UnmanagedSecretExists)", True),
        (
            "Adopt",
            {},
            [],
            "conflictPolicy Adopt, but it is adopted only with the annotation "
            "registry.tenancy.dev/adopt=acme (it has none)",
            True,
        ),
        (
            "Adopt",
            {names.ANNOTATION_ADOPT: "acme"},
            [],
            "its owner consented: the operator adopts it",
            False,
        ),
        (
            "Adopt",
            {names.ANNOTATION_ADOPT: "acme"},
            [{"controller": True, "uid": "x", "kind": "Other", "name": "o"}],
            "another controller owns it, so it is never adopted",
            True,
        ),
    ],
)
def test_an_unmanaged_secret_in_the_way(
    policy: str,
    annotations: dict[str, str],
    owner: list[dict[str, Any]],
    expected: str,
    blocked: bool,
) -> None:
    secret = {
        "metadata": {
            "name": "acme-pull",
            "namespace": "acme-old",
            "resourceVersion": "5",
            "annotations": annotations,
            "ownerReferences": owner,
        },
        "type": names.DOCKERCONFIGJSON_TYPE,
    }
    lines = namespace_lines(
        facts(
            "acme-old", [tenant("acme", conflictPolicy=policy)], in_the_way={"acme-pull": secret}
        ),
        OPNS,
    )
    copy_line = next(line for line in lines if line.startswith("  copy:"))
    assert expected in copy_line
    assert any(line.startswith("  blocked: UnmanagedSecretExists") for line in lines) is blocked
    if blocked:
        assert (
            "  ServiceAccount default (selected): has no entry acme-pull: none is added while the "
            "copy is blocked"
        ) in lines


def test_owned_by_another_tenant() -> None:
    lines = namespace_lines(
        facts(
            "shared",
            [
                tenant("acme", namespaces={"names": ["shared"]}),
                tenant("beta", secretName="acme-pull", namespaces={"names": ["shared"]}),
            ],
            copies=[copy_of("acme", "shared")],
            accounts=[account("shared", pulls=("acme-pull",), ours="acme/acme-pull")],
        ),
        OPNS,
    )
    assert (
        "  copy: Secret acme-pull is the copy of TenantRegistry acme: OwnedByOtherTenant" in lines
    )
    assert (
        "  ServiceAccount default (selected): has an entry acme-pull, added by the operator for "
        "TenantRegistry acme"
    ) in lines
    assert (
        "  blocked: OwnedByOtherTenant: Secret acme-pull is managed by TenantRegistry acme" in lines
    )


def test_leftovers_of_a_tenant_that_no_longer_selects_the_namespace_are_removed() -> None:
    lines = namespace_lines(
        facts(
            "acme-old",
            [tenant("acme", namespaces={"names": ["acme-*", "!acme-old"]})],
            copies=[copy_of("acme", "acme-old")],
            accounts=[account("acme-old", pulls=("acme-pull",), ours="acme/acme-pull")],
        ),
        OPNS,
    )
    assert "  the operator would: delete Secret acme-old/acme-pull" in lines
    assert (
        "  the operator would: patch ServiceAccount acme-old/default: remove "
        "imagePullSecrets entry acme-pull"
    ) in lines


def test_invalid_specs_terminating_namespaces_and_invalid_credentials() -> None:
    bad = tenant("bad")
    bad["spec"]["secretName"] = "Not_A_Name"
    creds_missing = tenant("nocreds")
    f = facts(
        "nocreds-a",
        [bad, creds_missing],
        ns_extra={"status": {"phase": "Terminating"}},
    )
    f.credentials.pop("nocreds")
    lines = namespace_lines(f, OPNS)
    assert lines[1].startswith("  terminating: the operator skips it")
    assert any(line.startswith("TenantRegistry bad: its spec is invalid") for line in lines)
    head = next(line for line in lines if line.startswith("TenantRegistry nocreds"))
    assert head.startswith("TenantRegistry nocreds: does not select nocreds-a (CredentialsInvalid:")
    assert "  - but the namespace is terminating" in lines
    assert json.dumps(lines).count("pw") == 0
