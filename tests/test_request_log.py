"""Requests vLLM refused, read from its output while it serves, in the words each release logs
(docs/advice.md): one pass over a chunk without an error, a search only where there is one."""

from __future__ import annotations

import os
from pathlib import Path

from vllm_guard.output import AttemptOutput, CappedLog
from vllm_guard.printer import STDOUT, Printer
from vllm_guard.redact import Redactor
from vllm_guard.request_log import Event, scan

CHAT_404 = (
    "(APIServer pid=7) ERROR 12-07 01:00:00 [serving.py:274] Error with model error=ErrorInfo(message='The "
    "model `my-lora` does not exist. Valid aliases: base.', type='NotFoundError', param='model', code=404)"
)
# vLLM 0.8-0.10's flat ErrorResponse
CHAT_404_OLD = (
    "ERROR 05-01 10:00:00 [serving_chat.py:133] Error with model object='error' message='The model `foo` "
    "does not exist.' type='NotFoundError' param=None code=404"
)
LORA = "ValueError: Loading lora sql-lora failed: No adapter found for /adapters/sql"
MM = "ValueError: At most 1 image(s) may be provided in one prompt. Set `--limit-mm-per-prompt` to increase this limit."
MM_OLD = "ValueError: At most 2 video(s) may be provided in one request."
GRAMMAR = (
    "(EngineCore pid=9) ERROR 12-07 01:00:00 [__init__.py:227] Failed to compile grammar for request cmpl-1-0"
)


def test_each_refusal_is_read_with_what_the_advice_names() -> None:
    text = "\n".join([CHAT_404, CHAT_404_OLD, LORA, MM, MM_OLD, GRAMMAR]).encode()
    assert scan(text) == [
        Event("unknown_model", ("my-lora",)),
        Event("unknown_model", ("foo",)),
        Event("lora_not_found", ("sql-lora", "/adapters/sql")),
        Event("mm_limit", ("1", "image")),
        Event("mm_limit", ("2", "video")),
        Event("grammar_failed", ("cmpl-1-0",)),
    ]


def test_a_chunk_without_an_error_is_one_pass_and_nothing() -> None:
    access = b'INFO:     127.0.0.1:5 - "POST /v1/chat/completions HTTP/1.1" 404 Not Found\n' * 1000
    assert scan(access) == []
    assert scan(b"The model `x` does not exist.\n") == []  # the body's words, without vLLM's error line


def test_the_relay_counts_refusals_only_once_vllm_serves(tmp_path: Path) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    printer = Printer(stdout_fd=devnull, stderr_fd=devnull)
    output = AttemptOutput(printer, Redactor(), CappedLog(tmp_path / "a.log", 1 << 20))
    output.feed(STDOUT, (CHAT_404 + "\n").encode())
    assert not output.refused  # starting: milestones are read, not refusals
    output.watching = False
    output.feed(STDOUT, (CHAT_404 + "\n" + CHAT_404 + "\n").encode())
    output.feed(STDOUT, (MM + "\n").encode())
    assert output.refused == {"unknown_model": 2, "mm_limit": 1}
    assert output.refused_last["unknown_model"] == ("my-lora",)
    output.close()
    printer.close()
    os.close(devnull)
