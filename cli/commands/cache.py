"""`cache verify [--repair]`: every entry of the package cache against its paths.json.

Exit 0 when the cache is clean (or every damaged entry was repaired), 1 with damage left, 2
on bad input. One line per damaged file, never wrapped, so that the output greps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from cli.lockengine.cache_verify import CacheVerification, open_cache, verify_cache
from cli.lockengine.package_cache import PackageCache, default_cache_root
from cli.options import JsonOption
from cli.progress import stderr_progress

cache_app = typer.Typer(
    name="cache", help="Check and repair the package cache that installs link from.", no_args_is_help=True
)


@cache_app.command("verify")
def verify_command(
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="The package cache (default: RATTLER_CACHE_DIR).")
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Re-extract damaged entries from their archive (or remove them).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Hash every file of every cache entry and compare it with the entry's paths.json."""
    cache = PackageCache((cache_dir or default_cache_root()).absolute())
    entries = open_cache(cache)  # bad input is one line, before any display
    columns = (TextColumn("hashing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn())
    with stderr_progress(*columns, show=not quiet and not as_json) as progress:
        task = progress.add_task("hashing", total=None)
        result = verify_cache(
            cache,
            entries,
            repair=repair,
            on_hashed=lambda size: progress.advance(task, size),
            on_planned=lambda total: progress.update(task, total=total),
        )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        print_verification(result)
    if result.findings:
        raise typer.Exit(1)


def print_verification(result: CacheVerification) -> None:
    for item in result.damaged:
        for damage in item.damage:
            typer.echo(f"damaged {item.entry.path}/{damage.path}: {damage.reason}")
        if item.repair:
            typer.echo(f"repaired {item.entry.name}: {item.repair}")
    size = result.hashed_bytes / 1e6
    summary = (
        f"{result.entries} entries, {result.hashed_files} files ({size:.1f} MB) hashed in {result.seconds:.1f} s: "
    )
    if not result.damaged:
        typer.echo(summary + "the cache matches every paths.json")
    elif not result.findings:
        typer.echo(summary + f"{len(result.damaged)} damaged, all repaired")
    else:
        typer.echo(
            summary + f"{len(result.findings)} damaged entries "
            f"(repair: python -m cli cache verify --repair --cache-dir {result.cache.root})"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
