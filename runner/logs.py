"""The runner's own messages: `runner: …` lines on stderr, and the same lines in logs/run.log."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("runner")

_PREFIX = {
    logging.WARNING: "warning: ",
    logging.ERROR: "error: ",
    logging.CRITICAL: "error: ",
    logging.DEBUG: "debug: ",
}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"runner: {_PREFIX.get(record.levelno, '')}{record.getMessage()}"


_file_handler: logging.Handler | None = None


def setup(level: str | None = None) -> None:
    """Messages to stderr, at RUNNER_LOG_LEVEL (default INFO)."""
    name = (level or os.environ.get("RUNNER_LOG_LEVEL") or "INFO").upper()
    log.setLevel(getattr(logging, name, logging.INFO))
    log.propagate = False
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        log.addHandler(handler)


def attach_log_file(path: Path) -> None:
    """Start a fresh run.log that gets every runner message (the user's output is appended by execute)."""
    global _file_handler
    detach_log_file()
    path.write_bytes(b"")
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    _file_handler = handler


def detach_log_file() -> None:
    global _file_handler
    if _file_handler is not None:
        log.removeHandler(_file_handler)
        _file_handler.close()
        _file_handler = None
