"""Image references, by the upstream tables.

Ported from github.com/distribution/reference v0.6.0 (the version Kubernetes v1.37.2 pins):
reference_test.go (TestReferenceParse, TestWithNameFailure, TestDomainAndPath, TestWithTag,
TestWithDigest, TestParseNamed) and normalize_test.go (TestValidateReferenceName,
TestValidateRemoteName, TestParseRepositoryInfo, TestParseReferenceWithTagAndDigest,
TestParseAnyReference, TestNormalizedSplitHostname, TestParseDockerRef); and from
k8s.io/kubernetes v1.37.2 pkg/util/parsers/parsers_test.go (TestParseImageName). Where the
upstream test checks only that an error happens, the message here is the one the Go code
gives (checked against it).
"""

from __future__ import annotations

import pytest

from tenant_registry.imagerefs import (
    ERR_CHECKSUM_INVALID_LENGTH,
    ERR_CHECKSUM_UNSUPPORTED,
    ERR_NAME_CONTAINS_UPPERCASE,
    ERR_NAME_EMPTY,
    ERR_NAME_NOT_CANONICAL,
    ERR_NAME_TOO_LONG,
    ERR_REFERENCE_INVALID_FORMAT,
    InvalidReference,
    parse,
    parse_any_reference,
    parse_docker_ref,
    parse_image_name,
    parse_named,
    parse_normalized_named,
    with_digest,
    with_name,
    with_tag,
)

F64 = "f" * 64
SHA = f"sha256:{F64}"
SHA512 = "sha512:" + "f" * 128


