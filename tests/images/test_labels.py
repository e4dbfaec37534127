"""Labels: io.simcore.<key> = {"<key>": value} for every metadata field, and they decode back to the metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cli.errors import UserError
from cli.images.labels import decode_simcore_labels, runtime_labels, simcore_labels
from cli.images.metadata import load_metadata
from tests.images.conftest import REPO


@pytest.mark.parametrize("flavor", ["pytorch", "tensorflow"])
def test_labels_decode_back_to_the_metadata_file(flavor: str) -> None:
    path = REPO / "flavors" / flavor / "metadata.yml"
    labels = simcore_labels(load_metadata(path))
    assert decode_simcore_labels(labels) == yaml.safe_load(path.read_text())


def test_each_label_holds_its_key_alone() -> None:
    labels = simcore_labels(load_metadata(REPO / "flavors" / "pytorch" / "metadata.yml"))
    assert list(labels)[:5] == [
        "io.simcore.name",
        "io.simcore.key",
        "io.simcore.type",
        "io.simcore.integration-version",
        "io.simcore.version",
    ]
    for label, text in labels.items():
        key = label.removeprefix("io.simcore.")
        assert list(json.loads(text)) == [key]
    assert json.loads(labels["io.simcore.integration-version"]) == {"integration-version": "2.0.0"}


def test_decode_refuses_a_label_holding_another_key() -> None:
    with pytest.raises(ValueError, match=r"io\.simcore\.name"):
        decode_simcore_labels({"io.simcore.name": '{"version": "1.0.0"}'})


def test_runtime_settings_become_simcore_service_labels() -> None:
    labels = runtime_labels(REPO / "flavors" / "pytorch" / "runtime.yml")
    assert labels["simcore.service.restart-policy"] == "no-restart"
    settings = json.loads(labels["simcore.service.settings"])
    resources = settings[0]["value"]["Reservations"]["GenericResources"]
    assert resources == [{"DiscreteResourceSpec": {"Kind": "VRAM", "Value": 1}}]


def test_runtime_without_settings_gives_no_label(tmp_path: Path) -> None:
    path = tmp_path / "runtime.yml"
    path.write_text("resources:\n  VRAM: 1\n")
    assert runtime_labels(path) == {}
    assert runtime_labels(tmp_path / "absent.yml") == {}


def test_runtime_bad_policy_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "runtime.yml"
    path.write_text("restart-policy: always\n")
    with pytest.raises(UserError, match="field 'restart-policy'"):
        runtime_labels(path)
