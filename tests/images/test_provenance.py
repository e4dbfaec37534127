"""Provenance from git: revision (marked -dirty when build inputs changed), created = pixi.lock's commit time."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cli.images.provenance import SourceFacts, oci_labels, source_facts
from cli.lockengine.manifest import load_workspace

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_COMMITTER_DATE": "2025-03-04T05:06:07+00:00",
    "GIT_AUTHOR_DATE": "2025-03-04T05:06:07+00:00",
    "PATH": "/usr/bin:/bin",
}


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], env=GIT_ENV, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_source_facts_from_git(plain_workspace: Path) -> None:
    (plain_workspace / "pixi.lock").write_text("version: 7\n")
    git(plain_workspace, "init", "-q")
    git(plain_workspace, "remote", "add", "origin", "https://bot:s3cret@git.example.org/runners.git")
    git(plain_workspace, "add", ".")
    git(plain_workspace, "commit", "-q", "-m", "lock")
    head = git(plain_workspace, "rev-parse", "HEAD")
    workspace = load_workspace(plain_workspace)
    facts = source_facts(workspace)
    assert facts == SourceFacts(
        revision=head, created="2025-03-04T05:06:07Z", epoch=1741064767, source="https://git.example.org/runners.git"
    )
    (plain_workspace / "flavors" / "pytorch" / "runtime.yml").write_text("changed: true\n")
    assert source_facts(workspace).revision == f"{head}-dirty"


def test_outside_git_facts_say_unknown(plain_workspace: Path) -> None:
    facts = source_facts(load_workspace(plain_workspace))
    assert facts.revision == "unknown"
    assert facts.source == "unknown"
    labels = oci_labels(facts, "title", "1.0.0")
    assert labels["org.opencontainers.image.title"] == "title"
    assert labels["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"
