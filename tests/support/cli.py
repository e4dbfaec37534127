"""Run the CLI exactly as users do: `python -m cli ...` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, inherit: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`env` on top of `inherit` (default: this process's environment)."""
    full_env = dict(os.environ if inherit is None else inherit)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one-line error a failed command printed (the first line starting with `error:`)."""
    for line in result.stderr.splitlines():
        if line.startswith("error:"):
            return line
    raise AssertionError(f"no error line in stderr:\n{result.stderr}")
