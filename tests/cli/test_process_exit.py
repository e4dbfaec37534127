"""Processes end right before interpreter finalization, with Python's exit sequence otherwise intact."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.cli import REPO_ROOT, run_cli

PROGRAM = """\
import atexit, os, sys
from pathlib import Path
from cli.process_exit import run_then_exit

class Witness:
    def __init__(self):
        self.write = os.write  # module globals may be gone by the time this runs

    def __del__(self):  # runs when finalization clears this module
        self.write(2, b"finalized\\n")

WITNESS = Witness()

def main():
    atexit.register(lambda: Path(sys.argv[1], "atexit").write_text("yes"))
    sys.stdout.write("x" * 1_000_000)  # a pipe's buffer is far smaller: this must be flushed at exit
    {ending}

run_then_exit(main)
"""


def run_program(ending: str, folder: Path) -> subprocess.CompletedProcess[str]:
    script = folder / "program.py"
    script.write_text(PROGRAM.format(ending=ending))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, str(script), str(folder)], env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("ending", "status"),
    [
        ("return None", 0),
        ("return 4", 4),
        ("sys.exit(0)", 0),
        ("sys.exit(3)", 3),
        ("sys.exit('bad input')", 1),
        ("1 / 0", 1),
    ],
)
def test_exit_status_output_and_atexit_handlers_survive(tmp_path: Path, ending: str, status: int) -> None:
    done = run_program(ending, tmp_path)
    assert done.returncode == status, done.stderr
    assert len(done.stdout) == 1_000_000
    assert (tmp_path / "atexit").read_text() == "yes"
    if ending == "1 / 0":
        assert "ZeroDivisionError" in done.stderr
    if ending == "sys.exit('bad input')":
        assert "bad input" in done.stderr


def test_the_interpreter_is_not_finalized(tmp_path: Path) -> None:
    """Finalization, where a py-rattler thread can abort the process, never starts."""
    done = run_program("return None", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "finalized" not in done.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    script = (tmp_path / "program.py").read_text().replace("run_then_exit(main)", "main()")
    (plain / "program.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    finalized = subprocess.run(
        [sys.executable, str(plain / "program.py"), str(plain)], env=env, capture_output=True, text=True, check=True
    )
    assert "finalized" in finalized.stderr  # the witness works: a plain exit does finalize


def test_cli_exit_statuses_are_kept(tmp_path: Path) -> None:
    assert run_cli("--help", cwd=tmp_path).returncode == 0
    assert run_cli("no-such-command", cwd=tmp_path).returncode == 2
    missing = run_cli("lock", "--check", "--manifest-path", tmp_path / "nowhere", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: "), missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr


def test_cli_json_output_is_complete_in_a_pipe(locked_workspace: Path) -> None:
    done = run_cli("audit", "licenses", "pytorch", "--json", cwd=locked_workspace)
    assert done.returncode == 0, done.stderr
    assert textwrap.dedent(done.stdout).rstrip().endswith("}")
