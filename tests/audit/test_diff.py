"""`audit diff`: what changed between two locks, on real public locks (v4-v7) and on fixture locks."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.audit.diff import diff_files, diff_snapshots
from cli.audit.readers import LockSnapshot, read_snapshot
from tests.audit.conftest import LOCKS, run_audit, run_cli
from tests.support.channel import FakePackage, build_channel, gpu_stack_packages
from tests.support.workspace import lock_and_export, write_workspace

V4 = LOCKS / "rattler-python.v4.excerpt.pixi.lock"
V5 = LOCKS / "intminsu-pixi-sample.v5.pixi.lock"
V6 = LOCKS / "pytorch-gpu-pixi-example.v6.pixi.lock"
V7 = LOCKS / "pixi-multi-machine.v7.pixi.lock"


def changes_of(report: dict, environment: str, platform: str) -> dict[str, list[tuple[str, str, str]]]:
    """change kind → [(name, old `version build`, new `version build`)] for one section of a JSON report."""
    section = next(s for s in report["environments"] if s["environment"] == environment and s["platform"] == platform)

    def spec(side: dict | None) -> str:
        return f"{side['version']} {side['build']}".strip() if side else ""

    return {
        kind: [(c["name"], spec(c["old"]), spec(c["new"])) for c in section[kind]]
        for kind in ("added", "removed", "upgraded", "downgraded", "rebuilt", "moved")
    }


# --- real public locks ------------------------------------------------------------------------


def test_real_v6_to_v7(capsys: pytest.CaptureFixture[str]) -> None:
    """Two real projects' locks: the kinds of change; pixi's `p1`/`p2` only on one side, `p3` shown as its subdir."""
    outcome = run_audit(capsys, "diff", V6, V7, "--json")
    assert outcome.code == 1
    report = json.loads(outcome.stdout)
    linux = changes_of(report, "default", "linux-64")
    assert ("cpython", "3.13.9 py313hd8ed1ab_101", "3.14.5 py314hd8ed1ab_100") in linux["upgraded"]
    assert ("bzip2", "1.0.8 hda65f42_8", "1.0.8 hda65f42_9") in linux["rebuilt"]
    assert ("cuda-version", "12.9 h4f385c5_3", "") in linux["removed"]
    assert linux["downgraded"] == []
    presence = {(s["platform"], s["presence"]) for s in report["environments"]}
    assert presence == {
        ("linux-64", "both"),
        ("win-64", "both"),
        ("osx-arm64", "both"),  # the v7 lock's p3 is its only osx-arm64 platform
        ("p1", "only-new"),  # win-64 with CUDA, beside plain win-64
        ("p2", "only-new"),  # linux-64 with CUDA, beside plain linux-64
    }
    assert report["totals"] == {
        "added": 473,
        "removed": 63,
        "upgraded": 104,
        "downgraded": 0,
        "rebuilt": 41,
        "moved": 0,
    }


def test_real_v5_environments_cuda_11_7_to_12_1() -> None:
    """Two environments of one real v5 lock: the CUDA 11.7 → 12.1 move of a PyTorch stack."""
    snapshot = read_snapshot(V5)
    old = LockSnapshot(snapshot.path, snapshot.format, {"py310cu117": snapshot.packages["py310cu117"]})
    new = LockSnapshot(snapshot.path, snapshot.format, {"py310cu121": snapshot.packages["py310cu121"]})
    diff = diff_snapshots(old, new)
    assert [s.title for s in diff.sections] == ["py310cu117 → py310cu121 [linux-64]"]
    by_name = {c.package.name: c for c in diff.sections[0].changes}
    assert (by_name["pytorch"].change, by_name["pytorch"].old.version, by_name["pytorch"].new.version) == (
        "upgraded",
        "1.13.1",
        "2.3.0",
    )
    assert by_name["blas"].change == "downgraded"  # 2.124 (conda-forge, mkl) → 1.0 (a different blas)
    assert by_name["jpeg"].change == "rebuilt"  # 9e h0b41bf4_3 → 9e h166bdaf_2
    assert by_name["cudatoolkit"].change == "removed"
    assert diff.totals() == {"added": 92, "removed": 5, "upgraded": 21, "downgraded": 3, "rebuilt": 4, "moved": 0}


def test_real_v4_to_v5() -> None:
    """A v4 lock (no build strings in its records) against a v5 one: only real changes show."""
    diff = diff_files(V4, V5, environments=["default"])
    changes = {c.package.name: c.change for c in diff.sections[0].changes}
    assert changes["ca-certificates"] == "upgraded"
    assert changes["bzip2"] == "rebuilt"
    assert "_libgcc_mutex" not in changes  # the same archive in both
    assert "_openmp_mutex" not in changes


@pytest.mark.parametrize("path", [V4, V5, V6, V7], ids=["v4", "v5", "v6", "v7"])
def test_a_lock_against_itself_is_clean(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    outcome = run_audit(capsys, "diff", path, path)
    assert outcome.code == 0, outcome.stdout
    assert outcome.stdout.strip().endswith("no change")


def test_markdown_for_a_pull_request(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_audit(capsys, "diff", V6, V7, "--markdown", "--platform", "linux-64")
    assert outcome.code == 1
    text = outcome.stdout
    assert text.startswith("### Lock diff: `pytorch-gpu-pixi-example.v6.pixi.lock` → `pixi-multi-machine.v7.pixi.lock`")
    assert "| default | linux-64 | 70 | 37 | 39 | 0 | 16 | 0 |" in text
    assert "<summary>default [linux-64]: 162 changes</summary>" in text
    assert "| cpython | upgraded | `3.13.9 py313hd8ed1ab_101` | `3.14.5 py314hd8ed1ab_100` |" in text
    assert "win-64" not in text


def test_unreadable_input_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    outcome = run_audit(capsys, "diff", V6, tmp_path / "nothing.lock")
    assert outcome.code == 2
    assert "nothing.lock: no such lock file" in outcome.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--environment", "cuda", "neither lock has an environment 'cuda'"), ("--platform", "linux-aarch64", "platform")],
)
def test_unknown_selection_is_exit_2(capsys: pytest.CaptureFixture[str], option: str, value: str, message: str) -> None:
    outcome = run_audit(capsys, "diff", V6, V7, option, value)
    assert outcome.code == 2
    assert message in outcome.stderr


# --- two fixture locks that differ in known ways ----------------------------------------------


@dataclass
class Evolution:
    old: Path
    new: Path
    workspace: Path


@pytest.fixture(scope="module")
def evolution(tmp_path_factory: pytest.TempPathFactory) -> Evolution:
    """A workspace locked, then re-locked after its channel and pixi.toml moved on.

    Channel: pytorch 2.6.0 (cuda) appears, numpy 1.26.4 appears, uv 0.5.0 is rebuilt (h1_1).
    pixi.toml (pytorch flavor): numpy pinned below 2, pytest added, torchvision dropped.
    """
    root = tmp_path_factory.mktemp("evolution")
    channel = root / "forge"
    base = gpu_stack_packages()
    build_channel(channel, base)
    workspace = lock_and_export(write_workspace(root / "ws", channel.as_uri()))
    old = root / "old"
    shutil.copytree(workspace, old, ignore=shutil.ignore_patterns("flavors"))
    build_channel(
        channel,
        [
            *base,
            FakePackage(
                "pytorch",
                "2.6.0",
                "cuda124_py312_h2_300",
                build_number=300,
                depends=["python >=3.12,<3.13", "numpy >=1.23", "__cuda", "cuda-version >=12.4,<13", "cudnn >=9,<10"],
                license="BSD-3-Clause",
            ),
            FakePackage("numpy", "1.26.4", "py312_h0_0", depends=["python >=3.12,<3.13"], license="BSD-3-Clause"),
            FakePackage("uv", "0.5.0", "h1_1", build_number=1, license="Apache-2.0 OR MIT"),
        ],
    )
    manifest = workspace / "pixi.toml"
    manifest.write_text(
        manifest.read_text().replace('torchvision = "*"\n', 'numpy = "<2"\npytest = "*"\n'),
    )
    from cli.lockengine.export import write_exports
    from cli.lockengine.locking import LockRequest, lock_workspace, write_result
    from cli.lockengine.manifest import load_workspace

    loaded = load_workspace(workspace)
    write_result(lock_workspace(loaded, LockRequest(update=True)))
    write_exports(loaded)
    return Evolution(old, workspace, workspace)


PYTORCH_CHANGES = {
    "added": [("pytest", "", "8.0.0 pyh0_0")],
    "removed": [("torchvision", "0.20.0 cuda124_py312_h4_100", "")],
    "upgraded": [("pytorch", "2.5.0 cuda124_py312_h2_300", "2.6.0 cuda124_py312_h2_300")],
    "downgraded": [("numpy", "2.0.0 py312_h0_0", "1.26.4 py312_h0_0")],
    "rebuilt": [("uv", "0.5.0 h0_0", "0.5.0 h1_1")],
    "moved": [],
}


def test_fixture_locks_differ_in_the_known_ways(capsys: pytest.CaptureFixture[str], evolution: Evolution) -> None:
    outcome = run_audit(capsys, "diff", evolution.old / "pixi.lock", evolution.new / "pixi.lock", "--json")
    assert outcome.code == 1
    report = json.loads(outcome.stdout)
    assert changes_of(report, "pytorch", "linux-64") == PYTORCH_CHANGES
    tensorflow = changes_of(report, "tensorflow", "linux-64")
    assert tensorflow["rebuilt"] == [("uv", "0.5.0 h0_0", "0.5.0 h1_1")]
    assert sum(len(v) for v in tensorflow.values()) == 1  # numpy stays 2.0.0 there: nothing pins it


@pytest.mark.parametrize("export", ["conda-lock.yml", "linux-64.explicit"])
def test_fixture_exports_differ_in_the_same_ways(
    capsys: pytest.CaptureFixture[str], evolution: Evolution, export: str
) -> None:
    old = evolution.old / "envs" / "pytorch" / export
    new = evolution.new / "envs" / "pytorch" / export
    outcome = run_audit(capsys, "diff", old, new, "--json")
    assert outcome.code == 1
    assert changes_of(json.loads(outcome.stdout), "pytorch", "linux-64") == PYTORCH_CHANGES


def test_pixi_lock_against_an_export(capsys: pytest.CaptureFixture[str], evolution: Evolution) -> None:
    """Across formats: the old pixi.lock's pytorch environment against the new @EXPLICIT export."""
    outcome = run_audit(
        capsys,
        "diff",
        evolution.old / "pixi.lock",
        evolution.new / "envs" / "pytorch" / "linux-64.explicit",
        "--environment",
        "pytorch",
        "--json",
    )
    assert outcome.code == 1
    assert changes_of(json.loads(outcome.stdout), "pytorch", "linux-64") == PYTORCH_CHANGES


