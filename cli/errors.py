"""Errors that reach the user as one readable line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input or an impossible request: printed as one line, exit code 2.

    `path` names the file at fault and `fix` the way out, so every message reads
    "<path>: <what is wrong> (<how to fix it>)".
    """

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None, fix: str | None = None) -> None:
        self.message = message
        self.path = Path(path) if path is not None else None
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.message}" if self.path is not None else self.message
        if self.fix:
            text += f" ({self.fix})"
        return " ".join(text.split())  # messages from libraries may span lines; ours is one


class SolveError(UserError):
    """The solver found no environment; `details` holds its explanation."""

    def __init__(self, environment: str, platform: str, details: str, *, path: Path | None = None) -> None:
        self.details = details.strip()
        self.environment = environment
        self.platform = platform
        super().__init__(
            f"cannot solve environment '{environment}' for {platform}",
            path=path,
            fix="relax or correct the dependencies named below",
        )
