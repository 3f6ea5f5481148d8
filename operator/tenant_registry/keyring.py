"""The kubelet's credential lookup: which config.json keys serve an image, in what order.

A port of k8s.io/kubernetes v1.37 pkg/credentialprovider/keyring.go (`BasicDockerKeyring.Add`
and `Lookup`, `ParseSchemelessURL`, `SplitURL`, `URLsMatch(Str)`, `isDefaultRegistryMatch`)
and of the Go standard library it stands on (`net/url.Parse` of `https://` + key as Go 1.26
does it, `net.SplitHostPort`, `path/filepath.Match`), quirks included:

- A key is read as a URL: scheme, user info, query and fragment are dropped; a path starting
  with `/v1/` or `/v2/` loses those three characters (`/v1` without the slash does not).
  An entry Go's URL parser rejects is ignored (the kubelet logs it and carries on).
- The keyring looks up the image's repository name (`docker.io/library/nginx`, never the tag).
  A key matches when the ports are equal (no port is not 443), the hosts have as many
  dot-separated labels, every label of the key matches as a `filepath.Match` glob (`*`, `?`,
  `[...]`; case-sensitive), and the key's path is a plain string prefix of the image's
  path: `registry.io/team` also serves `registry.io/team-x/app`. A trailing `/` keeps the
  match to whole segments, and then no longer serves `registry.io/team` itself.
- Every matching key is tried, most specific first, which is reverse lexical order of the
  keys (so `*.io` comes before `docker.io`). Credentials under one key come in the order of
  the pull secrets; within one Secret in Go's random map order.
- Only when no key matched: an image the kubelet takes for Docker Hub (one path component, a
  first component `docker.io`/`index.docker.io`, or one with no `.` or `:`, such as
  `localhost`) gets the credentials of the exact key `index.docker.io` (which is what
  `https://index.docker.io/v1/` becomes). Docker Hub images are named `docker.io/...`, so
  three-label `index.docker.io` keys never match them directly.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenant_registry.imagerefs import go_quote

DEFAULT_REGISTRY_HOST = "index.docker.io"
GLOB_CHARS = "*?[\\"


class UnusableKey(ValueError):
    """Go's url.Parse rejects this key: the kubelet ignores the entry."""


# -- Go's net/url.Parse, for the `scheme://authority/path?query#fragment` the keyring makes --

_HOST_SAFE = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!\"$&'()*+,-.:;<=>[]_~"
)  # encoding_table.go: the bytes encodeHost (and encodeZone) leave unescaped
_USERINFO_SAFE = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@"
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_HOST, _ZONE, _OTHER = "host", "zone", "other"


def _q(b: bytes) -> str:
    return go_quote(b.decode("utf-8", "surrogateescape"))


