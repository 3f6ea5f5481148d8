"""Registry keys and image references by the kubelet's config.json rules."""

from __future__ import annotations

import pytest

from tenant_registry.registrykeys import InvalidKey, keys_for, matches, parse_image, parse_key


@pytest.mark.parametrize(
    ("server", "key"),
    [
        ("registry.example", "registry.example"),
        ("registry.example:5000", "registry.example:5000"),
        ("https://registry.example/v2/", "registry.example"),
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("http://r.example:8080/team/app/", "r.example:8080/team/app"),
        ("*.acme.example", "*.acme.example"),
        ("localhost:5000", "localhost:5000"),
    ],
)
def test_parse_key(server: str, key: str) -> None:
    assert str(parse_key(server)) == key


@pytest.mark.parametrize(
    "server",
    [
        "",
        "registry example",
        "ftp://r.example",
        "r.example:99999",
        "r.example:port",
        "user@r.example",
        "r.example/a//b",
        "r.example/../x",
        "r.example?x=1",
        "-bad.example",
    ],
)
def test_invalid_keys(server: str) -> None:
    with pytest.raises(InvalidKey):
        parse_key(server)


@pytest.mark.parametrize(
    ("image", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io/library/nginx", "latest", ""),
        ("nginx:1.27", "docker.io/library/nginx", "1.27", ""),
        ("acme/app", "docker.io/acme/app", "latest", ""),
        ("index.docker.io/acme/app", "docker.io/acme/app", "latest", ""),
        ("r.example:5000/team/app:v1", "r.example:5000/team/app", "v1", ""),
        ("localhost/app", "localhost/app", "latest", ""),
        ("r.example/app@sha256:" + "a" * 64, "r.example/app", "", "sha256:" + "a" * 64),
    ],
)
def test_parse_image(image: str, repository: str, tag: str, digest: str) -> None:
    ref = parse_image(image)
    assert (ref.repository, ref.tag, ref.digest) == (repository, tag, digest)


@pytest.mark.parametrize("image", ["UPPER/case", "r.example/app:bad tag", "r.example/", ""])
def test_invalid_images(image: str) -> None:
    with pytest.raises(ValueError):
        parse_image(image)


@pytest.mark.parametrize(
    ("key", "image", "expected"),
    [
        ("registry.example", "registry.example/app", True),
        ("registry.example", "registry.example:5000/app", False),  # ports match exactly
        ("registry.example:5000", "registry.example:5000/app", True),
        ("*.acme.example", "eu.acme.example/app", True),
        ("*.acme.example", "a.eu.acme.example/app", False),  # one label per glob
        ("*.acme.example", "acme.example/app", False),
        ("r.example/team", "r.example/team/app", True),
        ("r.example/team", "r.example/teammate/app", False),  # path prefix by segment
        ("r.example/team", "r.example/other/app", False),
        ("https://index.docker.io/v1/", "nginx", True),
        ("https://index.docker.io/v1/", "acme/app", True),
        ("docker.io", "nginx", True),
        ("index.docker.io", "r.example/app", False),
    ],
)
def test_matches(key: str, image: str, expected: bool) -> None:
    assert matches(parse_key(key), parse_image(image)) is expected


def test_most_specific_key_first() -> None:
    servers = ["r.example", "r.example/team", "*.example"]
    assert keys_for(servers, "r.example/team/app") == ["r.example/team", "r.example", "*.example"]
    assert keys_for(servers, "q.example/app") == ["*.example"]
    assert keys_for(servers, "nginx") == []
