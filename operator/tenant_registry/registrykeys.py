"""Registry keys and image references, by the kubelet's config.json rules.

A key is `host[:port][/path]`, optionally with an http(s) scheme; `/v1/` and `/v2/` path
prefixes count as no path (docker's convention, followed by the kubelet). A key matches an
image when the ports are equal, the host has as many dot-separated labels, each label matches
(a `*` glob stands for one label), and the key's path is a prefix of the image's path.
Images with no registry host are on docker.io; `index.docker.io` keys also serve docker.io.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "docker.io"
DEFAULT_REGISTRY_KEY_HOST = "index.docker.io"

_LABEL = r"(?:[A-Za-z0-9*](?:[A-Za-z0-9*-]*[A-Za-z0-9*])?)"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_KEY_RE = re.compile(
    rf"^(?P<scheme>https?://)?(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?(?P<path>/[A-Za-z0-9._/-]*)?$"
)


class InvalidKey(ValueError):
    """A registry key the kubelet could not use."""


@dataclass(frozen=True)
class Key:
    """A parsed registry key: what the kubelet indexes credentials by."""

    host: str
    port: str
    path: str  # "" or "/prefix" (no trailing slash)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.host}{port}{self.path}"


def parse_key(server: str) -> Key:
    """Parse a `server` value (as given to `kubectl create secret docker-registry`)."""
    m = _KEY_RE.match(server)
    if not m:
        raise InvalidKey(
            "must be host[:port][/path] with an optional http:// or https:// scheme "
            "(letters, digits, '-', '.', and '*' for a whole DNS label)"
        )
    port = m.group("port") or ""
    if port and not 0 < int(port) < 65536:
        raise InvalidKey(f"port {port} is out of range 1-65535")
    path = m.group("path") or ""
    if path.startswith(("/v1/", "/v2/")) or path in ("/v1", "/v2"):
        path = path[3:]
    path = path.rstrip("/")
    if "//" in path or "/../" in f"{path}/" or "/./" in f"{path}/":
        raise InvalidKey("path must not contain empty, '.' or '..' segments")
    return Key(host=m.group("host"), port=port, path=path)


@dataclass(frozen=True)
class ImageRef:
    host: str
    port: str
    path: str  # repository path, "/library/nginx"
    tag: str
    digest: str

    @property
    def repository(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"{self.host}{port}{self.path}"


_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def parse_image(ref: str) -> ImageRef:
    """Normalize `[host[:port]/]path[:tag][@digest]` the way the container runtime does."""
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise ValueError(f"invalid digest in image reference {ref!r}")
    first, slash, remainder = rest.partition("/")
    # The first component is a registry host if it has '.', ':' or is 'localhost'.
    if slash and ("." in first or ":" in first or first == "localhost"):
        hostport, name = first, remainder
    else:
        hostport, name = DEFAULT_REGISTRY, rest
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise ValueError(f"invalid tag in image reference {ref!r}")
    if not name or not all(_PATH_COMPONENT_RE.match(c) for c in name.split("/")):
        raise ValueError(f"invalid repository path in image reference {ref!r}")
    host, _, port = hostport.partition(":")
    if host == "index.docker.io":
        host = DEFAULT_REGISTRY
    if host == DEFAULT_REGISTRY and "/" not in name:
        name = f"library/{name}"
    if not tag and not digest:
        tag = "latest"
    return ImageRef(host=host, port=port, path=f"/{name}", tag=tag, digest=digest)


def matches(key: Key, image: ImageRef) -> bool:
    """Does the kubelet offer credentials stored under `key` when pulling `image`?"""
    if _glob_match(key, image):
        return True
    # The kubelet's fallback: an index.docker.io key serves images on docker.io.
    return (
        key.host == DEFAULT_REGISTRY_KEY_HOST
        and not key.port
        and not key.path
        and image.host == DEFAULT_REGISTRY
        and not image.port
    )


def _glob_match(key: Key, image: ImageRef) -> bool:
    if key.port != image.port:
        return False
    key_labels, image_labels = key.host.split("."), image.host.split(".")
    if len(key_labels) != len(image_labels):
        return False
    if not (image.path == key.path or image.path.startswith(key.path + "/")):
        return False
    return all(fnmatch.fnmatchcase(i, k) for k, i in zip(key_labels, image_labels, strict=True))


def keys_for(servers: list[str], image: str) -> list[str]:
    """The servers whose credentials the kubelet would try for `image`, most specific first."""
    ref = parse_image(image)
    hits = [s for s in servers if matches(parse_key(s), ref)]
    # The kubelet sorts its index in reverse lexical order so longer, more specific keys win.
    return sorted(hits, key=lambda s: str(parse_key(s)), reverse=True)
