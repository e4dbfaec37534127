"""The typer application: every command lives in its own module under cli/commands."""

from __future__ import annotations

import logging
import sys

import typer

from cli.commands import audit, build, export, generate, install, lock, run, version
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


for _module in (lock, export, install, run, generate, build, version, audit):
    _module.register(app)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except UserError as error:
        typer.echo(f"error: {error.one_line()}", err=True)
        details = getattr(error, "details", None)
        if details:
            typer.echo(details, err=True)
        sys.exit(error.exit_code)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as error:  # click usage errors
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
