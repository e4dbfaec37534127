"""`audit cuda`: a flavor's CUDA needs from its lock, the driver they need, and no CPU build in a CUDA lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rattler import Channel, PackageName, SparseRepoData

from cli.cuda import TOOLKIT_MINIMUM_DRIVER, cuda_for_driver, cuda_wheel_library
from cli.lockengine.lockfile import read_lock_data, write_lock
from cli.lockengine.locking import conda_entries
from cli.lockengine.manifest import load_workspace
from tests.audit.conftest import run_audit, run_cli


def swap_in_cpu_pytorch(root: Path, channel: Path) -> None:
    """Rewrite pixi.lock as if a CPU build of pytorch had slipped into the CUDA flavor (the lock engine refuses to)."""
    workspace = load_workspace(root)
    data = read_lock_data(workspace.lock_path)
    cpu = next(
        r
        for r in SparseRepoData(
            Channel(channel.as_uri()), "linux-64", channel / "linux-64" / "repodata.json"
        ).load_records(PackageName("pytorch"))
        if str(r.version) == "2.5.0" and str(r.build).startswith("cpu_")
    )
    (entry,) = conda_entries({cpu.url: cpu}, {}, None).values()
    data.packages.append(entry)
    for platform, selectors in data.environments["pytorch"].packages.items():
        data.environments["pytorch"].packages[platform] = [
            ("conda", str(entry["conda"])) if "/pytorch-2.5.0-" in ident else (kind, ident) for kind, ident in selectors
        ]
    write_lock(workspace.lock_path, data.render())


def report(stdout: str) -> dict:
    return json.loads(stdout)


def test_needs_of_a_cuda_flavor(capsys: pytest.CaptureFixture[str], audited_workspace: Path) -> None:
    outcome = run_audit(capsys, "cuda", "pytorch", "--manifest-path", audited_workspace, "--json")
    assert outcome.code == 0, outcome.stdout
    (platform,) = report(outcome.stdout)["platforms"]
    assert platform["uses_cuda"] is True
    assert platform["declared_cuda"] == "12"
    assert platform["cuda_version_package"] == "12.4"
    assert platform["minimum_cuda"] == "12.4"
    assert platform["minimum_driver"] == "525.60.13"  # CUDA 12.x minor version compatibility
    assert platform["toolkit_driver"] == "550.54.14"  # the 12.4 toolkit's own driver
    constraints = {(c["package"], c["spec"], c["source"]) for c in platform["constraints"]}
    assert ("cuda-version", ">=12", "constrains") in constraints
    assert ("pytorch", "*", "depends") in constraints
    assert ("pixi.lock", ">=12", "virtual-packages") in constraints
    assert [lib["name"] for lib in platform["cuda_libraries"]] == ["cuda-version", "cudnn"]
    assert platform["cpu_variants"] == []


def test_a_recent_driver_runs_it(audited_workspace: Path) -> None:
    outcome = run_cli("audit", "cuda", "pytorch", "--driver", "550.54.14", cwd=audited_workspace)
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert "runs CUDA 12.4" in outcome.stdout


def test_an_older_12_driver_runs_it_through_minor_version_compatibility(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path
) -> None:
    outcome = run_audit(capsys, "cuda", "tensorflow", "--driver", "535.54.03", "--manifest-path", audited_workspace)
    assert outcome.code == 0, outcome.stdout
    assert "minor version compatibility" in outcome.stdout


def test_a_cuda_11_driver_cannot_run_it(capsys: pytest.CaptureFixture[str], audited_workspace: Path) -> None:
    outcome = run_audit(
        capsys, "cuda", "pytorch", "--driver", "470.57.02", "--manifest-path", audited_workspace, "--json"
    )
    assert outcome.code == 1
    findings = {(f["check"], f["subject"]) for f in report(outcome.stdout)["findings"]}
    assert findings == {("driver-too-old", "driver 470.57.02"), ("driver-too-old", "cuda-version")}
    assert report(outcome.stdout)["platforms"][0]["driver_cuda"] == "11.4"


def test_cpu_variant_in_a_cuda_lock_fails(
    capsys: pytest.CaptureFixture[str], locked_workspace: Path, gpu_channel: Path
) -> None:
    swap_in_cpu_pytorch(locked_workspace, gpu_channel)
    outcome = run_audit(capsys, "cuda", "pytorch", "--manifest-path", locked_workspace, "--json")
    assert outcome.code == 1
    (finding,) = report(outcome.stdout)["findings"]
    assert (finding["check"], finding["subject"]) == ("cpu-variant", "pytorch")
    assert "2.5.0 cpu_mkl_py312_h1_0" in finding["detail"]
    tensorflow = run_audit(capsys, "cuda", "tensorflow", "--manifest-path", locked_workspace)
    assert tensorflow.code == 0, tensorflow.stdout


def test_bad_driver_and_unknown_flavor_are_usage_errors(
    capsys: pytest.CaptureFixture[str], audited_workspace: Path
) -> None:
    outcome = run_audit(capsys, "cuda", "pytorch", "--driver", "latest", "--manifest-path", audited_workspace)
    assert outcome.code == 2
    assert "'latest' is not a driver version" in outcome.stderr
    outcome = run_audit(capsys, "cuda", "jax", "--manifest-path", audited_workspace)
    assert outcome.code == 2


def test_driver_table_facts() -> None:
    assert cuda_for_driver("550.54.14") == "12.4"
    assert cuda_for_driver("550.54.13") == "12.3"
    assert cuda_for_driver("580.65.06") == "13.0"
    assert cuda_for_driver("390.1") is None
    assert set(TOOLKIT_MINIMUM_DRIVER) >= {"11.8", "12.0", "12.4", "12.8", "12.9"}
    assert cuda_wheel_library("nvidia_cuda_runtime_cu12") == ("cuda-runtime", "12")
    assert cuda_wheel_library("nvidia-ml-py") is None
