"""The kubelet's credential lookup, by the upstream tables.

Ported from k8s.io/kubernetes v1.37.2 pkg/credentialprovider/keyring_test.go (TestURLsMatch,
TestDockerKeyringForGlob, TestKeyringMiss, TestKeyringMissWithDockerHubCredentials,
TestKeyringHitWith{Unqualified,UnqualifiedLibrary,Qualified}DockerHub,
TestIsDefaultRegistryMatch, TestDockerKeyringLookup, TestIssue3797) and from Go 1.26's
path/filepath/match_test.go (matchTests) for the glob port. Credentials are reduced to the
entry they come from: which key serves an image, and in which order, is what is tested.
"""

from __future__ import annotations

import base64

import pytest

from tenant_registry.keyring import (
    BadPattern,
    BrokenPullSecret,
    Entry,
    Keyring,
    UnusableKey,
    config_key,
    go_match,
    is_default_registry_match,
    mismatch,
    pull_secret_servers,
    urls_match_str,
)

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"


# keyring_test.go TestURLsMatch
@pytest.mark.parametrize(
    ("glob", "target", "expected"),
    [
        ("*.kubernetes.io", "prefix.kubernetes.io", True),
        ("prefix.*.io", "prefix.kubernetes.io", True),
        ("prefix.kubernetes.*", "prefix.kubernetes.io", True),
        ("*-good.kubernetes.io", "prefix-good.kubernetes.io", True),
        ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", True),
        ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", True),
        ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", True),
        ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", True),
        ("*.kubernetes.io", "kubernetes.io", False),
        ("*.*.kubernetes.io", "prefix.kubernetes.io", False),
        ("*.*.kubernetes.io", "kubernetes.io", False),
        ("*kubernetes.io", "a.kubernetes.io", False),
        ("*kubernetes.io", "kubernetes.io", True),
        ("*.*.*.kubernetes.io", "a.b.c.kubernetes.io", True),
        ("kubernetes.io", "kubernetes.com", False),
        ("k*.io", "quay.io", False),
        ("*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", False),
        ("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", False),
        # The issue's case: a plain string prefix, not whole path segments.
        ("registry.io/team", "registry.io/team-x/app", True),
        ("registry.io/team/", "registry.io/team-x/app", False),
        ("registry.io/team/", "registry.io/team", False),
        # Case-sensitive hosts; an IPv6 key without a port is a '[...]' glob.
        ("Registry.io", "registry.io/app", False),
        ("[::1]", "[::1]/app", False),
        ("[::1]:5000", "[::1]:5000/app", True),
    ],
)
def test_urls_match(glob: str, target: str, expected: bool) -> None:
    assert urls_match_str(glob, target) is expected


def _keyring(*servers: str) -> Keyring:
    keyring = Keyring()
    keyring.add(servers, source="config")
    return keyring


# keyring_test.go TestDockerKeyringForGlob: the key's credentials serve target + "/foo/bar"
@pytest.mark.parametrize(
    ("glob", "target"),
    [
        ("https://hello.kubernetes.io", "hello.kubernetes.io"),
        ("https://*.docker.io", "prefix.docker.io"),
        ("https://prefix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.*", "prefix.docker.io"),
        ("https://*.docker.io/path", "prefix.docker.io/path"),
        ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
        ("https://prefix.docker.*/path", "prefix.docker.io/path"),
        ("https://*.docker.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
        ("https://*.docker.io/path:1111", "prefix.docker.io/path:1111"),
        ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
        ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
        ("https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111"),
        ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
        ("*.docker.io:1111", "prefix.docker.io:1111/path"),
    ],
)
def test_keyring_for_glob(glob: str, target: str) -> None:
    hits = _keyring(glob).lookup(target + "/foo/bar")
    assert [e.server for h in hits for e in h.entries][:1] == [glob]


# keyring_test.go TestKeyringMiss
@pytest.mark.parametrize(
    ("glob", "lookup"),
    [
        ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
        ("https://*.docker.com", "prefix.docker.io"),
        ("https://suffix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.c*", "prefix.docker.io"),
        ("https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111"),
        ("suffix.*.io", "prefix.docker.io"),
    ],
)
def test_keyring_miss(glob: str, lookup: str) -> None:
    assert _keyring(glob).lookup(lookup + "/foo/bar") == []


DOCKER_HUB = "https://index.docker.io/v1/"


def test_keyring_miss_with_docker_hub_credentials() -> None:
    assert _keyring(DOCKER_HUB).lookup("world.mesos.org/foo/bar") == []


@pytest.mark.parametrize(
    ("image", "fallback"),
    [
        ("google/docker-registry", True),  # TestKeyringHitWithUnqualifiedDockerHub
        ("jenkins", True),  # TestKeyringHitWithUnqualifiedLibraryDockerHub
        ("index.docker.io/v1//google/docker-registry", False),  # ...WithQualifiedDockerHub
        ("docker.io/library/nginx", True),  # what the kubelet really looks up for nginx
    ],
)
def test_keyring_hit_with_docker_hub(image: str, fallback: bool) -> None:
    hits = _keyring(DOCKER_HUB).lookup(image)
    assert [(h.key, h.fallback) for h in hits] == [("index.docker.io", fallback)]
    assert hits[0].entries == (Entry(DOCKER_HUB, "config"),)


# keyring_test.go TestIsDefaultRegistryMatch
@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("foo/bar", True),
        ("docker.io/foo/bar", True),
        ("index.docker.io/foo/bar", True),
        ("foo", True),
        ("", False),
        ("registry.tld/foo/bar", False),
        ("registry:5000/foo/bar", False),
        ("myhostdocker.io/foo/bar", False),
        ("localhost/foo", True),  # no '.' or ':': the kubelet takes it for Docker Hub
    ],
)
def test_is_default_registry_match(image: str, expected: bool) -> None:
    assert is_default_registry_match(image) is expected


