"""The shared ending of every `--check` command: list what is stale, exit 1 if anything is."""

from __future__ import annotations

import json
from typing import NoReturn

import typer


def report_check(problems: list[str], as_json: bool, fresh_message: str) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"stale": problems}, indent=2))
    else:
        for problem in problems:
            typer.echo(problem)
        if not problems:
            typer.echo(fresh_message)
    raise typer.Exit(1 if problems else 0)
