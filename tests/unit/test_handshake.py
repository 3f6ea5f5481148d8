"""The Registry v2 handshake's pure parts: challenges, token requests, probe images, redaction."""

from __future__ import annotations

import urllib.parse

import pytest

from tenant_registry import handshake
from tenant_registry.handshake import Challenge


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="Registry Realm"', [("basic", [("realm", "Registry Realm")])]),
        ("basic realm=tro", [("basic", [("realm", "tro")])]),
        (
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:team/app:pull"',
            [
                (
                    "bearer",
                    [
                        ("realm", "https://auth.example/token"),
                        ("service", "registry.example"),
                        ("scope", "repository:team/app:pull"),
                    ],
                )
            ],
        ),
        # Spaces around '=' and after commas; an escaped quote inside a quoted string.
        (
            'Bearer realm = "https://a/t" , service="s \\"q\\""',
            [("bearer", [("realm", "https://a/t"), ("service", 's "q"')])],
        ),
        # Two challenges in one header; a comma inside a quoted value.
        (
            'Basic realm="a, b", Bearer realm="https://t/x"',
            [("basic", [("realm", "a, b")]), ("bearer", [("realm", "https://t/x")])],
        ),
        ("Negotiate", [("negotiate", [])]),
        ("Negotiate abc==, Basic realm=x", [("negotiate", []), ("basic", [("realm", "x")])]),
        ("", []),
        ('=junk, Basic realm="r"', [("junk", []), ("basic", [("realm", "r")])]),
        ('Basic realm="unterminated', [("basic", [("realm", "unterminated")])]),
    ],
)
def test_parse_challenges(header: str, expected: list[tuple[str, list[tuple[str, str]]]]) -> None:
    got = handshake.parse_challenges(header)
    assert [(c.scheme, list(c.params)) for c in got] == expected


@pytest.mark.parametrize(
    ("header", "scheme"),
    [
        ('Basic realm="r"', "basic"),
        ('Basic realm="r", Bearer realm="https://t"', "bearer"),
        ('Bearer realm="https://t", Basic realm="r"', "bearer"),
        ("Negotiate", None),
        ("", None),
    ],
)
def test_choose_prefers_bearer(header: str, scheme: str | None) -> None:
    chosen = handshake.choose(handshake.parse_challenges(header))
    assert (chosen.scheme if chosen else None) == scheme


@pytest.mark.parametrize(
    ("server", "base"),
    [
        ("registry.example", "https://registry.example"),
        ("registry.example:5000", "https://registry.example:5000"),
        ("registry.example/team/", "https://registry.example"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("HTTPS://r.example/v2/", "https://r.example"),
        ("[::1]:5000", "https://[::1]:5000"),
        ("https://index.docker.io/v1/", "https://registry-1.docker.io"),
        ("docker.io", "https://registry-1.docker.io"),
    ],
)
def test_api_base(server: str, base: str) -> None:
    assert handshake.api_base(server) == base


@pytest.mark.parametrize("server", ["*.registry.example", "r?.example", "https:///path"])
def test_api_base_refuses_what_names_no_one_registry(server: str) -> None:
    with pytest.raises(ValueError):
        handshake.api_base(server)


def _query(url: str) -> list[tuple[str, str]]:
    return urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)


@pytest.mark.parametrize(
    ("params", "account", "scope", "base", "query"),
    [
        (
            [("realm", "https://auth.example/token"), ("service", "reg")],
            "bot",
            "repository:team/app:pull",
            "https://auth.example/token",
            [("service", "reg"), ("scope", "repository:team/app:pull"), ("account", "bot")],
        ),
        ([("realm", "http://127.0.0.1:9/t")], "", "", "http://127.0.0.1:9/t", []),
        # A realm that has a query of its own keeps it.
        (
            [("realm", "https://a.example/t?x=1"), ("service", "s p")],
            "u",
            "",
            "https://a.example/t",
            [("x", "1"), ("service", "s p"), ("account", "u")],
        ),
    ],
)
def test_token_url(
    params: list[tuple[str, str]],
    account: str,
    scope: str,
    base: str,
    query: list[tuple[str, str]],
) -> None:
    url = handshake.token_url(Challenge("bearer", tuple(params)), account, scope)
    assert url.split("?")[0] == base
    assert _query(url) == query


@pytest.mark.parametrize("realm", ["", "/token", "ftp://a/t", "https://"])
def test_token_url_needs_an_http_realm(realm: str) -> None:
    with pytest.raises(ValueError, match="realm"):
        handshake.token_url(Challenge("bearer", (("realm", realm),)), "u")