# keyring_test.go TestDockerKeyringLookup: keys "bar.example.com/pong" (grace) and
# "bar.example.com" (ada)
@pytest.mark.parametrize(
    ("image", "keys"),
    [
        ("bar.example.com", ["bar.example.com"]),
        ("bar.example.com/pong", ["bar.example.com/pong", "bar.example.com"]),
        ("bar.example.com/ping", ["bar.example.com"]),
        ("bar.example.com/pongz", ["bar.example.com/pong", "bar.example.com"]),
        ("bar.example.com/pong/pang", ["bar.example.com/pong", "bar.example.com"]),
        ("example.com", []),
        ("foo.example.com", []),
    ],
)
def test_docker_keyring_lookup(image: str, keys: list[str]) -> None:
    keyring = _keyring("bar.example.com/pong", "bar.example.com")
    assert [h.key for h in keyring.lookup(image)] == keys


# keyring_test.go TestIssue3797: a key with a scheme and /v1/ serves every path of the host
@pytest.mark.parametrize("image", ["quay.io", "quay.io/foo", "quay.io/foo/bar"])
def test_issue_3797(image: str) -> None:
    assert [h.key for h in _keyring("https://quay.io/v1/").lookup(image)] == ["quay.io"]


@pytest.mark.parametrize(
    ("server", "key"),
    [
        ("registry.example", "registry.example"),
        ("https://registry.example/v2/", "registry.example"),
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("http://r.example:8080/team/app/", "r.example:8080/team/app/"),  # the / stays
        ("r.example/v1", "r.example/v1"),  # only /v1/ with the slash is dropped
        ("r.example/v1/team", "r.example/team"),
        ("user:pw@r.example/team?x=1#y", "r.example/team"),  # user info, query, fragment go
        ("r.example/%41", "r.example/A"),  # the path is unescaped
        ("HTTPS://r.example", "HTTPS://r.example"),  # the scheme test is case-sensitive
    ],
)
def test_config_key(server: str, key: str) -> None:
    assert config_key(server) == key


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("bad key", 'invalid character " " in host name'),
        ("r.example:port", 'invalid port ":port" after host'),
        ("r.example:80:80", 'invalid port ":80:80" after host'),
        ("r.example/%zz", 'invalid URL escape "%zz"'),
        ("[::1", "missing ']' in host"),
        ("r.example/\x00", "net/url: invalid control character in URL"),
    ],
)
def test_config_keys_the_kubelet_ignores(server: str, message: str) -> None:
    with pytest.raises(UnusableKey) as e:
        config_key(server)
    assert str(e.value) == message
    keyring = _keyring(server)
    assert keyring.creds == {} and [i.entry.server for i in keyring.ignored] == [server]


def test_most_specific_first_is_reverse_lexical_order() -> None:
    keyring = _keyring("r.example", "r.example/team", "*.example", "r.example/team/app")
    assert [h.key for h in keyring.lookup("r.example/team/app")] == [
        "r.example/team/app",
        "r.example/team",
        "r.example",
        "*.example",
    ]


