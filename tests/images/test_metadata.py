"""metadata.yml validation: valid files load, and each mistake is one error naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.errors import UserError
from cli.images.metadata import load_metadata, parse_metadata
from runner.contract import INPUT_PORTS, OUTPUT_PORTS
from tests.images.conftest import REPO, cli
from tests.support.workspace import flavor_metadata

FLAVORS = sorted(folder.name for folder in (REPO / "flavors").iterdir() if folder.is_dir())


@pytest.mark.parametrize("flavor", FLAVORS)
def test_repository_flavors_validate(flavor: str) -> None:
    metadata = load_metadata(REPO / "flavors" / flavor / "metadata.yml")
    assert metadata.image == f"simcore/services/comp/osparc-{flavor}-runner:{metadata.version}"


@pytest.mark.parametrize("flavor", ["pytorch", "tensorflow"])
def test_shipped_flavors_declare_every_port_of_the_runner(flavor: str) -> None:
    metadata = load_metadata(REPO / "flavors" / flavor / "metadata.yml")
    assert metadata.ordered_inputs() == list(INPUT_PORTS)
    assert metadata.ordered_outputs() == list(OUTPUT_PORTS)


def test_document_round_trips_unchanged() -> None:
    document = flavor_metadata("pytorch")
    assert parse_metadata(document, Path("m.yml")).as_document() == document


def _error(document: dict[str, Any]) -> str:
    with pytest.raises(UserError) as caught:
        parse_metadata(document, Path("flavors/x/metadata.yml"))
    return caught.value.one_line()


def _output(document: dict[str, Any], key: str, **fields: Any) -> None:
    document["outputs"][key] = {**document["outputs"]["output_1"], "displayOrder": 9, **fields}


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
        # ports the runner does not serve: they would pass generate and build, then fail every oSPARC job
        (
            lambda d: _output(d, "output_5", fileToKeyMap={"output_5.zip": "output_5"}),
            "output port 'output_5' is not one the runner writes (it zips output_1..output_4) "
            "(name the port one of output_1..output_4, with fileToKeyMap {output_N.zip: output_N})",
        ),
        (
            lambda d: _output(d, "output_2", fileToKeyMap={"result.csv": "output_2"}),
            "output port 'output_2' is read from result.csv, but the runner writes output_2.zip "
            "(set fileToKeyMap {output_2.zip: output_2})",
        ),
        (
            lambda d: _output(d, "output_2", fileToKeyMap=None),
            "output port 'output_2' is read from output_2 (it has no fileToKeyMap), but the runner writes output_2.zip",
        ),
        (
            lambda d: _output(d, "output_2", type="number", fileToKeyMap=None),
            "output port 'output_2' has type number, but the runner writes only the file output_2.zip "
            "(give it type data:*/* and fileToKeyMap {output_2.zip: output_2})",
        ),
        (
            lambda d: d["inputs"].update(input_6=d["inputs"]["input_1"]),
            "input port 'input_6' is not one the runner reads (it exports INPUT_N for input_1..input_5) "
            "(name the port one of input_1..input_5)",
        ),
        (
            lambda d: d["inputs"].update(settings=d["inputs"]["input_1"]),
            "input port 'settings' is not one the runner reads",
        ),
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


@pytest.mark.parametrize("command", [["generate"], ["build", "all", "--dry-run"], ["version", "show"]])
def test_generate_build_and_version_refuse_a_port_the_runner_does_not_write(
    plain_workspace: Path, command: list[str]
) -> None:
    path = plain_workspace / "flavors" / "tensorflow" / "metadata.yml"
    document = yaml.safe_load(path.read_text())
    _output(document, "output_5", fileToKeyMap={"output_5.zip": "output_5"})
    path.write_text(yaml.safe_dump(document))
    done = cli(*command, "--manifest-path", plain_workspace)
    assert done.returncode == 2, done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: output port 'output_5' is not one the runner writes")
