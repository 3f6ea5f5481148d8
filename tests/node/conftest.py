"""A control plane with a real node (containerd, kubelet, kube-scheduler), authenticated
registries on loopback, and the figures the node tests measure, printed at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pykube
import pytest

from tenant_registry.localcluster import ControlPlane, nodeimages
from tenant_registry.localcluster import node as node_mod
from tenant_registry.localcluster.controlplane import WORKLOAD_CONTROLLERS
from tenant_registry.localcluster.harness import install
from tenant_registry.localcluster.node import Node
from tenant_registry.localcluster.registry import Registry
from tests.node.pods import NodeCluster
from tests.planes import measured_for, summarize_measured

LACKING = node_mod.missing()

# In CI (root, make test ran scripts/host-packages.sh) nothing is missing: a missing tool fails
# the tests there instead of skipping them.
SKIP_REASON = (
    f"node tests skipped: this machine lacks {', '.join(LACKING)} "
    "(run as root; scripts/host-packages.sh installs the packages; make test runs it)"
    if LACKING and not os.environ.get("CI")
    else ""
)


@pytest.fixture(scope="session")
def measured(request: pytest.FixtureRequest) -> dict[str, str]:
    return measured_for(request.config, "node")


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    summarize_measured(terminalreporter, config, "node")


def start_node_cluster(measured: dict[str, str]) -> tuple[ControlPlane, Node]:
    cp = ControlPlane(extra_controllers=WORKLOAD_CONTROLLERS)
    cp.start()
    node = Node(cp)
    try:
        node.start()
    except BaseException:
        cp.cleanup()
        raise
    measured.setdefault(
        "node up (keeper start → Node Ready)", f"{node.timings['node ready']:.1f} s"
    )
    return cp, node


def stop_node_cluster(cp: ControlPlane, node: Node) -> None:
    node.stop()
    cp.stop()
    if os.environ.get("TRO_KEEP_STATE"):
        print(f"\ncontrol plane state kept in {cp.dir}; the node's logs in {node.dir}")
    else:
        cp.cleanup()


@pytest.fixture(scope="module")
def node_cluster(measured: dict[str, str]) -> Iterator[NodeCluster]:
    cp, node = start_node_cluster(measured)
    try:
        install(cp)  # the CRD (the test client's TenantRegistry kind), RBAC, policy
        api = pykube.HTTPClient(pykube.KubeConfig.from_file(str(cp.kubeconfig)))
        yield NodeCluster(api, cp, node)
    finally:
        stop_node_cluster(cp, node)


class Registries:
    """The module's registries, started on first use, each with its own user (`<name>-bot`),
    all trusted by the node over plain HTTP."""

    def __init__(self, cluster: NodeCluster) -> None:
        self.cluster = cluster
        self.all: dict[str, Registry] = {}
        self.app = nodeimages.ensure(nodeimages.APP)

    def __getitem__(self, name: str) -> Registry:
        if name not in self.all:
            registry = Registry(
                self.cluster.cp.dir / f"registry-{name}",
                user=f"{name}-bot",
                password=f"{name}-pw-1",
            ).start()
            self.cluster.node.allow_plain_http(registry.host)
            self.all[name] = registry
        return self.all[name]

    def image(self, name: str, repository: str) -> str:
        """The test app pushed to registry `name` as `repository` (with its tag)."""
        return self[name].push(self.app, repository)

    def stop(self) -> None:
        for registry in self.all.values():
            registry.stop()


@pytest.fixture(scope="module")
def registries(node_cluster: NodeCluster) -> Iterator[Registries]:
    found = Registries(node_cluster)
    try:
        yield found
    finally:
        found.stop()
