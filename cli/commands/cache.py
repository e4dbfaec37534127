"""`cache verify [--repair]`: every entry of the package cache against its paths.json.
`cache prune`: the OCI engine's layer cache (`<cache>/oci-layers/`) cut by last use.

verify exits 0 when the cache is clean (or every damaged entry was repaired), 1 with damage
left, 2 on bad input. One line per damaged file (or pruned layer), never wrapped, so that the
output greps.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from cli.errors import UserError
from cli.lockengine.cache_verify import CacheVerification, open_cache, verify_cache
from cli.lockengine.package_cache import PackageCache, default_cache_root
from cli.options import JsonOption
from cli.progress import stderr_progress

if TYPE_CHECKING:
    from cli.oci.layer_cache import PruneResult

cache_app = typer.Typer(
    name="cache",
    help="Check and repair the package cache that installs link from; prune the OCI engine's layer cache.",
    no_args_is_help=True,
)
SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
SIZE_UNITS |= {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
SIZE_PATTERN = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?", re.IGNORECASE)


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


@cache_app.command("prune")
def prune_command(
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="The package cache (default: RATTLER_CACHE_DIR).")
    ] = None,
    older_than: Annotated[
        float | None, typer.Option("--older-than", metavar="DAYS", help="Remove layers unused for DAYS days.")
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option("--max-size", metavar="SIZE", help="Then remove the least recently used until SIZE is left."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove layers the OCI engine kept (`<cache>/oci-layers/`) by last use; a later build makes them again."""
    if older_than is None and max_size is None:
        raise UserError(
            "cache prune needs --older-than DAYS or --max-size SIZE", fix="e.g. --older-than 30 or --max-size 20G"
        )
    if older_than is not None and older_than < 0:
        raise UserError(f"--older-than {older_than:g}: days cannot be negative", fix="e.g. --older-than 30")
    limit = parse_size(max_size) if max_size is not None else None
    from cli.oci.layer_cache import LayerCache, prune_layers  # the OCI engine only when asked for

    layers = LayerCache.beside((cache_dir or default_cache_root()).absolute()).root
    seconds = older_than * 86400 if older_than is not None else None
    result = prune_layers(layers, older_than=seconds, max_size=limit, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        print_prune(result)


def parse_size(text: str) -> int:
    """`20G`, `500MB`, `1.5GiB`, `1000000`: bytes (k, M, G, T are powers of 1000; Ki, Mi, Gi, Ti of 1024)."""
    match = SIZE_PATTERN.fullmatch(text.strip())
    if match is None:
        raise UserError(f"--max-size {text!r} is not a size", fix="write e.g. 20G, 500M, 1.5GiB or 1000000 (bytes)")
    number, unit = match.groups()
    return int(float(number) * SIZE_UNITS[(unit or "").lower()])


def print_prune(result: PruneResult) -> None:
    verb = "would remove" if result.dry_run else "removed"
    for entry in result.removed:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        typer.echo(f"{verb} layer {entry.key[:16]} {entry.size / 1e6:.1f} MB, last used {used}")
    for path in result.partials:
        typer.echo(f"{verb} {path} (left by a stopped build)")
    typer.echo(
        f"{len(result.removed)} layers ({result.removed_bytes / 1e6:.1f} MB) {verb}, "
        f"{len(result.kept)} ({result.kept_bytes / 1e6:.1f} MB) kept in {result.root}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