def test_fixture_diff_as_markdown_and_table(evolution: Evolution) -> None:
    """The exact command forms, as a CI job posting a pull request comment runs them."""
    markdown = run_cli("audit", "diff", evolution.old / "pixi.lock", "pixi.lock", "--markdown", cwd=evolution.new)
    assert markdown.code == 1, markdown.stderr
    assert "| pytorch | linux-64 | 1 | 1 | 1 | 1 | 1 | 0 |" in markdown.stdout
    assert "| tensorflow | linux-64 | 0 | 0 | 0 | 0 | 1 | 0 |" in markdown.stdout
    assert "#### pytorch [linux-64]" in markdown.stdout
    assert "| numpy | downgraded | `2.0.0 py312_h0_0` | `1.26.4 py312_h0_0` |" in markdown.stdout
    table = run_cli("audit", "diff", evolution.old / "pixi.lock", "pixi.lock", cwd=evolution.new)
    assert table.code == 1
    assert "1 added, 1 removed, 1 upgraded, 1 downgraded, 2 rebuilt, 0 moved" in table.stdout


def test_channel_names_and_urls_compare_alike() -> None:
    """v4 and conda-lock files name `conda-forge`; newer locks write its URL: that is no channel change."""
    diff = diff_files(V4, V6, environments=["default"], platforms=["linux-64"])
    assert diff.channel_changes == {}
    other = diff_files(V4, V5, environments=["default"], platforms=["linux-64"])
    assert other.channel_changes["default"][1][0] == "https://conda.anaconda.org/pytorch"


def test_usage_error_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_audit(capsys, "diff", V6)  # NEW is missing
    assert outcome.code == 2
    assert "Missing" in outcome.stderr
