"""Input and output ports handled as oSPARC's backend handles them, so that a local run reproduces an oSPARC run.

Read from osparc-simcore's dask-sidecar (computational_sidecar/core.py, utils/files/_download.py)
and director-v2 (utils/dask.py):
- a file port's file lands in INPUT_FOLDER under the port's fileToKeyMap name, else its own name;
- a `.zip` is unpacked flat into INPUT_FOLDER and not kept, unless the port's type is
  `data:application/zip`; a zip on a port that has a fileToKeyMap is refused;
- ports are staged one after the other, a later file replacing an earlier one of the same name;
- every other port's value (null when not given) goes to INPUT_FOLDER/inputs.json, always written;
- outputs: a file port is read from OUTPUT_FOLDER/<its fileToKeyMap name, else its key>, any
  other port from OUTPUT_FOLDER/outputs.json; a port without a default that is missing fails
  the job, and every other file in OUTPUT_FOLDER is ignored.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.errors import UserError
from cli.images.metadata import Port, ServiceMetadata

INPUTS_JSON = "inputs.json"
OUTPUTS_JSON = "outputs.json"
DATA_PREFIX = "data:"
ZIP_TYPE = "data:application/zip"


@dataclass(frozen=True)
class StagedPort:
    key: str
    source: str
    staged_as: str  # the file name in INPUT_FOLDER, "unpacked: N files", or "inputs.json"


@dataclass(frozen=True)
class OutputPort:
    key: str
    location: str  # the file in OUTPUT_FOLDER, or "outputs.json:<key>"
    required: bool
    present: bool
    size: int | None = None


def parse_port_values(items: list[str], metadata: ServiceMetadata, metadata_path: Path) -> dict[str, str]:
    """`--port KEY=VALUE` options, checked against the flavor's input ports."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--port {item!r} is not KEY=VALUE", fix="e.g. --port input_1=code.zip")
        if key not in metadata.inputs:
            raise UserError(
                f"no input port '{key}'",
                path=metadata_path,
                fix=f"the flavor's input ports: {', '.join(metadata.ordered_inputs())}",
            )
        if key in values:
            raise UserError(f"--port {key} given twice", fix="give each port once")
        values[key] = value
    return values


def stage_inputs(metadata: ServiceMetadata, values: dict[str, str], folder: Path) -> list[StagedPort]:
    """Fill the empty `folder` as the backend fills /inputs."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise UserError("the staging folder is not empty", path=folder, fix="pass an empty or new folder")
    staged: list[StagedPort] = []
    plain: dict[str, Any] = {}
    for key in metadata.ordered_inputs():
        port = metadata.inputs[key]
        given = values.get(key)
        if port.type.startswith(DATA_PREFIX) and given is not None:
            staged.append(_stage_file(key, port, Path(given), folder))
        elif given is not None:
            plain[key] = _plain_value(key, port, given)
            staged.append(StagedPort(key, given, INPUTS_JSON))
        else:
            plain[key] = port.default_value
    (folder / INPUTS_JSON).write_text(json.dumps(plain), encoding="utf-8")
    return staged


def _stage_file(key: str, port: Port, source: Path, folder: Path) -> StagedPort:
    if not source.is_file():
        raise UserError(f"no such file for input port '{key}'", path=source, fix="give an existing file")
    mapped = next(iter(port.file_to_key_map or {}), None)
    unpack = source.suffix.lower() == ".zip" and port.type != ZIP_TYPE
    if unpack and mapped:
        raise UserError(
            f"input port '{key}' has a fileToKeyMap ({mapped}) and gets a zip: oSPARC refuses this",
            path=source,
            fix=f"give a file that is not a zip, or a port of type {ZIP_TYPE}",
        )
    if unpack:
        try:
            with zipfile.ZipFile(source) as archive:
                archive.extractall(folder)
                count = sum(1 for info in archive.infolist() if not info.is_dir())
        except zipfile.BadZipFile as error:
            raise UserError(f"not a valid zip: {error}", path=source, fix="give a valid .zip") from None
        return StagedPort(key, str(source), f"unpacked flat: {count} file{'' if count == 1 else 's'}")
    target = folder / (mapped or source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return StagedPort(key, str(source), target.relative_to(folder).as_posix())


def _plain_value(key: str, port: Port, text: str) -> Any:
    if port.type == "string":
        return text
    wrong = UserError(f"--port {key}={text!r} is not a {port.type}", fix="give a JSON value, e.g. 3 or true")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise wrong from None
    expected = {"number": (int, float), "integer": (int,), "boolean": (bool,)}.get(port.type)
    if expected and (not isinstance(value, expected) or (port.type != "boolean" and isinstance(value, bool))):
        raise wrong
    return value


def check_outputs(metadata: ServiceMetadata, folder: Path) -> list[OutputPort]:
    """Each output port as the backend looks for it after the run."""
    values: dict[str, Any] = {}
    outputs_json = folder / OUTPUTS_JSON
    if outputs_json.is_file():
        try:
            loaded = json.loads(outputs_json.read_text(encoding="utf-8"))
            values = loaded if isinstance(loaded, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            values = {}
    ports = []
    for key in metadata.ordered_outputs():
        port = metadata.outputs[key]
        required = port.default_value is None
        if port.type.startswith(DATA_PREFIX):
            name = next(iter(port.file_to_key_map or {}), key)
            path = folder / name
            size = path.stat().st_size if path.is_file() else None
            ports.append(OutputPort(key, name, required, path.exists(), size))
        else:
            ports.append(OutputPort(key, f"{OUTPUTS_JSON}:{key}", required, key in values))
    return ports
