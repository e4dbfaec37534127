"""End a process that used py-rattler right before interpreter finalization, which can abort it.

The cause: py-rattler (through pyo3-async-runtimes) completes each asyncio future from a tokio
thread that enters Python through a PyO3 guard (PyGILState_Ensure) and calls the event loop's
call_soon_threadsafe, which lets go of the GIL while it writes to the loop's wake-up socket. The
main thread can then take the GIL, get its result and exit before that thread has left Python.
From the moment Py_FinalizeEx starts, CPython 3.11 to 3.13 end any other thread that asks for the
GIL with pthread_exit, and the unwinding runs PyO3's destructors without the GIL: the guard's
PyGILState_Release on a thread state that is no longer current is a fatal error ("Fatal Python
error: PyGILState_Release: thread state … must be current when releasing", SIGABRT, exit 134);
an object released while the main thread's final garbage collection runs is a SIGSEGV.

Finalization is the only step that forces threads out this way. A process that ends with
os._exit, after Python's own exit sequence (non-daemon threads joined, atexit handlers run) but
before finalization, never gets there: a Rust thread still waiting for the GIL is simply ended
with the process by the kernel, as it would be anyway a moment later.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn


class FinalExit:
    """The first atexit handler registered, so it runs last: flush, then os._exit(status).

    Handlers registered after it (tempfile cleanups, caches, pytest's) still run before it;
    of those registered before it, logging's is run here.
    """

    def __init__(self, status: int = 1) -> None:
        self.status = status  # until the owner knows better, an escaping exception is a failure
        atexit.register(self._end)

    @staticmethod
    def status_of(done: SystemExit) -> int:
        """The exit status Python gives SystemExit(code): None is 0, an int itself, anything else 1."""
        if done.code is None:
            return 0
        if isinstance(done.code, int):
            return done.code
        return 1

    def _end(self) -> None:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
                stream.flush()
        os._exit(self.status)


def run_then_exit(main: Callable[[], object]) -> NoReturn:
    """Run MAIN as the process's main, then exit right before interpreter finalization.

    The status is what `sys.exit(main())` would give: MAIN's int result, or its SystemExit's.
    """
    final_exit = FinalExit()
    try:
        result = main()
    except SystemExit as done:
        final_exit.status = FinalExit.status_of(done)
        raise
    except KeyboardInterrupt:
        final_exit.status = 130  # what a shell reports for Ctrl-C
        raise
    final_exit.status = FinalExit.status_of(SystemExit(result))
    sys.exit(final_exit.status)
