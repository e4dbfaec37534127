"""The job's last line: why the script ended, as the user must read it in oSPARC's log.

oSPARC shows a failed job's last 20 log lines, and a line that starts with `error` as an
error: so a failure ends with `error: runner: <what happened> (<what to do>)`, a success
with `runner: done: …`.
"""

from __future__ import annotations

import signal

from runner.logs import duration
from runner.resources import human_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runner.execute import Outcome

# Import names whose distribution on PyPI is named otherwise: the usual stumbling blocks.
DISTRIBUTIONS = {
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python-headless",
    "PIL": "pillow",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
}
MISSING_MODULE = "ModuleNotFoundError: No module named '"


def missing_module(stderr_tail: bytes) -> str | None:
    """The top-level module whose import ended the script, from its traceback's last line."""
    for line in reversed(stderr_tail.decode("utf-8", "replace").splitlines()):
        if line.strip():
            if not line.startswith(MISSING_MODULE):
                return None
            name = line[len(MISSING_MODULE) :].partition("'")[0]
            # 'a.b' missing means package a exists without b: not a package to install.
            return name if name and "." not in name else None
    return None


def module_hint(module: str, script: str, requirements: str | None) -> str:
    distribution = DISTRIBUTIONS.get(module)
    if distribution:
        line = f"a line '{distribution}', the package that provides '{module}'"
    else:
        line = f"a line '{module}', or the name of the package that provides it"
    if requirements is None:
        return f"add a requirements.txt next to {script} with {line}"
    return f"add to {requirements} {line}"


def script_ending(
    script: str, outcome: Outcome, requirements: str | None, memory_bytes: int | None, timeout: float | None
) -> tuple[bool, str]:
    """(failed, the line) for a script that ran."""
    code = outcome.exit_code
    took = duration(outcome.seconds)
    if outcome.timed_out:
        return True, f"{script} ran longer than RUNNER_TIMEOUT={timeout:g}s and was stopped after {took}"
    if code == 0:
        return False, f"done: {script} exited with status 0 after {took}"
    if outcome.returncode < 0:
        name = _signal_name(-outcome.returncode)
        text = f"{script} was killed by {name} after {took} (exit status {code})"
        if -outcome.returncode == signal.SIGKILL and not outcome.signals:
            limit = f"; the memory limit is {human_bytes(memory_bytes)}" if memory_bytes else ""
            text += f" (most often the out-of-memory killer{limit}: use less memory, or ask for more)"
        return True, text
    module = missing_module(outcome.stderr_tail) if code == 1 else None
    if module is not None:
        return True, f"{script} failed: no module named '{module}' ({module_hint(module, script, requirements)})"
    return True, f"{script} exited with status {code} after {took} (its output above says why)"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
