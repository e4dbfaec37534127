"""A conda channel folder served over HTTP on 127.0.0.1 from a thread, with faults on demand.

A fault is set per archive file name: `404` answers Not Found, `truncate` promises the whole
length and closes the connection half way, `wrong` serves another package's (valid) archive,
as a stale proxy might, and `garbage` the right length of bytes that are no archive at all.
A refused connection needs no server: `refused_url()` names a port nothing listens on.

A client that hangs up in the middle of an answer (py-rattler drops a download once it knows
the bytes are wrong) makes the handler fail; socketserver would print that traceback from the
server's thread, where no test captures it. The server keeps such errors in `errors` instead,
and logs any other.
"""

from __future__ import annotations

import functools
import logging
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)


class ChannelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
        self.folder = folder
        self.faults: dict[str, str] = {}
        self.requests: Counter[str] = Counter()
        self.bytes_sent = 0
        self.errors: list[BaseException | None] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        with self._lock:
            self.errors.append(error)
        if not isinstance(error, ConnectionError):
            log.warning("the channel server failed on a request from %s: %r", client_address, error)

    def count(self, name: str, size: int) -> None:
        with self._lock:
            self.requests[name] += 1
            self.bytes_sent += size


class _Handler(SimpleHTTPRequestHandler):
    server: ChannelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        fault = self.server.faults.get(name)
        path = Path(self.translate_path(self.path))
        if fault == "404" or not path.is_file():
            self.server.count(name, 0)
            self.send_error(404)
            return
        data = path.read_bytes()
        if fault == "wrong":
            others = sorted(p for p in path.parent.glob("*.conda") if p != path)
            data = others[0].read_bytes()
        elif fault == "garbage":
            data = bytes(b ^ 0xFF for b in data)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            self.server.count(name, len(data) // 2)
            return
        self.wfile.write(data)
        self.server.count(name, len(data))


@contextmanager
def serve_channel(folder: Path) -> Iterator[ChannelServer]:
    server = ChannelServer(folder)
    thread = threading.Thread(target=server.serve_forever, name="channel-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def refused_url() -> str:
    """A URL on 127.0.0.1 whose port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