# reference_test.go TestReferenceParse: (input, error, repository, domain, tag, digest)
@pytest.mark.parametrize(
    ("text", "err", "repository", "domain", "tag", "digest"),
    [
        ("test_com", None, "test_com", "", "", ""),
        ("test.com:tag", None, "test.com", "", "tag", ""),
        ("test.com:5000", None, "test.com", "", "5000", ""),
        ("test.com/repo:tag", None, "test.com/repo", "test.com", "tag", ""),
        ("test:5000/repo", None, "test:5000/repo", "test:5000", "", ""),
        ("test:5000/repo:tag", None, "test:5000/repo", "test:5000", "tag", ""),
        (f"test:5000/repo@{SHA}", None, "test:5000/repo", "test:5000", "", SHA),
        (f"test:5000/repo:tag@{SHA}", None, "test:5000/repo", "test:5000", "tag", SHA),
        ("", ERR_NAME_EMPTY, "", "", "", ""),
        (":justtag", ERR_REFERENCE_INVALID_FORMAT, "", "", "", ""),
        (f"@{SHA}", ERR_REFERENCE_INVALID_FORMAT, "", "", "", ""),
        ("repo@sha256:" + "f" * 34, ERR_CHECKSUM_INVALID_LENGTH, "", "", "", ""),
        (f"validname@invaliddigest:{F64}", ERR_CHECKSUM_UNSUPPORTED, "", "", "", ""),
        ("Uppercase:tag", ERR_NAME_CONTAINS_UPPERCASE, "", "", "", ""),
        ("test:5000/Uppercase/lowercase:tag", ERR_NAME_CONTAINS_UPPERCASE, "", "", "", ""),
        ("lowercase:Uppercase", None, "lowercase", "", "Uppercase", ""),
        ("domain/" + "a" * 256 + ":tag", ERR_NAME_TOO_LONG, "", "", "", ""),
        (
            "a/" * 127 + "a:tag-puts-this-over-max",
            None,
            "a/" * 127 + "a",
            "a",
            "tag-puts-this-over-max",
            "",
        ),
        ("aa/asdf$$^/aa", ERR_REFERENCE_INVALID_FORMAT, "", "", "", ""),
        (
            "sub-dom1.foo.com/bar/baz/quux",
            None,
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "",
            "",
        ),
        (
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            None,
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "some-long-tag",
            "",
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com",
            None,
            "b.gcr.io/test.example.com/my-app",
            "b.gcr.io",
            "test.example.com",
            "",
        ),
        (
            "xn--n3h.com/myimage:xn--n3h.com",
            None,
            "xn--n3h.com/myimage",
            "xn--n3h.com",
            "xn--n3h.com",
            "",
        ),
        (
            f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}",
            None,
            "xn--7o8h.com/myimage",
            "xn--7o8h.com",
            "xn--7o8h.com",
            SHA512,
        ),
        ("foo_bar.com:8080", None, "foo_bar.com", "", "8080", ""),
        ("foo/foo_bar.com:8080", None, "foo/foo_bar.com", "foo", "8080", ""),
        ("192.168.1.1", None, "192.168.1.1", "", "", ""),
        ("192.168.1.1:tag", None, "192.168.1.1", "", "tag", ""),
        ("192.168.1.1:5000", None, "192.168.1.1", "", "5000", ""),
        ("192.168.1.1/repo", None, "192.168.1.1/repo", "192.168.1.1", "", ""),
        ("192.168.1.1:5000/repo", None, "192.168.1.1:5000/repo", "192.168.1.1:5000", "", ""),
        (
            "192.168.1.1:5000/repo:5050",
            None,
            "192.168.1.1:5000/repo",
            "192.168.1.1:5000",
            "5050",
            "",
        ),
        ("[2001:db8::1]", ERR_REFERENCE_INVALID_FORMAT, "", "", "", ""),
        ("[2001:db8::1]:5000", ERR_REFERENCE_INVALID_FORMAT, "", "", "", ""),
        ("[2001:db8::1]:tag", ERR_REFERENCE_INVALID_FORMAT, "", "", "", ""),
        ("[2001:db8::1]/repo", None, "[2001:db8::1]/repo", "[2001:db8::1]", "", ""),
        (
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            None,
            "[2001:db8:1:2:3:4:5:6]/repo",
            "[2001:db8:1:2:3:4:5:6]",
            "tag",
            "",
        ),
        ("[2001:db8::1]:5000/repo", None, "[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "", ""),
        (
            "[2001:db8::1]:5000/repo:tag",
            None,
            "[2001:db8::1]:5000/repo",
            "[2001:db8::1]:5000",
            "tag",
            "",
        ),
        (
            f"[2001:db8::1]:5000/repo@{SHA}",
            None,
            "[2001:db8::1]:5000/repo",
            "[2001:db8::1]:5000",
            "",
            SHA,
        ),
        (
            f"[2001:db8::1]:5000/repo:tag@{SHA}",
            None,
            "[2001:db8::1]:5000/repo",
            "[2001:db8::1]:5000",
            "tag",
            SHA,
        ),
        ("[2001:db8::]:5000/repo", None, "[2001:db8::]:5000/repo", "[2001:db8::]:5000", "", ""),
        ("[::1]:5000/repo", None, "[::1]:5000/repo", "[::1]:5000", "", ""),
        ("[fe80::1%eth0]:5000/repo", ERR_REFERENCE_INVALID_FORMAT, "", "", "", ""),
        ("[fe80::1%@invalidzone]:5000/repo", ERR_REFERENCE_INVALID_FORMAT, "", "", "", ""),
        (
            "example.com/" + "a" * 255 + ":tag",
            None,
            "example.com/" + "a" * 255,
            "example.com",
            "tag",
            "",
        ),
    ],
)
def test_reference_parse(
    text: str, err: str | None, repository: str, domain: str, tag: str, digest: str
) -> None:
    if err is not None:
        with pytest.raises(InvalidReference) as e:
            parse(text)
        assert str(e.value) == err
        return
    ref = parse(text)
    assert str(ref) == text
    assert (ref.name, ref.domain, ref.tag, ref.digest) == (repository, domain, tag, digest)


# reference_test.go TestWithNameFailure
@pytest.mark.parametrize(
    ("name", "err"),
    [
        ("", ERR_REFERENCE_INVALID_FORMAT),
        (":justtag", ERR_REFERENCE_INVALID_FORMAT),
        (f"@{SHA}", ERR_REFERENCE_INVALID_FORMAT),
        (f"validname@invaliddigest:{F64}", ERR_REFERENCE_INVALID_FORMAT),
        ("example.com/repo:tag", ERR_REFERENCE_INVALID_FORMAT),
        ("example.com/" + "a" * 256, ERR_NAME_TOO_LONG),
        ("aa/asdf$$^/aa", ERR_REFERENCE_INVALID_FORMAT),
    ],
)
def test_with_name_failure(name: str, err: str) -> None:
    with pytest.raises(InvalidReference) as e:
        with_name(name)
    assert str(e.value) == err


# reference_test.go TestDomainAndPath
@pytest.mark.parametrize(
    ("name", "domain", "path"),
    [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "", "test_com/foo"),
        ("test:8080/foo", "test:8080", "foo"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ],
)
def test_domain_and_path(name: str, domain: str, path: str) -> None:
    ref = with_name(name)
    assert (ref.domain, ref.path) == (domain, path)


