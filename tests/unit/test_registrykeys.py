"""The registry keys a TenantRegistry may name, and the kubelet key each becomes."""

from __future__ import annotations

import pytest

from tenant_registry.registrykeys import InvalidKey, parse_key


@pytest.mark.parametrize(
    ("server", "key"),
    [
        ("registry.example", "registry.example"),
        ("registry.example:5000", "registry.example:5000"),
        ("https://registry.example/v2/", "registry.example"),
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("http://r.example:8080/team/app/", "r.example:8080/team/app/"),  # the kubelet keeps '/'
        ("r.example/team", "r.example/team"),
        ("r.example/v1", "r.example/v1"),  # only /v1/ (with the slash) means no path
        ("*.acme.example", "*.acme.example"),
        ("*-eu.acme.example", "*-eu.acme.example"),
        ("localhost:5000", "localhost:5000"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_parse_key(server: str, key: str) -> None:
    assert str(parse_key(server)) == key
    assert parse_key(server).server == server


@pytest.mark.parametrize(
    "server",
    [
        "",
        "registry example",
        "bad key",
        "ftp://r.example",
        "r.example:99999",
        "r.example:port",
        "user@r.example",
        "r.example/a//b",
        "r.example//",
        "r.example/../x",
        "r.example/.",
        "r.example?x=1",
        "r.example\n",
        "-bad.example",
    ],
)
def test_invalid_keys(server: str) -> None:
    with pytest.raises(InvalidKey):
        parse_key(server)
