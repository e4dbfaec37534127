"""Acceptance (issue 12): the layer plan. A one-package relock rewrites that package's layer (and the small layer
holding the lock export) and no other; a relock commit's new SOURCE_DATE_EPOCH leaves package layers unchanged.

The relock is real: a new build of torchvision is added to a channel of the test's own, the
workspace is locked again, and the image is built again from the same package cache.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from rattler import RepoDataRecord

from cli.lockengine.lockfile import locked_records
from cli.lockengine.manifest import load_workspace
from cli.lockengine.sharing import shared_identities
from cli.oci import OciBuildResult, build_oci_image
from cli.oci.layer_plan import LARGE_BYTES, bucket_of, plan_layers
from tests.oci.conftest import make_rootfs, prepare_workspace, write_extra_packages
from tests.support.channel import FakePackage, build_channel, gpu_stack_packages

EPOCH = 1_750_000_000  # after the fixture packages' build time (2025-01-01): layers take the packages' time


def _build(workspace: Path, root: Path, epoch: int = EPOCH) -> OciBuildResult:
    return build_oci_image(
        load_workspace(workspace), "pytorch", make_rootfs(root / "base.tar"), root / f"image-{epoch}.tar",
        source_date_epoch=epoch, cache_dir=root / "cache",
    )  # fmt: skip


def _locked_build(workspace: Path, name: str) -> str:
    lock = yaml.safe_load((workspace / "envs" / "pytorch" / "conda-lock.yml").read_text())
    return next(package["url"].rsplit("/", 1)[1] for package in lock["package"] if package["name"] == name)


def relock(root: Path) -> None:
    """`python -m cli lock --update`, export and generate, in process."""
    from cli.images.generated import write_generated
    from cli.lockengine.export import write_exports
    from cli.lockengine.locking import LockRequest, lock_workspace, write_result

    workspace = load_workspace(root)
    write_result(lock_workspace(workspace, LockRequest(update=True)))
    write_exports(workspace)
    write_generated(workspace)


def test_a_one_package_relock_changes_only_that_package_layer(tmp_path: Path) -> None:
    channel = tmp_path / "channel" / "gpu-forge"
    write_extra_packages(channel)
    build_channel(channel, gpu_stack_packages())
    workspace = prepare_workspace(tmp_path / "ws", channel)
    before = _build(workspace, tmp_path)
    assert _locked_build(workspace, "torchvision") == "torchvision-0.20.0-cuda124_py312_h4_100.conda"

    rebuilt = FakePackage(
        "torchvision", "0.20.0", "cuda124_py312_h4_101", build_number=101,
        depends=["pytorch * cuda*", "python >=3.12,<3.13", "__cuda"], license="BSD-3-Clause",
        files={"share/torchvision/README.txt": "torchvision, rebuilt\n"},
    )  # fmt: skip
    build_channel(channel, [rebuilt])  # adds it and indexes the channel again
    relock(workspace)
    assert _locked_build(workspace, "torchvision") == "torchvision-0.20.0-cuda124_py312_h4_101.conda"
    after = _build(workspace, tmp_path)

    changed = [layer for layer, old in zip(after.layers, before.layers, strict=True) if layer.digest != old.digest]
    assert [layer.role for layer in after.layers] == [layer.role for layer in before.layers]
    (relocked,) = [layer for layer in changed if layer.role != "environment"]
    assert "torchvision" in relocked.packages and relocked.role == "flavor"
    assert {layer.role for layer in changed} == {"flavor", "environment"}  # environment: the lock export
    assert after.layer("environment").size < 10_000

    # A relock is a new commit of pixi.lock, hence a new SOURCE_DATE_EPOCH: package layers keep their bytes.
    later = _build(workspace, tmp_path, EPOCH + 86_400)
    for layer, same in zip(later.layers, after.layers, strict=True):
        if layer.role in ("shared", "flavor", "base"):
            assert layer.digest == same.digest, layer.label
        else:
            assert layer.digest != same.digest, layer.role  # they carry the new time


def _records(workspace: Path, flavor: str) -> list[RepoDataRecord]:
    return locked_records(load_workspace(workspace), flavor, "linux-64")


def test_shared_means_identical_in_every_flavor(oci_template: Path) -> None:
    pytorch, tensorflow = _records(oci_template, "pytorch"), _records(oci_template, "tensorflow")
    shared = shared_identities({"pytorch": pytorch, "tensorflow": tensorflow})
    names = {r.name.normalized for r in pytorch if r.sha256 is not None and r.sha256.hex() in shared}
    # entry-tool is noarch: python: shared as well, with the python record in its identity
    names |= {r.name.normalized for r in pytorch if any(key.startswith(r.sha256.hex() + "+python:") for key in shared)}
    assert names == {"cuda-version", "cudnn", "entry-tool", "numpy", "prefixed-tool", "python", "uv"}
    assert shared_identities({"pytorch": pytorch}) == set()  # one flavor shares with nobody


def test_large_packages_get_a_layer_each_and_small_ones_a_stable_bucket(oci_template: Path) -> None:
    records = _records(oci_template, "pytorch")
    sizes = {r.name.normalized: 1_000 for r in records} | {"pytorch": LARGE_BYTES, "python": 3 * LARGE_BYTES}
    plan = plan_layers(records, shared=set(), installed_size=sizes)
    singles = [layer for layer in plan if len(layer.packages) == 1 and layer.label == layer.packages[0]]
    assert [layer.label for layer in singles] == ["python", "pytorch"]  # native before python packages
    buckets = [layer for layer in plan if layer not in singles]
    for layer in buckets:
        kind, _, number = layer.label.partition(" packages ")
        assert kind in ("native", "python")
        assert all(bucket_of(name) == int(number) - 1 for name in layer.packages)
    assert sorted(name for layer in plan for name in layer.packages) == sorted(r.name.normalized for r in records)
    # A package's bucket depends on its name alone: the same plan whatever the other packages' sizes.
    grown = plan_layers(records, shared=set(), installed_size={**sizes, "numpy": 2_000_000})
    assert [(layer.label, layer.packages) for layer in grown] == [(layer.label, layer.packages) for layer in plan]
