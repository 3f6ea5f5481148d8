"""The one place that talks to image registries: the v2 handshake with a tenant's credentials.

Async (aiohttp, already Kopf's HTTP client), so a slow registry never blocks the event loop;
every check has one deadline for all its requests. TLS is verified (the system's CAs, plus
a custom CA if given); proxies come from the environment (handshake.proxy_for). Redirects
are not followed. The credentials go to the registry and, for Bearer, to the token service
its challenge names, wherever that is (as docker and containerd do; never a plain-http one
for an https registry): the registry's `server` is the cluster admin's choice, and so is
trusting it with where its tokens come from.

A check never raises: it returns a `CheckResult`, whose message is built by this module and
passed through `handshake.redact`, since an HTTP library's exception text may quote a request.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections.abc import Mapping

import aiohttp

from tenant_registry import handshake
from tenant_registry.handshake import Challenge, ProbeImage
from tenant_registry.spec import Credentials
from tenant_registry.verification import CheckRequest, CheckResult

__all__ = ["CheckRequest", "CheckResult", "check"]

_MAX_BODY = 1 << 20  # a token answer is a few KiB


class _Failed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason)
        self.result = CheckResult(reason, message)


async def check(
    request: CheckRequest, *, seconds: float = 10.0, environ: Mapping[str, str] | None = None
) -> CheckResult:
    """The handshake for one registry and its credentials (and probe image), within `seconds`
    seconds in all."""
    creds = request.credentials
    secrets = handshake.secret_forms(creds.username, creds.password.reveal())
    try:
        base = handshake.api_base(request.server)
    except ValueError as e:
        return CheckResult(handshake.UNEXPECTED, str(e))
    try:
        result = await asyncio.wait_for(
            _handshake(request, base, os.environ if environ is None else environ), seconds
        )
    except _Failed as e:
        result = e.result
    except TimeoutError:
        result = CheckResult(handshake.TIMEOUT, f"{base}: no complete answer within {seconds:g} s")
    except aiohttp.ClientConnectorCertificateError as e:
        result = CheckResult(
            handshake.TLS_ERROR, f"{base}: certificate not trusted: {e.certificate_error}"
        )
    except (aiohttp.ClientSSLError, ssl.SSLError) as e:
        result = CheckResult(handshake.TLS_ERROR, f"{base}: TLS failed: {_reason(e)}")
    except aiohttp.ClientProxyConnectionError as e:
        result = CheckResult(
            handshake.UNREACHABLE, f"{base}: cannot connect to the proxy: {_strerror(e)}"
        )
    except aiohttp.ClientConnectorError as e:
        result = CheckResult(handshake.UNREACHABLE, f"{base}: cannot connect: {_strerror(e)}")
    except aiohttp.ClientHttpProxyError as e:
        result = CheckResult(
            handshake.UNREACHABLE, f"{base}: the proxy refused the connection (HTTP {e.status})"
        )
    except aiohttp.ClientResponseError as e:  # its text quotes the URL (a proxy's userinfo)
        result = CheckResult(handshake.UNEXPECTED, f"{base}: {type(e).__name__} (HTTP {e.status})")
    except Exception as e:  # never the text: nothing here may quote a request or a proxy URL
        reason = (
            handshake.UNREACHABLE if isinstance(e, aiohttp.ClientError) else handshake.UNEXPECTED
        )
        result = CheckResult(reason, f"{base}: {type(e).__name__}")
    # The messages above hold no exception text but the OS's and the TLS library's reasons;
    # redact anyway, the password and the proxies' userinfo.
    secrets += handshake.proxy_secrets(os.environ if environ is None else environ)
    return CheckResult(result.reason, handshake.redact(result.message, secrets)[:300])


def _strerror(e: aiohttp.ClientConnectorError) -> str:
    """The OS's reason (ECONNREFUSED, a DNS failure), never the exception's text (its
    connection key may quote a proxy URL with credentials)."""
    return str(e.os_error.strerror or type(e.os_error).__name__)


def _reason(e: Exception) -> str:
    return str(getattr(e, "reason", None) or getattr(e, "strerror", None) or type(e).__name__)


@functools.lru_cache(maxsize=64)
def _ssl_context(ca_pem: str) -> ssl.SSLContext:
    """One context per CA bundle, made once: loading the system's CAs takes tens of ms on the
    event loop. Cached by the PEM's text (a changed CA is a new context); a context is not
    changed after it is made, so checks may share it."""
    context = ssl.create_default_context()
    if ca_pem:
        try:
            context.load_verify_locations(cadata=ca_pem)
        except (ssl.SSLError, ValueError):
            raise _Failed(
                handshake.TLS_ERROR, "the CA bundle holds no readable certificate"
            ) from None
    return context


class _Session:
    """The requests of one check: same TLS trust and proxies for each, no redirects."""

    def __init__(self, session: aiohttp.ClientSession, ca_pem: str, environ: Mapping[str, str]):
        self.session = session
        self.context = _ssl_context(ca_pem)
        self.environ = environ

    async def send(
        self, method: str, url: str, authorization: str = "", *, body: bool = False
    ) -> tuple[int, str, bytes]:
        """(status, WWW-Authenticate, body) of one request; the body (whole, at most
        _MAX_BODY bytes) only if asked for."""
        headers = {"Accept": handshake.MANIFEST_ACCEPT} if "/manifests/" in url else {}
        if authorization:
            headers["Authorization"] = authorization
        async with self.session.request(
            method,
            url,
            headers=headers,
            allow_redirects=False,
            proxy=handshake.proxy_for(url, self.environ),
            ssl=self.context,
        ) as response:
            data = await _read_all(response) if body else b""
            challenges = ", ".join(response.headers.getall("WWW-Authenticate", []))
            return response.status, challenges, data


async def _read_all(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, however it is chunked (`read(n)` returns what is buffered, not n
    bytes); over _MAX_BODY bytes is a failure, not a truncated answer."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(_MAX_BODY + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > _MAX_BODY:
            raise _Failed(handshake.UNEXPECTED, f"an answer over {_MAX_BODY} bytes")
    return b"".join(chunks)


async def _handshake(request: CheckRequest, base: str, environ: Mapping[str, str]) -> CheckResult:
    creds, probe = request.credentials, request.probe
    basic = handshake.basic_authorization(creds.username, creds.password.reveal())
    async with aiohttp.ClientSession(
        trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as client:
        session = _Session(client, request.ca_pem, environ)
        v2 = f"{base}/v2/"
        manifest = f"{base}{probe.path}" if probe else ""
        status, challenges, _ = await session.send("GET", v2)
        if status == 200:
            # Anonymous access: the credentials are still sent (as containerd sends them),
            # and some registries refuse wrong ones even for public content; if not refused,
            # say that they were not exercised.
            url, what = (manifest, f"{probe}") if probe else (v2, "/v2/")
            method = "HEAD" if probe else "GET"
            if probe:
                status, challenges, _ = await session.send("HEAD", manifest)
            if status == 200:
                status, _, _ = await session.send(method, url, basic)
                if status != 200:
                    raise _Failed(*handshake.rejected(status, f"{what} with Basic auth"))
                return CheckResult(
                    handshake.VERIFIED,
                    f"anonymous access to {what}; credentials not exercised (sent, not refused)",
                )
        if status != 401:
            raise _Failed(*handshake.rejected(status, "GET /v2/ without credentials"))
        challenge = handshake.choose(handshake.parse_challenges(challenges))
        if challenge is None:
            raise _Failed(handshake.UNEXPECTED, "the registry offers no Basic or Bearer challenge")
        authorization = await _authorization(session, challenge, creds, probe, base)
        status, _, _ = await session.send("GET", v2, authorization)
        if status != 200:
            raise _Failed(*handshake.rejected(status, "GET /v2/"))
        if probe is None:
            return CheckResult(handshake.VERIFIED, f"{challenge.scheme} auth")
        status, _, _ = await session.send("HEAD", manifest, authorization)
        if status != 200:
            raise _Failed(*handshake.rejected(status, f"manifest of {probe}"))
        return CheckResult(handshake.VERIFIED, f"{challenge.scheme} auth; may pull {probe}")


async def _authorization(
    session: _Session,
    challenge: Challenge,
    creds: Credentials,
    probe: ProbeImage | None,
    base: str,
) -> str:
    """The Authorization header answering the challenge (a token from the realm for Bearer)."""
    basic = handshake.basic_authorization(creds.username, creds.password.reveal())
    if challenge.scheme == "basic":
        return basic
    try:
        url = handshake.token_url(
            challenge, creds.username, probe.scope if probe else "", base=base
        )
    except handshake.InsecureRealm as e:
        raise _Failed(handshake.INSECURE_REALM, str(e)) from None
    except ValueError as e:
        raise _Failed(handshake.UNEXPECTED, str(e)) from None
    status, _, body = await session.send("GET", url, basic, body=True)
    if status != 200:
        raise _Failed(*handshake.rejected(status, "token service"))
    try:
        return "Bearer " + handshake.token_from_response(body)
    except ValueError as e:
        raise _Failed(handshake.UNEXPECTED, str(e)) from None
