"""The one writer of the simulated vLLM's output: logger lines on stdout, raw text on either stream.

vLLM's logger writes to stdout (VLLM_LOGGING_STREAM defaults to sys.stdout) in the 0.31+ format
`(APIServer pid=N) INFO 11-27 05:15:16 [file.py:123] message`; a multi-line record repeats the
header on every line and ends all but the last with `\\r` (vLLM splits records with `\\r\\n`, as
the real-cpu captures show byte for byte). Tracebacks, tqdm bars and uvicorn's lifecycle lines go
to stderr; uvicorn's access log to stdout. A closed pipe silences the stream instead of crashing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from vllm_guard.sim.reports import Log, Output, Raw


class Console:
    def __init__(
        self, out: TextIO, err: TextIO, api_pid: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._streams = {"out": out, "err": err}
        self._closed: set[str] = set()
        self._lock = threading.Lock()
        self._clock = clock
        self.pids = {"APIServer": api_pid, "EngineCore": api_pid}

    def header(self, proc: str, level: str, where: str) -> str:
        stamp = time.strftime("%m-%d %H:%M:%S", time.localtime(self._clock()))
        return f"({proc} pid={self.pids[proc]}) {level} {stamp} [{where}] "

    def format(self, record: Log) -> str:
        head = self.header(record.proc, record.level, record.where)
        return "\r\n".join(head + line for line in record.text.split("\n")) + "\n"

    def log(self, proc: str, level: str, where: str, text: str) -> None:
        self.emit([Log(proc, level, where, text)])  # type: ignore[arg-type]

    def info(self, proc: str, where_text: tuple[str, str], **values: object) -> None:
        where, text = where_text
        self.log(proc, "INFO", where, text.format(**values) if values else text)

    def raw(self, stream: str, text: str) -> None:
        self.emit([Raw(stream, text)])  # type: ignore[arg-type]

    def emit(self, items: Iterable[Output]) -> None:
        for item in items:
            if isinstance(item, Log):
                self._write("out", self.format(item))
            else:
                self._write(item.stream, item.text if item.text.endswith("\n") else item.text + "\n")

    def write_block(self, stream: str, text: str) -> None:
        """Many lines in one write (the log flood), as fast as the pipe takes them."""
        self._write(stream, text)

    def _write(self, stream: str, text: str) -> None:
        if stream in self._closed:
            return
        handle = self._streams[stream]
        with self._lock:
            try:
                handle.write(text)
                handle.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._closed.add(stream)
