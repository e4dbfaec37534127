"""How audits reach people and machines: rich tables, markdown (for a pull request comment) and JSON.

Every rendering is sorted, so the same audit prints the same bytes. Written to a pipe or a file,
nothing wraps: findings are one line each and tables keep their full width, so every path stays
whole on its line for grep.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from cli.audit.diff import BOTH, CHANGE_KINDS
from cli.audit.findings import Finding

if TYPE_CHECKING:  # each audit's module is imported by the command that runs it, not by every report
    from cli.audit.cuda import CudaAudit
    from cli.audit.diff import LockDiff
    from cli.audit.licenses import LicenceAudit
    from cli.audit.lock import LockAudit
    from cli.audit.prefix import PrefixAudit

UNWRAPPED_WIDTH = 1_000_000  # wider than any line a report prints: a pipe or file never wraps
MARKDOWN_ROWS = 200


def console() -> Console:
    """stdout, markup off (package specs hold brackets); not a terminal: no wrapping, no colour, stable output."""
    if stdout_is_terminal():
        return Console(markup=False)
    return Console(
        width=UNWRAPPED_WIDTH,
        force_terminal=False,  # even with FORCE_COLOR set: a file gets the file layout
        no_color=True,
        highlight=False,
        soft_wrap=True,
        markup=False,
        emoji=False,
    )


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout: not a terminal
        return False


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def findings_table(findings: list[Finding], title: str = "Findings") -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("Check", no_wrap=True)
    table.add_column("File or package", overflow="fold")
    table.add_column("Detail", overflow="fold")
    for finding in findings:
        table.add_row(finding.check, finding.subject, finding.detail)
    return table


def print_findings(out: Console, findings: list[Finding], clean: str) -> None:
    """A table on a terminal; one line a finding (`check: subject: detail`) in a pipe or file."""
    if findings:
        if out.is_terminal:
            out.print(findings_table(findings))
        else:
            for finding in findings:
                out.print(finding.line().replace("\n", " "))
        out.print(f"{len(findings)} finding{'s' if len(findings) != 1 else ''}")
    else:
        out.print(clean)


# --- audit lock --------------------------------------------------------------------------------


def print_lock_audit(out: Console, audit: LockAudit) -> None:
    for note in audit.notes:
        out.print(f"note: {note}")
    print_findings(out, audit.findings(), "pixi.lock satisfies pixi.toml; exports and generated files match it")


# --- audit prefix ------------------------------------------------------------------------------


def print_prefix_audit(out: Console, audit: PrefixAudit) -> None:
    stats = audit.stats
    megabytes = stats.bytes_hashed / 1e6
    rate = f", {megabytes / stats.seconds:.0f} MB/s" if stats.seconds > 0 and megabytes >= 1 else ""
    pypi = (
        f", {audit.pypi_installed} PyPI packages installed, {audit.pypi_locked} locked"
        if audit.pypi_installed or audit.pypi_locked
        else ""
    )
    out.print(
        f"{audit.prefix}: flavor '{audit.flavor}' [{audit.platform}], {audit.installed} packages installed, "
        f"{audit.locked} locked{pypi}; {stats.files_checked} files checked, {stats.files_hashed} hashed "
        f"({megabytes:.1f} MB in {stats.seconds:.2f} s{rate})"
    )
    if audit.overlay is not None:
        overlay = audit.overlay
        table = Table(title=f"Overlay {overlay.folder}", title_justify="left")
        table.add_column("Distribution")
        table.add_column("Version")
        table.add_column("Note", overflow="fold")
        duplicates = {d.name: f"{how} {', '.join(packages)}" for d, packages, how in overlay.duplicate_cuda}
        shadowed = {o.name: b for o, b in overlay.shadowed}
        cuda = {d.name for d in overlay.cuda_wheels}
        for dist in overlay.distributions:
            notes = []
            if dist.name in duplicates:
                notes.append(duplicates[dist.name])
            elif dist.name in cuda:
                notes.append("CUDA runtime wheel")
            if dist.name in shadowed:
                notes.append(f"shadows {shadowed[dist.name].version} in the prefix")
            table.add_row(dist.name, dist.version, "; ".join(notes))
        if overlay.distributions:
            out.print(table)
        else:
            out.print(f"overlay {overlay.folder}: no distributions")
    print_findings(out, audit.findings(), "the prefix matches the lock, file by file")


# --- audit diff --------------------------------------------------------------------------------


def print_diff(out: Console, diff: LockDiff) -> None:
    out.print(f"{diff.old_path} ({diff.old_format}) → {diff.new_path} ({diff.new_format})")
    for env, (old, new) in sorted(diff.channel_changes.items()):
        out.print(f"{env}: channels {list(old)} → {list(new)}")
    for section in diff.sections:
        if not section.changes and section.presence == BOTH:
            out.print(f"{section.title}: no change")
            continue
        presence = "" if section.presence == BOTH else f" (only in the {section.presence.split('-')[1]} lock)"
        table = Table(title=f"{section.title}{presence}", title_justify="left")
        table.add_column("Package")
        table.add_column("Change")
        table.add_column("Old", overflow="fold")
        table.add_column("New", overflow="fold")
        for change in section.changes:
            table.add_row(
                change.label,
                change.change,
                change.old.spec if change.old else "",
                change.new.spec if change.new else "",
            )
        out.print(table)
    totals = diff.totals()
    out.print(", ".join(f"{totals[k]} {k}" for k in CHANGE_KINDS) if diff.changed else "no change")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def diff_markdown(diff: LockDiff) -> str:
    """A pull request comment: a summary table, then per environment and platform what changed."""
    lines = [f"### Lock diff: `{diff.old_path.name}` → `{diff.new_path.name}`", ""]
    if not diff.changed:
        lines.append("No change.")
        return "\n".join(lines) + "\n"
    header = "| Environment | Platform | " + " | ".join(k.capitalize() for k in CHANGE_KINDS) + " |"
    lines += [header, "|" + "---|" * (2 + len(CHANGE_KINDS))]
    for section in diff.sections:
        counts = section.counts()
        platform = section.platform + ("" if section.presence == BOTH else f" ({section.presence})")
        env = (
            section.environment if not section.old_environment else f"{section.old_environment} → {section.environment}"
        )
        lines.append(f"| {env} | {platform} | " + " | ".join(str(counts[k]) for k in CHANGE_KINDS) + " |")
    for env, (old, new) in sorted(diff.channel_changes.items()):
        lines += ["", f"**{env}**: channels `{', '.join(old)}` → `{', '.join(new)}`"]
    for section in diff.sections:
        if not section.changes:
            continue
        rows = section.changes
        collapsed = len(rows) > 25
        lines.append("")
        if collapsed:
            lines += ["<details>", f"<summary>{section.title}: {len(rows)} changes</summary>", ""]
        else:
            lines += [f"#### {section.title}", ""]
        lines += ["| Package | Change | Old | New |", "|---|---|---|---|"]
        for change in rows[:MARKDOWN_ROWS]:
            before = f"`{change.old.spec}`" if change.old else ""
            after = f"`{change.new.spec}`" if change.new else ""
            lines.append(f"| {_md_cell(change.label)} | {change.change} | {_md_cell(before)} | {_md_cell(after)} |")
        if len(rows) > MARKDOWN_ROWS:
            lines.append(f"| … | {len(rows) - MARKDOWN_ROWS} more (see `--json`) | | |")
        if collapsed:
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


# --- audit cuda --------------------------------------------------------------------------------


def print_cuda_audit(out: Console, audit: CudaAudit) -> None:
    for item in audit.platforms:
        if not item.uses_cuda:
            out.print(f"{audit.flavor} [{item.platform}]: no CUDA needs in the lock")
            continue
        table = Table(title=f"{audit.flavor} [{item.platform}]: CUDA", title_justify="left", show_header=False)
        table.add_column("What")
        table.add_column("Value", overflow="fold")
        requirement = item.requirement
        table.add_row("declared (pixi.toml)", item.declared or "—")
        table.add_row("cuda-version (locked)", item.cuda_version or "—")
        table.add_row("needs CUDA", requirement.cuda if requirement else "—")
        if requirement:
            table.add_row("minimum driver", requirement.compatible_driver or "unknown")
            table.add_row("driver of that toolkit", requirement.toolkit_driver or "unknown")
        if audit.driver:
            table.add_row("driver", f"{audit.driver} (runs CUDA {item.driver_cuda or 'none'})")
        table.add_row(
            "__cuda constraints",
            "\n".join(f"{c.package}: {c.spec} ({c.source})" for c in item.constraints) or "—",
        )
        table.add_row("CUDA libraries", ", ".join(f"{p.name} {p.version}" for p in item.libraries) or "—")
        out.print(table)
        for note in item.notes:
            out.print(f"note: {note}")
    print_findings(
        out, audit.findings(), "no CPU variant in the lock" + (", the driver runs it" if audit.driver else "")
    )


# --- audit licenses ----------------------------------------------------------------------------


def print_licence_audit(out: Console, audit: LicenceAudit) -> None:
    table = Table(title=f"Licences of '{audit.flavor}' [{', '.join(audit.platforms)}]", title_justify="left")
    table.add_column("Licence", overflow="fold")
    table.add_column("Kind", no_wrap=True)
    table.add_column("#", justify="right")
    table.add_column("Packages", overflow="fold")
    for group in audit.groups:
        names = ", ".join(f"{p.name} {p.version}" for p in group.packages)
        table.add_row(group.licence, group.kind, str(len(group.packages)), names)
    out.print(table)
    counts = audit.by_kind()
    out.print(", ".join(f"{count} {kind}" for kind, count in counts.items() if count))
    print_findings(out, audit.findings(), "no licence denied")
