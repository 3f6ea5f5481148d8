"""`tenant-registry explain` and `plan` against the live cluster, as an admin runs them: with
the admin's kubeconfig, as the console script and as `kubectl treg`, writing nothing."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tenant_registry import names
from tests.cluster.tenants import OPERATOR_NS, Cluster, registry
from tests.waiting import wait_for

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent  # the venv's bin: tenant-registry and kubectl-treg
CLI_AGENT = "tenant-registry-cli/"


def cli(k8s: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The console script, with the admin's kubeconfig given by flag."""
    return subprocess.run(
        [str(BIN / "tenant-registry"), *args, f"--kubeconfig={k8s.cp.kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
    )


def cli_writes(k8s: Cluster) -> list[dict[str, object]]:
    """Writes the CLI made (the audit log records every write, with the user agent)."""
    return [e for e in k8s.cp.audit_events() if str(e.get("userAgent", "")).startswith(CLI_AGENT)]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def user_pull_secret(k8s: Cluster, ns: str, name: str, server: str) -> None:
    config = {"auths": {server: {"auth": b64("someone:their-password")}}}
    k8s.secret(ns, name, names.DOCKERCONFIGJSON_TYPE, {".dockerconfigjson": json.dumps(config)})


def append_entry(k8s: Cluster, ns: str, secret: str, sa: str = "default") -> None:
    patch = [{"op": "add", "path": "/imagePullSecrets/-", "value": {"name": secret}}]
    k8s.cp.kubectl("patch", "serviceaccount", sa, "-n", ns, "--type=json", "-p", json.dumps(patch))


def test_explain_an_image_from_the_pull_secrets_a_service_account_references(
    k8s: Cluster, unique: str
) -> None:
    """Given a tenant whose key is registry.<x>.example/team, and the user's own pull secret
    for the whole registry on the same ServiceAccount, when an admin asks about
    registry.<x>.example/team-x/app, then both keys are tried, the tenant's first, and the
    match that rests on the kubelet's plain string prefix says so."""
    name = f"ex-{unique}"
    host = f"registry.{name}.example"
    ns = k8s.onboard_one(name, server=f"{host}/team")
    user_pull_secret(k8s, ns, "regcred", host)
    append_entry(k8s, ns, "regcred")
    append_entry(k8s, ns, "missing")

    proc = cli(k8s, "explain", f"{host}/team-x/app:v1", "--namespace", ns)

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert (
        lines[0] == f"ServiceAccount {ns}/default: imagePullSecrets {name}-pull, regcred, missing"
    )
    assert (
        f"  Secret {name}-pull: kubernetes.io/dockerconfigjson; the operator's copy for "
        f"TenantRegistry {name}: keys {host}/team"
    ) in lines
    assert f"  Secret regcred: kubernetes.io/dockerconfigjson: keys {host}" in lines
    assert (
        "  Secret missing: not found: the kubelet skips it and posts the Event "
        "FailedToRetrieveImagePullSecret"
    ) in lines
    tried = lines.index("  keys the kubelet tries, most specific first:")
    assert lines[tried + 1 : tried + 4] == [
        f"    1. {host}/team (Secret {name}-pull)",
        "       quirk: the kubelet compares paths as plain strings: /team is a prefix of "
        "/team-x/app although /team-x/app is not under /team/",
        f"    2. {host} (Secret regcred)",
    ]
    assert "password" not in proc.stdout and b64("someone:their-password") not in proc.stdout

    # An image no key serves: exit 1, and the reasons.
    other = cli(k8s, "explain", "quay.io/other/app", "-n", ns)
    assert other.returncode == 1
    assert "  no key matches: the kubelet pulls quay.io/other/app anonymously" in other.stdout
    # A ServiceAccount that does not exist is a bad argument.
    missing = cli(k8s, "explain", "nginx", "-n", ns, "--service-account", "nobody")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.splitlines() == [
        f"tenant-registry explain: --service-account nobody: no ServiceAccount nobody in {ns}"
    ]
    assert cli_writes(k8s) == []


def test_explain_namespace_says_who_selects_it_why_and_what_blocks_it(
    k8s: Cluster, unique: str
) -> None:
    """Given tenant A selecting two namespaces by name, one of them holding someone's Secret
    under A's secretName, and tenant B selecting by label but excluding one by `!name`: the
    report names each reason, the copy's state, the operator's entries and the block."""
    a, b = f"exa-{unique}", f"exb-{unique}"
    synced, legacy = f"{a}-web", f"{a}-legacy"
    k8s.namespace(synced, team=unique)
    k8s.namespace(legacy, team=unique)
    k8s.secret(legacy, f"{a}-pull", "Opaque", {"mine": "keep-me"})
    k8s.credentials(a)
    k8s.credentials(b)
    k8s.tenant(
        a,
        secret_name=f"{a}-pull",
        registries=[registry(f"{a}.example", a)],
        namespaces={"names": [synced, legacy]},
    )
    k8s.tenant(
        b,
        secret_name=f"{b}-pull",
        registries=[registry(f"{b}.example", b)],
        namespaces={"names": [f"!{synced}"], "selector": {"matchLabels": {"team": unique}}},
    )
    wait_for(lambda: f"{a}-pull" in k8s.pull_secrets(synced), what="A's entry")
    wait_for(lambda: k8s.status(a).get("failedNamespaces") == 1, what="A blocked in legacy")
    wait_for(lambda: f"{b}-pull" in k8s.pull_secrets(legacy), what="B's entry in legacy")

    proc = cli(k8s, "explain", "namespace", synced)

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert (
        lines[0]
        == f"namespace {synced} (labels: kubernetes.io/metadata.name={synced}, team={unique})"
    )
    section = lines[lines.index(f"TenantRegistry {a}: selects {synced}") :]
    assert section[1] == f"  - selected by the name '{synced}'"
    assert section[2].startswith(f"  copy: Secret {a}-pull is its copy; the content hash matches")
    assert section[3] == (
        f"  ServiceAccount default (selected): has the entry {a}-pull, added by the operator"
    )
    assert section[4] == "  nothing left to do: the copy and entries are as the tenant wants"
    assert f"TenantRegistry {b}: does not select {synced}: excluded by the name '!{synced}'" in (
        lines
    )
    assert (
        f"  default: imagePullSecrets {a}-pull; the operator's: {a}-pull (TenantRegistry {a})"
        in lines
    )

    proc = cli(k8s, "explain", "namespace", legacy)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    section = lines[lines.index(f"TenantRegistry {a}: selects {legacy}") :]
    assert section[2] == (
        f"  copy: Secret {a}-pull exists and is not the operator's (type Opaque): conflictPolicy "
        "Skip leaves it untouched (UnmanagedSecretExists)"
    )
    assert section[3] == (
        f"  ServiceAccount default (selected): has no entry {a}-pull: none is added while the "
        "copy is blocked"
    )
    assert section[4].startswith(f"  blocked: UnmanagedSecretExists: Secret {a}-pull exists")
    assert section[5].startswith("  status: listed as failed: UnmanagedSecretExists")
    section = lines[lines.index(f"TenantRegistry {b}: selects {legacy}") :]
    assert section[1] == f"  - selected by the label selector team={unique}"

    missing = cli(k8s, "explain", "namespace", f"nope-{unique}")
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"tenant-registry explain: NAMESPACE nope-{unique}: no such namespace"
    ]
    assert cli_writes(k8s) == []


