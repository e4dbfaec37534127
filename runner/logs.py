"""The runner's own messages: `runner: …` lines on stderr, and the same lines in logs/run.log.

A few lines of our own rather than the `logging` module: importing it costs ~6 ms, and
the runner's whole budget over a bare `python script.py` is 100 ms (the same reason the
modules on the path of every job avoid `dataclasses` and `typing`).
"""

from __future__ import annotations

import os
import sys

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_LEVELS = {"DEBUG": DEBUG, "INFO": INFO, "WARNING": WARNING, "ERROR": ERROR}
_PREFIX = {DEBUG: "debug: ", INFO: "", WARNING: "warning: ", ERROR: "error: "}

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import TextIO


class Log:
    """`log.info("%s done", what)`: the logging call style, one handler to stderr and optionally a file."""

    def __init__(self) -> None:
        self.level = INFO
        self.file: TextIO | None = None

    def setup(self, level: str | None = None) -> None:
        name = (level or os.environ.get("RUNNER_LOG_LEVEL") or "INFO").upper()
        self.level = _LEVELS.get(name, INFO)

    def attach(self, path: Path) -> None:
        """Start a fresh run.log that gets every message from now on (execute appends the script's output)."""
        self.detach()
        path.write_bytes(b"")
        # Append mode: the script's output is appended to the same file through another handle.
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole job

    def detach(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def emit(self, level: int, message: str, args: tuple[object, ...]) -> None:
        text = f"runner: {_PREFIX[level]}{message % args if args else message}\n"
        if level >= self.level:
            try:
                sys.stderr.write(text)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        if self.file is not None and level >= INFO:
            self.file.write(text)
            self.file.flush()

    def debug(self, message: str, *args: object) -> None:
        self.emit(DEBUG, message, args)

    def info(self, message: str, *args: object) -> None:
        self.emit(INFO, message, args)

    def warning(self, message: str, *args: object) -> None:
        self.emit(WARNING, message, args)

    def error(self, message: str, *args: object) -> None:
        self.emit(ERROR, message, args)


log = Log()
