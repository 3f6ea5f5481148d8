"""How the local runner turns a Deployment's container into `podman run`, as the kubelet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tenant_registry.localcluster.pod import (
    SERVICEACCOUNT_DIR,
    Pod,
    Unsupported,
    container_env,
    expand,
    podman_run_args,
    probe_url,
    quantity_bytes,
    quantity_cpus,
)

POD = Pod(
    name="op-7d9f-abcde",
    namespace="ops",
    service_account="op",
    labels={"app": "op"},
    annotations={"a/b": "c"},
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--namespace=$(NS)", "--namespace=ops"),
        ("$(NS)/$(NS)", "ops/ops"),
        ("$(MISSING)", "$(MISSING)"),  # undefined: left as written
        ("$$(NS)", "$(NS)"),  # escaped
        ("$$", "$"),
        ("$NS", "$NS"),  # only $(...) is a reference
        ("$(NS", "$(NS"),  # unterminated
        ("", ""),
    ],
)
def test_expand_as_the_kubelet(text: str, expected: str) -> None:
    assert expand(text, {"NS": "ops"}) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ([{"name": "A", "value": "x"}], {"A": "x"}),
        ([{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y"}], {"A": "x", "B": "x-y"}),
        ([{"name": "B", "value": "$(A)"}, {"name": "A", "value": "x"}], {"B": "$(A)", "A": "x"}),
        ([{"name": "S", "value": "$(SVC)"}], {"S": "svc"}),  # Service variables come first
        ([{"name": "E"}], {"E": ""}),
        (
            [
                {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            ],
            {"N": "op-7d9f-abcde", "NS": "ops", "SA": "op", "L": "op", "IP": "127.0.0.1"},
        ),
    ],
)
def test_container_env(env: list[dict[str, Any]], expected: dict[str, str]) -> None:
    got = container_env({"env": env}, POD, {"SVC": "svc"})
    assert {k: v for k, v in got.items() if k != "SVC"} == expected


@pytest.mark.parametrize(
    "container",
    [
        {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
        {"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}]},
        {"envFrom": [{"configMapRef": {"name": "c"}}]},
    ],
)
def test_what_it_cannot_resolve_is_an_error_naming_it(container: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        container_env(container, POD, {})


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("16Mi", 16 * 2**20), ("1Gi", 2**30), ("500M", 500 * 10**6), ("1024", 1024), (64, 64)],
)
def test_quantity_bytes(quantity: str | int, expected: int) -> None:
    assert quantity_bytes(quantity) == expected


@pytest.mark.parametrize("quantity", ["16MB", "lots", "-1"])
def test_bad_quantity(quantity: str) -> None:
    with pytest.raises(Unsupported):
        quantity_bytes(quantity)


@pytest.mark.parametrize(("quantity", "expected"), [("100m", 0.1), ("2", 2.0), (1, 1.0)])
def test_quantity_cpus(quantity: str | int, expected: float) -> None:
    assert quantity_cpus(quantity) == expected


def _deployment(**container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "op", "namespace": "ops"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "op"}},
                "spec": {
                    "serviceAccountName": "op",
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "runAsGroup": 2000,
                    },
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "8Mi"}}],
                    "containers": [
                        {
                            "name": "op",
                            "image": "ignored",
                            "args": ["--namespace=$(NS)"],
                            "env": [
                                {
                                    "name": "NS",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                }
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            **container,
                        }
                    ],
                },
            }
        },
    }


def _args(deployment: dict[str, Any]) -> list[str]:
    return podman_run_args(
        deployment,
        image="img",
        pod=POD,
        serviceaccount_dir=Path("/sa"),
        service_env={"KUBERNETES_SERVICE_HOST": "127.0.0.1"},
        container_name="c",
    )


def test_podman_run_args_carry_the_pod_template() -> None:
    args = _args(_deployment())
    for flag in (
        "--user=1000:2000",
        "--passwd=false",
        "--read-only",
        "--read-only-tmpfs=false",
        "--cap-drop=ALL",
        "no-new-privileges",
        "--network=host",
        POD.name,
        "type=tmpfs,destination=/tmp,tmpfs-mode=0777,tmpfs-size=8388608",
        f"type=bind,source=/sa,destination={SERVICEACCOUNT_DIR},ro=true",
        f"--memory={64 * 2**20}",
        "--cpus=0.5",
        "--stop-timeout=10",
        "NS=ops",
        "KUBERNETES_SERVICE_HOST=127.0.0.1",
    ):
        assert flag in args, flag
    assert args[args.index("img") :] == ["img", "--namespace=ops"]


def test_a_command_replaces_the_entrypoint() -> None:
    args = _args(_deployment(command=["/bin/x", "$(NS)"]))
    assert args[args.index("--entrypoint") + 1] == "/bin/x"
    assert args[args.index("img") :] == ["img", "ops", "--namespace=ops"]


@pytest.mark.parametrize(
    "container",
    [
        {"securityContext": {"privileged": True}},
        {"securityContext": {"runAsUser": 0}},  # runAsNonRoot from the pod
        {"securityContext": {"seccompProfile": {"type": "Localhost"}}},
        {"volumeMounts": [{"name": "tmp", "mountPath": "/tmp", "subPath": "x"}]},
    ],
)
def test_what_it_cannot_run_as_the_kubelet_is_an_error(container: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        _args(_deployment(**container))


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ({"httpGet": {"path": "/readyz", "port": "health"}}, "http://127.0.0.1:8080/readyz"),
        ({"httpGet": {"path": "/livez", "port": 8081}}, "http://127.0.0.1:8081/livez"),
        ({"httpGet": {"port": 8080, "scheme": "HTTPS"}}, "https://127.0.0.1:8080/"),
        ({"tcpSocket": {"port": 8080}}, None),
    ],
)
def test_probe_url(probe: dict[str, Any], expected: str | None) -> None:
    container = {"ports": [{"name": "health", "containerPort": 8080}], "readinessProbe": probe}
    assert probe_url(container, "readinessProbe") == expected