def _planned(stdout: str) -> set[tuple[str, str, str, str]]:
    """(resource, verb, namespace, name) of every write a plan lists."""
    out = set()
    for line in stdout.splitlines():
        words = line.split()
        if len(words) < 4 or words[0] not in "+-~" or words[2] not in ("Secret", "ServiceAccount"):
            continue
        verb, kind, target = words[1], words[2], words[3].rstrip(":")
        namespace, name = target.split("/")
        resource = {"Secret": "secrets", "ServiceAccount": "serviceaccounts"}[kind]
        # An update of a copy is a merge patch; an entry's add or remove a JSON patch.
        out.add((resource, {"update": "patch"}.get(verb, verb), namespace, name))
    return out


def test_plan_lists_exactly_the_writes_the_operator_then_makes(
    k8s: Cluster, unique: str, tmp_path: Path
) -> None:
    """Given a tenant selecting two namespaces by label, when an admin plans a file that
    changes its server, excludes one namespace by name and creates a third namespace, then
    the plan lists an update, a removal and an onboarding, and after `kubectl apply` the
    operator makes exactly those writes; planned again, nothing is left to do."""
    name = f"pl-{unique}"
    kept, dropped, new = f"{name}-a", f"{name}-b", f"{name}-c"
    k8s.onboard(name, [kept, dropped])
    body = k8s.tenant_obj(name)
    assert body is not None
    tenant = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name},
        "spec": {
            **body["spec"],
            "registries": [registry(f"{name}-v2.example", name)],
            "namespaces": {
                "names": [f"!{dropped}", new],
                "selector": {"matchLabels": {"tenant": name}},
            },
        },
    }
    # Not labelled: only the new spec selects it, so the operator never onboards it under the
    # old one while kubectl applies the file.
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": new}}
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump_all([namespace, tenant]))

    plan = cli(k8s, "plan", "-f", str(path))

    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    assert lines[:4] == [
        f"TenantRegistry {name} (applying it changes the existing TenantRegistry)",
        "  namespaces: 2 selected now, 2 after; +1, -1",
        f"    + {new} (created by this file): selected by the name '{new}'",
        f"    - {dropped}: no longer selected: excluded by the name '!{dropped}'",
    ]
    assert lines[-2:] == [
        "  summary: copies: 1 to create, 1 to update, 1 to delete; entries: 1 to add, 1 to "
        "remove; namespaces that would fail: 0",
        "dry run: nothing was written",
    ]
    planned = _planned(plan.stdout)
    assert planned == {
        ("secrets", "create", new, f"{name}-pull"),
        ("serviceaccounts", "patch", new, "default"),
        ("secrets", "patch", kept, f"{name}-pull"),
        ("secrets", "delete", dropped, f"{name}-pull"),
        ("serviceaccounts", "patch", dropped, "default"),
    }
    assert cli_writes(k8s) == []

    mark = k8s.audit_mark()
    k8s.cp.kubectl("apply", "-f", str(path))
    wait_for(lambda: f"{name}-pull" in k8s.pull_secrets(new), what="the new namespace onboarded")
    wait_for(lambda: k8s.copy(dropped, f"{name}-pull") is None, what="the dropped copy gone")
    wait_for(lambda: f"{name}-pull" not in k8s.pull_secrets(dropped), what="the dropped entry gone")
    wait_for(
        lambda: f"{name}-v2.example" in (k8s.dockerconfig(kept, f"{name}-pull") or {})["auths"],
        what="the kept copy rotated",
    )
    done = {
        (
            w["objectRef"]["resource"],
            w["verb"],
            w["objectRef"].get("namespace", ""),
            w["objectRef"].get("name", ""),
        )
        for w in k8s.operator_writes(mark)
        if w["objectRef"].get("namespace") in (kept, dropped, new)
    }
    assert done == planned

    again = cli(k8s, "plan", "-f", str(path))
    assert again.returncode == 0, again.stderr
    assert "  2 namespace(s) already as wanted: nothing to write there" in again.stdout
    assert (
        "  summary: copies: 0 to create, 0 to update, 0 to delete; entries: 0 to add, 0 to "
        "remove; namespaces that would fail: 0"
    ) in again.stdout
    assert cli_writes(k8s) == []


