"""Time to classify a 100k-line vLLM log (a long healthy run, then a real failure at its end).

python bench/classify.py [--lines 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from vllm_guard.failures import classify

# Lines of the shapes a long vLLM run prints (real-cpu captures and metrics logger lines).
NOISE = [
    "(APIServer pid=4242) INFO 11-27 06:24:31 [loggers.py:236] Engine 000: Avg prompt throughput: 1024.0 tokens/s, Avg generation throughput: 1234.5 tokens/s, Running: 12 reqs, Waiting: 0 reqs, GPU KV cache usage: 40.1%, Prefix cache hit rate: 12.5%",
    '(APIServer pid=4242) INFO:     127.0.0.1:52814 - "POST /v1/completions HTTP/1.1" 200 OK',
    '(APIServer pid=4242) INFO:     127.0.0.1:52815 - "GET /health HTTP/1.1" 200 OK',
]
# shared/vllm/real-cpu/full/fail_a2_maxlen_exceeds_kv.log, its root cause and wrapper
END = [
    "(EngineCore pid=28342) ERROR 11-27 05:24:43 [core.py:1115] ValueError: To serve at least one request with the model's max seq len (4096), (0.0 GiB KV cache is needed, which is larger than the available KV cache memory (0.0 GiB). Based on the available memory, the estimated maximum model length is 1792.",
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    noise = [NOISE[i % len(NOISE)] for i in range(opts.lines - len(END))]
    # With the failure at its end a phrase names it; without it (a process killed from outside)
    # classify() also runs the rules it keeps for when no phrase matches.
    for what, log, kind in (("a real failure at its end", noise + END, "max_model_len_too_large"),
                            ("nothing that names a cause", noise + ["Killed"] * len(END), "worker_died")):  # fmt: skip
        times = []
        for _ in range(opts.runs):
            start = time.perf_counter()
            failure = classify(log)
            times.append(time.perf_counter() - start)
        assert failure.kind.value == kind, failure
        per_line_us = statistics.median(times) / len(log) * 1e6
        print(f"{len(log):,} lines, {what}, {opts.runs} runs: median {statistics.median(times):.3f} s "
              f"({per_line_us:.1f} us a line), min {min(times):.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
