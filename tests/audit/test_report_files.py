"""Audit reports written to a file or a pipe: one finding a line, nothing wrapped, every path whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli.audit import reporting
from cli.audit.findings import Finding
from tests.support.cli import REPO_ROOT

DEEP = "a-folder-name-long-enough-to-need-more-than-one-terminal-line-of-eighty-columns"


def audit_to_file(args: list[str | Path], cwd: Path, output: Path) -> int:
    """`python -m cli audit ARGS > OUTPUT`, exactly: stdout is a regular file, not a terminal."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), COLUMNS="80")
    with output.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "cli", "audit", *map(str, args)],
            cwd=cwd,
            env=env,
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode


def test_prefix_findings_redirected_to_a_file_keep_every_path_on_one_line(
    audited_workspace: Path, prefix: Path, tmp_path: Path
) -> None:
    long_folder = prefix / "share" / DEEP / DEEP
    long_folder.mkdir(parents=True)
    left_behind = [f"share/{DEEP}/{DEEP}/left-behind-{i}.txt" for i in range(3)]
    for relative in left_behind:
        (prefix / relative).write_text("not from any package\n")
    (prefix / "share" / "pytorch" / "README.txt").write_text("patched\n")
    report = tmp_path / "report.txt"

    code = audit_to_file(["prefix", "pytorch", prefix], audited_workspace, report)

    assert code == 1
    lines = report.read_text().splitlines()
    for path in [*left_behind, "share/pytorch/README.txt"]:
        holding = [line for line in lines if path in line]
        assert len(holding) == 1, f"{path} is not whole on one line of:\n{report.read_text()}"
        assert holding[0].startswith(("file-unexpected: ", "file-modified: "))
    assert f"{prefix}:" in lines[0]  # the summary line names the whole prefix path too
    assert "4 findings" in lines
    assert not any(char in report.read_text() for char in "│┃━─")  # no table borders around findings


def test_tables_in_a_file_are_not_wrapped(tmp_path: Path) -> None:
    """Tables other than findings (overlays, diffs, licences) keep their full width in a file."""
    output = tmp_path / "out.txt"
    with output.open("w") as handle:
        saved = sys.stdout
        sys.stdout = handle
        try:
            out = reporting.console()
            table = reporting.findings_table([Finding("file-unexpected", f"share/{DEEP}/{DEEP}/x.txt", "")])
            out.print(table)
            out.print(f"summary naming share/{DEEP}/{DEEP}/x.txt")
        finally:
            sys.stdout = saved
    text = output.read_text()
    assert sum(f"share/{DEEP}/{DEEP}/x.txt" in line for line in text.splitlines()) == 2, text
    assert all(line == line.rstrip() for line in text.splitlines() if "summary" in line)
