"""The typer application: every command lives in its own module under cli/commands.

Commands are registered lazily. `--help` lists them from COMMANDS, and a command's module (with
what it imports: py-rattler, pydantic, conda-lock, cyclonedx …) is imported only when that
command runs or prints its own help, so each command pays only for what it uses.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from importlib import import_module
from typing import Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command, get_group

from cli.errors import UserError
from cli.process_exit import run_then_exit


@dataclass(frozen=True)
class CommandEntry:
    name: str
    module: str  # a module of cli/commands with `register(app)`
    summary: str  # what `--help` lists; tests keep it equal to the command's own help


COMMANDS = (
    CommandEntry(
        "lock", "cli.commands.lock", "Resolve every environment of pixi.toml for every platform into pixi.lock."
    ),
    CommandEntry(
        "export",
        "cli.commands.export",
        "Write envs/<flavor>/conda-lock.yml, envs/<flavor>/<subdir>.explicit and the shared stage's split "
        "(envs/_shared/, <subdir>.own.explicit) from pixi.lock.",
    ),
    CommandEntry(
        "install",
        "cli.commands.install",
        "Install exactly what pixi.lock holds for FLAVOR (sha256-verified, never re-solved).",
    ),
    CommandEntry(
        "cache",
        "cli.commands.cache",
        "Check and repair the package cache that installs link from; prune the OCI engine's layer cache.",
    ),
    CommandEntry(
        "run",
        "cli.commands.run",
        "Run a job locally: no Docker, no root; the exit status is the script's (or the runner's on setup errors).",
    ),
    CommandEntry(
        "generate",
        "cli.commands.generate",
        "Write flavors/<name>/service.cli/run and docker-compose.yml from each flavor's metadata.yml.",
    ),
    CommandEntry(
        "build",
        "cli.commands.build",
        "Build the common image, the shared stage, then the flavor(s); "
        "refuses while pixi.lock, the exports or generated files are stale.",
    ),
    CommandEntry(
        "version", "cli.commands.version", "Show or bump the flavors' versions (in flavors/<name>/metadata.yml)."
    ),
    CommandEntry(
        "audit",
        "cli.commands.audit",
        "Audit the lock, an installed prefix, lock changes, the SBOM, CUDA needs and licences.",
    ),
)

VERBOSE_HELP = "Log what is being done."


class StderrHandler(logging.StreamHandler):
    """Writes to the `sys.stderr` of the moment, not the one it was made with.

    Whoever runs the app in-process (typer's CliRunner, a test) swaps sys.stderr for a stream it
    closes afterwards; a handler holding that stream would fail on every later log record
    ("--- Logging error --- … I/O operation on closed file").
    """

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        return None


def configure_logging(verbose: bool) -> None:
    """Our one handler on the root logger (replacing ours from an earlier run; others' handlers stay)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def _verbose_after_command(ctx: typer.Context, param: Any, verbose: bool) -> None:
    if verbose and not ctx.resilient_parsing:
        configure_logging(True)


def _verbose_template(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help=VERBOSE_HELP, callback=_verbose_after_command, expose_value=False
    ),
) -> None:
    """Only here to have typer build the `-v` option that every command accepts after its name."""


def _verbose_option() -> Any:
    holder = typer.Typer()
    holder.command()(_verbose_template)
    return get_command(holder).params[0]


def _accept_verbose(command: Any, option: Any) -> None:
    """Let `-v` follow the command's name too (`cli lock -v`), in every subcommand of a group."""
    if not any("--verbose" in getattr(p, "opts", ()) for p in command.params):
        command.params.append(option)
    for child in getattr(command, "commands", {}).values():
        _accept_verbose(child, option)


def load_command(entry: CommandEntry) -> Any:
    """The real click command of ENTRY: its module imported and registered on a throwaway app."""
    holder = typer.Typer(pretty_exceptions_enable=False)
    import_module(entry.module).register(holder)
    command = get_group(holder).commands[entry.name]
    _accept_verbose(command, _verbose_option())
    return command


class CommandSummary(TyperCommand):
    """A command's stand-in in the root group: its name and summary for `--help`, until it runs."""


class LazyGroup(TyperGroup):
    """The root group: lists every command from COMMANDS, imports one only to run it (or show its help)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.entries = {entry.name: entry for entry in COMMANDS}
        for entry in COMMANDS:
            self.commands[entry.name] = CommandSummary(entry.name, help=entry.summary)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0] if args else None
        if name in self.entries and isinstance(self.commands[name], CommandSummary):
            self.commands[name] = load_command(self.entries[name])
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="osparc-runners",
    cls=LazyGroup,
    help="Lock, export, install, build, audit and run the oSPARC GPU runner flavors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure(verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP)) -> None:
    configure_logging(verbose)


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


def console_main() -> NoReturn:
    """The process entry point (`python -m cli`, `osparc-runners`): main(), then an exit before finalization.

    main() itself raises SystemExit as usual, so tests may call it in their own process.
    """
    run_then_exit(main)
