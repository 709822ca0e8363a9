"""The OpenAI-shaped JSON bodies vLLM answers with, and the toy engine behind the completions.

Field sets are those of a real vLLM 0.32.0 server (/work/shared/vllm/real-cpu/full/ok_run3_eager.json:
`models`, `completion`, `chat`); the generated text is deterministic nonsense, one word a token.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

WORDS = (
    "the", "guard", "keeps", "a", "model", "serving", "memory", "fits", "tokens", "flow", "engine",
    "cache", "graph", "kernel", "batch", "request", "stream", "answer", "quietly",
)  # fmt: skip


def model_list(names: list[str], root: str, max_model_len: int, created: int) -> dict[str, Any]:
    cards = []
    for name in names:
        permission = {
            "id": "modelperm-" + hashlib.sha1(name.encode()).hexdigest()[:16],
            "object": "model_permission",
            "created": created,
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        cards.append(
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": root,
                "parent": None,
                "max_model_len": max_model_len,
                "permission": [permission],
            }
        )
    return {"object": "list", "data": cards}


def error(status: int, kind: str, message: str, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def prompt_tokens(prompt: str) -> int:
    return len(prompt.split()) + 1  # words plus a BOS token


def generate(prompt: str, max_tokens: int) -> str:
    seed = int(hashlib.sha1(prompt.encode()).hexdigest(), 16)
    return " " + " ".join(WORDS[(seed + 7 * i) % len(WORDS)] for i in range(max_tokens))


def prompt_of(request: dict[str, Any], chat: bool) -> str:
    if chat:
        messages = request.get("messages") or []
        return " ".join(str(item.get("content", "")) for item in messages if isinstance(item, dict))
    prompt = request.get("prompt", "")
    return " ".join(str(p) for p in prompt) if isinstance(prompt, list) else str(prompt)


def max_tokens_of(request: dict[str, Any]) -> int:
    return int(request.get("max_tokens") or request.get("max_completion_tokens") or 16)


def completion(
    *, chat: bool, model: str, text: str, prompt: int, completion: int, version: str, finish: str = "length"
) -> dict[str, Any]:
    if chat:
        message = {
            "role": "assistant",
            "content": text.strip(),
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "reasoning": None,
        }
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None}
    else:
        choice = {"index": 0, "text": text, "logprobs": None}
        choice.update({"token_ids": None, "prompt_logprobs": None, "prompt_token_ids": None})
    choice.update({"finish_reason": finish, "stop_reason": None})
    ident = hashlib.sha1(str(time.monotonic_ns()).encode()).hexdigest()[:16]
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{ident}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "service_tier": None,
        "system_fingerprint": f"vllm-{version}",
        "usage": {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": None,
        },
        "kv_transfer_params": None,
    }
