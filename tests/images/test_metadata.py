"""metadata.yml validation: valid files load, and each mistake is one error naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.errors import UserError
from cli.images.metadata import load_metadata, parse_metadata
from tests.images.conftest import REPO, cli
from tests.support.workspace import flavor_metadata


@pytest.mark.parametrize("flavor", ["pytorch", "tensorflow"])
def test_repository_flavors_validate(flavor: str) -> None:
    metadata = load_metadata(REPO / "flavors" / flavor / "metadata.yml")
    assert metadata.image == f"simcore/services/comp/osparc-{flavor}-runner:{metadata.version}"
    assert metadata.ordered_inputs() == [f"input_{n}" for n in range(1, 6)]
    assert metadata.ordered_outputs() == [f"output_{n}" for n in range(1, 5)]


def test_document_round_trips_unchanged() -> None:
    document = flavor_metadata("pytorch")
    assert parse_metadata(document, Path("m.yml")).as_document() == document


def _error(document: dict[str, Any]) -> str:
    with pytest.raises(UserError) as caught:
        parse_metadata(document, Path("flavors/x/metadata.yml"))
    return caught.value.one_line()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("key"), "field 'key': required field is missing"),
        (lambda d: d.update(version="1.0"), "field 'version': '1.0': expected a semantic version"),
        (lambda d: d.update(type="dynamic"), "field 'type'"),
        (lambda d: d.update(key="simcore/services/dynamic/x"), "field 'key'"),
        (lambda d: d.update(contact="nobody"), "field 'contact'"),
        (lambda d: d.update(authors=[]), "field 'authors'"),
        (lambda d: d["inputs"]["input_1"].update(type="file"), "field 'inputs.input_1.type'"),
        (lambda d: d["inputs"]["input_1"].pop("label"), "field 'inputs.input_1.label': required field is missing"),
        (lambda d: d["inputs"]["input_2"].update(displayorder=2), "field 'inputs.input_2.displayorder': unknown field"),
        (lambda d: d.update(integration_version="2.0.0"), "field 'integration_version': unknown field"),
        (
            lambda d: d["outputs"]["output_1"].update(fileToKeyMap={"out.zip": "output_2"}),
            "outputs.output_1.fileToKeyMap: 'out.zip' maps to 'output_2', not to 'output_1'",
        ),
        (lambda d: d["inputs"].update({"Input-3": d["inputs"]["input_1"]}), "field 'inputs.Input-3"),
    ],
)
def test_errors_name_the_field(change: Any, expected: str) -> None:
    document = flavor_metadata("pytorch")
    change(document)
    message = _error(document)
    assert message.startswith("flavors/x/metadata.yml: ")
    assert expected in message


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "metadata.yml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_metadata(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_metadata(path)


def test_cli_reports_bad_metadata_as_one_line(plain_workspace: Path) -> None:
    path = plain_workspace / "flavors" / "tensorflow" / "metadata.yml"
    document = yaml.safe_load(path.read_text())
    document["version"] = "latest"
    path.write_text(yaml.safe_dump(document))
    done = cli("generate", "--manifest-path", plain_workspace)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {path}: field 'version': 'latest': expected a semantic version")
    assert "Traceback" not in done.stderr
