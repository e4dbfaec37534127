"""The typer application: every command lives in its own module under cli/commands."""

from __future__ import annotations

import logging
import sys

import typer

from cli.commands import audit, build, cache, export, generate, install, lock, run, version
from cli.errors import UserError

app = typer.Typer(
    name="osparc-runners",
    help="Lock, export, install, build, audit and run the oSPARC GPU runner flavors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what is being done."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


for _module in (lock, export, install, cache, run, generate, build, version, audit):
    _module.register(app)


def main() -> None:
    """Run the app; usage errors exit 2 (click's rule), UserError prints one line and exits 2."""
    try:
        app()
    except UserError as error:
        typer.echo(f"error: {error.one_line()}", err=True)
        details = getattr(error, "details", None)
        if details:
            typer.echo(details, err=True)
        sys.exit(error.exit_code)
    except OSError as error:  # a path that cannot be read or written: the user's to fix, not a crash
        where = f"{error.filename}: " if error.filename else ""
        typer.echo(f"error: {where}{error.strerror or error} (check the path and its permissions)", err=True)
        sys.exit(UserError.exit_code)