@pytest.mark.parametrize(
    ("body", "token"),
    [
        (b'{"token": "abc"}', "abc"),
        (b'{"access_token": "xyz", "expires_in": 60}', "xyz"),
        (b'{"token": "", "access_token": "second"}', "second"),
    ],
)
def test_token_from_response(body: bytes, token: str) -> None:
    assert handshake.token_from_response(body) == token


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"token": 5}', b"{}", b"\xff"])
def test_token_from_response_refuses_junk(body: bytes) -> None:
    with pytest.raises(ValueError, match="token service"):
        handshake.token_from_response(body)


@pytest.mark.parametrize(
    ("value", "repository", "reference", "scope"),
    [
        ("app:v1", "app", "v1", "repository:app:pull"),
        ("team/app:1.2.3", "team/app", "1.2.3", "repository:team/app:pull"),
        ("team/sub/app@sha256:" + "a" * 64, "team/sub/app", "sha256:" + "a" * 64, None),
        ("library/nginx:latest", "library/nginx", "latest", None),
    ],
)
def test_parse_probe_image(value: str, repository: str, reference: str, scope: str | None) -> None:
    probe = handshake.parse_probe_image(value)
    assert (probe.repository, probe.reference) == (repository, reference)
    assert probe.path == f"/v2/{repository}/manifests/{reference}"
    assert str(probe) == value
    if scope:
        assert probe.scope == scope


@pytest.mark.parametrize(
    "value",
    [
        "app",  # no tag or digest
        "App:v1",  # uppercase
        "registry.example/app:v1",  # a host
        "localhost:5000/app:v1",
        "localhost/app:v1",
        "app@sha256:abc",  # a short digest
        "app:bad tag",
        "",
    ],
)
def test_parse_probe_image_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        handshake.parse_probe_image(value)


@pytest.mark.parametrize(
    ("status", "what", "reason"),
    [
        (401, "GET /v2/", handshake.UNAUTHORIZED),
        (403, "HEAD manifest app:v1", handshake.FORBIDDEN),
        (404, "HEAD manifest app:v1", handshake.PROBE_NOT_FOUND),
        (404, "GET /v2/", handshake.UNEXPECTED),
        (500, "GET /v2/", handshake.UNEXPECTED),
    ],
)
def test_rejected(status: int, what: str, reason: str) -> None:
    got, message = handshake.rejected(status, what)
    assert got == reason
    assert what in message and str(status) in message


@pytest.mark.parametrize(
    ("url", "environ", "proxy"),
    [
        ("https://r.example/v2/", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://r.example/v2/", {"https_proxy": "http://p:3128"}, "http://p:3128"),
        ("http://r.example/v2/", {"HTTPS_PROXY": "http://p:3128"}, None),
        ("http://r.example/v2/", {"HTTP_PROXY": "http://p:1"}, "http://p:1"),
        (
            "https://r.example/v2/",
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".example"},
            None,
        ),
        (
            "https://127.0.0.1:5000/v2/",
            {"HTTPS_PROXY": "http://p:3128", "no_proxy": "127.0.0.1"},
            None,
        ),
        ("https://r.example/v2/", {}, None),
        ("https://r.example:5000/v2/", {"HTTPS_PROXY": "p", "NO_PROXY": "r.example:5000"}, None),
        ("https://r.example:5001/v2/", {"HTTPS_PROXY": "p", "NO_PROXY": "r.example:5000"}, "p"),
        ("https://other.example/", {"HTTPS_PROXY": "p", "NO_PROXY": "r.example, *"}, None),
        ("https://xr.example/", {"HTTPS_PROXY": "p", "NO_PROXY": "r.example"}, "p"),
        ("https://[::1]:5000/", {"HTTPS_PROXY": "p", "NO_PROXY": "::1"}, None),
    ],
)
def test_proxy_for(url: str, environ: dict[str, str], proxy: str | None) -> None:
    assert handshake.proxy_for(url, environ) == proxy


def test_redact_removes_every_form_of_the_password() -> None:
    forms = handshake.secret_forms("bot", "pa ss/w0rd")
    text = f"failed: Authorization: Basic {forms[1]} url=?p={forms[2]} raw={forms[0]}"
    out = handshake.redact(text, forms)
    assert all(f not in out for f in forms)
    assert out.count("<redacted>") == 3


def test_basic_authorization() -> None:
    assert handshake.basic_authorization("u", "p") == "Basic dTpw"


def test_an_https_registry_gets_no_plain_http_token_service() -> None:
    challenge = Challenge("bearer", (("realm", "http://auth.example/token"),))
    with pytest.raises(handshake.InsecureRealm):
        handshake.token_url(challenge, "u", base="https://r.example")
    assert handshake.token_url(challenge, "u", base="http://r.example").startswith("http://auth")
    other_host = Challenge("bearer", (("realm", "https://auth.example/token"),))
    assert handshake.token_url(other_host, "u", base="https://r.example").startswith("https://")
