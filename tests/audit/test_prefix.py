"""`audit prefix`: an installed environment against the lock, package by package and file by file."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
import rattler
from rattler import Channel, PackageName, SparseRepoData

from cli.audit.prefix import InstalledPackage, PathEntry, audit_overlay, check_files
from cli.audit.readers import LockedPackage
from cli.file_hashing import sha256_of
from cli.lockengine.lockfile import locked_records
from cli.lockengine.manifest import load_workspace
from tests.audit.conftest import run_audit, run_cli


def findings(outcome_stdout: str) -> list[dict[str, str]]:
    return json.loads(outcome_stdout)["findings"]


def checks(outcome_stdout: str) -> set[tuple[str, str]]:
    return {(f["check"], f["subject"]) for f in findings(outcome_stdout)}


def channel_record(channel: Path, name: str, version: str, build_prefix: str) -> rattler.RepoDataRecord:
    repodata = SparseRepoData(Channel(channel.as_uri()), "linux-64", channel / "linux-64" / "repodata.json")
    records = repodata.load_records(PackageName(name))
    if not records:
        noarch = SparseRepoData(Channel(channel.as_uri()), "noarch", channel / "noarch" / "repodata.json")
        records = noarch.load_records(PackageName(name))
    return next(r for r in records if str(r.version) == version and str(r.build).startswith(build_prefix))


def reinstall(prefix: Path, records: list[rattler.RepoDataRecord], cache: Path) -> None:
    """Change an installed prefix as a user with another tool would: py-rattler's own transaction."""
    asyncio.run(rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False))


def test_clean_prefix_passes(capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path) -> None:
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    report = json.loads(outcome.stdout)
    assert report["findings"] == []
    assert report["packages"] == {"installed": 7, "locked": 7}
    assert report["platform"] == "linux-64-cuda-12"  # pixi's name for { platform = "linux-64", cuda = "12" }
    assert report["stats"]["files_hashed"] > 0


def test_clean_prefix_exact_command_form(audited_workspace: Path, prefix: Path) -> None:
    """`python -m cli audit prefix FLAVOR DIR` run from the workspace, as CI calls it."""
    outcome = run_cli("audit", "prefix", "pytorch", prefix, cwd=audited_workspace)
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert "the prefix matches the lock" in outcome.stdout


def test_image_filesystem_layout_is_audited_in_place(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path, tmp_path: Path
) -> None:
    """An image's /opt/conda/envs/<flavor>, taken out of an exported filesystem, is just another folder."""
    exported = tmp_path / "rootfs" / "opt" / "conda" / "envs" / "pytorch"
    shutil.copytree(prefix, exported, symlinks=True)
    outcome = run_audit(capsys, "prefix", "pytorch", exported, "--manifest-path", audited_workspace)
    assert outcome.code == 0, outcome.stdout


def test_tampered_file_is_reported(capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path) -> None:
    target = prefix / "share" / "pytorch" / "README.txt"
    target.write_text(target.read_text().replace("2.5.0", "2.5.1"))  # same size, other bytes
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == {("file-modified", "share/pytorch/README.txt")}
    assert "sha256" in findings(outcome.stdout)[0]["detail"]
    assert "pytorch" in findings(outcome.stdout)[0]["detail"]


def test_modified_file_with_other_hard_links_says_so(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path, tmp_path: Path
) -> None:
    """Without a known package cache entry (e.g. an image), a second link to an edited file is still worth saying."""
    target = prefix / "share" / "pytorch" / "README.txt"
    os.link(target, tmp_path / "elsewhere.txt")
    target.write_text(target.read_text().replace("2.5.0", "2.5.1"))
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == {("file-modified", "share/pytorch/README.txt")}
    assert "2 hard links" in findings(outcome.stdout)[0]["detail"]


def test_resized_file_is_reported_without_hashing(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path
) -> None:
    with (prefix / "share" / "numpy" / "data" / "values.txt").open("a") as handle:
        handle.write("50\n")
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == {("file-modified", "share/numpy/data/values.txt")}
    assert "size" in findings(outcome.stdout)[0]["detail"]


def test_deleted_file_is_reported(capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path) -> None:
    (prefix / "share" / "cudnn" / "data" / "values.txt").unlink()
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == {("file-missing", "share/cudnn/data/values.txt")}


