"""What changed between two locks, per environment and platform.

Each package (by kind and name) present on either side is one of: added, removed, upgraded,
downgraded (by version, compared as conda or PEP 440 versions), rebuilt (same version, another
build string or other archive hashes) or moved (same archive from another URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from packaging.version import InvalidVersion
from packaging.version import Version as PypiVersion
from rattler import Version
from rattler.exceptions import InvalidVersionError

from cli.audit.readers import PYPI, LockedPackage, LockSnapshot, Packages, read_snapshot
from cli.errors import UserError
from cli.lockengine.manifest import canonical_channel_url

ADDED = "added"
REMOVED = "removed"
UPGRADED = "upgraded"
DOWNGRADED = "downgraded"
REBUILT = "rebuilt"
MOVED = "moved"
CHANGE_KINDS = (ADDED, REMOVED, UPGRADED, DOWNGRADED, REBUILT, MOVED)

BOTH = "both"
ONLY_OLD = "only-old"
ONLY_NEW = "only-new"


@dataclass(frozen=True)
class Change:
    change: str
    old: LockedPackage | None
    new: LockedPackage | None

    @property
    def package(self) -> LockedPackage:
        package = self.new or self.old
        assert package is not None
        return package

    @property
    def label(self) -> str:
        return self.package.label

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.package.name,
            "kind": self.package.kind,
            "change": self.change,
            "old": _brief(self.old),
            "new": _brief(self.new),
        }


def _brief(package: LockedPackage | None) -> dict[str, Any] | None:
    if package is None:
        return None
    return {
        "version": package.version,
        "build": package.build,
        "url": package.url,
        "sha256": package.sha256,
        "md5": package.md5,
    }


@dataclass
class SelectionDiff:
    """One environment and platform: the changes, and whether both locks have it."""

    environment: str
    platform: str
    presence: str
    changes: list[Change] = field(default_factory=list)
    old_environment: str | None = None

    @property
    def title(self) -> str:
        renamed = f"{self.old_environment} → " if self.old_environment else ""
        return f"{renamed}{self.environment} [{self.platform}]"

    def counts(self) -> dict[str, int]:
        return {kind: sum(1 for c in self.changes if c.change == kind) for kind in CHANGE_KINDS}

    def as_dict(self) -> dict[str, Any]:
        grouped: dict[str, list[dict[str, Any]]] = {kind: [] for kind in CHANGE_KINDS}
        for change in self.changes:
            grouped[change.change].append(change.as_dict())
        return {
            "environment": self.environment,
            "old_environment": self.old_environment,
            "platform": self.platform,
            "presence": self.presence,
            "counts": self.counts(),
            **grouped,
        }


@dataclass
class LockDiff:
    old_path: Path
    old_format: str
    new_path: Path
    new_format: str
    sections: list[SelectionDiff]
    channel_changes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.channel_changes) or any(s.changes or s.presence != BOTH for s in self.sections)

    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys(CHANGE_KINDS, 0)
        for section in self.sections:
            for kind, count in section.counts().items():
                totals[kind] += count
        return totals

    def as_dict(self) -> dict[str, Any]:
        return {
            "old": {"path": str(self.old_path), "format": self.old_format},
            "new": {"path": str(self.new_path), "format": self.new_format},
            "changed": self.changed,
            "totals": self.totals(),
            "channels": {
                env: {"old": list(old), "new": list(new)} for env, (old, new) in sorted(self.channel_changes.items())
            },
            "environments": [s.as_dict() for s in self.sections],
        }


def compare_versions(old: LockedPackage, new: LockedPackage) -> int:
    """-1, 0 or 1 as old's version is lower, equal or higher (conda rules; PEP 440 for PyPI packages)."""
    if old.version == new.version:
        return 0
    try:
        if old.kind == PYPI:
            a_pypi, b_pypi = PypiVersion(old.version), PypiVersion(new.version)
            return (a_pypi > b_pypi) - (a_pypi < b_pypi)
        a, b = Version(old.version), Version(new.version)
        return (a > b) - (a < b)
    except (InvalidVersion, InvalidVersionError):
        return (old.version > new.version) - (old.version < new.version)


