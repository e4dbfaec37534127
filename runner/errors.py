"""Setup failures: each reaches the user as one line `error: runner: <reason> (<fix>)` and a distinct exit code.

The user's own script keeps its exit status; these codes are only for what goes wrong
before or around it, so a failed setup is never mistaken for a successful run.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2
EXIT_OVERLAY = 3
EXIT_OUTPUT = 4
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in the runner itself
EXIT_TIMEOUT = 124


class RunnerError(Exception):
    """A setup failure: `reason` says what is wrong, `fix` the way out, `details` (optional) the tool output."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, reason: str, fix: str | None = None, *, details: str | None = None) -> None:
        self.reason = reason
        self.fix = fix
        self.details = details
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(self.reason.split())
        if self.fix:
            text += f" ({' '.join(self.fix.split())})"
        return text


class BadInput(RunnerError):
    """The job's folders, script or requirements are not usable as given."""

    exit_code = EXIT_BAD_INPUT


class OverlayError(RunnerError):
    """The requirements overlay cannot be built (conflict, unknown package, uv failure)."""

    exit_code = EXIT_OVERLAY


class OutputError(RunnerError):
    """The outputs could not be archived or the logs not written."""

    exit_code = EXIT_OUTPUT
