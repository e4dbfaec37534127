"""The oSPARC computational-service contract: input and output folders and the variables naming them.

`INPUT_FOLDER` and `OUTPUT_FOLDER` are given; `INPUT_1..5` default to
`$INPUT_FOLDER/input_N`; the runner makes `OUTPUT_FOLDER/output_1..4` and exports
`OUTPUT_1..4`; after the run each `output_N/` becomes `OUTPUT_FOLDER/output_N.zip`.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import BadInput

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

INPUTS = 5
OUTPUTS = 4
LOGS = "logs"


class Contract:
    __slots__ = ("input_folder", "inputs", "output_folder", "outputs")

    def __init__(self, input_folder: Path, output_folder: Path, inputs: tuple[Path, ...], outputs: tuple[Path, ...]):
        self.input_folder = input_folder
        self.output_folder = output_folder
        self.inputs = inputs
        self.outputs = outputs

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Contract:
        missing = [name for name in ("INPUT_FOLDER", "OUTPUT_FOLDER") if not environ.get(name)]
        if missing:
            raise BadInput(
                f"{' and '.join(missing)} not set",
                "set INPUT_FOLDER to the job's input folder and OUTPUT_FOLDER to where results go",
            )
        input_folder = Path(environ["INPUT_FOLDER"]).absolute()
        output_folder = Path(environ["OUTPUT_FOLDER"]).absolute()
        if not input_folder.is_dir():
            raise BadInput(f"INPUT_FOLDER {input_folder} is not a folder", "point INPUT_FOLDER at an existing folder")
        inputs = tuple(
            Path(environ[f"INPUT_{n}"]).absolute() if environ.get(f"INPUT_{n}") else input_folder / f"input_{n}"
            for n in range(1, INPUTS + 1)
        )
        outputs = tuple(output_folder / f"output_{n}" for n in range(1, OUTPUTS + 1))
        return cls(input_folder, output_folder, inputs, outputs)

    @property
    def logs(self) -> Path:
        return self.output_folder / LOGS

    def code_source(self) -> Path:
        """Where the user's code is: INPUT_1, or INPUT_FOLDER itself when it has no input_1 (a plain job folder)."""
        return self.inputs[0] if self.inputs[0].is_dir() else self.input_folder

    def prepare_outputs(self) -> None:
        try:
            for folder in (*self.outputs, self.logs):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BadInput(f"cannot create the output folders: {error}", "make OUTPUT_FOLDER writable") from None

    def variables(self) -> dict[str, str]:
        variables = {"INPUT_FOLDER": str(self.input_folder), "OUTPUT_FOLDER": str(self.output_folder)}
        variables.update({f"INPUT_{n}": str(path) for n, path in enumerate(self.inputs, start=1)})
        variables.update({f"OUTPUT_{n}": str(path) for n, path in enumerate(self.outputs, start=1)})
        return variables


def child_environment(environ: Mapping[str, str], contract: Contract, runner_root: Path) -> dict[str, str]:
    """The user's process environment: ours, the contract variables, unbuffered output, and no trace of the runner."""
    env = dict(environ)
    env.update(contract.variables())
    env["PYTHONUNBUFFERED"] = "1"
    # `cli run` puts the runner's folder on PYTHONPATH to start us; the user's code must not see it.
    if env.get("PYTHONPATH"):
        keep = [p for p in env["PYTHONPATH"].split(os.pathsep) if p and _resolved(p) != runner_root]
        if keep:
            env["PYTHONPATH"] = os.pathsep.join(keep)
        else:
            del env["PYTHONPATH"]
    return env


def _resolved(path: str) -> Path:
    try:
        return Path(path).resolve()
    except OSError:
        return Path(path)
