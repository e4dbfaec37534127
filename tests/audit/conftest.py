"""Audit fixtures: an installed pytorch prefix (installed once, copied per test) and ways to run `cli audit`."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.lockengine.install import InstallRequest, install_environment
from cli.lockengine.manifest import load_workspace
from tests.support.cli import run_cli as support_run_cli

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCKS = REPO_ROOT / "tests" / "data" / "locks"


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_audit(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Outcome:
    """`python -m cli audit ARGS` in this process (same entry point, exit code and streams, no interpreter start)."""
    from cli.app import main

    saved = sys.argv
    sys.argv = ["cli", "audit", *map(str, args)]
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def run_cli(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> Outcome:
    """The exact form the checks call: `python -m cli …` in a subprocess."""
    done = support_run_cli(*args, cwd=cwd, env=env)
    return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def _installed_template(tmp_path_factory: pytest.TempPathFactory, _locked_template: Path) -> Path:
    """The pytorch flavor of the locked fixture workspace, installed once (with a pretend CUDA 12.4 driver)."""
    prefix = tmp_path_factory.mktemp("installed") / "pytorch"
    saved = os.environ.get("CONDA_OVERRIDE_CUDA")
    os.environ["CONDA_OVERRIDE_CUDA"] = "12.4"
    try:
        install_environment(
            load_workspace(_locked_template),
            InstallRequest("pytorch", prefix, platform="linux-64", show_progress=False),
        )
    finally:
        if saved is None:
            os.environ.pop("CONDA_OVERRIDE_CUDA", None)
        else:
            os.environ["CONDA_OVERRIDE_CUDA"] = saved
    return prefix


@pytest.fixture()
def audited_workspace(_locked_template: Path) -> Path:
    """The locked workspace the installed prefix came from (shared: tests must not change it)."""
    return _locked_template


@pytest.fixture()
def prefix(tmp_path: Path, _installed_template: Path) -> Iterator[Path]:
    """A private copy of the installed pytorch prefix, free to tamper with."""
    target = tmp_path / "envs" / "pytorch"
    shutil.copytree(_installed_template, target, symlinks=True)
    yield target


@pytest.fixture()
def fresh_workspace(locked_workspace: Path) -> Path:
    """A workspace in the state a maintainer commits: locked, exported and generated."""
    from cli.images.generated import write_generated

    write_generated(load_workspace(locked_workspace))
    return locked_workspace
