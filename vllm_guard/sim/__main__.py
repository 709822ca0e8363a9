"""Entry point: `python -m vllm_guard.sim serve MODEL [vLLM flags]`."""

from __future__ import annotations

import sys

from vllm_guard.sim.server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
