"""The handshake against real registries on loopback: the registry says who is right.

Given Debian's docker-registry with htpasswd (bcrypt) or token auth (our issuer's ES256 JWTs),
plain or TLS with a CA of the test's own, when registryclient checks credentials, then its
verdict is the registry's, and no message carries the password.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenant_registry import handshake
from tenant_registry.localcluster.controlplane import _free_port
from tenant_registry.localcluster.registry import Registry
from tenant_registry.registryclient import CheckRequest, CheckResult, check
from tenant_registry.spec import Credentials, Redacted
from tests.registry.servers import (
    AnonymousRegistry,
    RefusingProxy,
    TokenIssuer,
    htpasswd_registry,
    push_with_token,
    registry_tls,
    serving_basic,
    serving_issuer,
    token_registry,
)

pytestmark = pytest.mark.registry

USER, PASSWORD = "bot", "right-pässword"
NO_PROXY: dict[str, str] = {}


def run(
    server: str,
    password: str = PASSWORD,
    probe: str = "",
    ca: str = "",
    environ: dict[str, str] | None = None,
    seconds: float = 10,
) -> CheckResult:
    request = CheckRequest(
        server,
        Credentials(USER, Redacted(password)),
        handshake.parse_probe_image(probe) if probe else None,
        ca,
    )
    result = asyncio.run(check(request, seconds=seconds, environ=environ or NO_PROXY))
    assert password not in result.message
    return result


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from serving_basic(tmp_path_factory.mktemp("basic"), USER, PASSWORD)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    registry = htpasswd_registry(tmp_path_factory.mktemp("tls"), USER, PASSWORD, tls=True)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    yield from serving_issuer(tmp_path_factory.mktemp("issuer"), USER, PASSWORD)


@pytest.fixture(scope="module")
def bearer(tmp_path_factory: pytest.TempPathFactory, issuer: TokenIssuer) -> Iterator[Registry]:
    registry = token_registry(tmp_path_factory.mktemp("bearer"), issuer)
    push_with_token(registry, issuer, "team/app", "v1")
    yield registry
    registry.stop()


def test_basic_right_password_is_verified(basic: Registry) -> None:
    assert basic.status("/v2/") == 401  # anonymous: the challenge
    result = run(f"http://{basic.host}")
    assert result.reason == handshake.VERIFIED, result.message


def test_basic_wrong_password_is_unauthorized(basic: Registry) -> None:
    result = run(f"http://{basic.host}", password="wrong-password")
    assert result.reason == handshake.UNAUTHORIZED, result.message


def test_probe_image_pushed_through_the_api_is_found(basic: Registry) -> None:
    assert run(f"http://{basic.host}", probe="team/app:v1").ok
    missing = run(f"http://{basic.host}", probe="team/app:nope")
    assert missing.reason == handshake.PROBE_NOT_FOUND, missing.message


def test_registry_down_is_unreachable() -> None:
    port = _free_port()  # nothing listens there
    result = run(f"http://127.0.0.1:{port}")
    assert result.reason == handshake.UNREACHABLE, result.message


def test_a_registry_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections (in the kernel) and never answers
        result = run(f"http://127.0.0.1:{silent.getsockname()[1]}", seconds=0.5)
    assert result.reason == handshake.TIMEOUT, result.message


def test_tls_needs_the_custom_ca(tls: Registry) -> None:
    assert tls.tls is not None
    untrusted = run(tls.host)  # no scheme: https
    assert untrusted.reason == handshake.TLS_ERROR, untrusted.message
    trusted = run(tls.host, ca=tls.tls.ca.read_text())
    assert trusted.reason == handshake.VERIFIED, trusted.message
    wrong = run(tls.host, password="wrong", ca=tls.tls.ca.read_text())
    assert wrong.reason == handshake.UNAUTHORIZED, wrong.message


def test_a_ca_bundle_without_certificates_is_a_tls_error(tls: Registry) -> None:
    result = run(tls.host, ca="not a certificate")
    assert result.reason == handshake.TLS_ERROR, result.message


def test_plain_http_where_https_is_expected_is_a_tls_error(basic: Registry) -> None:
    result = run(basic.host)  # https to a plain HTTP registry
    assert result.reason == handshake.TLS_ERROR, result.message


def test_bearer_with_scope(bearer: Registry, issuer: TokenIssuer) -> None:
    before = len(issuer.requests)
    result = run(f"http://{bearer.host}", probe="team/app:v1")
    assert result.reason == handshake.VERIFIED, result.message
    asked = issuer.requests[before:]
    assert asked == [
        {
            "service": issuer.service,
            "scopes": ["repository:team/app:pull"],
            "account": USER,
            "authorized": True,
        }
    ]


def test_bearer_without_probe_asks_for_no_scope(bearer: Registry, issuer: TokenIssuer) -> None:
    before = len(issuer.requests)
    assert run(f"http://{bearer.host}").ok
    assert issuer.requests[before:][0]["scopes"] == []


def test_bearer_wrong_password_is_refused_by_the_token_service(bearer: Registry) -> None:
    result = run(f"http://{bearer.host}", password="wrong-password", probe="team/app:v1")
    assert result.reason == handshake.UNAUTHORIZED, result.message
    assert "token service" in result.message


def test_proxies_come_from_the_environment(basic: Registry) -> None:
    dead_proxy = f"http://127.0.0.1:{_free_port()}"
    through = run(f"http://{basic.host}", environ={"HTTP_PROXY": dead_proxy})
    assert through.reason == handshake.UNREACHABLE, through.message
    bypassed = run(
        f"http://{basic.host}", environ={"HTTP_PROXY": dead_proxy, "NO_PROXY": "127.0.0.1"}
    )
    assert bypassed.ok, bypassed.message


def test_no_message_carries_the_credentials(tmp_path: Path, basic: Registry) -> None:
    # Whatever goes wrong, the message is built here and redacted.
    for server in (f"http://{basic.host}", basic.host, f"http://127.0.0.1:{_free_port()}"):
        for password in (PASSWORD, "wrong-password"):
            result = run(server, password=password)
            assert password not in result.message
            assert handshake.basic_authorization(USER, password)[6:] not in result.message


def test_a_token_answer_in_two_chunks_is_read_whole(bearer: Registry, issuer: TokenIssuer) -> None:
    issuer.chunked = True
    try:
        result = run(f"http://{bearer.host}", probe="team/app:v1")
    finally:
        issuer.chunked = False
    assert result.reason == handshake.VERIFIED, result.message


PROXY_USER, PROXY_PASSWORD = "proxyuser", "PROXY-pass%21word"


def _leaks_proxy_credentials(text: str) -> bool:
    return any(
        s in text for s in (PROXY_USER, PROXY_PASSWORD, "PROXY-pass!word", "UFJPWFktcGFzcyF3b3Jk")
    )


def test_a_proxy_with_credentials_never_reaches_a_message(tls: Registry) -> None:
    """A proxy URL carrying userinfo (review 14, finding 3): the HTTP client's exceptions quote
    it; the result says what happened and names neither the proxy's user nor its password."""
    assert tls.tls is not None
    proxy = RefusingProxy().start()
    try:
        url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
        refused = run(tls.host, ca=tls.tls.ca.read_text(), environ={"HTTPS_PROXY": url})
        assert proxy.asked, "the proxy was used"
        assert refused.reason == handshake.UNREACHABLE, refused.message
        assert "HTTP 403" in refused.message and not _leaks_proxy_credentials(refused.message)
    finally:
        proxy.stop()
    dead = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{_free_port()}"
    for environ in ({"HTTPS_PROXY": dead}, {"https_proxy": dead.replace("http://", "")}):
        down = run(tls.host, ca=tls.tls.ca.read_text(), environ=environ)
        assert down.reason == handshake.UNREACHABLE, down.message
        assert not _leaks_proxy_credentials(down.message), down.message


