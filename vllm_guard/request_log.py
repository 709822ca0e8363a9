"""Requests vLLM refused, as its log says while it serves: a model or LoRA adapter it does not
serve, more multimodal items than --limit-mm-per-prompt, a structured-output grammar its backend
could not compile. Pure: bytes of output in, events out.

Read from vLLM 0.8-0.34's source (what each release logs, and where it only answers the client:
docs/advice.md). Every such line is an error's: the relay looks for `rror` in a chunk (one C-level
pass; ERROR, Error and error alike) and only a chunk that has it is searched further, so a flood of
access-log lines costs one pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NEEDLE = b"rror"

# (event, pattern): the first group, where there is one, is what the advice names.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # serving_chat / responses: `Error with model ... The model `X` does not exist.` (0.8.0-0.34.0;
    # /v1/completions answers its 404 without a line)
    ("unknown_model", re.compile(r"Error with model .*?The model `([^`]+)` does not exist\.")),
    # lora/worker_manager.py, exceptions.py: `Loading lora X failed: No adapter found for P`
    ("lora_not_found", re.compile(r"Loading lora (\S+) failed: No adapter found for (\S+)")),
    # multimodal validate_num_items (logged 0.8.0-0.22.1): `At most N image(s) may be provided in one prompt.`
    ("mm_limit", re.compile(r"At most (\d+) (\w+)\(s\) may be provided in one (?:prompt|request)")),
    # v1/structured_output: a grammar that did not compile (0.26.0+), a matcher that failed
    ("grammar_failed", re.compile(r"Failed to compile grammar for request (\S+)")),
    ("grammar_failed", re.compile(r"Failed to advance FSM for request (\S+)")),
    ("grammar_failed", re.compile(r"LLMatcher error: (.*)")),
)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    detail: tuple[str, ...]  # the pattern's groups: the model's name, the limit and modality, ...


def scan(chunk: bytes) -> list[Event]:
    """The refused requests a chunk of vLLM's output tells of (empty for most chunks)."""
    if NEEDLE not in chunk:
        return []
    text = chunk.decode(errors="replace")
    found: list[Event] = []
    for kind, pattern in PATTERNS:
        found.extend(Event(kind, match.groups()) for match in pattern.finditer(text))
    return found
