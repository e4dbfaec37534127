"""`lock --check` on a real locked workspace: what pixi counts as a change is stale, what it does not is fresh.

Each case edits pixi.toml of a freshly locked workspace and asks `lock --check` (no solve):
channel order and priority, solve strategy, exclude-newer, a platform's CUDA and subdir are
changes; renaming a platform is not (pixi matches lock platforms by what they declare).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.lockengine.lockfile import read_lock_data
from tests.support.cli import run_cli
from tests.support.locks import lock_records

CUDA_PLATFORM = 'platforms = [{ platform = "linux-64", cuda = "12" }]'


def edited(workspace: Path, old: str, new: str) -> None:
    manifest = workspace / "pixi.toml"
    text = manifest.read_text()
    assert old in text
    manifest.write_text(text.replace(old, new, 1))


def check(workspace: Path) -> int:
    return run_cli("lock", "--check", cwd=workspace).returncode


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("[workspace]\n", '[workspace]\nchannel-priority = "disabled"\n'),
        ("[workspace]\n", '[workspace]\nsolve-strategy = "lowest"\n'),
        ("[workspace]\n", '[workspace]\nexclude-newer = "2024-06-01"\n'),  # the fixture packages are from 2025
        (CUDA_PLATFORM, 'platforms = [{ platform = "linux-64", cuda = "12.4" }]'),
        (CUDA_PLATFORM, 'platforms = [{ platform = "linux-64", cuda = "12", glibc = "2.17" }]'),
        (CUDA_PLATFORM, 'platforms = ["linux-64"]'),
        ('channels = ["', 'channels = ["https://conda.anaconda.org/extra", "'),
        (
            'torchvision = "*"',
            'torchvision = { version = "*", when = "__cuda>=12" }\nextra-tool = { version = "*", when = "__cuda" }',
        ),
    ],
    ids=["channel-priority", "solve-strategy", "exclude-newer", "cuda", "glibc", "no-cuda", "channel", "when"],
)
def test_a_change_pixi_counts_makes_the_lock_stale(locked_workspace: Path, old: str, new: str) -> None:
    assert check(locked_workspace) == 0
    edited(locked_workspace, old, new)
    assert check(locked_workspace) == 1


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (CUDA_PLATFORM, 'platforms = [{ name = "gpu", platform = "linux-64", cuda = "12" }]'),  # a new name only
        ("[workspace]\n", '[workspace]\nexclude-newer = "2026-01-01"\n'),  # later than every locked package
        ('torchvision = "*"', 'torchvision = { version = "*", when = "__cuda>=13" }'),  # not installed: fine
    ],
    ids=["renamed-platform", "exclude-newer-later", "when-not-met"],
)
def test_what_pixi_does_not_count_leaves_the_lock_fresh(locked_workspace: Path, old: str, new: str) -> None:
    edited(locked_workspace, old, new)
    if "when" in new:  # torchvision is then not required: the lock must not hold it, as pixi would not
        assert check(locked_workspace) == 1
        assert run_cli("lock", cwd=locked_workspace).returncode == 0
    assert check(locked_workspace) == 0


def test_options_are_locked_and_then_fresh(locked_workspace: Path) -> None:
    edited(locked_workspace, "[workspace]\n", '[workspace]\nchannel-priority = "disabled"\nsolve-strategy = "lowest"\n')
    assert check(locked_workspace) == 1
    assert run_cli("lock", cwd=locked_workspace).returncode == 0
    text = (locked_workspace / "pixi.lock").read_text()
    assert "options:\n      strategy: lowest-version\n      channel-priority: disabled\n" in text
    assert check(locked_workspace) == 0
    assert str(lock_records(locked_workspace / "pixi.lock", "pytorch")["pytorch"].version) == "2.4.0"


def test_pixi_build_is_a_clear_cannot_check(locked_workspace: Path) -> None:
    edited(locked_workspace, "[workspace]\n", '[workspace]\npreview = ["pixi-build"]\n')
    result = run_cli("lock", "--check", cwd=locked_workspace)
    assert result.returncode == 2
    assert result.stderr.startswith("cannot check: ") and "pixi-build" in result.stderr


def test_solve_group_members_share_versions(locked_workspace: Path) -> None:
    """Alone, `pytorch` would take pytorch 2.5; in a group with an environment that pins 2.4, both get 2.4."""
    edited(
        locked_workspace,
        "[environments]\n",
        '[feature.old-torch.dependencies]\npytorch = { version = "2.4.*", build = "cuda*" }\n\n'
        "[environments]\n"
        'pinned = { features = ["old-torch", "cuda", "runner"], solve-group = "gpu" }\n',
    )
    edited(
        locked_workspace,
        'pytorch = ["pytorch", "cuda", "runner"]',
        'pytorch = { features = ["pytorch", "cuda", "runner"], solve-group = "gpu" }',
    )
    (locked_workspace / "flavors" / "pinned").mkdir()
    for name in ("metadata.yml", "runtime.yml"):
        source = (locked_workspace / "flavors" / "pytorch" / name).read_text()
        (locked_workspace / "flavors" / "pinned" / name).write_text(source.replace("pytorch", "pinned"))
    assert run_cli("lock", cwd=locked_workspace).returncode == 0
    pytorch = lock_records(locked_workspace / "pixi.lock", "pytorch")
    pinned = lock_records(locked_workspace / "pixi.lock", "pinned")
    assert str(pytorch["pytorch"].version) == str(pinned["pytorch"].version) == "2.4.0"
    assert "torchvision" in pytorch and "torchvision" not in pinned  # each keeps only what its specs reach
    assert check(locked_workspace) == 0
    data = read_lock_data(locked_workspace / "pixi.lock")
    assert sorted(data.environments) == ["default", "pinned", "pytorch", "tensorflow"]
