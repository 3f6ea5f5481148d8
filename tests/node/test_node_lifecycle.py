"""A killed owner leaves nothing of its node behind: the keeper notices its parent died and
tears everything down (processes, mounts, bridge, cgroups)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tenant_registry.localcluster import nodeslot
from tests.node.conftest import SKIP_REASON
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.node,
    pytest.mark.cluster,
    pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON),
]

OWNER = textwrap.dedent(
    """
    import json, sys, time
    from tenant_registry.localcluster import ControlPlane, nodeimages
    from tenant_registry.localcluster.node import Node
    from pathlib import Path
    cp = ControlPlane(Path(sys.argv[1])); cp.start()
    node = Node(cp).start()
    node.import_image(nodeimages.ensure(nodeimages.APP))
    cp.kubectl("run", "app", "--image=" + nodeimages.APP.tag, "--image-pull-policy=Never")
    while "Running" not in cp.kubectl("get", "pod", "app", "-o", "jsonpath={.status.phase}").stdout:
        time.sleep(0.2)
    print(json.dumps({"keeper": node.keeper.pid, "slot": node.slot.index, "dir": str(node.dir),
                      "pids": sorted(node.pids())}), flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_killed_owner_leaves_no_process_mount_bridge_or_cgroup(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "cp")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert line, owner.stderr.read() if owner.stderr else ""
        info = json.loads(line)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    slot = nodeslot.Slot(info["slot"], info["dir"])
    # containerd, the kubelet, the scheduler, a shim, the pause and app containers
    assert len(info["pids"]) >= 6, info

    wait_for(lambda: not _alive(info["keeper"]), what="the keeper done", timeout=60)
    assert not [p for p in info["pids"] if _alive(p)]
    assert nodeslot.mounts_under([Path(info["dir"]), slot.run_dir]) == []
    assert not Path("/sys/class/net", slot.bridge).exists()
    assert not [m for m, _ in nodeslot.cgroup_mounts() if (m / slot.name).exists()]
    assert not slot.run_dir.exists()
    assert not nodeslot.slot_record(slot.index).exists()
    assert not Path(info["dir"]).exists()
