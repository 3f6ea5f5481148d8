"""The ports against the Go originals, on thousands of generated inputs.

imagerefs.py against the kubelet's `parsers.ParseImageName` and distribution/reference's
`Parse` and `ParseNormalizedNamed`; keyring.py against pkg/credentialprovider's
`URLsMatchStr`, `BasicDockerKeyring.Add`/`Lookup` and `secrets.MakeDockerKeyring`. The small
Go program next to this file calls them through their public APIs; it is built once per
pinned Kubernetes version (and per version of main.go) into the cache, like the control plane,
with the modules from the Go module proxy.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenant_registry.imagerefs import (
    InvalidReference,
    parse,
    parse_image_name,
    parse_normalized_named,
)
from tenant_registry.keyring import BrokenPullSecret, Keyring, pull_secret_servers, urls_match_str
from tenant_registry.localcluster.build import cache_root
from tenant_registry.localcluster.versions import K8S_VERSION

pytestmark = pytest.mark.oracle
MAIN = Path(__file__).with_name("main.go")
BUILD = Path(__file__).with_name("build.sh")


def oracle_binary() -> Path:
    digest = hashlib.sha256(MAIN.read_bytes() + BUILD.read_bytes()).hexdigest()[:12]
    dest = cache_root() / "oracle" / f"k8s-v{K8S_VERSION}-{digest}"
    binary = dest / "oracle"
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        pytest.skip("the Go toolchain is not on PATH (it builds the Go originals)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent run waits, then finds it built
        if binary.exists():
            return binary
        with tempfile.TemporaryDirectory(dir=dest.parent) as work:
            shutil.copy(MAIN, Path(work) / "main.go")
            subprocess.run(
                ["bash", str(BUILD)],
                cwd=work,
                env={**os.environ, "K8S": K8S_VERSION},
                check=True,
                timeout=900,
            )
            staging = Path(tempfile.mkdtemp(dir=dest.parent))
            shutil.move(str(Path(work) / "oracle"), staging / "oracle")
            staging.rename(dest)
    return binary


@pytest.fixture(scope="module")
def go() -> Iterator[Any]:
    binary = oracle_binary()

    def ask(requests: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
        lines = "".join(json.dumps({"Op": op, "Args": args}) + "\n" for op, args in requests)
        out = subprocess.run(
            [str(binary)], input=lines, capture_output=True, text=True, check=True, timeout=300
        ).stdout.splitlines()
        assert len(out) == len(requests)
        return [json.loads(line) for line in out]

    yield ask


ALPHABET = [*"abcXYZ019.:/@-_*?[]^\\%#!+ é", "%25", "%41", "[::1]", "sha256:", "https://"]
ALPHABET += ["/v1/", "/v2/", "localhost", "docker.io", "index.docker.io", "library/", "f" * 64]


def noise(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, n)))


IMAGES = [
    "nginx",
    "NGINX",
    "Foo/bar",
    "foo/Bar",
    "localhost/x",
    "localhost:5000/x",
    "docker.io/x",
    "index.docker.io/x",
    "registry.io/team-x/app:v1",
    "[::1]/x",
    "[::1]:5000/x",
    "Bad Image!!",
    "[fe80::1%eth0]:5000/x",
    "x@sha256:" + "a" * 64,
    "x@sha256:" + "A" * 64,
    "x@md5:" + "f" * 32,
    "x@SHA256:" + "a" * 64,
    "a" * 64,
    "a/" * 127 + "a",
    "x/" + "a" * 256,
    "x:" + "t" * 129,
    "x\n",
    "\u0130mage",
    "test.com:5000",
    "a..b/c",
    "a__b/c",
    "a___b/c",
    "192.168.0.1:80",
]
KEYS = [
    "registry.io",
    "registry.io/team",
    "registry.io/team/",
    "registry.io/v1",
    "*.io",
    "*",
    "https://registry.io/v1/",
    "http://registry.io:80",
    "registry.io:443",
    "[::1]",
    "[::1]:5000",
    "Registry.IO",
    "user@registry.io",
    "registry.io?x=1",
    "registry.io/%41",
    "registry.io/%25zz",
    "r.io:80:80",
    "HTTPS://x",
    "",
    "*.docker.io",
    "docker.io",
    "index.docker.io",
    "localhost",
    "https://index.docker.io/v1/",
    "index.docker.io/acme",
    "re[gi]stry.io",
    "bad key",
    "[",
]
REPOS = [
    "registry.io/team/app",
    "registry.io/team-x/app",
    "registry.io/team",
    "registry.io:443/app",
    "docker.io/library/nginx",
    "localhost/x",
    "[::1]/x",
    "[::1]:5000/x",
    "Registry.IO/app",
    "x.docker.io/y",
    "Foo/bar",
    "regi.io/x",
]


def test_image_references(go: Any) -> None:
    rng = random.Random(1)
    inputs = IMAGES + [noise(rng, 12) for _ in range(6000)]
    requests = [(op, [s]) for s in inputs for op in ("image", "parse", "normalized")]
    differences = []
    for (op, (text,)), want in zip(requests, go(requests), strict=True):
        try:
            if op == "image":
                name = parse_image_name(text)
                got: dict[str, Any] = {
                    "repo": name.repository,
                    "tag": name.tag,
                    "digest": name.digest,
                }
            else:
                got = {"string": str((parse if op == "parse" else parse_normalized_named)(text))}
        except InvalidReference as e:
            got = {"err": str(e)}
        if got != want:
            differences.append((op, text, want, got))
    assert differences == []


def test_key_matching_and_lookup_order(go: Any) -> None:
    rng = random.Random(2)
    pairs = [(k, r) for k in KEYS for r in REPOS]
    pairs += [(noise(rng, 10), rng.choice([*REPOS, noise(rng, 10)])) for _ in range(8000)]
    requests = [("match", [k, r]) for k, r in pairs]
    lookups = [[rng.choice(REPOS), *rng.sample(KEYS, rng.randint(0, 6))] for _ in range(2000)]
    requests += [("lookup", args) for args in lookups]
    differences = []
    for (op, args), want in zip(requests, go(requests), strict=True):
        if op == "match":
            got: dict[str, Any] = {"match": urls_match_str(args[0], args[1])}
        else:
            keyring = Keyring()
            for server in args[1:]:  # one config per server, as main.go adds them
                keyring.add([server])
            got = {"servers": [e.server for h in keyring.lookup(args[0]) for e in h.entries]}
        if got != want:
            differences.append((op, args, want, got))
    assert differences == []


def test_pull_secrets_the_kubelet_cannot_decode(go: Any) -> None:
    rng = random.Random(3)
    auth = base64.b64encode(b"u:p").decode()
    names = ["auths", "Auths", "r.io", "auth", "Auth", "username", "HttpHeaders", "email"]

    def value(depth: int) -> str:
        if depth > 3 or rng.random() < 0.3:
            return rng.choice(["null", "1", '"s"', f'"{auth}"', '"bad!"', "[]", "true", '""'])
        keys = rng.choices(names, k=rng.randint(0, 3))
        return "{" + ",".join(f'"{k}":{value(depth + 1)}' for k in keys) + "}"

    docs = [value(0) for _ in range(4000)] + ["{bad", "NaN", '{"auths":{"r.io":{"auth":"YQ"}}}']
    kinds = [
        ("kubernetes.io/dockerconfigjson", ".dockerconfigjson"),
        ("kubernetes.io/dockercfg", ".dockercfg"),
    ]
    cases = [(*rng.choice(kinds), doc) for doc in docs]
    differences = []
    for (type_, key, doc), want in zip(
        cases, go([("secret", list(c)) for c in cases]), strict=True
    ):
        try:
            pull_secret_servers(type_, {key: base64.b64encode(doc.encode()).decode()})
            broken = False
        except BrokenPullSecret:
            broken = True
        if broken != want["broken"]:
            differences.append((type_, doc, want, broken))
    assert differences == []
