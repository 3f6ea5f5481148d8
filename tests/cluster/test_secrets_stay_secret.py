"""Secrets stay secret, over the whole suite: after every other test (this one runs last), no
operator log line, Event, status or exception text of any cluster the suite ran holds a test
credential's bytes, plain or base64."""

from __future__ import annotations

import base64

import pykube
import pytest

from tests.cluster.conftest import RunningOperator
from tests.cluster.tenants import Cluster
from tests.leaks import LEDGER, operator_haystacks

pytestmark = [pytest.mark.cluster, pytest.mark.last]


def test_no_credential_bytes_anywhere_the_operator_speaks(
    k8s: Cluster, operator: RunningOperator
) -> None:
    # Every copy still in the session cluster: its whole content would be a leak as well.
    for s in pykube.Secret.objects(k8s.api, namespace=pykube.all).filter(
        selector={"app.kubernetes.io/managed-by": "tenant-registry-operator"}
    ):
        data = (s.obj.get("data") or {}).get(".dockerconfigjson")
        if data:
            LEDGER.secrets.add(base64.b64decode(data))
            LEDGER.secrets.add(data.encode())
    haystacks = [*LEDGER.haystacks, *operator_haystacks(k8s.cp, k8s, "session")]
    needles = LEDGER.needles()
    assert needles, "the suite wrote credentials"
    found = [
        f"{what} in {where}"
        for where, text in haystacks
        for raw in [text.encode(errors="replace")]
        for what, needle in needles.items()
        if needle in raw
    ]
    print(
        f"searched {len(haystacks)} texts ({sum(len(t) for _, t in haystacks)} characters) "
        f"for {len(needles)} needles"
    )
    assert not found, found[:20]