# reference_test.go TestWithTag and TestWithDigest
@pytest.mark.parametrize(
    ("name", "digest", "tag", "combined"),
    [
        ("test.com/foo", "", "tag", "test.com/foo:tag"),
        ("foo", "", "tag2", "foo:tag2"),
        ("test.com:8000/foo", "", "tag4", "test.com:8000/foo:tag4"),
        ("test.com:8000/foo", "", "TAG5", "test.com:8000/foo:TAG5"),
        (
            "test.com:8000/foo",
            "sha256:1234567890098765432112345667890098765",
            "TAG5",
            "test.com:8000/foo:TAG5@sha256:1234567890098765432112345667890098765",
        ),
    ],
)
def test_with_tag(name: str, digest: str, tag: str, combined: str) -> None:
    ref = with_name(name)
    if digest:
        ref = with_digest(ref, digest)
    assert str(with_tag(ref, tag)) == combined


@pytest.mark.parametrize(
    ("name", "digest", "tag", "combined"),
    [
        (
            "test.com/foo",
            "sha256:1234567890098765432112345667890098765",
            "",
            "test.com/foo@sha256:1234567890098765432112345667890098765",
        ),
        (
            "foo",
            "sha256:1234567890098765432112345667890098765",
            "",
            "foo@sha256:1234567890098765432112345667890098765",
        ),
        (
            "test.com:8000/foo",
            "sha256:1234567890098765432112345667890098765",
            "",
            "test.com:8000/foo@sha256:1234567890098765432112345667890098765",
        ),
        (
            "test.com:8000/foo",
            "sha256:1234567890098765432112345667890098765",
            "latest",
            "test.com:8000/foo:latest@sha256:1234567890098765432112345667890098765",
        ),
    ],
)
def test_with_digest(name: str, digest: str, tag: str, combined: str) -> None:
    ref = with_name(name)
    if tag:
        ref = with_tag(ref, tag)
    assert str(with_digest(ref, digest)) == combined


# reference_test.go TestParseNamed
@pytest.mark.parametrize(
    ("text", "domain", "path", "err"),
    [
        ("test.com/foo", "test.com", "foo", None),
        ("test:8080/foo", "test:8080", "foo", None),
        ("test_com/foo", "", "", ERR_NAME_NOT_CANONICAL),
        ("test.com", "", "", ERR_NAME_NOT_CANONICAL),
        ("foo", "", "", ERR_NAME_NOT_CANONICAL),
        ("library/foo", "", "", ERR_NAME_NOT_CANONICAL),
        ("docker.io/library/foo", "docker.io", "library/foo", None),
        ("docker.io/foo", "", "", ERR_NAME_NOT_CANONICAL),  # the parser adds library/
    ],
)
def test_parse_named(text: str, domain: str, path: str, err: str | None) -> None:
    if err:
        with pytest.raises(InvalidReference) as e:
            parse_named(text)
        assert str(e.value) == err
        return
    ref = parse_named(text)
    assert (ref.domain, ref.path) == (domain, path)


# normalize_test.go TestValidateReferenceName
@pytest.mark.parametrize(
    "name",
    [
        "docker/docker",
        "library/debian",
        "debian",
        "localhost/library/debian",
        "localhost/debian",
        "LOCALDOMAIN/library/debian",
        "LOCALDOMAIN/debian",
        "docker.io/docker/docker",
        "docker.io/library/debian",
        "docker.io/debian",
        "index.docker.io/docker/docker",
        "index.docker.io/library/debian",
        "index.docker.io/debian",
        "127.0.0.1:5000/docker/docker",
        "127.0.0.1:5000/library/debian",
        "127.0.0.1:5000/debian",
        "192.168.0.1",
        "192.168.0.1:80",
        "192.168.0.1:8/debian",
        "192.168.0.2:25000/debian",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "[fc00::1]:5000/docker",
        "[fc00::1]:5000/docker/docker",
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "Docker/docker",
        "DOCKER/docker",
    ],
)
def test_valid_reference_names(name: str) -> None:
    parse_normalized_named(name)


