"""Driving the `uv` executable: found via RUNNER_UV, then next to the base interpreter, then on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.errors import OverlayError
from runner.logs import log
from runner.sources import redact


class UvResult:
    __slots__ = ("args", "output", "returncode")

    def __init__(self, args: tuple[str, ...], returncode: int, output: str) -> None:
        self.args = args
        self.returncode = returncode
        self.output = output


def find_uv(environ: Mapping[str, str]) -> Path:
    """RUNNER_UV, else the uv next to the base interpreter (the flavor's locked one), else the first on PATH.

    The base's own uv comes before PATH: a PATH may start with another environment's uv (a
    CLI's virtualenv, the machine's), of any version. In the image, root's supervisor then
    accepts only a uv that root owns (runner/staging.py), whichever way it was found.
    """
    configured = environ.get("RUNNER_UV")
    if configured:
        path = shutil.which(configured) or (configured if os.access(configured, os.X_OK) else None)
        if path is None:
            raise OverlayError(f"RUNNER_UV={configured} is not an executable", "point RUNNER_UV at the uv binary")
        return Path(path)
    sibling = Path(sys.executable).parent / "uv"
    if os.access(sibling, os.X_OK):
        return sibling
    found = shutil.which("uv", path=environ.get("PATH"))
    if found:
        return Path(found)
    raise OverlayError(
        "requirements.txt needs uv, and no uv was found next to the Python or on PATH",
        "add uv to the flavor environment, put it on PATH, or set RUNNER_UV",
    )


class Uv:
    def __init__(self, executable: Path, environ: Mapping[str, str], transcript: Path | None = None) -> None:
        self.executable = executable
        self.environ = dict(environ)
        # The interpreter is always passed explicitly; never let uv pick another one or fetch one.
        self.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
        self.environ.pop("VIRTUAL_ENV", None)
        self.environ.pop("UV_SYSTEM_PYTHON", None)
        self.environ["UV_NO_PROGRESS"] = "1"
        self.transcript = transcript

    def run(self, args: Sequence[str], cwd: Path, *, check: bool = True) -> UvResult:
        """Run uv, echo its output live as `runner: uv: …` lines, and keep it for error messages."""
        command = [str(self.executable), *args]
        shown = redact(" ".join(args))  # index URLs may carry credentials
        log.debug("running uv %s", shown)
        try:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=self.environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as error:
            raise OverlayError(f"cannot start uv ({self.executable}): {error}", "check RUNNER_UV / PATH") from None
        lines = []
        assert process.stdout is not None
        try:
            for line in process.stdout:
                line = redact(line)
                lines.append(line)
                if line.strip():
                    log.info("uv: %s", line.rstrip())
            returncode = process.wait()
        except BaseException:
            # Interrupted (SIGINT/SIGTERM): do not leave uv writing into an overlay being removed.
            process.kill()
            process.wait()
            raise
        output = "".join(lines)
        if self.transcript is not None:
            with self.transcript.open("a", encoding="utf-8") as handle:
                handle.write(f"$ uv {shown}\n{output}[exit {returncode}]\n")
        result = UvResult(tuple(args), returncode, output)
        if check and returncode != 0:
            command_name = " ".join(a for a in args[:2] if not a.startswith("-"))
            raise OverlayError(
                f"uv {command_name} failed: {summarize(output)}", "see uv's output above", details=output
            )
        return result


def summarize(output: str) -> str:
    """uv's own reason in one line: its first `error:` line and the `cause:` lines under it."""
    error = ""
    causes = []
    for raw in output.splitlines():
        line = raw.strip()
        if not error:
            if line.startswith("error:"):
                error = line[len("error:") :].strip()
            elif line.startswith("\u00d7"):  # uv's fancy error header ("x" as a multiplication sign)
                error = line[1:].strip()
        elif line.startswith(("cause:", "Caused by:")):
            causes.append(line.split(":", 1)[1].strip())
        elif line.startswith("╰─▶"):
            causes.append(line[3:].strip())
        elif line.startswith(("hint:", "help:", "error:")):
            break
    text = error or (output.strip().splitlines() or ["no output"])[-1]
    if causes:
        text = text.rstrip(":") + ": " + "; ".join(causes)
    return " ".join(text.split())