def location(url: str) -> str:
    """A package's location, with `file:///x` and the plain path `/x` (as pixi.lock writes local files) alike."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return url


def channel_url(channel: str) -> str:
    """`conda-forge` (as old locks and conda-lock name it) and its URL alike, without the trailing slash."""
    try:
        return canonical_channel_url(channel).rstrip("/")
    except Exception:  # rattler refuses some strings; compare those as written
        return channel.rstrip("/")


def _hashes_differ(old: LockedPackage, new: LockedPackage) -> bool:
    if old.sha256 and new.sha256:
        return old.sha256.lower() != new.sha256.lower()
    if old.md5 and new.md5:
        return old.md5.lower() != new.md5.lower()
    return False


def classify(old: LockedPackage, new: LockedPackage) -> str | None:
    order = compare_versions(old, new)
    if order < 0:
        return UPGRADED
    if order > 0:
        return DOWNGRADED
    if old.build != new.build or _hashes_differ(old, new):
        return REBUILT
    if old.url and new.url and location(old.url) != location(new.url):
        return MOVED
    return None


def diff_packages(old: Packages, new: Packages) -> list[Change]:
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before is None:
            changes.append(Change(ADDED, None, after))
        elif after is None:
            changes.append(Change(REMOVED, before, None))
        else:
            kind = classify(before, after)
            if kind is not None:
                changes.append(Change(kind, before, after))
    return changes


def _environment_pairs(old: LockSnapshot, new: LockSnapshot, environments: list[str] | None) -> list[tuple[str, str]]:
    """(old name, new name) pairs; one environment on each side is compared even when the names differ.

    That is what comparing a pixi.lock environment with its export (`default` in a plain
    @EXPLICIT file) or two single-environment locks of different projects needs.
    """
    old_names, new_names = sorted(old.packages), sorted(new.packages)
    if len(old_names) == 1 and len(new_names) == 1 and old_names != new_names:
        pairs = [(old_names[0], new_names[0])]
    else:
        pairs = [(name, name) for name in sorted(set(old_names) | set(new_names))]
    if environments:
        pairs = [p for p in pairs if p[0] in environments or p[1] in environments]
    return pairs


def _check_selection(
    old: LockSnapshot, new: LockSnapshot, environments: list[str] | None, platforms: list[str] | None
) -> None:
    """An --environment or --platform that neither lock has is a typo, not "no change"."""
    known_envs = sorted(set(old.packages) | set(new.packages))
    for name in environments or []:
        if name not in known_envs:
            raise UserError(
                f"neither lock has an environment '{name}'", path=new.path, fix=f"known: {', '.join(known_envs)}"
            )
    known_platforms = sorted({p for _, p in old.selections()} | {p for _, p in new.selections()})
    for name in platforms or []:
        if name not in known_platforms:
            raise UserError(
                f"neither lock has a platform '{name}'", path=new.path, fix=f"known: {', '.join(known_platforms)}"
            )


def diff_snapshots(
    old: LockSnapshot,
    new: LockSnapshot,
    environments: list[str] | None = None,
    platforms: list[str] | None = None,
) -> LockDiff:
    _check_selection(old, new, environments, platforms)
    sections: list[SelectionDiff] = []
    channel_changes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for old_env, new_env in _environment_pairs(old, new, environments):
        old_platforms = old.packages.get(old_env, {})
        new_platforms = new.packages.get(new_env, {})
        old_channels = tuple(channel_url(c) for c in old.channels.get(old_env, ()))
        new_channels = tuple(channel_url(c) for c in new.channels.get(new_env, ()))
        if old_channels and new_channels and old_channels != new_channels:
            channel_changes[new_env] = (old_channels, new_channels)
        for platform in sorted(set(old_platforms) | set(new_platforms)):
            if platforms and platform not in platforms:
                continue
            in_old = old_env in old.packages and platform in old_platforms
            in_new = new_env in new.packages and platform in new_platforms
            presence = BOTH if in_old and in_new else ONLY_OLD if in_old else ONLY_NEW
            sections.append(
                SelectionDiff(
                    environment=new_env if in_new else old_env,
                    platform=platform,
                    presence=presence,
                    changes=diff_packages(old_platforms.get(platform, {}), new_platforms.get(platform, {})),
                    old_environment=old_env if old_env != new_env else None,
                )
            )
    return LockDiff(old.path, old.format, new.path, new.format, sections, channel_changes)


def diff_files(
    old: Path, new: Path, environments: list[str] | None = None, platforms: list[str] | None = None
) -> LockDiff:
    return diff_snapshots(read_snapshot(old), read_snapshot(new), environments, platforms)
