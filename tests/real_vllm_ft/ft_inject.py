"""TEST-ONLY, for tests/test_real_vllm.py: a logits processor that raises for a marked request.

Loaded with `--logits-processors ft_inject:RaiseOnMark`; a completion sent with
`"vllm_xargs": {"ft_inject": 1}` makes the model step raise, which vLLM's fault tolerance catches
and pauses the engine on.
"""

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor


class InjectedFault(RuntimeError):
    pass


class RaiseOnMark(LogitsProcessor):
    def __init__(self, vllm_config: object, device: torch.device, is_pin_memory: bool) -> None:
        self.marked: set[int] = set()

    def is_argmax_invariant(self) -> bool:
        return False  # or apply() is skipped for greedy requests

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if not batch_update:
            return
        for index in batch_update.removed:
            self.marked.discard(index)
        for index, params, _prompt, _output in batch_update.added:
            if (getattr(params, "extra_args", None) or {}).get("ft_inject"):
                self.marked.add(index)
            else:
                self.marked.discard(index)
        for a, b, _direction in batch_update.moved:
            had_a, had_b = a in self.marked, b in self.marked
            self.marked.difference_update({a, b})
            if had_a:
                self.marked.add(b)
            if had_b:
                self.marked.add(a)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if self.marked:
            raise InjectedFault("ft_inject: injected engine fault")
        return logits