def test_unexpected_file_is_reported_and_can_be_ignored(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path
) -> None:
    (prefix / "share" / "notes.txt").write_text("left behind\n")
    (prefix / "lib" / "__pycache__").mkdir()
    (prefix / "lib" / "__pycache__" / "x.cpython-312.pyc").write_bytes(b"cache")  # caches are not findings
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == {("file-unexpected", "share/notes.txt")}
    ignored = run_audit(
        capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--ignore", "share/*.txt"
    )
    assert ignored.code == 0, ignored.stdout


def test_retargeted_link_is_reported(capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path) -> None:
    link = prefix / "bin" / "python3"
    link.unlink()
    os.symlink("/usr/bin/false", link)
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == {("file-modified", "bin/python3")}


def test_swapped_package_build_is_reported(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path, gpu_channel: Path, tmp_path: Path
) -> None:
    """The CPU build of pytorch installed in place of the locked CUDA build (files all intact)."""
    workspace = load_workspace(audited_workspace)
    records = [r for r in locked_records(workspace, "pytorch") if r.name.normalized != "pytorch"]
    cpu = channel_record(gpu_channel, "pytorch", "2.5.0", "cpu_")
    reinstall(prefix, [*records, cpu], tmp_path / "pkgs")
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == {("package-different", "pytorch")}
    detail = findings(outcome.stdout)[0]["detail"]
    assert "build: locked cuda124_py312_h2_300, installed cpu_mkl_py312_h1_0" in detail
    assert "sha256" in detail


def test_extra_package_is_reported(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path, gpu_channel: Path, tmp_path: Path
) -> None:
    workspace = load_workspace(audited_workspace)
    records = locked_records(workspace, "pytorch")
    reinstall(prefix, [*records, channel_record(gpu_channel, "pytest", "8.0.0", "pyh")], tmp_path / "pkgs")
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == {("package-extra", "pytest")}  # its files belong to it: not "unexpected"


def test_missing_package_leaves_its_files_unexpected(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path
) -> None:
    (prefix / "conda-meta" / "uv-0.5.0-h0_0.json").unlink()
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    found = checks(outcome.stdout)
    assert ("package-missing", "uv") in found
    assert ("file-unexpected", "share/uv/README.txt") in found


def test_human_output_names_each_finding(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path
) -> None:
    (prefix / "share" / "pytorch" / "README.txt").write_text("patched\n")
    (prefix / "share" / "uv" / "data" / "values.txt").unlink()
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace)
    assert outcome.code == 1
    assert "share/pytorch/README.txt" in outcome.stdout
    assert "share/uv/data/values.txt" in outcome.stdout
    assert "2 findings" in outcome.stdout


def test_not_a_prefix_and_unknown_flavor_are_usage_errors(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path, tmp_path: Path
) -> None:
    outcome = run_audit(capsys, "prefix", "pytorch", tmp_path, "--manifest-path", audited_workspace)
    assert outcome.code == 2
    assert "no conda-meta" in outcome.stderr
    outcome = run_audit(capsys, "prefix", "jax", prefix, "--manifest-path", audited_workspace)
    assert outcome.code == 2
    assert "unknown environment 'jax'" in outcome.stderr


def test_corrupt_package_record_is_a_finding(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path
) -> None:
    (prefix / "conda-meta" / "numpy-2.0.0-py312_h0_0.json").write_text("{ not json")
    outcome = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 1
    found = checks(outcome.stdout)
    assert ("metadata-unreadable", "conda-meta/numpy-2.0.0-py312_h0_0.json") in found
    assert ("package-missing", "numpy") in found


# --- files rewritten at install time ----------------------------------------------------------


def test_placeholder_rewritten_files_compare_against_sha256_in_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    (prefix / "etc").mkdir(parents=True)
    rewritten = prefix / "etc" / "config.sh"
    rewritten.write_text(f"PREFIX={prefix}\n")
    original = "PREFIX=/opt/anaconda1anaconda2anaconda3\n"
    package = LockedPackage("conda", "tool", "1.0", "h0_0")
    entry = PathEntry(
        "etc/config.sh",
        "hardlink",
        sha256=sha256_of_text(original),
        sha256_in_prefix=sha256_of(rewritten),
        size=len(original),  # the size of the original: not comparable once rewritten
    )
    problems, stats = check_files(prefix, [InstalledPackage(package, "conda-meta/tool.json", (entry,))])
    assert problems == []
    assert stats.files_hashed == 1
    rewritten.write_text("PREFIX=/elsewhere\n")
    problems, _ = check_files(prefix, [InstalledPackage(package, "conda-meta/tool.json", (entry,))])
    assert [(p.path, p.problem) for p in problems] == [("etc/config.sh", "modified")]


def sha256_of_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


# --- overlays ---------------------------------------------------------------------------------


def write_distribution(site_packages: Path, name: str, version: str) -> None:
    folder = site_packages / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def make_overlay(root: Path, *distributions: tuple[str, str]) -> Path:
    site_packages = root / "lib" / "python3.12" / "site-packages"
    site_packages.mkdir(parents=True)
    for name, version in distributions:
        write_distribution(site_packages, name, version)
    return root


def test_overlay_is_listed(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path, tmp_path: Path
) -> None:
    overlay = make_overlay(tmp_path / "overlay", ("requests", "2.32.3"), ("nvidia-ml-py", "12.560.30"))
    outcome = run_audit(
        capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--overlay", overlay, "--json"
    )
    assert outcome.code == 0, outcome.stdout
    listed = [(d["name"], d["version"]) for d in json.loads(outcome.stdout)["overlay"]["distributions"]]
    assert listed == [("nvidia-ml-py", "12.560.30"), ("requests", "2.32.3")]


def test_overlay_cuda_wheels_next_to_conda_cuda_libraries_are_flagged(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path, prefix: Path, tmp_path: Path
) -> None:
    overlay = make_overlay(
        tmp_path / "overlay",
        ("nvidia-cudnn-cu12", "9.1.0.70"),  # the prefix has conda's cudnn: a second copy
        ("nvidia-cublas-cu12", "12.4.5.8"),  # no conda libcublas here, but a second stack next to conda's
        ("numpy", "2.0.0"),
    )
    outcome = run_audit(
        capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--overlay", overlay, "--json"
    )
    assert outcome.code == 1
    assert checks(outcome.stdout) == {
        ("overlay-duplicate-cuda", "nvidia-cudnn-cu12"),
        ("overlay-duplicate-cuda", "nvidia-cublas-cu12"),
    }
    details = {f["subject"]: f["detail"] for f in findings(outcome.stdout)}
    assert "duplicates conda cudnn" in details["nvidia-cudnn-cu12"]
    assert "a second CUDA stack next to conda cuda-version, cudnn" in details["nvidia-cublas-cu12"]
    report = json.loads(outcome.stdout)["overlay"]
    assert [d["name"] for d in report["cuda_wheels"]] == ["nvidia-cublas-cu12", "nvidia-cudnn-cu12"]
    human = run_audit(capsys, "prefix", "pytorch", prefix, "--manifest-path", audited_workspace, "--overlay", overlay)
    assert "nvidia-cudnn-cu12" in human.stdout
    assert "duplicates conda cudnn" in human.stdout


def test_overlay_distribution_shadowing_the_prefix_is_flagged(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    write_distribution(prefix / "lib" / "python3.12" / "site-packages", "torch", "2.5.0")
    overlay = make_overlay(tmp_path / "overlay", ("torch", "2.6.0"), ("nvidia-nccl-cu12", "2.21.5"))
    installed = [
        LockedPackage("conda", "pytorch", "2.5.0", "cuda124_py312_h2_300"),
        LockedPackage("conda", "nccl", "2"),
    ]
    report = audit_overlay(overlay, prefix, installed)
    assert [(o.name, o.version, b.version) for o, b in report.shadowed] == [("torch", "2.6.0", "2.5.0")]
    assert [(d.name, packages, how) for d, packages, how in report.duplicate_cuda] == [
        ("nvidia-nccl-cu12", ("nccl",), "duplicates conda")
    ]


def test_cuda_wheels_over_a_cpu_prefix_are_only_listed(tmp_path: Path) -> None:
    overlay = make_overlay(tmp_path / "overlay", ("nvidia-cublas-cu12", "12.4.5.8"))
    report = audit_overlay(overlay, tmp_path, [LockedPackage("conda", "python", "3.12.0", "h0_0_cpython")])
    assert [d.name for d in report.cuda_wheels] == ["nvidia-cublas-cu12"]
    assert report.duplicate_cuda == []