def _unescape(s: bytes, mode: str) -> bytes:
    """net/url's `unescape`: validate `%XX` escapes (and host bytes), then decode them."""
    i = 0
    while i < len(s):
        c = s[i]
        if c == ord("%"):
            if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                raise UnusableKey(f"invalid URL escape {_q(s[i : i + 3])}")
            # In a host, %-encoding may only stand for non-ASCII bytes (RFC 3986) or %25.
            if mode == _HOST and int(chr(s[i + 1]), 16) < 8 and s[i : i + 3] != b"%25":
                raise UnusableKey(f"invalid URL escape {_q(s[i : i + 3])}")
            if mode == _ZONE:
                v = int(s[i + 1 : i + 3], 16)
                if s[i : i + 3] != b"%25" and v != ord(" ") and v not in _HOST_SAFE:
                    raise UnusableKey(f"invalid URL escape {_q(s[i : i + 3])}")
            i += 3
            continue
        if mode in (_HOST, _ZONE) and c < 0x80 and c not in _HOST_SAFE:
            raise UnusableKey(f"invalid character {_q(bytes([c]))} in host name")
        i += 1
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == ord("%"):
            out.append(int(s[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(s[i])
            i += 1
    return bytes(out)


def _valid_optional_port(port: bytes) -> bool:
    return port == b"" or (port[:1] == b":" and all(0x30 <= b <= 0x39 for b in port[1:]))


def _parse_host(scheme: str, host: bytes) -> bytes:
    open_bracket = host.rfind(b"[")
    if open_bracket > 0:
        raise UnusableKey("invalid IP-literal")
    if open_bracket == 0:
        close_bracket = host.rfind(b"]")
        if close_bracket < 0:
            raise UnusableKey("missing ']' in host")
        colon_port = host[close_bracket + 1 :]
        if not _valid_optional_port(colon_port):
            raise UnusableKey(f"invalid port {_q(colon_port)} after host")
        colon_port = _unescape(colon_port, _HOST)
        hostname = host[1:close_bracket]
        zone = hostname.find(b"%25")
        if zone >= 0:
            unescaped = _unescape(hostname[:zone], _HOST) + _unescape(hostname[zone:], _ZONE)
        else:
            unescaped = _unescape(hostname, _HOST)
        # Only a valid IPv6 address may be enclosed in brackets (netip.ParseAddr).
        try:
            addr = ipaddress.ip_address(unescaped.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise UnusableKey(f"invalid host: {_q(unescaped)} is not an IP address") from None
        if addr.version == 4:
            raise UnusableKey("invalid IP-literal")
        return b"[" + unescaped + b"]" + colon_port
    i = host.find(b":")
    if i != -1:
        last = host.rfind(b":")
        # Go 1.26 (urlstrictcolons): more than one colon is refused for http(s) URLs.
        if last != i and scheme not in ("http", "https"):
            i = last
        if not _valid_optional_port(host[i:]):
            raise UnusableKey(f"invalid port {_q(host[i:])} after host")
    return _unescape(host, _HOST)


def _parse_authority(scheme: str, authority: bytes) -> bytes:
    i = authority.rfind(b"@")
    host = _parse_host(scheme, authority if i < 0 else authority[i + 1 :])
    if i >= 0:
        userinfo = authority[:i]
        if not all(b in _USERINFO_SAFE for b in userinfo):
            raise UnusableKey("net/url: invalid userinfo")
        for part in userinfo.split(b":", 1):
            _unescape(part, _OTHER)
    return host


def _get_scheme(raw: bytes) -> tuple[str, bytes]:
    for i, c in enumerate(raw):
        if 0x61 <= c <= 0x7A or 0x41 <= c <= 0x5A:
            continue
        if 0x30 <= c <= 0x39 or c in b"+-.":
            if i == 0:
                return "", raw
            continue
        if c == ord(":"):
            if i == 0:
                raise UnusableKey("missing protocol scheme")
            return raw[:i].decode("ascii").lower(), raw[i + 1 :]
        return "", raw
    return "", raw


@dataclass(frozen=True)
class URL:
    """What the keyring uses of a Go *url.URL: its Host (with port) and Path, unescaped."""

    host: bytes
    path: bytes


def go_url_parse(raw: str) -> URL:
    """Go's `url.Parse`, as far as Host and Path go; raises UnusableKey where Go errs."""
    data = raw.encode("utf-8", "surrogateescape")
    data, _, fragment = data.partition(b"#")
    if any(b < 0x20 or b == 0x7F for b in data):
        raise UnusableKey("net/url: invalid control character in URL")
    if data == b"*":
        return URL(b"", b"*")
    scheme, rest = _get_scheme(data)
    rest = rest.partition(b"?")[0]  # the query (the keyring never looks at it)
    if not rest.startswith(b"/"):
        if scheme:
            return URL(b"", b"")  # opaque: no host, no path
        if b":" in rest.partition(b"/")[0]:
            raise UnusableKey("first path segment in URL cannot contain colon")
    host = b""
    if (scheme or not rest.startswith(b"///")) and rest.startswith(b"//"):
        authority, slash, path = rest[2:].partition(b"/")
        host, rest = _parse_authority(scheme, authority), slash + path
    path = _unescape(rest, _OTHER)
    if fragment:
        _unescape(fragment, _OTHER)
    return URL(host, path)


def parse_schemeless_url(schemeless: str) -> URL:
    """`ParseSchemelessURL`: url.Parse of "https://" + the string."""
    return go_url_parse("https://" + schemeless)


# -- net.SplitHostPort and path/filepath.Match -------------------------------------------


def split_host_port(hostport: bytes) -> tuple[bytes, bytes] | None:
    """Go's `net.SplitHostPort`; None where it returns an error."""
    i = hostport.rfind(b":")
    if i < 0:
        return None
    j = k = 0
    if hostport[:1] == b"[":
        end = hostport.find(b"]")
        if end < 0 or end + 1 != i:
            return None
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if b":" in host:
            return None
    if b"[" in hostport[j:] or b"]" in hostport[k:]:
        return None
    return host, hostport[i + 1 :]


def split_url(url: URL) -> tuple[list[bytes], bytes]:
    """`SplitURL`: the host's dot-separated labels and the port ("" if none parses)."""
    split = split_host_port(url.host)
    host, port = split if split is not None else (url.host, b"")
    return host.split(b"."), port


class BadPattern(ValueError):
    """filepath.ErrBadPattern: "syntax error in pattern"."""


_RUNE_ERROR = 0xFFFD


def _decode_rune(s: bytes) -> tuple[int, int]:
    """utf8.DecodeRune: (rune, size); (RuneError, 1) for invalid or short input."""
    b0 = s[0]
    if b0 < 0x80:
        return b0, 1
    n = 2 if 0xC2 <= b0 <= 0xDF else 3 if 0xE0 <= b0 <= 0xEF else 4 if 0xF0 <= b0 <= 0xF4 else 0
    if n == 0 or len(s) < n:
        return _RUNE_ERROR, 1
    try:
        return ord(s[:n].decode("utf-8")), n
    except UnicodeDecodeError:
        return _RUNE_ERROR, 1


def _scan_chunk(pattern: bytes) -> tuple[bool, bytes, bytes]:
    star = False
    while pattern[:1] == b"*":
        pattern, star = pattern[1:], True
    in_range = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == ord("\\"):
            if i + 1 < len(pattern):
                i += 1
        elif c == ord("["):
            in_range = True
        elif c == ord("]"):
            in_range = False
        elif c == ord("*") and not in_range:
            return star, pattern[:i], pattern[i:]
        i += 1
    return star, pattern, b""


def _get_esc(chunk: bytes) -> tuple[int, bytes]:
    if not chunk or chunk[0] in b"-]":
        raise BadPattern
    if chunk[0] == ord("\\"):
        chunk = chunk[1:]
        if not chunk:
            raise BadPattern
    r, n = _decode_rune(chunk)
    if r == _RUNE_ERROR and n == 1:
        raise BadPattern
    if not chunk[n:]:
        raise BadPattern
    return r, chunk[n:]


def _match_chunk(chunk: bytes, s: bytes) -> bytes | None:
    """The rest of `s` after `chunk` matched its start, else None; BadPattern if malformed
    (checked to the chunk's end even after a mismatch, as Go does)."""
    failed = False
    while chunk:
        failed = failed or not s
        c = chunk[0]
        if c == ord("["):
            r = 0
            if not failed:
                r, n = _decode_rune(s)
                s = s[n:]
            chunk = chunk[1:]
            negated = chunk[:1] == b"^"
            if negated:
                chunk = chunk[1:]
            matched, ranges = False, 0
            while True:
                if chunk[:1] == b"]" and ranges > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[:1] == b"-":
                    hi, chunk = _get_esc(chunk[1:])
                matched = matched or lo <= r <= hi
                ranges += 1
            failed = failed or matched == negated
            continue
        if c == ord("?"):
            if not failed:
                failed = s[0] == ord("/")
                s = s[_decode_rune(s)[1] :]
            chunk = chunk[1:]
            continue
        if c == ord("\\"):
            chunk = chunk[1:]
            if not chunk:
                raise BadPattern
        if not failed:
            failed = chunk[0] != s[0]
            s = s[1:]
        chunk = chunk[1:]
    return None if failed else s


def go_match(pattern: bytes, name: bytes) -> bool:
    """Go's `path/filepath.Match` on Linux; raises BadPattern for a malformed pattern."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            return b"/" not in name  # a trailing * matches the rest unless it has a /
        rest = _match_chunk(chunk, name)
        if rest is not None and (not rest or pattern):
            name = rest
            continue
        if star:
            skipped = False
            i = 0
            while i < len(name) and name[i] != ord("/"):
                rest = _match_chunk(chunk, name[i + 1 :])
                if rest is not None and not (not pattern and rest):
                    name, skipped = rest, True
                    break
                i += 1
            if skipped:
                continue
        return False
    return not name


# -- the keyring -------------------------------------------------------------------------


def urls_match(glob: URL, target: URL) -> bool:
    """`URLsMatch` (a malformed glob counts as no match, as in `Lookup`)."""
    glob_parts, glob_port = split_url(glob)
    target_parts, target_port = split_url(target)
    if glob_port != target_port or len(glob_parts) != len(target_parts):
        return False
    if not target.path.startswith(glob.path):
        return False
    try:
        return all(go_match(g, t) for g, t in zip(glob_parts, target_parts, strict=True))
    except BadPattern:
        return False


def urls_match_str(glob: str, target: str) -> bool:
    """`URLsMatchStr`: both sides schemeless; either failing to parse is no match."""
    try:
        return urls_match(parse_schemeless_url(glob), parse_schemeless_url(target))
    except UnusableKey:
        return False


def config_key(server: str) -> str:
    """The index key `BasicDockerKeyring.Add` files a config.json entry under; UnusableKey
    when the kubelet ignores the entry."""
    value = server if server.startswith(("https://", "http://")) else "https://" + server
    parsed = go_url_parse(value)
    path = parsed.path
    # docker's convention: /v1/ and /v2/ are the registry itself.
    if path.startswith((b"/v2/", b"/v1/")):
        path = path[3:]
    key = parsed.host + path if path and path != b"/" else parsed.host
    return key.decode("utf-8", "surrogateescape")


def is_default_registry_match(image: str) -> bool:
    """`isDefaultRegistryMatch`: would the kubelet take this image for Docker Hub?"""
    first, slash, _ = image.partition("/")
    if not first:
        return False
    if not slash:
        return True
    if first in ("docker.io", "index.docker.io"):
        return True
    return "." not in first and ":" not in first


def _sort_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")  # Go sorts strings by their bytes


@dataclass(frozen=True)
class Entry:
    """One config.json entry: its key as written, and where it comes from."""

    server: str
    source: str = ""


@dataclass(frozen=True)
class Hit:
    """A key the kubelet tries, with its entries in the order it tries them."""

    key: str
    entries: tuple[Entry, ...]
    fallback: bool = False  # only through the Docker Hub fallback
    quirks: tuple[str, ...] = ()  # kubelet behaviour this match relies on
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Miss:
    key: str
    entries: tuple[Entry, ...]
    reason: str


@dataclass(frozen=True)
class Ignored:
    entry: Entry
    reason: str


@dataclass(frozen=True)
class Explanation:
    repository: str
    hits: tuple[Hit, ...]
    misses: tuple[Miss, ...]
    ignored: tuple[Ignored, ...]


@dataclass
class Keyring:
    """A `BasicDockerKeyring`: config.json entries indexed by the key the kubelet reads."""

    creds: dict[str, list[Entry]] = field(default_factory=dict)
    ignored: list[Ignored] = field(default_factory=list)

    def add(self, servers: Iterable[str], source: str = "") -> None:
        """`Add` one config (one pull secret's `auths`): entries keep the order given."""
        for server in servers:
            entry = Entry(server, source)
            try:
                key = config_key(server)
            except UnusableKey as e:
                self.ignored.append(Ignored(entry, f"Go's URL parser rejects it ({e})"))
                continue
            self.creds.setdefault(key, []).append(entry)

    @property
    def index(self) -> list[str]:
        """The keys, most specific first: reverse lexical order, as the kubelet sorts."""
        return sorted(self.creds, key=_sort_key, reverse=True)

    def lookup(self, repository: str) -> list[Hit]:
        """`Lookup`: the keys whose credentials the kubelet offers, in order."""
        hits = [Hit(k, tuple(self.creds[k])) for k in self.index if urls_match_str(k, repository)]
        if hits:
            return hits
        if is_default_registry_match(repository) and DEFAULT_REGISTRY_HOST in self.creds:
            return [Hit(DEFAULT_REGISTRY_HOST, tuple(self.creds[DEFAULT_REGISTRY_HOST]), True)]
        return []

    def explain(self, repository: str) -> Explanation:
        """`lookup`, with why each key matched or not and the quirks a match relies on."""
        matched = {h.key: h for h in self.lookup(repository)}
        hits: list[Hit] = []
        misses: list[Miss] = []
        for key in self.index:
            entries = tuple(self.creds[key])
            hit = matched.get(key)
            if hit is None:
                reason = mismatch(key, repository)
                if key == DEFAULT_REGISTRY_HOST and is_default_registry_match(repository):
                    reason += (
                        f"; and the kubelet's Docker Hub fallback to {DEFAULT_REGISTRY_HOST} "
                        f"applies only when no key matches, but {', '.join(matched)} did"
                    )
                misses.append(Miss(key, entries, reason))
                continue
            if hit.fallback:
                quirks, hit_notes = [_fallback_quirk(repository)], []
            else:
                quirks, hit_notes = match_quirks(key, repository), match_notes(key, repository)
                quirks += _order_quirks(key, [h.key for h in hits])
            if len({e.source for e in entries}) < len(entries):
                hit_notes.append(
                    "several entries of one Secret read as this key: the kubelet tries them "
                    "in Go's random map order"
                )
            hits.append(
                Hit(key, entries, hit.fallback, quirks=tuple(quirks), notes=tuple(hit_notes))
            )
        return Explanation(repository, tuple(hits), tuple(misses), tuple(self.ignored))


def _key_path(key: str) -> bytes:
    try:
        return parse_schemeless_url(key).path
    except UnusableKey:
        return b""


def _order_quirks(key: str, earlier: list[str]) -> list[str]:
    """A key tried after one with a shorter path: "most specific first" is reverse lexical
    order, so a literal host beats a glob whatever their paths."""
    path = _key_path(key)
    before = [k for k in earlier if len(_key_path(k)) < len(path)]
    if not before:
        return []
    return [
        f"tried after {', '.join(before)}, whose path is shorter: the kubelet orders keys in "
        "reverse lexical order, not by how specific they are"
    ]


def _fallback_quirk(repository: str) -> str:
    first = repository.partition("/")[0]
    text = (
        f"the kubelet's Docker Hub fallback: no key matched, so the credentials filed under "
        f"the exact key {DEFAULT_REGISTRY_HOST} (what https://index.docker.io/v1/ becomes) "
        f"are sent"
    )
    if first not in ("docker.io", "index.docker.io"):
        text += f", although the image is on {first}, not Docker Hub (its host has no '.' or ':')"
    return text


def _path(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape") or "(none)"


def mismatch(key: str, repository: str) -> str:
    """Why `urls_match_str(key, repository)` is False, in the kubelet's terms."""
    try:
        glob = parse_schemeless_url(key)
    except UnusableKey as e:
        return f"the kubelet cannot re-read the key as a URL ({e})"
    try:
        target = parse_schemeless_url(repository)
    except UnusableKey as e:
        return f"the kubelet cannot read the repository as a URL ({e})"
    glob_parts, glob_port = split_url(glob)
    target_parts, target_port = split_url(target)
    if glob_port != target_port:
        return (
            f"port {_path(glob_port)} is not the image's {_path(target_port)}: "
            "ports must be equal (no port is not 443)"
        )
    if len(glob_parts) != len(target_parts):
        return (
            f"the key's host has {len(glob_parts)} dot-separated labels, the image's "
            f"{len(target_parts)}: a '*' stands for exactly one label"
        )
    if not target.path.startswith(glob.path):
        reason = f"its path {_path(glob.path)} is not a prefix of the image's {_path(target.path)}"
        if glob.path.endswith(b"/") and target.path == glob.path[:-1]:
            reason += " (the key's trailing '/' leaves out the repository itself)"
        elif glob.path in (b"/v1", b"/v2"):
            reason += f" (only {_path(glob.path)}/ with a trailing '/' counts as no path)"
        return reason
    for g, t in zip(glob_parts, target_parts, strict=True):
        gs, ts = g.decode("utf-8", "surrogateescape"), t.decode("utf-8", "surrogateescape")
        try:
            ok = go_match(g, t)
        except BadPattern:
            return f"its host label {gs!r} is a malformed pattern (filepath.Match fails)"
        if not ok:
            reason = f"its host label {gs!r} does not match {ts!r}"
            if gs.startswith("[") and glob_port == b"":
                reason += " (an IPv6 address without a port is read as a '[...]' glob)"
            elif gs != ts and gs.lower() == ts.lower():
                reason += " (the kubelet compares host names case-sensitively)"
            return reason
    return "no match"  # pragma: no cover - urls_match agreed otherwise


def match_quirks(key: str, repository: str) -> list[str]:
    """The kubelet quirks a match of `key` against `repository` relies on."""
    try:
        glob, target = parse_schemeless_url(key), parse_schemeless_url(repository)
    except UnusableKey:
        return []
    quirks = []
    gp, tp = glob.path, target.path
    if gp and not gp.endswith(b"/") and tp != gp and tp[len(gp) : len(gp) + 1] != b"/":
        quirks.append(
            f"the kubelet compares paths as plain strings: {_path(gp)} is a prefix of "
            f"{_path(tp)} although {_path(tp)} is not under {_path(gp)}/"
        )
    return quirks


def match_notes(key: str, repository: str) -> list[str]:
    """What else is worth knowing about a match (globs)."""
    try:
        glob, target = parse_schemeless_url(key), parse_schemeless_url(repository)
    except UnusableKey:
        return []
    notes = []
    for g, t in zip(split_url(glob)[0], split_url(target)[0], strict=True):
        gs = g.decode("utf-8", "surrogateescape")
        if any(c in gs for c in GLOB_CHARS):
            notes.append(f"host label {gs!r} is a glob matching {_path(t)!r}")
    return notes


# -- pull secrets, as the kubelet reads them (pkg/credentialprovider/secrets, config.go) ---

DOCKERCONFIGJSON = ("kubernetes.io/dockerconfigjson", ".dockerconfigjson")
DOCKERCFG = ("kubernetes.io/dockercfg", ".dockercfg")


class BrokenPullSecret(ValueError):
    """The kubelet cannot decode this pull secret: `MakeDockerKeyring` returns the error, so
    every image pull of the Pod fails, whatever the other pull secrets hold."""


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, in order, duplicates kept (as Go sees it)."""


def _kind(value: Any) -> str:
    if isinstance(value, _Object):
        return "object"
    if isinstance(value, bool):
        return "bool"
    return {str: "string", list: "array", int: "number", float: "number"}.get(type(value), "value")


def _expect_object(value: Any, what: str) -> _Object | None:
    if value is None or isinstance(value, _Object):
        return value
    raise BrokenPullSecret(f"json: cannot unmarshal {_kind(value)} into Go value of type {what}")


def _values(obj: _Object | None, name: str) -> list[Any]:
    """The values Go's encoding/json decodes into the struct field `name`: every key equal
    to it ignoring case, in order (a later one overwrites or, for a map, adds)."""
    return [v for k, v in obj or () if k.lower() == name.lower()]


def _string(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BrokenPullSecret(f"json: cannot unmarshal {_kind(value)} into Go value of {what}")
    return value


def _decode_auth(field: str) -> None:
    """decodeDockerConfigFieldAuth: base64 (padded if it ends in '=') of user:password."""
    raw = field.replace("\r", "").replace("\n", "")  # Go's base64 skips newlines
    try:
        if not field.strip().endswith("="):
            if len(raw) % 4 == 1 or "=" in raw:
                raise binascii.Error
            raw += "=" * (-len(raw) % 4)
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BrokenPullSecret("the auth field of an entry is not valid base64") from None
    if b":" not in decoded:
        raise BrokenPullSecret(
            "unable to parse auth field, must be formatted as base64(username:password)"
        )


def _servers(auths: list[Any]) -> list[str]:
    """A DockerConfig map decoded from one or more JSON objects: its keys, each entry
    checked as `DockerConfigEntry.UnmarshalJSON` does."""
    servers: dict[str, None] = {}
    for value in auths:
        obj = _expect_object(value, "type credentialprovider.DockerConfig")
        if obj is None:  # null resets the map
            servers.clear()
            continue
        for server, entry in obj:
            fields = _expect_object(entry, "type credentialprovider.dockerConfigEntryWithAuth")
            for name in ("username", "password", "email"):
                for v in _values(fields, name):
                    _string(v, "type string")
            auth = ""
            for v in _values(fields, "auth"):
                if v is not None:  # null leaves a Go string as it was
                    auth = _string(v, "type string")
            if auth:
                _decode_auth(auth)
            servers[server] = None
    return list(servers)


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def pull_secret_servers(secret_type: str, data: Mapping[str, str]) -> list[str] | None:
    """The config.json keys of one pull secret (its data as the API returns it, base64), as
    `secretsToTrackedDockerConfigs` reads it: None when the kubelet ignores the Secret (no
    dockerconfigjson or dockercfg Secret with that key, non-empty); BrokenPullSecret when
    it cannot decode it. Credential values are checked, never returned."""
    for kind, key in (DOCKERCONFIGJSON, DOCKERCFG):
        raw = data.get(key)
        if secret_type != kind or not raw:
            continue
        try:
            text = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise BrokenPullSecret(f"{key} is not base64") from None
        if not text:
            continue
        try:  # Go decodes invalid UTF-8 as U+FFFD
            doc = json.loads(
                text.decode("utf-8", "replace"),
                object_pairs_hook=_Object,
                parse_constant=_no_constant,  # NaN, Infinity: not JSON to Go
            )
        except ValueError as e:
            raise BrokenPullSecret(f"{key} is not valid JSON: {str(e).split(':')[0]}") from None
        if kind == DOCKERCFG[0]:
            return _servers([doc])
        top = _expect_object(doc, "type credentialprovider.DockerConfigJSON")
        for headers in _values(top, "HttpHeaders"):
            for _, v in _expect_object(headers, "type map[string]string") or ():
                _string(v, "type string")
        return _servers(_values(top, "auths"))
    return None
