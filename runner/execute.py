"""Running the user's script: live output, a copy in run.log, signals passed on, an optional timeout.

The user's process gets its own process group, so a terminal's Ctrl-C reaches it
exactly once (through us) and a forwarded SIGTERM also reaches whatever it started
(data-loader workers, …). Its stdin is /dev/null: a batch job has no one to answer.
Its output is passed on byte for byte as it arrives (`[PROGRESS] 0.5` lines reach
oSPARC's progress bar at once), except that a last line without a newline gets one,
so that the runner's next line starts a line of its own and is classified as such.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from runner.logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path
    from types import FrameType
    from typing import Any, BinaryIO

FORWARDED = (signal.SIGTERM, signal.SIGINT)


TAIL_BYTES = 8192  # of the script's stderr, kept to explain a failure (ModuleNotFoundError, …)


class Outcome:
    __slots__ = ("exit_code", "returncode", "seconds", "signals", "stderr_tail", "timed_out")

    def __init__(
        self,
        exit_code: int,
        returncode: int,
        seconds: float,
        timed_out: bool,
        signals: tuple[str, ...],
        stderr_tail: bytes = b"",
    ):
        self.exit_code = exit_code
        self.returncode = returncode
        self.seconds = seconds
        self.timed_out = timed_out
        self.signals = signals
        self.stderr_tail = stderr_tail


class LogTee:
    """Copies complete lines from the user's stdout and stderr into one log file, in arrival order."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.lock = threading.Lock()

    def write_lines(self, data: bytes) -> None:
        with self.lock:
            self.handle.write(data)
            self.handle.flush()


def _pump(source: BinaryIO, sink: BinaryIO, tee: LogTee | None, tail: bytearray | None = None) -> None:
    """Forward each chunk as it arrives (progress bars stay live); the log gets whole lines."""
    pending = b""
    last = b"\n"
    fd = source.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        _write(sink, chunk)
        last = chunk[-1:]
        if tail is not None:
            tail += chunk
            del tail[:-TAIL_BYTES]
        if tee is not None:
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut:
                tee.write_lines(pending[:cut])
                pending = pending[cut:]
    if last != b"\n":
        _write(sink, b"\n")
    if tee is not None and pending:
        tee.write_lines(pending + b"\n")
    source.close()


def _write(sink: BinaryIO, data: bytes) -> None:
    try:
        sink.write(data)
        sink.flush()
    except (OSError, ValueError):
        pass  # our own stdout closed: keep draining so the user's process does not block


def execute(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_file: Path | None,
    timeout: float | None = None,
    kill_grace: float = 10.0,
) -> Outcome:
    """Run `command`; return its exit status as a shell would report it (128+N when killed by signal N)."""
    started = time.monotonic()
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **group,
    )
    received: list[str] = []

    def forward(number: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(number).name)
        log.warning("received %s: passing it on to the script", signal.Signals(number).name)
        _signal_group(process, number)

    previous = {number: signal.signal(number, forward) for number in FORWARDED}
    handle = log_file.open("ab") if log_file is not None else None
    tee = LogTee(handle) if handle is not None else None
    assert process.stdout is not None and process.stderr is not None
    tail = bytearray()
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, sys.stdout.buffer, tee), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, sys.stderr.buffer, tee, tail), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    timed_out = False
    try:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            log.warning("RUNNER_TIMEOUT=%gs reached: stopping the script (SIGTERM)", timeout)
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=kill_grace)
            except subprocess.TimeoutExpired:
                log.warning("the script ignored SIGTERM for %gs: killing it (SIGKILL)", kill_grace)
                _signal_group(process, signal.SIGKILL)
                process.wait()
        for pump in pumps:
            # A grandchild holding the pipes open must not keep us waiting for ever.
            pump.join(timeout=5)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if handle is not None:
            handle.close()
    returncode = process.returncode
    exit_code = 128 - returncode if returncode < 0 else returncode
    return Outcome(exit_code, returncode, time.monotonic() - started, timed_out, tuple(received), bytes(tail))


def _signal_group(process: subprocess.Popen[Any], number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:
        pass
    except PermissionError:
        process.send_signal(number)
