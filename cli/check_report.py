"""The shared endings of the commands that keep files in step: every `--check` (`lock`, `export`,
`generate`), one JSON shape and one exit code; and what `export` and `generate` say they wrote.

    {"command": "lock", "verdict": "fresh" | "stale" | "cannot check", "problems": [...], "reason": null}

`problems` lists what is stale, one line each (empty when fresh); `reason` says why the
verdict is "cannot check" (null otherwise). Exit 0 fresh, 1 stale, 2 cannot check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

FRESH, STALE, CANNOT_CHECK = "fresh", "stale", "cannot check"
EXIT_CODES = {FRESH: 0, STALE: 1, CANNOT_CHECK: 2}


def check_json(command: str, problems: list[str], reason: str | None = None) -> str:
    verdict = CANNOT_CHECK if reason is not None else STALE if problems else FRESH
    return json.dumps({"command": command, "verdict": verdict, "problems": problems, "reason": reason}, indent=2)


def report_check(command: str, problems: list[str], as_json: bool, fresh_message: str) -> NoReturn:
    if as_json:
        typer.echo(check_json(command, problems))
    else:
        for problem in problems:
            typer.echo(problem)
        if not problems:
            typer.echo(fresh_message)
    raise typer.Exit(EXIT_CODES[STALE if problems else FRESH])


def report_written(written: list[Path], root: Path, as_json: bool, fresh_message: str) -> None:
    if as_json:
        typer.echo(json.dumps({"written": [str(p) for p in written]}, indent=2))
        return
    for path in written:
        typer.echo(f"wrote {path.relative_to(root)}")
    if not written:
        typer.echo(fresh_message)