def test_plan_of_a_tenant_whose_credentials_are_missing_writes_nothing_and_says_why(
    k8s: Cluster, unique: str, tmp_path: Path
) -> None:
    name = f"plc-{unique}"
    k8s.namespace(f"{name}-a")
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(
            {
                "apiVersion": names.API_VERSION,
                "kind": names.KIND,
                "metadata": {"name": name},
                "spec": {
                    "secretName": f"{name}-pull",
                    "registries": [registry("r.example", name)],
                    "namespaces": {"names": [f"{name}-*"]},
                },
            }
        )
    )
    proc = cli(k8s, "plan", "-f", str(path))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[:3] == [
        f"TenantRegistry {name} (applying it creates the TenantRegistry)",
        "  the operator would write nothing and remove nothing for it: CredentialsInvalid: "
        f"spec.registries[0].credentialsRef: Secret {OPERATOR_NS}/{name} not found",
        f"  its spec selects 1 namespace(s): {name}-a",
    ]


def test_kubectl_finds_the_plugin_and_runs_kubectl_treg(k8s: Cluster, unique: str) -> None:
    """With the venv's bin on PATH, `kubectl plugin list` shows kubectl-treg and
    `kubectl treg ...` runs it, the kubeconfig coming from $KUBECONFIG (kubectl's default
    resolution, passed on to the plugin)."""
    ns = k8s.onboard_one(f"kp-{unique}")
    kubectl = k8s.cp.binary("kubectl")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{Path(kubectl).parent}{os.pathsep}/usr/bin:/bin",
        "KUBECONFIG": str(k8s.cp.kubeconfig),
    }

    def kubectl_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kubectl, *args], capture_output=True, text=True, timeout=60, check=False, env=env
        )

    listed = kubectl_run("plugin", "list")
    assert str(BIN / "kubectl-treg") in listed.stdout.splitlines(), listed.stdout + listed.stderr

    report = kubectl_run("treg", "explain", "namespace", ns)
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    assert lines[0] == f"namespace {ns} (labels: kubernetes.io/metadata.name={ns})"
    assert lines[1] == f"TenantRegistry kp-{unique}: selects {ns}"  # the others, one line each
    image = kubectl_run("treg", "explain", f"kp-{unique}.example/app", "-n", ns)
    assert image.returncode == 0, image.stderr
    assert f"    1. kp-{unique}.example (Secret kp-{unique}-pull)" in image.stdout.splitlines()

    bad = kubectl_run("treg", "explain", "Bad Image!!", "docker.io")
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1
    assert bad.stderr.startswith("kubectl treg explain: IMAGE 'Bad Image!!' is not an image")
    assert cli_writes(k8s) == []


def test_a_user_who_may_not_read_gets_one_line(k8s: Cluster, unique: str) -> None:
    ns = f"ro-{unique}"
    k8s.namespace(ns)
    wait_for(lambda: k8s.sa(ns) is not None, what="the default ServiceAccount")
    kubeconfig = k8s.cp.serviceaccount_kubeconfig(ns, "default")
    proc = subprocess.run(
        [str(BIN / "tenant-registry"), "explain", "namespace", ns, f"--kubeconfig={kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("tenant-registry explain: the API server at https://"), line
    assert f'refused a read: namespaces "{ns}" is forbidden: User ' in line, line
