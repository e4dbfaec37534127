"""Fixtures for the image tests: workspaces carrying the repository's Dockerfiles, and the CLI as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.workspace import add_image_files, write_workspace

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m cli ARGS` as a user runs it (exit code, stdout, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture()
def plain_workspace(tmp_path: Path) -> Path:
    """pytorch + tensorflow flavors with metadata, Dockerfiles, not locked (generation needs no lock)."""
    return add_image_files(write_workspace(tmp_path / "ws", "file:///nonexistent/channel"))


@pytest.fixture()
def ready_workspace(locked_workspace: Path) -> Path:
    """A locked and exported workspace with Dockerfiles and generated files: what `cli build` accepts."""
    add_image_files(locked_workspace)
    done = cli("generate", "--manifest-path", locked_workspace)
    assert done.returncode == 0, done.stderr
    return locked_workspace
