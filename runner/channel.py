"""The socket between the image's job process and root's supervisor: one overlay request, and its answer.

The job process (the job user) reads requirements.txt as it does locally, then sends the
supervisor one request: the path of the file, the code folder, the policy, and a tar of
every local file the requirements name (the requirement files themselves, local packages,
find-links folders), each at the absolute path the job saw it at. It never sends a key:
the supervisor reads its own copy of those files and computes the key itself
(runner/supervisor.py). While the supervisor works, it sends the job process its log lines,
which the job process writes as its own (stderr and run.log); then the answer: the
overlay's record, or the error that ends the job. The job process closes the socket before
the script starts, and the supervisor takes no second request, so nothing the script does
reaches root.

Frames: a JSON object on one line; one with `size` is followed by that many bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from runner.errors import BadInput, OverlayError, RunnerError
from runner.logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import BinaryIO

    from runner.overlay import Overlay
    from runner.requirements import RequirementSet

MAX_HEADER_BYTES = 1 << 20
SPOOL_BYTES = 8 << 20  # a request's tar stays in memory up to this size, then goes to a temporary file
_CHUNK = 1 << 16
_ERRORS: dict[str, type[RunnerError]] = {"BadInput": BadInput, "OverlayError": OverlayError}


class ProtocolError(Exception):
    """A frame that is not what the other side must send."""


class Frames:
    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.reader = connection.makefile("rb")

    def send(self, header: dict[str, object], payload: BinaryIO | None = None) -> None:
        self.connection.sendall((json.dumps(header) + "\n").encode())
        if payload is not None:
            while chunk := payload.read(_CHUNK):
                self.connection.sendall(chunk)

    def receive(self) -> dict[str, object] | None:
        """The next header, or None when the other side closed the socket."""
        line = self.reader.readline(MAX_HEADER_BYTES)
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise ProtocolError("a header longer than allowed, or cut short")
        header = json.loads(line)
        if not isinstance(header, dict):
            raise ProtocolError("a header that is not a JSON object")
        return header

    def payload(self, size: int) -> Payload:
        return Payload(self.reader, size)

    def close(self) -> None:
        self.reader.close()
        self.connection.close()


class Payload:
    """The `size` bytes after a header, read as a file (tarfile's stream mode reads it once, in order)."""

    def __init__(self, reader: BinaryIO, size: int) -> None:
        self.reader = reader
        self.left = size

    def read(self, count: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        wanted = self.left if count < 0 else min(count, self.left)
        data = self.reader.read(wanted)
        if not data:
            raise ProtocolError("the request ended early")
        self.left -= len(data)
        return data

    def drain(self) -> None:
        while self.left > 0:
            self.read(_CHUNK)


# --- the job process's side ------------------------------------------------------------------------------------

supervisor: Supervisor | None = None


def attach(connection: socket.socket) -> None:
    """Called in the job process the supervisor forked: overlays now come from there."""
    global supervisor
    supervisor = Supervisor(Frames(connection))


def close() -> None:
    global supervisor
    if supervisor is not None:
        supervisor.frames.close()
        supervisor = None


class Supervisor:
    def __init__(self, frames: Frames) -> None:
        self.frames = frames

    def request_overlay(
        self, requirements: RequirementSet, folder: Path, policy: str, name: str, summary: dict[str, object]
    ) -> Overlay | None:
        import tempfile

        from runner.overlay import Overlay
        from runner.shipped import pack, shipped_paths

        header: dict[str, object] = {
            "kind": "overlay",
            "requirements": str(requirements.path),
            "folder": os.path.abspath(folder),
            "policy": policy,
            "name": name,
        }
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as archive:
            pack(shipped_paths(requirements), archive)  # type: ignore[arg-type]
            header["size"] = archive.tell()
            archive.seek(0)
            self.frames.send(header, archive)  # type: ignore[arg-type]
        while True:
            answer = self.frames.receive()
            if answer is None:
                raise ProtocolError("the runner's supervisor ended without an answer")
            kind = answer.get("kind")
            if kind == "log":
                log.emit(int(answer["level"]), "%s", (str(answer["text"]),), always=answer.get("always") is True)  # type: ignore[call-overload]
            elif kind == "error":
                raise error_of(answer)
            elif kind == "overlay":
                record = answer.get("summary")
                if not isinstance(record, dict):
                    raise ProtocolError("an answer without a record")
                summary.update(record)
                described = record.get("overlay")
                if not isinstance(described, dict) or not described.get("key"):
                    return None
                lock_text = record.get("overlay_lock")
                return Overlay.from_summary(described, lock_text if isinstance(lock_text, str) else "")
            else:
                raise ProtocolError(f"an answer of unknown kind {kind!r}")


def kind_of(error: RunnerError) -> str:
    """The name the other side rebuilds `error` from (a subclass, e.g. records.Mismatch, travels as its base)."""
    return next((name for name, kind in _ERRORS.items() if isinstance(error, kind)), type(error).__name__)


def error_of(answer: dict[str, object]) -> Exception:
    kind = _ERRORS.get(str(answer.get("type")))
    reason = str(answer.get("reason", ""))
    if kind is None:
        return RuntimeError(f"the runner's supervisor failed: {reason}")
    fix, details = answer.get("fix"), answer.get("details")
    return kind(reason, fix if isinstance(fix, str) else None, details=details if isinstance(details, str) else None)


# --- the supervisor's side -------------------------------------------------------------------------------------


class Request:
    """One overlay request, as the job process sent it (its files still to be unpacked)."""

    def __init__(self, header: dict[str, object], frames: Frames) -> None:
        self.frames = frames
        self.requirements = _absolute(header.get("requirements"), "requirements")
        self.folder = _absolute(header.get("folder"), "folder")
        self.policy = str(header.get("policy", ""))
        self.name = str(header.get("name", "requirements.txt"))
        size = header.get("size")
        if not isinstance(size, int) or size < 0:
            raise ProtocolError("a request without the size of its files")
        self.size = size

    def unpack(self, target: Path) -> None:
        """Write the request's files under `target` (an empty folder root just made), as runner/shipped.py does."""
        from runner.shipped import UnsafeMember, unpack

        payload = self.frames.payload(self.size)
        try:
            unpack(payload, target)  # type: ignore[arg-type]
        except UnsafeMember as error:
            raise ProtocolError(str(error)) from None
        payload.drain()

    def answer(self, summary: dict[str, object]) -> None:
        self.frames.send({"kind": "overlay", "summary": summary})

    def fail(self, error: Exception) -> None:
        if isinstance(error, RunnerError):
            header: dict[str, object] = {"kind": "error", "type": kind_of(error), "reason": error.reason,
                                         "fix": error.fix, "details": error.details}  # fmt: skip
        else:
            header = {"kind": "error", "type": "internal", "reason": f"{type(error).__name__}: {error}"}
        self.frames.send(header)


def forward_logs(frames: Frames) -> None:
    """Every log line of the supervisor (and of a builder it forks) goes to the job process."""

    def forward(level: int, text: str, always: bool) -> None:
        with contextlib.suppress(OSError):  # the job process is gone: nobody to tell
            frames.send({"kind": "log", "level": level, "text": text, "always": always})

    log.forward = forward


def next_request(frames: Frames) -> Request | None:
    header = frames.receive()
    if header is None:
        return None
    if header.get("kind") != "overlay":
        raise ProtocolError(f"a request of unknown kind {header.get('kind')!r}")
    return Request(header, frames)


def _absolute(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise ProtocolError(f"a request whose {what} is not an absolute path")
    return os.path.normpath(value)