def test_entries_of_one_key_keep_the_order_of_the_secrets() -> None:
    keyring = Keyring()
    keyring.add(["r.example"], source="first")
    keyring.add(["https://r.example/v2/", "r.example/team"], source="second")
    hits = keyring.lookup("r.example/team/app")
    assert [(h.key, [e.source for e in h.entries]) for h in hits] == [
        ("r.example/team", ["second"]),
        ("r.example", ["first", "second"]),
    ]


def test_docker_hub_fallback_only_when_nothing_else_matches() -> None:
    keyring = _keyring(DOCKER_HUB, "*.io")
    assert [(h.key, h.fallback) for h in keyring.lookup("docker.io/library/nginx")] == [
        ("*.io", False)
    ]
    explanation = keyring.explain("docker.io/library/nginx")
    miss = next(m for m in explanation.misses if m.key == "index.docker.io")
    assert "applies only when no key matches, but *.io did" in miss.reason


def test_a_match_relying_on_the_plain_prefix_says_so() -> None:
    explanation = _keyring("registry.io/team", "registry.io").explain("registry.io/team-x/app")
    first, second = explanation.hits
    assert first.key == "registry.io/team"
    assert first.quirks == (
        "the kubelet compares paths as plain strings: /team is a prefix of /team-x/app "
        "although /team-x/app is not under /team/",
    )
    assert second.quirks == ()


def test_a_longer_path_tried_later_says_the_order_is_only_lexical() -> None:
    keyring = _keyring("*.example.com/team", "registry.example.com")
    first, second = keyring.explain("registry.example.com/team/app").hits
    assert (first.key, first.quirks) == ("registry.example.com", ())
    assert second.quirks == (
        "tried after registry.example.com, whose path is shorter: the kubelet orders keys in "
        "reverse lexical order, not by how specific they are",
    )


def test_the_fallback_to_a_host_that_is_not_docker_hub_says_so() -> None:
    (hit,) = _keyring(DOCKER_HUB).explain("localhost/app").hits
    assert hit.fallback and "although the image is on localhost, not Docker Hub" in hit.quirks[0]


@pytest.mark.parametrize(
    ("key", "repository", "reason"),
    [
        ("r.example", "r.example:5000/app", "port (none) is not the image's 5000"),
        (
            "*.example",
            "a.b.example/app",
            "the key's host has 2 dot-separated labels, the image's 3",
        ),
        (
            "r.example/team",
            "r.example/other",
            "its path /team is not a prefix of the image's /other",
        ),
        ("r.example/team/", "r.example/team", "the key's trailing '/' leaves out the repository"),
        ("r.example/v1", "r.example/app", "only /v1/ with a trailing '/' counts as no path"),
        ("R.example", "r.example/app", "the kubelet compares host names case-sensitively"),
        ("[::1]", "[::1]/app", "an IPv6 address without a port is read as a '[...]' glob"),
        # "r.example/%25zz" is filed as r.example/%zz, which cannot be read again
        (config_key("r.example/%25zz"), "r.example/app", "the kubelet cannot re-read the key"),
        ("q.example", "r.example/app", "its host label 'q' does not match 'r'"),
    ],
)
def test_why_a_key_does_not_match(key: str, repository: str, reason: str) -> None:
    assert not urls_match_str(key, repository)
    assert reason in mismatch(key, repository)


