"""The registry keys a TenantRegistry may name (`spec.registries[].server`).

A server is a config.json key, written as for `kubectl create secret docker-registry
--docker-server`: `host[:port][/path]`, optionally with `http://` or `https://`; letters,
digits, `-` and `.`, and `*` globs inside host labels. That is stricter than the kubelet, which
reads any string Go's URL parser takes (and silently ignores the rest): what the spec refuses
would never match an image, or would only by accident (user info, a query, empty or `.`
path segments). What a key means once accepted is the kubelet's business: keyring.py. Two
servers are the same key when the kubelet files them under the same index key
(`https://registry.example/v2/` and `registry.example`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tenant_registry.keyring import UnusableKey, config_key

_LABEL = r"(?:[A-Za-z0-9*](?:[A-Za-z0-9*-]*[A-Za-z0-9*])?)"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_KEY_RE = re.compile(
    rf"^(?P<scheme>https?://)?(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?"
    rf"(?P<path>/[A-Za-z0-9._/-]*)?\Z"
)


class InvalidKey(ValueError):
    """A registry key the spec does not accept."""


@dataclass(frozen=True)
class Key:
    """A server as written, and the key the kubelet files its credentials under."""

    server: str
    kubelet_key: str

    def __str__(self) -> str:
        return self.kubelet_key


def parse_key(server: str) -> Key:
    """Validate a `server` value; its `str()` is the kubelet's index key."""
    m = _KEY_RE.match(server)
    if not m:
        raise InvalidKey(
            "must be host[:port][/path] with an optional http:// or https:// scheme "
            "(letters, digits, '-', '.', and '*' globs in host labels)"
        )
    port = m.group("port") or ""
    if port and not 0 < int(port) < 65536:
        raise InvalidKey(f"port {port} is out of range 1-65535")
    segments = (m.group("path") or "/")[1:].split("/")
    # A trailing '/' is meaningful to the kubelet (whole segments only); other empty, '.'
    # and '..' segments can never match an image's path.
    if any(s in ("", ".", "..") for s in segments[:-1]) or segments[-1] in (".", ".."):
        raise InvalidKey("path must not contain empty, '.' or '..' segments")
    try:
        return Key(server, config_key(server))
    except UnusableKey as e:  # pragma: no cover - the pattern above admits only parsable keys
        raise InvalidKey(f"the kubelet would ignore it: {e}") from None
