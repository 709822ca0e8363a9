"""deploy/k8s/multi-node/: the LeaderWorkerSet of a two-node vLLM group under vllm-guard.

The LeaderWorkerSet is checked against its CRD's schema, LWS v0.10.0 (kubernetes-sigs/lws,
config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml at 2161f38, served version v1; the
same fields in v0.7-v0.9), kept in tests/data with each Pod template replaced by an open object:
the templates are checked as the PodTemplates they are, by kubernetes_validate. The CRD's schema
never closes an object (the API server prunes unknown fields without a word), so here every object
that lists its properties is closed: a misspelt field fails.
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from vllm_guard import group_role, vllm_config
from vllm_guard.settings import GuardSettings

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "k8s" / "multi-node" / "leaderworkerset.yaml"
SCHEMA = Path(__file__).resolve().parent / "data" / "lws-v0.10.0-leaderworkerset-v1-schema.json"
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def closed(schema: Any) -> Any:
    """`schema` with every object that lists its properties closed to others."""
    if isinstance(schema, dict):
        schema = {k: closed(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get(PRESERVE) and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [closed(v) for v in schema]
    return schema


def lws_schema() -> dict[str, Any]:
    schema: dict[str, Any] = closed(json.loads(SCHEMA.read_text()))
    schema["properties"]["apiVersion"]["enum"] = ["leaderworkerset.x-k8s.io/v1"]
    schema["properties"]["kind"]["enum"] = ["LeaderWorkerSet"]
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return schema


def docs() -> list[dict[str, Any]]:
    with MANIFEST.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def lws() -> dict[str, Any]:
    (doc,) = [d for d in docs() if d["kind"] == "LeaderWorkerSet"]
    return doc


def templates() -> dict[str, dict[str, Any]]:
    spec = lws()["spec"]["leaderWorkerTemplate"]
    return {"leader": spec["leaderTemplate"], "worker": spec["workerTemplate"]}


def container(role: str) -> dict[str, Any]:
    (only,) = templates()[role]["spec"]["containers"]
    return dict(only)


def env(role: str) -> dict[str, Any]:
    return {e["name"]: e for e in container(role)["env"]}


def test_the_leaderworkerset_is_valid_for_its_crd_strictly() -> None:
    jsonschema.Draft4Validator(lws_schema()).validate(lws())


def test_strict_validation_would_catch_a_misspelt_field() -> None:
    broken = copy.deepcopy(lws())
    broken["spec"]["leaderWorkerTemplate"]["restartpolicy"] = "None"
    with pytest.raises(jsonschema.ValidationError, match="restartpolicy"):
        jsonschema.Draft4Validator(lws_schema()).validate(broken)
    wrong = copy.deepcopy(lws())
    wrong["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "Never"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(lws_schema()).validate(wrong)


@pytest.mark.parametrize("role", ["leader", "worker"])
def test_each_template_is_a_valid_pod_template(role: str) -> None:
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": role},
        "template": templates()[role],
    }
    kubernetes_validate.validate(template, kubernetes_validate.latest_version(), strict=True)


def test_the_other_resources_are_valid_for_kubernetes_strictly() -> None:
    for doc in docs():
        if doc["kind"] != "LeaderWorkerSet":
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_group_is_two_nodes_whose_flags_make_a_leader_and_a_follower() -> None:
    spec = lws()["spec"]["leaderWorkerTemplate"]
    assert spec["size"] == 2
    roles = {}
    for role in ("leader", "worker"):
        c = container(role)
        assert "command" not in c, "the image's ENTRYPOINT (vllm-guard serve) must stay"
        args = [a.replace("$(LWS_LEADER_ADDRESS)", "vllm-group-0.vllm-group.default") for a in c["args"]]
        roles[role] = group_role.role_of(vllm_config.flags(args[1:], "0.32.0"))
        assert c["args"][0] == container("leader")["args"][0], "one model for the group"
    assert roles["leader"] == group_role.Role("leader", "multi-node", 0, 2, "vllm-group-0.vllm-group.default")
    assert roles["worker"] == group_role.Role(
        "follower", "multi-node", 1, 2, "vllm-group-0.vllm-group.default"
    )
    # LWS_LEADER_ADDRESS is LWS's own, injected into every container; the size matches --nnodes
    assert "LWS_LEADER_ADDRESS" not in env("leader")


def test_the_restart_policy_leaves_restarts_to_the_guards() -> None:
    spec = lws()["spec"]
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "None"
    assert spec["startupPolicy"] == "LeaderCreated"


def test_every_node_has_the_token_from_a_secret_and_the_guards_options_are_real() -> None:
    for role in ("leader", "worker"):
        e = env(role)
        token = Path(e["VLLM_GUARD_GROUP_TOKEN_FILE"]["value"])
        spec = templates()[role]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in container(role)["volumeMounts"]}
        volume = next(v for v in spec["volumes"] if v["name"] == mounts[str(token.parent)])
        assert volume["secret"]["secretName"] == "vllm-guard-group"
        assert e["VLLM_GUARD_METRICS_HOST"]["value"] == "0.0.0.0"
        for name in e:
            if name.startswith("VLLM_GUARD_"):
                assert name.removeprefix("VLLM_GUARD_").lower() in GuardSettings.model_fields, name
        shared = Path(e["VLLM_GUARD_SHARED_STATE"]["value"])
        assert any(shared.is_relative_to(m) for m in mounts if mounts[m] == "hf-cache")


def test_probes_ask_each_nodes_guard() -> None:
    for role in ("leader", "worker"):
        c = container(role)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == int(env(role)["VLLM_GUARD_METRICS_PORT"]["value"])
        for probe, path in (
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ):
            assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}, (role, probe)


def test_the_service_sends_traffic_to_the_leaders_only() -> None:
    (service,) = [d for d in docs() if d["kind"] == "Service"]
    labels = templates()["leader"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert {
        k: v for k, v in selector.items() if not k.startswith("leaderworkerset.")
    }.items() <= labels.items()
    assert selector["leaderworkerset.sigs.k8s.io/name"] == lws()["metadata"]["name"]
    assert "role" in selector and selector["role"] != templates()["worker"]["metadata"]["labels"]["role"]


def test_the_worker_runs_headless_and_the_leader_serves_the_api() -> None:
    leader, worker = container("leader")["args"], container("worker")["args"]
    assert "--headless" in worker and "--headless" not in leader
    assert shlex.join(leader).count("--port") == 1
