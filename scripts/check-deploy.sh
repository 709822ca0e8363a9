#!/usr/bin/env bash
# Checks the deployment files: the Prometheus rules (promtool check rules + their unit tests),
# the Kubernetes manifests (kubernetes-validate, strict, against the bundled schemas) and the
# policy in the ConfigMap (vllm-guard policy check). Run from anywhere; .ci/run calls it.
#
# promtool: taken from PATH, else from the cache, else extracted from Debian's `prometheus`
# package (apt-get download + dpkg -x: nothing is installed, no service is started) into
# ~/.cache/vllm-guard/promtool. Cached, the whole script takes about two seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_BIN="${VENV_BIN:-.venv/bin}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vllm-guard/promtool"

find_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        command -v promtool
        return
    fi
    if [ -x "$CACHE/promtool" ]; then
        echo "$CACHE/promtool"
        return
    fi
    echo "== promtool is not on PATH: extracting it from Debian's prometheus package into $CACHE" >&2
    local tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand $tmp now: the trap runs after the function returns
    trap "rm -rf '$tmp'" EXIT
    # apt-get download writes to the current directory; as root it warns that _apt cannot
    # read it (harmless).
    (cd "$tmp" && apt-get download prometheus >&2 2>/dev/null) || {
        echo "cannot download Debian's prometheus package: install promtool (apt-get install prometheus," >&2
        echo "or a release from prometheus.io) and put it on PATH" >&2
        exit 2
    }
    dpkg -x "$tmp"/prometheus_*.deb "$tmp/root"
    mkdir -p "$CACHE"
    install -m 0755 "$tmp/root/usr/bin/promtool" "$CACHE/promtool.new"
    mv "$CACHE/promtool.new" "$CACHE/promtool"  # atomic: a concurrent run sees all or nothing
    echo "$CACHE/promtool"
}

PROMTOOL="$(find_promtool)"
echo "== prometheus rules ($("$PROMTOOL" --version 2>&1 | head -1))"
"$PROMTOOL" check rules deploy/prometheus/alerts.yaml
"$PROMTOOL" test rules deploy/prometheus/alerts_test.yaml

echo "== kubernetes manifests (kubernetes-validate --strict)"
"$VENV_BIN/kubernetes-validate" --strict --quiet deploy/k8s/*.yaml

echo "== the policy in deploy/k8s/configmap.yaml"
policy="$(mktemp --suffix=.yaml)"
trap 'rm -f "$policy"' EXIT
"$VENV_BIN/python" -c '
import sys, yaml
with open("deploy/k8s/configmap.yaml") as f:
    sys.stdout.write(yaml.safe_load(f)["data"]["policy.yaml"])
' >"$policy"
"$VENV_BIN/vllm-guard" policy check "$policy"
echo "== deploy checks passed"
