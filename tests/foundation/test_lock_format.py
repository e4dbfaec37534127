"""pixi.lock written as pixi writes it: pixi-written locks round-trip byte for byte, and our writer
agrees with rattler_lock's (py-rattler's) on every lock in tests/data.

Normalisation rules pixi applies, and so do we:
- a lock of format 6 or older is written as format 7 (rattler_lock reads it and writes the
  latest format): our bytes equal py-rattler's for it, and are then stable;
- format 7 is written with platforms and environments sorted by name, selectors and packages
  by (kind, id) with conda before conda_source before pypi, model field order, defaults left out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rattler import LockFile

from cli.errors import UserError
from cli.lockengine.freshness import lock_mismatches
from cli.lockengine.lockfile import read_lock_data
from cli.lockengine.manifest import load_workspace
from tests.support.cli import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data"
LOCKS = DATA / "locks"
PIXI_WRITTEN_V7 = [
    "pixi-multi-machine.v7.pixi.lock",
    "pixi-repository.v7.pixi.lock",
    "pixi-build-recursive.v7.pixi.lock",
]
PIXI_WRITTEN_OLDER = [
    "pytorch-gpu-pixi-example.v6.pixi.lock",
    "pixi-pypi-example.v6.pixi.lock",
    "intminsu-pixi-sample.v5.pixi.lock",
]
EVERY_LOCK = sorted(
    str(p.relative_to(DATA))
    for p in [
        *LOCKS.rglob("*.lock"),
        *(LOCKS / "rattler" / "v7").glob("*.yml"),
        *DATA.glob("pixi-fixtures/*/*/pixi.lock"),
    ]
)
# Where py-rattler 0.28 is not the reference: it cannot read a relative `file:` requirement (rattler_lock
# reads it since), and it drops a PyPI hash written as a bare run of digits (YAML reads it as a number).
NOT_COMPARABLE = {
    "locks/rattler/v7/pypi_relative_url.yml": "py-rattler 0.28 cannot read `file:my_subdir`",
    "locks/rattler/v7/pypi_relative_outside_url.yml": "py-rattler 0.28 cannot read `file:../…`",
    "pixi-fixtures/satisfiability/pypi-index-transitive/pixi.lock": "an unquoted all-digit sha256",
}


def rattler_bytes(path: Path, tmp_path: Path) -> bytes:
    target = tmp_path / "rattler.lock"
    LockFile.from_path(path).to_path(target)
    return target.read_bytes()


@pytest.mark.parametrize("name", PIXI_WRITTEN_V7)
def test_pixi_written_v7_locks_round_trip_byte_for_byte(name: str) -> None:
    path = LOCKS / name
    assert read_lock_data(path).render() == path.read_bytes()


@pytest.mark.parametrize("name", PIXI_WRITTEN_OLDER)
def test_older_pixi_locks_are_rewritten_as_format_7_like_pixi(name: str, tmp_path: Path) -> None:
    """The rule: pixi rewrites an older format as format 7 through rattler_lock; the result is stable."""
    path = LOCKS / name
    ours = read_lock_data(path).render()
    assert ours.startswith(b"version: 7\n")
    assert ours == rattler_bytes(path, tmp_path)
    again = tmp_path / "again.lock"
    again.write_bytes(ours)
    assert read_lock_data(again).render() == ours


@pytest.mark.parametrize("name", [n for n in EVERY_LOCK if n not in NOT_COMPARABLE])
def test_our_writer_agrees_with_rattler_lock(name: str, tmp_path: Path) -> None:
    path = DATA / name
    assert read_lock_data(path).render() == rattler_bytes(path, tmp_path)


@pytest.mark.parametrize(
    "project",
    [
        "pytorch-gpu-pixi-example.v6",  # a real GPU project
        "pixi-multi-machine.v7",  # named platforms with CUDA and macOS, written as p1..p3
        "pixi-pypi-example.v6",  # 148 PyPI packages, sdists, [system-requirements] migrated into platforms
    ],
)
def test_pixi_written_locks_with_their_manifests_are_fresh(project: str, tmp_path: Path) -> None:
    """Our check agrees with pixi, which committed these locks, that they satisfy their pixi.toml."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copy(LOCKS / f"{project.rsplit('.', 1)[0]}.pixi.toml", workspace / "pixi.toml")
    shutil.copy(LOCKS / f"{project}.pixi.lock", workspace / "pixi.lock")
    assert lock_mismatches(load_workspace(workspace)) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("duplicate_platform.yml", "duplicate entry with key 'DUPLICATE'"),
        ("duplicate_platform_definition.yml", "duplicate platform name `DUPLICATE`"),
        ("duplicate_platform_use.yml", "duplicate entry with key 'DUPLICATE'"),
        ("invalid_platform_name.yml", "failed to parse 'linux 64 foobar' as a PlatformName"),
        ("invalid_platform_subdir.yml", "'linux-XX' is not a known platform"),
        ("missing_platform.yml", "unknown platform `UNKNOWN`"),
    ],
)
def test_what_rattler_lock_refuses_is_refused(name: str, message: str) -> None:
    path = LOCKS / "rattler" / "lock_parse_fails" / "v7" / name
    with pytest.raises(UserError, match=message) as raised:
        read_lock_data(path)
    assert raised.value.path == path
    with pytest.raises(Exception):  # noqa: B017 - py-rattler refuses it too, with its own error type
        LockFile.from_path(path)


def test_a_future_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pixi.lock"
    path.write_text("version: 8\nplatforms: []\nenvironments: {}\npackages: []\n")
    with pytest.raises(UserError, match="format version 8 is newer than this CLI reads"):
        read_lock_data(path)


def test_the_committed_lock_is_what_the_writer_writes() -> None:
    path = REPO_ROOT / "pixi.lock"
    assert read_lock_data(path).render() == path.read_bytes()


def test_libyaml_and_the_python_emitter_write_the_same_bytes() -> None:
    """The writer uses libyaml's emitter (serde_yaml's); PyYAML's pure-Python port must give the same text."""
    from cli.lockengine import lock_yaml

    document = lock_yaml.load((LOCKS / "pixi-pypi-example.v6.pixi.lock").read_text())
    assert lock_yaml.dump(document) == lock_yaml.dump_python(document)
