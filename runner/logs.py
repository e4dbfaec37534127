"""The runner's own messages: lines on stderr as oSPARC's backend reads them, and the same lines in run.log.

The backend reads the container's log line by line (services/dask-sidecar in
osparc-simcore): a line whose lower-cased start is `error`/`err`/`exception`/`exc:` is
shown as an error, `warn…` as a warning, and every line is searched for progress
(`[PROGRESS] 0.5`, `50%`, `3/10`, and any line that starts with a `0` or `1`). So:

    runner: <what happens>                 information
    warning: runner: <what may be wrong>   a warning in oSPARC
    error: runner: <reason> (<fix>)        an error in oSPARC

Every line of a message carries its prefix, so none starts with a digit, a `.` or a
`[`, and none reads as progress. While the runner itself works (building an overlay,
unpacking, zipping) a heartbeat line keeps the log from falling silent: the backend
kills a job after an hour without a line, and a user should see that work goes on.

A few lines of our own rather than the `logging` module: importing it costs ~6 ms, and
the runner's whole budget over a bare `python script.py` is 100 ms (the same reason the
modules on the path of every job avoid `dataclasses` and `typing`).
"""

from __future__ import annotations

import os
import sys
import time

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_LEVELS = {"DEBUG": DEBUG, "INFO": INFO, "WARNING": WARNING, "ERROR": ERROR}
_PREFIX = {DEBUG: "runner: debug: ", INFO: "runner: ", WARNING: "warning: runner: ", ERROR: "error: runner: "}
HEARTBEAT_SECONDS = 30.0  # well under the 60 s the runner may stay silent

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from threading import Event
    from types import TracebackType
    from typing import TextIO


class Log:
    """`log.info("%s done", what)`: the logging call style, one handler to stderr and optionally a file."""

    def __init__(self) -> None:
        self.level = INFO
        self.file: TextIO | None = None
        self.last_line = time.monotonic()
        # In the image's supervisor: every message goes to the job process, which writes it (stderr, run.log).
        self.forward: Callable[[int, str, bool], None] | None = None

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

    def emit(self, level: int, message: str, args: tuple[object, ...], *, always: bool = False) -> None:
        text = message % args if args else message
        if self.forward is not None:
            self.forward(level, text, always)
            return
        prefix = _PREFIX[level]
        lines = "".join(f"{prefix}{line}\n" for line in text.splitlines() or [""])
        if level >= self.level or always:
            self.last_line = time.monotonic()
            try:
                sys.stderr.write(lines)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        if self.file is not None and level >= INFO:
            self.file.write(lines)
            self.file.flush()

    def debug(self, message: str, *args: object) -> None:
        self.emit(DEBUG, message, args)

    def info(self, message: str, *args: object) -> None:
        self.emit(INFO, message, args)

    def warning(self, message: str, *args: object) -> None:
        self.emit(WARNING, message, args)

    def error(self, message: str, *args: object) -> None:
        self.emit(ERROR, message, args)

    def heartbeat(self, activity: str, every: float | None = None) -> Heartbeat:
        """`with log.heartbeat("building the overlay"):` says `runner: still building the overlay (1 min 30 s)`
        whenever the runner has printed nothing for `every` seconds (RUNNER_HEARTBEAT_SECONDS, 30)."""
        if every is None:
            every = _seconds(os.environ.get("RUNNER_HEARTBEAT_SECONDS"), HEARTBEAT_SECONDS)
        return Heartbeat(self, activity, every)


class Heartbeat:
    """A daemon thread that speaks only when the runner has been quiet; started and stopped as a context."""

    def __init__(self, log: Log, activity: str, every: float) -> None:
        self.log = log
        self.activity = activity
        self.every = every
        self.started = 0.0
        self.stop: Event | None = None  # made on entry: threading is imported only by jobs that need it

    def __enter__(self) -> Heartbeat:
        import threading

        self.started = time.monotonic()
        self.stop = threading.Event()
        threading.Thread(target=self._beat, args=(self.stop,), name="runner-heartbeat", daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.stop is not None:
            self.stop.set()

    def _beat(self, stop: Event) -> None:
        while not stop.wait(min(self.every, max(0.05, self.log.last_line + self.every - time.monotonic()))):
            if time.monotonic() - self.log.last_line >= self.every:
                self.log.info("still %s (%s)", self.activity, duration(time.monotonic() - self.started))


def duration(seconds: float) -> str:
    """`4.2 s`, `42 s`, `3 min 05 s`, `2 h 01 min`."""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _seconds(text: str | None, default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if value > 0 else default


log = Log()
