"""Running py-rattler's coroutines from synchronous code.

py-rattler completes a Python future from one of its own (tokio) threads, under the GIL; the
`call_soon_threadsafe` that wakes the event loop releases the GIL while it writes to the loop's
socket. The main thread can then finish `asyncio.run`, the command, and start interpreter
shutdown before that thread has the GIL back; a thread that wants the GIL during shutdown is
made to exit, and py-rattler's GIL guard then aborts the process (`Fatal Python error:
PyGILState_Release`, exit 134). Measured on the 2-core machine: 12 aborts in 140 warm
`cli install` runs without the pause below, 0 in 200 with it (5 ms, then 10 ms). Sleeping
releases the GIL, so the waiting thread gets it and returns before anything else happens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
SETTLE_SECONDS = 0.01


def run_rattler(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    finally:
        time.sleep(SETTLE_SECONDS)  # hand the GIL to the py-rattler thread that delivered the result