# Go 1.26 path/filepath/match_test.go matchTests: (pattern, name, match, bad pattern)
@pytest.mark.parametrize(
    ("pattern", "name", "match", "bad"),
    [
        ("abc", "abc", True, False),
        ("*", "abc", True, False),
        ("*c", "abc", True, False),
        ("a*", "a", True, False),
        ("a*", "abc", True, False),
        ("a*", "ab/c", False, False),
        ("a*/b", "abc/b", True, False),
        ("a*/b", "a/c/b", False, False),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", True, False),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True, False),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False, False),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False, False),
        ("a*b?c*x", "abxbbxdbxebxczzx", True, False),
        ("a*b?c*x", "abxbbxdbxebxczzy", False, False),
        ("ab[c]", "abc", True, False),
        ("ab[b-d]", "abc", True, False),
        ("ab[e-g]", "abc", False, False),
        ("ab[^c]", "abc", False, False),
        ("ab[^b-d]", "abc", False, False),
        ("ab[^e-g]", "abc", True, False),
        ("a\\*b", "a*b", True, False),
        ("a\\*b", "ab", False, False),
        ("a?b", "a☺b", True, False),
        ("a[^a]b", "a☺b", True, False),
        ("a???b", "a☺b", False, False),
        ("a[^a][^a][^a]b", "a☺b", False, False),
        ("[a-ζ]*", "α", True, False),  # noqa: RUF001 (Go's own table)
        ("*[a-ζ]", "A", False, False),
        ("a?b", "a/b", False, False),
        ("a*b", "a/b", False, False),
        ("[\\]a]", "]", True, False),
        ("[\\-]", "-", True, False),
        ("[x\\-]", "x", True, False),
        ("[x\\-]", "-", True, False),
        ("[x\\-]", "z", False, False),
        ("[\\-x]", "x", True, False),
        ("[\\-x]", "-", True, False),
        ("[\\-x]", "a", False, False),
        ("[]a]", "]", False, True),
        ("[-]", "-", False, True),
        ("[x-]", "x", False, True),
        ("[x-]", "-", False, True),
        ("[x-]", "z", False, True),
        ("[-x]", "x", False, True),
        ("[-x]", "-", False, True),
        ("[-x]", "a", False, True),
        ("\\", "a", False, True),
        ("[a-b-c]", "a", False, True),
        ("[", "a", False, True),
        ("[^", "a", False, True),
        ("[^bc", "a", False, True),
        ("a[", "a", False, True),
        ("a[", "ab", False, True),
        ("a[", "x", False, True),
        ("a/b[", "x", False, True),
        ("*x", "xxx", True, False),
    ],
)
def test_go_match(pattern: str, name: str, match: bool, bad: bool) -> None:
    if bad:
        with pytest.raises(BadPattern):
            go_match(pattern.encode(), name.encode())
        return
    assert go_match(pattern.encode(), name.encode()) is match


def _auths(auth: str) -> str:
    return '{"auths": {"r.io": {"auth": "' + auth + '"}}}'


def _data(doc: str, key: str = ".dockerconfigjson") -> dict[str, str]:
    return {key: base64.b64encode(doc.encode()).decode()}


AUTH = base64.b64encode(b"u:p").decode()


# pkg/credentialprovider/secrets: which Secrets count, and what breaks a Pod's pulls
@pytest.mark.parametrize(
    ("type_", "data", "servers"),
    [
        (DOCKERCONFIGJSON, _data(_auths(AUTH)), ["r.io"]),
        (
            DOCKERCONFIGJSON,
            _data('{"auths": {"a.io": {}, "b.io": {"username": "u"}}}'),
            ["a.io", "b.io"],
        ),
        (DOCKERCONFIGJSON, _data('{"Auths": {"r.io": {}}}'), ["r.io"]),  # Go: fields ignore case
        (DOCKERCONFIGJSON, _data('{"auths": null}'), []),
        (DOCKERCONFIGJSON, _data("{}"), []),
        (
            DOCKERCONFIGJSON,
            _data(_auths(AUTH.rstrip("="))),
            ["r.io"],
        ),
        ("kubernetes.io/dockercfg", _data('{"r.io": {}}', ".dockercfg"), ["r.io"]),
        ("Opaque", _data('{"auths": {"r.io": {}}}'), None),  # only the two types count
        (DOCKERCONFIGJSON, {}, None),
        (DOCKERCONFIGJSON, {".dockerconfigjson": ""}, None),
        (DOCKERCONFIGJSON, _data('{"r.io": {}}', ".dockercfg"), None),  # key of the other type
    ],
)
def test_pull_secret_servers(type_: str, data: dict[str, str], servers: list[str] | None) -> None:
    assert pull_secret_servers(type_, data) == servers


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "cannot unmarshal array"),
        ('{"auths": []}', "cannot unmarshal array"),
        ('{"auths": {"r.io": "x"}}', "cannot unmarshal string"),
        ('{"auths": {"r.io": {"username": 1}}}', "cannot unmarshal number"),
        ('{"auths": {"r.io": {"auth": "bad!"}}}', "not valid base64"),
        (
            _auths(base64.b64encode(b"nocolon").decode()),
            "base64(username:password)",
        ),
        ('{"auths": {}, "HttpHeaders": {"X": 1}}', "cannot unmarshal number"),
        ('{"auths": {"r.io": {"auth": NaN}}}', "not valid JSON"),
    ],
)
def test_pull_secrets_the_kubelet_cannot_decode(doc: str, message: str) -> None:
    with pytest.raises(BrokenPullSecret) as e:
        pull_secret_servers(DOCKERCONFIGJSON, _data(doc))
    assert message in str(e.value)
    assert "u:p" not in str(e.value)
