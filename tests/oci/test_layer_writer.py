"""Layers packed side by side are byte for byte those packed one after the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.lockengine.manifest import load_workspace
from cli.oci import build_oci_image, layer_writer
from tests.oci.conftest import Built, make_rootfs


@pytest.mark.parametrize("workers", [1, 3])
def test_the_number_of_layer_workers_does_not_change_the_image(
    oci_workspace: Path,
    tmp_path: Path,
    built_images: dict[str, Built],
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    monkeypatch.setattr(layer_writer, "LAYER_WORKERS", workers)
    result = build_oci_image(
        load_workspace(oci_workspace), "pytorch", make_rootfs(tmp_path / "base.tar"), tmp_path / "image.tar",
        source_date_epoch=built_images["pytorch"].result.source_date_epoch, cache_dir=tmp_path / "cache",
        reuse_layers=False,
    )  # fmt: skip
    reference = built_images["pytorch"].result  # packed with the default workers
    assert layer_writer.LAYER_WORKERS != 2 and len(result.layers) > 5
    assert [layer.digest for layer in result.layers] == [layer.digest for layer in reference.layers]
    assert result.manifest_digest == reference.manifest_digest
