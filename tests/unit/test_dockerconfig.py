"""The generated .dockerconfigjson is byte-identical to kubectl's for the same input."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from tenant_registry import dockerconfig
from tenant_registry.localcluster import ensure_binaries
from tenant_registry.spec import Credentials, Redacted

CASES = [
    ("registry.example.com", "user", "pass", ""),
    ("registry.example.com:5000", "robot$acme", "p@ss<word>&more", "dev@acme.example"),
    ("https://index.docker.io/v1/", "me", "pässwörd ünïcode", ""),
    ("*.acme.example/team", "a", 'quote"back\\slash\ttab\nnewline', "a@b.c"),
    ("10.0.0.1:443", "u", "\u2028line\u2029para", ""),
]


def _kubectl_bytes(server: str, user: str, password: str, email: str) -> bytes:
    args = [
        str(ensure_binaries(quiet=True) / "kubectl"),
        "create",
        "secret",
        "docker-registry",
        "x",
        f"--docker-server={server}",
        f"--docker-username={user}",
        f"--docker-password={password}",
        "--dry-run=client",
        "-o",
        "json",
    ]
    if email:
        args.append(f"--docker-email={email}")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return base64.b64decode(json.loads(out)["data"][".dockerconfigjson"])


@pytest.mark.parametrize(("server", "user", "password", "email"), CASES)
def test_identical_to_kubectl(server: str, user: str, password: str, email: str) -> None:
    ours = dockerconfig.build([(server, Credentials(user, Redacted(password), email))])
    assert ours == _kubectl_bytes(server, user, password, email)


def test_several_registries_are_merged_in_sorted_order() -> None:
    data = dockerconfig.build(
        [
            ("z.example", Credentials("z", Redacted("zz"))),
            ("a.example", Credentials("a", Redacted("aa"))),
        ]
    )
    assert list(json.loads(data)["auths"]) == ["a.example", "z.example"]
    assert data.startswith(b'{"auths":{"a.example":{"username":"a","password":"aa","auth":')


def test_content_hash_is_stable_and_reveals_nothing() -> None:
    data = dockerconfig.build([("r.example", Credentials("u", Redacted("secret")))])
    assert dockerconfig.content_hash(data) == dockerconfig.content_hash(data)
    assert "secret" not in dockerconfig.content_hash(data)
