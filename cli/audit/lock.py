"""Is everything derived from pixi.toml in step? The lock with the manifest, the exports and generated files with both.

- pixi.lock against pixi.toml: `cli.lockengine.freshness.lock_mismatches` (environments, platforms,
  channels, virtual packages, every spec satisfied, nothing missing or left over: pixi's rules);
- envs/<flavor>/ exports (and the Docker path's split, envs/_shared/ and `<subdir>.own.explicit`) against
  pixi.lock: `cli.lockengine.export.stale_exports`, and for a stale one the packages that differ, read back
  from the export itself;
- generated files (run scripts, docker-compose.yml) against metadata.yml: `cli.images.generated`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.audit.diff import diff_snapshots
from cli.audit.findings import Finding
from cli.audit.readers import DEFAULT_ENVIRONMENT, LockSnapshot, from_record, read_snapshot
from cli.errors import UserError
from cli.flavors import discover_flavors
from cli.images.generated import stale_generated
from cli.lockengine.export import ENVS_DIR, export_paths, flavor_lock, stale_exports
from cli.lockengine.freshness import lock_mismatches
from cli.lockengine.lockfile import read_lock
from cli.lockengine.manifest import Workspace
from cli.lockengine.shared_export import SHARED_FOLDER, split_exports


@dataclass
class LockAudit:
    root: Path
    manifest: list[Finding] = field(default_factory=list)
    exports: list[Finding] = field(default_factory=list)
    generated: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def findings(self) -> list[Finding]:
        return [*self.manifest, *self.exports, *self.generated]

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "manifest": [f.as_dict() for f in self.manifest],
            "exports": [f.as_dict() for f in self.exports],
            "generated": [f.as_dict() for f in self.generated],
            "notes": self.notes,
            "findings": [f.as_dict() for f in self.findings()],
        }


def _relative(workspace: Workspace, text: str) -> str:
    root = str(workspace.root) + "/"
    return text.replace(root, "")


def _split(message: str) -> tuple[str, str]:
    """`/ws/envs/x/file: differs (…)` → (path, what is wrong)."""
    path, sep, problem = message.partition(": ")
    return (path, problem) if sep else (message, "")


def _export_details(workspace: Workspace, path: Path, flavor: str, lock_snapshot: LockSnapshot) -> list[str]:
    """Which packages of a stale export differ from pixi.lock (empty if only its text differs)."""
    try:
        export = read_snapshot(path)
    except UserError as error:
        return [error.message]
    platforms = sorted(export.packages.get(flavor, {})) or None
    diff = diff_snapshots(lock_snapshot, export, [flavor], platforms)
    details = []
    for section in diff.sections:
        for change in section.changes:
            old = change.old.spec if change.old else "absent"
            new = change.new.spec if change.new else "absent"
            details.append(f"{change.label} [{section.platform}]: {old} in pixi.lock, {new} in the export")
    return details


def _lock_snapshot(workspace: Workspace, flavor: str) -> LockSnapshot:
    lock = read_lock(workspace)
    locked = flavor_lock(lock, workspace, flavor)
    snapshot = LockSnapshot(workspace.lock_path, "pixi.lock")
    for platform, records in locked.records.items():
        for record in records:
            snapshot.add(flavor, platform, from_record(record))
    return snapshot


def _split_snapshots(workspace: Workspace) -> dict[str, tuple[str, LockSnapshot]]:
    """The Docker path's split exports: path -> (environment, what pixi.lock says they list)."""
    try:
        splits = split_exports(workspace, read_lock(workspace))
    except UserError:  # a flavor that cannot be exported: its own finding already says why
        return {}
    snapshots = {}
    for split in splits:
        environment = split.environment if split.environment != SHARED_FOLDER else DEFAULT_ENVIRONMENT
        snapshot = LockSnapshot(workspace.lock_path, "pixi.lock")
        snapshot.packages.setdefault(environment, {}).setdefault(split.platform, {})
        for record in split.records:
            snapshot.add(environment, split.platform, from_record(record))
        snapshots[str(split.path)] = (environment, snapshot)
    return snapshots


def _export_findings(workspace: Workspace) -> list[Finding]:
    findings = []
    flavors = {f.name for f in discover_flavors(workspace)}
    owners = {}
    for name in sorted(flavors):
        for path in export_paths(workspace, name).all():
            owners[str(path)] = name
    stale = stale_exports(workspace)
    splits = _split_snapshots(workspace) if any(_split(m)[0] not in owners for m in stale) else {}
    for message in stale:
        path_text, problem = _split(message)
        flavor = owners.get(path_text)
        details = []
        if flavor is not None and Path(path_text).is_file():
            details = _export_details(workspace, Path(path_text), flavor, _lock_snapshot(workspace, flavor))
        elif path_text in splits and Path(path_text).is_file():
            environment, expected = splits[path_text]
            details = _export_details(workspace, Path(path_text), environment, expected)
        detail = problem + ("; " + "; ".join(details) if details else "")
        findings.append(Finding("export-stale", _relative(workspace, path_text), _relative(workspace, detail)))
    envs = workspace.root / ENVS_DIR
    if envs.is_dir():
        for folder in sorted(p for p in envs.iterdir() if p.is_dir()):
            if folder.name not in flavors and folder.name != SHARED_FOLDER:
                findings.append(
                    Finding(
                        "export-orphan",
                        f"{ENVS_DIR}/{folder.name}",
                        "no flavor of that name (remove the folder, or add the flavor)",
                    )
                )
    return findings


def _generated_findings(workspace: Workspace) -> list[Finding]:
    findings = []
    for message in stale_generated(workspace):
        path, problem = _split(message)
        findings.append(Finding("generated-stale", _relative(workspace, path), problem))
    return findings


def audit_lock(workspace: Workspace, environments: list[str] | None = None) -> LockAudit:
    lock = read_lock(workspace)
    audit = LockAudit(workspace.root)
    for mismatch in lock_mismatches(workspace, lock, environments):
        where = mismatch.environment if mismatch.platform is None else f"{mismatch.environment} [{mismatch.platform}]"
        audit.manifest.append(Finding("lock-mismatch", f"pixi.lock: {where}", mismatch.problem))
    audit.exports = _export_findings(workspace)
    audit.generated = _generated_findings(workspace)
    return audit
