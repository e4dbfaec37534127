"""`cli version bump`: one flavor's version changes, with what is generated from it; nothing else does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cli.errors import UserError
from cli.images.versions import Part, bumped, set_version
from tests.images.conftest import cli


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("old", "part", "new"),
    [
        ("1.2.3", Part.major, "2.0.0"),
        ("1.2.3", Part.minor, "1.3.0"),
        ("1.2.3", Part.patch, "1.2.4"),
        ("0.9.9-rc.1", Part.patch, "0.9.10"),
    ],
)
def test_bumped(old: str, part: Part, new: str) -> None:
    assert bumped(old, part) == new


def test_bump_touches_one_flavor_only(plain_workspace: Path) -> None:
    assert cli("generate", "--manifest-path", plain_workspace).returncode == 0
    metadata = plain_workspace / "flavors" / "pytorch" / "metadata.yml"
    metadata.write_text("# PyTorch flavor\n" + metadata.read_text().replace("version: 1.0.0", "version: 1.0.0  # ours"))
    before = snapshot(plain_workspace)
    done = cli("version", "bump", "pytorch", "minor", "--json", "--manifest-path", plain_workspace)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["new"] == "1.1.0"
    after = snapshot(plain_workspace)
    changed = {p.relative_to(plain_workspace).as_posix() for p in after if before.get(p) != after[p]}
    # That flavor's files and its block of the shared compose file; tensorflow's files stay byte-identical.
    assert changed == {"flavors/pytorch/metadata.yml", "flavors/pytorch/service.cli/run", "docker-compose.yml"}
    text = metadata.read_text()
    assert text.startswith("# PyTorch flavor\n")
    assert "version: 1.1.0  # ours" in text
    assert text.replace("1.1.0", "1.0.0") == before[metadata].decode()
    compose = yaml.safe_load((plain_workspace / "docker-compose.yml").read_text())["services"]
    assert compose["pytorch"]["image"] == "simcore/services/comp/osparc-pytorch-runner:1.1.0"
    assert compose["tensorflow"]["image"] == "simcore/services/comp/osparc-tensorflow-runner:1.0.0"
    assert cli("generate", "--check", "--manifest-path", plain_workspace).returncode == 0
    shown = json.loads(cli("version", "show", "--json", "--manifest-path", plain_workspace).stdout)
    assert shown == {
        "pytorch": {"version": "1.1.0", "image": "simcore/services/comp/osparc-pytorch-runner:1.1.0"},
        "tensorflow": {"version": "1.0.0", "image": "simcore/services/comp/osparc-tensorflow-runner:1.0.0"},
    }


def test_bump_unknown_flavor_changes_nothing(plain_workspace: Path) -> None:
    before = snapshot(plain_workspace)
    done = cli("version", "bump", "jax", "patch", "--manifest-path", plain_workspace)
    assert done.returncode == 2
    assert "unknown flavor 'jax'" in done.stderr
    assert snapshot(plain_workspace) == before


def test_quoted_version_keeps_its_quotes_and_a_missing_line_is_refused(tmp_path: Path) -> None:
    from tests.support.workspace import flavor_metadata

    path = tmp_path / "metadata.yml"
    path.write_text(yaml.safe_dump(flavor_metadata("x")).replace("version: 1.0.0", "version: '1.0.0'"))
    set_version(path, "1.0.1")
    assert "version: '1.0.1'" in path.read_text()
    path.write_text(path.read_text().replace("version: '1.0.1'", "version:\n  '1.0.1'"))
    with pytest.raises(UserError, match=re.escape("expected one top-level 'version: X.Y.Z' line")):
        set_version(path, "1.0.2")
