"""Flavor versions: each flavor versions independently, in its own metadata.yml.

A bump rewrites only the `version:` line of that one file (comments and layout kept), then
regenerates what is derived from metadata; other flavors' files stay byte-identical.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from cli.errors import UserError
from cli.fileio import atomic_write_text
from cli.images.metadata import SEMVER, load_metadata

VERSION_LINE = re.compile(
    r"^version:[ \t]*(?P<quote>[\"']?)(?P<version>[^\"'\s#]+)(?P=quote)(?P<rest>[ \t]*(#.*)?)$", re.MULTILINE
)


class Part(StrEnum):
    major = "major"
    minor = "minor"
    patch = "patch"


def bumped(version: str, part: Part) -> str:
    """1.2.3 -> 2.0.0 / 1.3.0 / 1.2.4; a pre-release or build suffix is dropped."""
    match = re.fullmatch(SEMVER, version)
    if match is None:
        raise ValueError(f"not a semantic version: {version!r}")
    major, minor, patch = (int(match.group(i)) for i in (1, 2, 3))
    if part is Part.major:
        return f"{major + 1}.0.0"
    if part is Part.minor:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def set_version(path: Path, new_version: str) -> None:
    """Rewrite the top-level `version:` line of metadata.yml, then check the file still validates."""
    text = path.read_text(encoding="utf-8")
    matches = list(VERSION_LINE.finditer(text))
    if len(matches) != 1:
        raise UserError(
            f"expected one top-level 'version: X.Y.Z' line, found {len(matches)}",
            path=path,
            fix="write the version as a plain `version: 1.0.0` line",
        )
    match = matches[0]
    quote = match.group("quote")
    line = f"version: {quote}{new_version}{quote}{match.group('rest')}"
    atomic_write_text(path, text[: match.start()] + line + text[match.end() :])
    written = load_metadata(path).version
    if written != new_version:
        atomic_write_text(path, text)
        raise UserError(f"version reads back as {written!r}, not {new_version!r}", path=path, fix="edit it by hand")


def bump(path: Path, part: Part) -> tuple[str, str]:
    """Bump the version in one metadata.yml; returns (old, new)."""
    old = load_metadata(path).version
    new = bumped(old, part)
    set_version(path, new)
    return old, new
