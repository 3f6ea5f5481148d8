"""Image references, parsed and normalised exactly as the kubelet does.

A port of github.com/distribution/reference v0.6.0 (the version Kubernetes v1.37 pins;
reference.go, normalize.go, regexp.go) and of go-digest v1.0.0's validation, which together
decide how the kubelet reads a container's `image`: `parse_image_name` is the kubelet's
`parsers.ParseImageName` (pkg/util/parsers), whose repository name is what the credential
keyring looks up (keyring.py). Errors carry the upstream messages word for word.

Normalisation (`parse_normalized_named`): no host -> `docker.io`; a one-part path on
docker.io -> `library/`; `index.docker.io` -> `docker.io`; the first component is a host when
it holds a `.` or `:`, is `localhost`, or has an upper-case letter; the repository path must be
lower case; no tag and no digest -> tag `latest` (only in `parse_image_name`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# The upstream error values (reference.go, go-digest's digest.go).
ERR_REFERENCE_INVALID_FORMAT = "invalid reference format"
ERR_TAG_INVALID_FORMAT = "invalid tag format"
ERR_DIGEST_INVALID_FORMAT = "invalid digest format"
ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
ERR_NAME_EMPTY = "repository name must have at least one component"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
ERR_NAME_NOT_CANONICAL = "repository name must be canonical"
ERR_CHECKSUM_INVALID_FORMAT = "invalid checksum digest format"
ERR_CHECKSUM_INVALID_LENGTH = "invalid checksum digest length"
ERR_CHECKSUM_UNSUPPORTED = "unsupported digest algorithm"


class InvalidReference(ValueError):
    """An image reference the kubelet cannot parse; `str()` is the upstream error text."""


# regexp.go, verbatim. Go's RE2 `$` is the end of the text (Python's `\Z`) and its `\w` is
# ASCII only (re.ASCII); `[[:xdigit:]]` is spelled out.
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_LOCALHOST = "localhost"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
_IDENTIFIER = r"([a-f0-9]{64})"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + rf"(?:\.{_DOMAIN_NAME_COMPONENT})*"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + rf"(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_REMOTE_NAME = _PATH_COMPONENT + rf"(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?" + _REMOTE_NAME


def _anchored(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"^{pattern}\Z", re.ASCII)


_REFERENCE_RE = _anchored(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_ANCHORED_NAME_RE = _anchored(rf"(?:({_DOMAIN_AND_PORT})/)?({_REMOTE_NAME})")
_ANCHORED_TAG_RE = _anchored(_TAG)
_ANCHORED_DIGEST_RE = _anchored(_DIGEST)
_ANCHORED_IDENTIFIER_RE = _anchored(_IDENTIFIER)
# go-digest
_GO_DIGEST_RE = _anchored(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_ALGORITHM_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def _go_lower(s: str) -> str:
    """Go's strings.ToLower, which maps each rune to one rune (Python's str.lower() turns
    U+0130 into two)."""
    return "".join("i" if c == "\u0130" else (c.lower() if len(c.lower()) == 1 else c) for c in s)


def go_quote(s: str) -> str:
    """Go's %q for the plain strings of error messages."""
    short = {
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
    }
    out = []
    for c in s:
        if c in ('"', "\\"):
            out.append("\\" + c)
        elif c in short:
            out.append(short[c])
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