@pytest.mark.parametrize(
    ("name", "err"),
    [
        ("https://github.com/docker/docker", ERR_REFERENCE_INVALID_FORMAT),
        (
            "docker/Docker",
            "invalid reference format: repository name (docker/Docker) must be lowercase",
        ),
        ("-docker", ERR_REFERENCE_INVALID_FORMAT),
        ("-docker/docker", ERR_REFERENCE_INVALID_FORMAT),
        ("-docker.io/docker/docker", ERR_REFERENCE_INVALID_FORMAT),
        ("docker///docker", ERR_REFERENCE_INVALID_FORMAT),
        (
            "docker.io/docker/Docker",
            "invalid reference format: repository name (docker/Docker) must be lowercase",
        ),
        ("docker.io/docker///docker", ERR_REFERENCE_INVALID_FORMAT),
        ("[fc00::1]", ERR_REFERENCE_INVALID_FORMAT),
        ("[fc00::1]:5000", ERR_REFERENCE_INVALID_FORMAT),
        ("fc00::1:5000/debian", ERR_REFERENCE_INVALID_FORMAT),
        ("[fe80::1%eth0]:5000/debian", ERR_REFERENCE_INVALID_FORMAT),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", ERR_REFERENCE_INVALID_FORMAT),
        (
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "invalid repository name (1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a"
            "3f5e7d9c1b3a), cannot specify 64-byte hexadecimal strings",
        ),
    ],
)
def test_invalid_reference_names(name: str, err: str) -> None:
    with pytest.raises(InvalidReference) as e:
        parse_normalized_named(name)
    assert str(e.value) == err


# normalize_test.go TestValidateRemoteName
@pytest.mark.parametrize(
    "name",
    [
        "docker/docker",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "docker-rules/docker",
        "docker---rules/docker",
        "doc/docker",
        "d/docker",
        "jess/t",
        "dock__er/docker",
    ],
)
def test_valid_remote_names(name: str) -> None:
    parse_normalized_named(name)


@pytest.mark.parametrize(
    "name",
    [
        "docker/Docker",
        "docker///docker",
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "-docker/docker",
        "docker-/docker",
        "-docker-/docker",
        "____/____",
        "_docker/_docker",
        "dock..er/docker",
        "dock_.er/docker",
        "dock-.er/docker",
        "docker/",
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid"
        "_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_"
        "its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater"
        "_than_255/docker",
    ],
)
def test_invalid_remote_names(name: str) -> None:
    with pytest.raises(InvalidReference):
        parse_normalized_named(name)


# normalize_test.go TestParseRepositoryInfo: (remote, familiar, full, ambiguous, domain)
@pytest.mark.parametrize(
    ("remote", "familiar", "full", "ambiguous", "domain"),
    [
        ("fooo", "localhost/fooo", "localhost/fooo", "localhost/fooo", "localhost"),
        ("fooo/bar", "localhost/fooo/bar", "localhost/fooo/bar", "localhost/fooo/bar", "localhost"),
        ("fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN"),
        (
            "fooo/bar",
            "LOCALDOMAIN/fooo/bar",
            "LOCALDOMAIN/fooo/bar",
            "LOCALDOMAIN/fooo/bar",
            "LOCALDOMAIN",
        ),
        ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
        ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
        ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
        ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
        (
            "private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000/privatebase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "private/moonbase",
            "example.com/private/moonbase",
            "example.com/private/moonbase",
            "",
            "example.com",
        ),
        ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
        (
            "private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000/private/moonbase",
            "",
            "example.com:8000",
        ),
        (
            "privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000/privatebasee",
            "",
            "example.com:8000",
        ),
        (
            "library/ubuntu-12.04-base",
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            "index.docker.io/library/ubuntu-12.04-base",
            "docker.io",
        ),
        ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
        ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
        ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
        ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
        ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
    ],
)
def test_parse_repository_info(
    remote: str, familiar: str, full: str, ambiguous: str, domain: str
) -> None:
    for text in [familiar, full] + ([ambiguous] if ambiguous else []):
        ref = parse_normalized_named(text)
        assert ref.familiar_name == familiar, text
        assert str(ref) == full, text
        assert ref.domain == domain, text
        assert ref.path == remote, text