def test_a_token_service_on_another_host_gets_the_credentials(
    bearer: Registry, issuer: TokenIssuer
) -> None:
    """As docker and containerd do (README, "Credential verification"): the registry, named
    by its admin-set server, names its token service, here on 127.0.0.1 for a registry
    addressed as localhost."""
    before = len(issuer.requests)
    result = run(f"http://localhost:{bearer.port}", probe="team/app:v1")
    assert result.reason == handshake.VERIFIED, result.message
    assert [r["authorized"] for r in issuer.requests[before:]] == [True]


def test_an_https_registry_whose_token_service_is_plain_http_gets_no_credentials(
    tmp_path: Path, issuer: TokenIssuer
) -> None:
    auth = issuer.auth
    assert auth.realm.startswith("http://")
    registry = Registry(
        tmp_path,
        user=USER,
        password=PASSWORD,
        tls=registry_tls(tmp_path),
        token=auth,
    ).start()
    try:
        assert registry.tls is not None
        before = len(issuer.requests)
        result = run(registry.host, ca=registry.tls.ca.read_text())
        assert result.reason == handshake.INSECURE_REALM, result.message
        assert issuer.requests[before:] == [], "nothing sent to the plain-http token service"
    finally:
        registry.stop()


def test_anonymous_access_still_sends_the_credentials_and_says_so() -> None:
    anonymous = AnonymousRegistry(USER, PASSWORD).start()
    try:
        right = run(f"http://127.0.0.1:{anonymous.port}")
        assert right.reason == handshake.VERIFIED, right.message
        assert "credentials not exercised" in right.message
        wrong = run(f"http://127.0.0.1:{anonymous.port}", password="wrong-password")
        assert wrong.reason == handshake.UNAUTHORIZED, wrong.message
    finally:
        anonymous.stop()
