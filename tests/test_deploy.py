"""deploy/: the Kubernetes manifests against the Kubernetes schemas and against each other, the policy
in the ConfigMap, the Prometheus rules and the Grafana dashboard against the metric names that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from vllm_guard.settings import GuardSettings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
EXPORTER_PORT = 9400
API_PORT = 8000

# vLLM's metric names, current and renamed (facts.md / reference.md: "Metrics" and the rename
# table). Histograms are listed by their base name.
VLLM_METRICS = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",  # until 0.11 (removed in 0.12.0)
    "vllm:num_preemptions_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:request_success_total",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds",  # until 0.14 (gone by 0.16.0)
    "vllm:request_time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:cache_config_info",
    "vllm:engine_sleep_state",
}
# The guard's own, from its exporter.
GUARD_METRICS = {
    "vllm_guard_attempts_total",
    "vllm_guard_restarts_total",
    "vllm_guard_phase",
    "vllm_guard_ready",
    "vllm_guard_degraded",
    "vllm_guard_degradation_info",
    "vllm_guard_time_to_ready_seconds",
    "vllm_guard_last_failure_info",
    "vllm_guard_attempt",
    "vllm_guard_engine_retries_total",
    "vllm_guard_advice",
    "vllm_guard_group_refused_total",
    "vllm_guard_group_generation",
}
KNOWN_METRICS = VLLM_METRICS | GUARD_METRICS
_METRIC = re.compile(r"(?<![\w:])(vllm:[a-z_:]+|vllm_guard_[a-z_]+)")
_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def metrics_in(expr: str) -> set[str]:
    return {_HISTOGRAM_SUFFIX.sub("", name) for name in _METRIC.findall(expr)}


def test_the_guard_metrics_listed_here_are_the_ones_its_exporter_serves() -> None:
    exporter = pytest.importorskip("vllm_guard.exporter")
    registry = exporter.GuardMetrics().registry
    # A counter's family is named without its _total, which its samples carry.
    served = {f"{m.name}_total" if m.type == "counter" else m.name for m in registry.collect()}
    assert served == GUARD_METRICS


# -- Kubernetes -------------------------------------------------------------------------------


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        with path.open() as f:
            found += [(path, doc) for doc in yaml.safe_load_all(f) if doc]
    return found


def resource(kind: str) -> dict[str, Any]:
    (doc,) = [doc for _, doc in manifests() if doc["kind"] == kind]
    return doc


def container() -> dict[str, Any]:
    (only,) = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def port_number(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c["ports"] if p.get("name") == port]
    return int(number)


@pytest.mark.parametrize("path_and_doc", manifests(), ids=lambda pd: f"{pd[0].name}:{pd[1]['kind']}")
def test_every_manifest_is_valid_for_kubernetes_strictly(path_and_doc: tuple[Path, dict[str, Any]]) -> None:
    _, doc = path_and_doc
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_strict_validation_would_catch_a_misspelt_field() -> None:
    broken = json.loads(json.dumps(resource("Deployment")))
    broken["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizelimit"] = "1Gi"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_the_container_runs_the_guard_with_the_model_first() -> None:
    c = container()
    assert "command" not in c, "the image's ENTRYPOINT (vllm-guard serve) must stay"
    args = c["args"]
    assert not args[0].startswith("-"), "MODEL comes first, right after `vllm-guard serve`"
    assert "--max-model-len" in args
    port = args[args.index("--port") + 1] if "--port" in args else str(API_PORT)
    assert port_number(c, "http") == int(port) == API_PORT


def test_probes_ask_the_guard_liveness_for_life_and_readiness_for_traffic() -> None:
    c = container()
    env = env_of(c)
    assert env["VLLM_GUARD_METRICS_HOST"]["value"] == "0.0.0.0"
    assert int(env["VLLM_GUARD_METRICS_PORT"]["value"]) == EXPORTER_PORT
    for probe, path in (
        ("startupProbe", "/livez"),
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
    ):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert port_number(c, get["port"]) == EXPORTER_PORT, probe
    # The startup probe covers the guard's own start, not vLLM's load: at most a couple of minutes.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] <= 120


def test_the_service_exposes_the_api_and_the_exporter_of_the_pods_it_selects() -> None:
    service = resource("Service")
    template = resource("Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    c = container()
    ports = {p["port"]: port_number(c, p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {API_PORT: API_PORT, EXPORTER_PORT: EXPORTER_PORT}


def test_shm_gpu_cache_state_and_the_token() -> None:
    spec = resource("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory" and shm["sizeLimit"]
    assert "/root/.cache/huggingface" in mounts
    state_dir = env_of(container())["VLLM_GUARD_STATE_DIR"]["value"]
    assert state_dir in mounts, "the state directory (the flags that worked) outlives a container restart"
    assert container()["resources"]["limits"]["nvidia.com/gpu"] == 1
    token = env_of(container())["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["optional"] is True
    # Service links would put VLLM_GUARD_<SERVICE>_PORT=tcp://... into the guard's environment.
    assert spec["enableServiceLinks"] is False


def policy_text() -> str:
    return str(resource("ConfigMap")["data"]["policy.yaml"])


def test_the_policy_comes_from_the_config_map_at_the_path_the_guard_is_given() -> None:
    spec = resource("Deployment")["spec"]["template"]["spec"]
    config_map = resource("ConfigMap")
    (volume,) = [v for v in spec["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    (mount,) = [m for m in container()["volumeMounts"] if m["name"] == volume["name"]]
    policy = Path(env_of(container())["VLLM_GUARD_POLICY"]["value"])
    assert policy.parent == Path(mount["mountPath"])
    assert policy.name in config_map["data"]


def test_the_policy_in_the_config_map_passes_policy_check(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text())
    done = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "policy", "check", str(policy)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a valid policy" in done.stdout


def test_termination_grace_outlasts_the_guards_own_stop() -> None:
    # SIGTERM → --grace-period-s for vLLM's shutdown → SIGKILL → up to --kill-timeout-s: the kubelet's
    # SIGKILL must not cut this short, or vLLM's engine is killed without the guard reaping it.
    fields = GuardSettings.model_fields
    grace = yaml.safe_load(policy_text()).get("restart", {}).get("grace_period_s")
    grace_s = float(grace if grace is not None else fields["grace_period_s"].default)
    kill_s = float(fields["kill_timeout_s"].default)
    period = resource("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert period > grace_s + kill_s


# -- Prometheus -------------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    with (DEPLOY / "prometheus" / "alerts.yaml").open() as f:
        groups = yaml.safe_load(f)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_has_a_duration_a_severity_and_words_for_a_human() -> None:
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_alerts_use_only_metrics_that_exist_and_both_spellings_of_renamed_ones() -> None:
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    for name, expr in exprs.items():
        assert metrics_in(expr) <= KNOWN_METRICS | {"up"}, name
    used = set().union(*(metrics_in(e) for e in exprs.values()))
    assert {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"} <= used
    assert {"vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"} <= used
    assert {"vllm_guard_restarts_total", "vllm_guard_degraded", "vllm_guard_ready"} <= used
    assert any('up{job="vllm-guard"}' in e for e in exprs.values())


def promtool() -> str | None:
    """promtool on PATH, or where scripts/check-deploy.sh caches it."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vllm-guard" / "promtool"
    return shutil.which("promtool") or (str(cache / "promtool") if (cache / "promtool").exists() else None)