def test_parse_reference_with_tag_and_digest() -> None:
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = parse_normalized_named(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.tag == "latest" and ref.digest
    assert ref.familiar == short


# normalize_test.go TestParseAnyReference: (reference, equivalent)
DBCC = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"


@pytest.mark.parametrize(
    ("text", "equivalent"),
    [
        ("redis", "docker.io/library/redis"),
        ("redis:latest", "docker.io/library/redis:latest"),
        ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
        (f"redis@sha256:{DBCC}", f"docker.io/library/redis@sha256:{DBCC}"),
        (f"docker.io/library/redis@sha256:{DBCC}", f"docker.io/library/redis@sha256:{DBCC}"),
        ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
        ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
        ("docker.io/mcgowan/myapp:latest", "docker.io/mcgowan/myapp:latest"),
        (f"dmcgowan/myapp@sha256:{DBCC}", f"docker.io/dmcgowan/myapp@sha256:{DBCC}"),
        (f"docker.io/dmcgowan/myapp@sha256:{DBCC}", f"docker.io/dmcgowan/myapp@sha256:{DBCC}"),
        (DBCC, f"sha256:{DBCC}"),
        (f"sha256:{DBCC}", f"sha256:{DBCC}"),
        (DBCC[:-1], f"docker.io/library/{DBCC[:-1]}"),
        ("dbcc1", "docker.io/library/dbcc1"),
    ],
)
def test_parse_any_reference(text: str, equivalent: str) -> None:
    ref = parse_any_reference(text)
    assert str(ref) == equivalent
    if ref.path:
        assert ref == parse(equivalent)


# normalize_test.go TestNormalizedSplitHostname
@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
    ],
)
def test_normalized_split_hostname(text: str, domain: str, path: str) -> None:
    ref = parse_normalized_named(text)
    assert (ref.domain, ref.path) == (domain, path)


BUSYBOX = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"


# normalize_test.go TestParseDockerRef
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:latest", "docker.io/library/busybox:latest"),
        (f"busybox@{BUSYBOX}", f"docker.io/library/busybox@{BUSYBOX}"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
        ("library/busybox:latest", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
        ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
        (f"gcr.io/library/busybox:latest@{BUSYBOX}", f"gcr.io/library/busybox@{BUSYBOX}"),
    ],
)
def test_parse_docker_ref(text: str, expected: str) -> None:
    assert str(parse_docker_ref(text)) == expected
    parse(expected)


E3B0 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# k8s.io/kubernetes pkg/util/parsers/parsers_test.go TestParseImageName, plus the issue's
# 'Bad Image!!' (every error is the kubelet's own message)
@pytest.mark.parametrize(
    ("image", "repository", "tag", "digest", "err"),
    [
        ("root", "docker.io/library/root", "latest", "", ""),
        ("root:tag", "docker.io/library/root", "tag", "", ""),
        (f"root@{E3B0}", "docker.io/library/root", "", E3B0, ""),
        ("user/repo", "docker.io/user/repo", "latest", "", ""),
        ("user/repo:tag", "docker.io/user/repo", "tag", "", ""),
        (f"user/repo@{E3B0}", "docker.io/user/repo", "", E3B0, ""),
        ("url:5000/repo", "url:5000/repo", "latest", "", ""),
        ("url:5000/repo:tag", "url:5000/repo", "tag", "", ""),
        (f"url:5000/repo@{E3B0}", "url:5000/repo", "", E3B0, ""),
        (f"url:5000/repo:latest@{E3B0}", "url:5000/repo", "latest", E3B0, ""),
        (
            "ROOT",
            "",
            "",
            "",
            'couldn\'t parse image name "ROOT": invalid reference format: repository name'
            " (library/ROOT) must be lowercase",
        ),
        (
            "http://root",
            "",
            "",
            "",
            'couldn\'t parse image name "http://root": invalid reference format',
        ),
        (
            E3B0.removeprefix("sha256:"),
            "",
            "",
            "",
            f'couldn\'t parse image name "{E3B0[7:]}": invalid repository name ({E3B0[7:]}),'
            " cannot specify 64-byte hexadecimal strings",
        ),
        (
            "Bad Image!!",
            "",
            "",
            "",
            'couldn\'t parse image name "Bad Image!!": invalid reference format: repository name'
            " (library/Bad Image!!) must be lowercase",
        ),
        (
            "nginx:bad tag",
            "",
            "",
            "",
            'couldn\'t parse image name "nginx:bad tag": invalid reference format',
        ),
        # index.docker.io is docker.io; localhost and upper-case first components are hosts.
        ("index.docker.io/nginx", "docker.io/library/nginx", "latest", "", ""),
        ("localhost/app", "localhost/app", "latest", "", ""),
        ("Registry/app", "Registry/app", "latest", "", ""),
    ],
)
def test_parse_image_name(image: str, repository: str, tag: str, digest: str, err: str) -> None:
    if err:
        with pytest.raises(InvalidReference) as e:
            parse_image_name(image)
        assert str(e.value) == err
        return
    got = parse_image_name(image)
    assert (got.repository, got.tag, got.digest) == (repository, tag, digest)
