# vllm-guard on the official vLLM image. `docker run IMAGE MODEL [vLLM flags]` runs
# `vllm-guard serve MODEL [vLLM flags]`, which starts the image's own `vllm serve` as its child.
#
#   docker build -t vllm-guard .
#   docker run --gpus all --ipc=host --stop-timeout 90 -p 8000:8000 -p 9400:9400 \
#     -v ~/.cache/huggingface:/root/.cache/huggingface -v ~/.cache/vllm:/root/.cache/vllm -e HF_TOKEN \
#     vllm-guard Qwen/Qwen2.5-7B-Instruct --max-model-len 32768
#
# The base image's ENTRYPOINT is ["vllm", "serve"]; this one replaces it, so arguments after
# the image name are the same as for the official image. Pinned to a published release: the
# guard reads the vLLM version from the package metadata, but a moving `latest` would change the
# vLLM under a deployment without a rebuild. The newest vLLM the guard supports
# (vllm_guard/vllm_version.py, NEWEST_SUPPORTED; tests/test_dockerfile.py holds them equal).
# CUDA 12.9 drivers: --build-arg VLLM_IMAGE=vllm/vllm-openai:v0.33.0-cu129.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.33.0
FROM ${VLLM_IMAGE}

COPY pyproject.toml README.md /tmp/vllm-guard/
COPY vllm_guard /tmp/vllm-guard/vllm_guard

# Into the image's own Python, beside vLLM, so that `vllm` is on PATH for the guard and its
# version is in the same package metadata. Every package already installed is a constraint:
# pip may add what the guard lacks (pydantic-settings, for one) but may never move one of
# vLLM's pinned dependencies; a conflict fails the build instead of breaking vLLM at run time.
# PIP_BREAK_SYSTEM_PACKAGES: the image's Python is the system one (no venv), by design.
RUN python3 -m pip list --format=freeze > /tmp/vllm-image-constraints.txt \
    && PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir \
        --constraint /tmp/vllm-image-constraints.txt /tmp/vllm-guard \
    && rm -rf /tmp/vllm-guard /tmp/vllm-image-constraints.txt \
    && command -v vllm \
    && vllm-guard --version

# The exporter must listen beyond loopback for Kubernetes probes and Prometheus; 9400 is the
# port every manifest in deploy/ uses. The state directory (attempt logs, journal, the flags
# that reached ready) is a fixed path so that it can be a volume: on Kubernetes an emptyDir
# there survives container restarts, so a restarted guard starts from the remembered flags.
ENV VLLM_GUARD_METRICS_HOST=0.0.0.0 \
    VLLM_GUARD_METRICS_PORT=9400 \
    VLLM_GUARD_STATE_DIR=/var/lib/vllm-guard

# 8000: vLLM's OpenAI API (vLLM's default --port); 9400: the guard's /metrics /livez /readyz /status.
EXPOSE 8000 9400

# The guard runs as PID 1 here (no --init needed): it handles SIGTERM and SIGINT itself (PID 1
# gets no default action for a signal it does not handle), stops vLLM in order, SIGKILLs the
# whole tree after --grace-period-s (30 s), and reaps every orphan, as the child subreaper it
# already is outside a container. Docker's default stop timeout is 10 s, shorter than that grace
# period: run with --stop-timeout 90 (compose: stop_grace_period: 90s).
STOPSIGNAL SIGTERM

# /livez, not /readyz: /livez is 200 while the guard is alive, including while vLLM loads for
# many minutes or is being relaunched with degraded flags; /readyz would mark the container
# unhealthy during every long load, and orchestrators that act on health (Swarm replaces
# unhealthy tasks, compose's depends_on waits on it) would kill the very relaunch the guard is
# running. Whether vLLM serves is /readyz's question, asked by load balancers, not by this.
# Python, not curl: it is certainly in the image; exec form, so it reads VLLM_GUARD_METRICS_PORT
# itself. urlopen raises on anything but 2xx, and the exit status says unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('VLLM_GUARD_METRICS_PORT', '9400') + '/livez', timeout=4)"]

# Root, as in the base image: it keeps the Hugging Face cache at /root/.cache/huggingface where
# vLLM's documentation mounts it; run with --user (or runAsUser) and HF_HOME set to drop it.
ENTRYPOINT ["vllm-guard", "serve"]