def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    binary = promtool()
    if binary is None:
        pytest.skip("no promtool: bash scripts/check-deploy.sh fetches it")
    for command in ("check", "test"):
        name = "alerts.yaml" if command == "check" else "alerts_test.yaml"
        done = subprocess.run(
            [binary, command, "rules", str(DEPLOY / "prometheus" / name)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr


# -- Grafana ----------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    with (DEPLOY / "grafana" / "vllm-guard.json").open() as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def panel_exprs() -> list[str]:
    return [str(t["expr"]) for p in panels() for t in p["targets"]]


def test_dashboard_is_importable_with_a_prometheus_input() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in panels():
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_every_panel_queries_metrics_that_exist() -> None:
    for panel in panels():
        for target in panel["targets"]:
            names = metrics_in(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']!r}"
            assert names <= KNOWN_METRICS, f"{panel['title']}: unknown {names - KNOWN_METRICS}"


def test_dashboard_shows_vllm_and_the_guard() -> None:
    used = set().union(*(metrics_in(e) for e in panel_exprs()))
    assert {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:time_per_output_token_seconds",
        "vllm:generation_tokens_total",
        "vllm_guard_phase",
        "vllm_guard_ready",
        "vllm_guard_restarts_total",
        "vllm_guard_degraded",
        "vllm_guard_degradation_info",
        "vllm_guard_time_to_ready_seconds",
    } <= used


def test_promtool_parses_every_panel_query(tmp_path: Path) -> None:
    binary = promtool()
    if binary is None:
        pytest.skip("no promtool: bash scripts/check-deploy.sh fetches it")
    # Grafana's variables replaced by what Grafana would send; each query as a recording rule.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "1m").replace("$pod", ".*")}
        for i, e in enumerate(panel_exprs())
    ]
    rules_file = tmp_path / "dashboard-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [binary, "check", "rules", str(rules_file)], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- scaling out ------------------------------------------------------------------------------


def test_the_autoscaler_scales_the_deployment_on_the_adapters_name_for_vllms_waiting_requests() -> None:
    hpa = resource("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", resource("Deployment")["metadata"]["name"])
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
    with (DEPLOY / "prometheus" / "adapter-rules.yaml").open() as f:
        [rule] = yaml.safe_load(f)["rules"]
    series = metrics_in(rule["seriesQuery"])
    assert series == {"vllm:num_requests_waiting"} and series <= KNOWN_METRICS
    renamed = re.sub(
        rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), "vllm:num_requests_waiting"
    )
    assert renamed == metric["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    assert ":" not in renamed  # the custom metrics API's names cannot hold one
    assert "<<.Series>>" in rule["metricsQuery"] and "by (<<.GroupBy>>)" in rule["metricsQuery"]


def test_scaling_out_waits_for_sustained_queueing_and_one_slow_loading_pod_at_a_time() -> None:
    behavior = resource("HorizontalPodAutoscaler")["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] >= 60
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 600


def test_the_dashboard_shows_which_advice_holds() -> None:
    with (DEPLOY / "grafana" / "vllm-guard.json").open() as f:
        panels = json.load(f)["panels"]
    [advice] = [p for p in panels if "vllm_guard_advice" in json.dumps(p.get("targets", []))]
    assert "by (condition)" in advice["targets"][0]["expr"]
