"""The application's start-up: each command imports only what it uses; `-v` before or after the command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.app import COMMANDS, CommandEntry, load_command
from tests.support.cli import REPO_ROOT, run_cli

HEAVY = ("rattler", "pydantic", "conda_lock", "cyclonedx", "yaml", "jinja2", "packaging")


def imported_modules(*args: str | Path, cwd: Path) -> set[str]:
    """Top-level names of every module `python -m cli ARGS` imports (from -X importtime)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \| *([\w.]+)$", done.stderr, flags=re.MULTILINE)
    assert names, done.stderr
    return {name.split(".")[0] for name in names}


def test_help_imports_no_command_and_no_engine(tmp_path: Path) -> None:
    modules = imported_modules("--help", cwd=tmp_path)
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    assert not any(name.startswith("cli.commands.") for name in modules)


def test_help_lists_every_command_with_its_summary(tmp_path: Path) -> None:
    done = run_cli("--help", cwd=tmp_path, env={"COLUMNS": "400"})
    assert done.returncode == 0, done.stderr
    for entry in COMMANDS:
        assert re.search(rf"\b{entry.name}\s+{re.escape(entry.summary)}", done.stdout), entry.name


@pytest.mark.parametrize("entry", COMMANDS, ids=[entry.name for entry in COMMANDS])
def test_listed_summary_is_the_commands_own_help(entry: CommandEntry) -> None:
    """The summary `--help` shows without importing a command is the first paragraph of its own help."""
    own_help = load_command(entry).help or ""
    assert own_help.split("\n\n")[0].replace("\n", " ").strip() == entry.summary


def test_lock_check_imports_neither_export_nor_audit_libraries(locked_workspace: Path) -> None:
    modules = imported_modules("lock", "--check", cwd=locked_workspace)
    assert "rattler" in modules  # the command's own engine
    assert not modules & {"conda_lock", "cyclonedx", "jinja2", "requests"}, sorted(modules)


def test_verbose_is_accepted_before_and_after_the_command(locked_workspace: Path) -> None:
    """`lock --update` solves, and a solve logs at INFO what it solves."""
    quiet = run_cli("lock", "--update", cwd=locked_workspace)
    before = run_cli("-v", "lock", "--update", cwd=locked_workspace)
    after = run_cli("lock", "--update", "-v", cwd=locked_workspace)
    assert quiet.returncode == before.returncode == after.returncode == 0, quiet.stderr + after.stderr
    assert "INFO" not in quiet.stderr
    assert "INFO" in before.stderr
    assert "INFO" in after.stderr


def test_verbose_is_accepted_after_a_subcommand_of_a_group(locked_workspace: Path) -> None:
    done = run_cli("audit", "cuda", "pytorch", "--verbose", cwd=locked_workspace)
    assert done.returncode in (0, 1), done.stderr
    assert "No such option" not in done.stderr


def test_a_mistyped_command_is_still_suggested(tmp_path: Path) -> None:
    done = run_cli("lokc", cwd=tmp_path)
    assert done.returncode == 2
    assert "Did you mean 'lock'?" in done.stderr


def test_logging_after_an_in_process_run_goes_to_the_current_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """CliRunner gives the app a stderr it closes afterwards; the app's log handler must not keep it."""
    import logging

    from typer.testing import CliRunner

    from cli.app import app

    result = CliRunner().invoke(app, ["-v", "lock", "--help"])  # the root callback configures logging
    assert result.exit_code == 0, result.output
    capsys.readouterr()
    logging.getLogger("cli.after").warning("logged after the run")
    err = capsys.readouterr().err
    assert "Logging error" not in err
    assert "WARNING cli.after: logged after the run" in err