@dataclass(frozen=True)
class Reference:
    """A parsed reference. `domain` is "" when there is none (only from `parse`)."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """The repository name (`Named.Name()`): what the kubelet's keyring looks up."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        if not self.path:
            return self.digest  # a bare digest (`parse_any_reference`)
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"

    @property
    def familiar_name(self) -> str:
        """The short form docker shows: docker.io and library/ dropped (`FamiliarName`)."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        return rest if self.path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in rest else self.path

    @property
    def familiar(self) -> str:
        """`FamiliarString`."""
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.familiar_name}{tag}{digest}"


def validate_digest(s: str) -> None:
    """go-digest's `Digest.Validate` with sha256, sha384 and sha512 available (the kubelet
    links all three)."""
    i = s.find(":")
    if i <= 0 or i + 1 == len(s):
        raise InvalidReference(ERR_CHECKSUM_INVALID_FORMAT)
    algorithm, encoded = s[:i], s[i + 1 :]
    if algorithm not in _ALGORITHM_HEX_LENGTHS:
        if not _GO_DIGEST_RE.match(s):
            raise InvalidReference(ERR_CHECKSUM_INVALID_FORMAT)
        raise InvalidReference(ERR_CHECKSUM_UNSUPPORTED)
    if len(encoded) != _ALGORITHM_HEX_LENGTHS[algorithm]:
        raise InvalidReference(ERR_CHECKSUM_INVALID_LENGTH)
    if not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidReference(ERR_CHECKSUM_INVALID_FORMAT)


def parse(s: str) -> Reference:
    """`reference.Parse`: the reference as written, nothing normalised."""
    m = _REFERENCE_RE.match(s)
    if m is None:
        if s == "":
            raise InvalidReference(ERR_NAME_EMPTY)
        if _REFERENCE_RE.match(_go_lower(s)):
            raise InvalidReference(ERR_NAME_CONTAINS_UPPERCASE)
        raise InvalidReference(ERR_REFERENCE_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2) or "", m.group(3) or ""
    n = _ANCHORED_NAME_RE.match(name)
    domain, path = (n.group(1) or "", n.group(2)) if n else ("", name)
    if len(path.encode()) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(ERR_NAME_TOO_LONG)
    if digest:
        validate_digest(digest)
    return Reference(domain, path, tag, digest)


def split_docker_domain(name: str) -> tuple[str, str]:
    """`splitDockerDomain`: the registry host and the remote name, docker.io filled in."""
    maybe_domain, slash, maybe_remote = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif (
        maybe_domain == _LOCALHOST
        or "." in maybe_domain
        or ":" in maybe_domain
        or _go_lower(maybe_domain) != maybe_domain  # an upper-case letter: a host
    ):
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse_normalized_named(s: str) -> Reference:
    """`reference.ParseNormalizedNamed`: what `docker pull s` and the kubelet resolve."""
    if _ANCHORED_IDENTIFIER_RE.match(s):
        raise InvalidReference(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = split_docker_domain(s)
    tag_sep = remainder.find(":")
    remote = remainder[:tag_sep] if tag_sep > -1 else remainder
    if _go_lower(remote) != remote:
        raise InvalidReference(
            f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    return parse(f"{domain}/{remainder}")


def parse_named(s: str) -> Reference:
    """`reference.ParseNamed`: only the canonical, fully qualified form is accepted."""
    named = parse_normalized_named(s)
    if str(named) != s:
        raise InvalidReference(ERR_NAME_NOT_CANONICAL)
    return named


def with_name(name: str) -> Reference:
    """`reference.WithName`: a repository name, no tag or digest."""
    m = _ANCHORED_NAME_RE.match(name)
    if m is None:
        raise InvalidReference(ERR_REFERENCE_INVALID_FORMAT)
    if len(m.group(2)) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(ERR_NAME_TOO_LONG)
    return Reference(m.group(1) or "", m.group(2))


def with_tag(ref: Reference, tag: str) -> Reference:
    if not _ANCHORED_TAG_RE.match(tag):
        raise InvalidReference(ERR_TAG_INVALID_FORMAT)
    return Reference(ref.domain, ref.path, tag, ref.digest)


def with_digest(ref: Reference, digest: str) -> Reference:
    if not _ANCHORED_DIGEST_RE.match(digest):
        raise InvalidReference(ERR_DIGEST_INVALID_FORMAT)
    return Reference(ref.domain, ref.path, ref.tag, digest)


def parse_docker_ref(s: str) -> Reference:
    """`reference.ParseDockerRef`: normalised, `latest` when untagged, and a digest wins
    over a tag (containerd's and the CRI's canonical form)."""
    named = parse_normalized_named(s)
    if named.tag and named.digest:
        return with_digest(with_name(named.name), named.digest)
    if not named.tag and not named.digest:
        return with_tag(named, DEFAULT_TAG)
    return named


def parse_any_reference(s: str) -> Reference:
    """`reference.ParseAnyReference`: also a bare digest or 64-hex identifier, returned
    as a Reference with no name (`domain` and `path` empty)."""
    if _ANCHORED_IDENTIFIER_RE.match(s):
        return Reference("", "", digest=f"sha256:{s}")
    try:
        validate_digest(s)
    except InvalidReference:
        return parse_normalized_named(s)
    return Reference("", "", digest=s)


@dataclass(frozen=True)
class ImageName:
    """The kubelet's reading of a container's `image` (`parsers.ParseImageName`)."""

    reference: Reference
    repository: str  # what the credential keyring looks up: docker.io/library/nginx
    tag: str  # "latest" when neither tag nor digest is given
    digest: str


def parse_image_name(image: str) -> ImageName:
    """The kubelet's `parsers.ParseImageName`; its error is the kubelet's message."""
    try:
        named = parse_normalized_named(image)
    except InvalidReference as e:
        raise InvalidReference(f"couldn't parse image name {go_quote(image)}: {e}") from None
    tag = named.tag or ("" if named.digest else DEFAULT_TAG)
    return ImageName(named, named.name, tag, named.digest)
