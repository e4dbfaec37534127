"""The oSPARC computational-service contract: the input, output and log folders and the variables naming them.

Inputs come in two layouts, and a job may mix them:
- **flat**, as oSPARC's backend stages them: each file port's file straight in
  `INPUT_FOLDER` under its own (or its fileToKeyMap) name, zips unpacked there, the
  values of non-file ports in `INPUT_FOLDER/inputs.json`;
- **folders**: `INPUT_FOLDER/input_N/` (a local job folder, or a user's zip that held them).

`INPUT_N` is the first of these that exists: the caller's `INPUT_N`, `$INPUT_FOLDER/input_N`,
`$INPUT_FOLDER` itself. The code is in `INPUT_1`. The runner makes `OUTPUT_FOLDER/output_1..4`
and exports `OUTPUT_1..4`; after the run each `output_N/` becomes `OUTPUT_FOLDER/output_N.zip`
(the flavors' fileToKeyMap). The runner's record (run.log, run.json, the overlay's lock)
goes to `LOG_FOLDER` when set, else to `OUTPUT_FOLDER/logs`.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import BadInput
from runner.logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

INPUTS = 5
OUTPUTS = 4
# The ports a flavor's metadata.yml may declare (cli/images/metadata.py refuses others): the runner
# exports INPUT_N for input_N, and leaves each output_N/ as the file output_N.zip.
INPUT_PORTS = tuple(f"input_{n}" for n in range(1, INPUTS + 1))
OUTPUT_PORTS = tuple(f"output_{n}" for n in range(1, OUTPUTS + 1))
ARCHIVE_SUFFIX = ".zip"
LOGS = "logs"
INPUTS_JSON = "inputs.json"
PARTIAL_SUFFIX = ".partial"  # an archive being written: `.output_1.zip.partial`, renamed when complete
FOLDERS, FLAT = "folders", "flat"
MAX_LISTED = 6


class Contract:
    __slots__ = ("input_folder", "inputs", "log_folder", "output_folder", "outputs")

    def __init__(
        self,
        input_folder: Path,
        output_folder: Path,
        inputs: tuple[Path, ...],
        outputs: tuple[Path, ...],
        log_folder: Path | None = None,
    ):
        self.input_folder = input_folder
        self.output_folder = output_folder
        self.inputs = inputs
        self.outputs = outputs
        self.log_folder = log_folder if log_folder is not None else output_folder / LOGS

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
        inputs = tuple(_input(n, input_folder, environ.get(f"INPUT_{n}")) for n in range(1, INPUTS + 1))
        outputs = tuple(output_folder / port for port in OUTPUT_PORTS)
        log_folder = Path(environ["LOG_FOLDER"]).absolute() if environ.get("LOG_FOLDER") else None
        return cls(input_folder, output_folder, inputs, outputs, log_folder)

    @property
    def layout(self) -> str:
        return FOLDERS if (self.input_folder / "input_1").is_dir() else FLAT

    def code_source(self) -> Path:
        """Where the user's code is: INPUT_1 (input_1/, or INPUT_FOLDER itself in the flat layout)."""
        return self.inputs[0] if self.inputs[0].is_dir() else self.input_folder

    def runner_made(self, name: str) -> bool:
        """Whether an entry of OUTPUT_FOLDER is one that a run of the runner makes."""
        if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
            return True
        if self.log_folder == self.output_folder / name:
            return True
        return any(name in (folder.name, output_archive(folder.name)) for folder in self.outputs)

    def claim_outputs(self, clean: bool) -> None:
        """Refuse an OUTPUT_FOLDER that holds anything; with `clean`, first remove what an earlier run made.

        Stale files must never be zipped into this run's outputs, and only files the runner
        itself makes are ever removed: anything else is the user's to move.
        """
        try:
            names = sorted(os.listdir(self.output_folder))
        except FileNotFoundError:
            return
        except OSError as error:
            raise BadInput(
                f"cannot read OUTPUT_FOLDER {self.output_folder}: {error.strerror or error}", "fix its permissions"
            ) from None
        if not names:
            return
        if clean:
            foreign = [name for name in names if not self.runner_made(name)]
            if foreign:
                raise BadInput(
                    f"OUTPUT_FOLDER {self.output_folder} holds files the runner did not make: {_listing(foreign)}",
                    "move them away, or use an empty output folder",
                )
            for name in names:
                _remove(self.output_folder / name)
            log.info("removed the outputs of an earlier run from %s: %s", self.output_folder, _listing(names))
            return
        raise BadInput(
            f"OUTPUT_FOLDER {self.output_folder} already holds files from an earlier run: {_listing(names)}",
            "use an empty folder, or pass --clean-outputs / set RUNNER_CLEAN_OUTPUTS=1 to remove what the runner made",
        )

    def prepare_outputs(self) -> None:
        try:
            for folder in self.outputs:
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BadInput(f"cannot create the output folders: {error}", "make OUTPUT_FOLDER writable") from None

    def prepare_log_folder(self) -> bool:
        """Make the log folder; False (with a warning) if it cannot be written: the job runs on, unrecorded."""
        try:
            self.log_folder.mkdir(parents=True, exist_ok=True)
            probe = self.log_folder / ".runner-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            log.warning(
                "cannot write the run record to %s: %s (the log stream below is the only record)",
                self.log_folder,
                error.strerror or error,
            )
            return False
        return True

    def variables(self) -> dict[str, str]:
        variables = {"INPUT_FOLDER": str(self.input_folder), "OUTPUT_FOLDER": str(self.output_folder)}
        variables.update({f"INPUT_{n}": str(path) for n, path in enumerate(self.inputs, start=1)})
        variables.update({f"OUTPUT_{n}": str(path) for n, path in enumerate(self.outputs, start=1)})
        return variables

    def summary(self) -> dict[str, object]:
        return {
            "layout": self.layout,
            "input_folder": str(self.input_folder),
            "inputs": {f"INPUT_{n}": str(path) for n, path in enumerate(self.inputs, start=1)},
            "output_folder": str(self.output_folder),
            "log_folder": str(self.log_folder),
        }


def output_archive(port: str) -> str:
    """The file in OUTPUT_FOLDER that the runner makes of an output port's folder: output_1 -> output_1.zip."""
    return port + ARCHIVE_SUFFIX


def _input(number: int, input_folder: Path, given: str | None) -> Path:
    folder = input_folder / f"input_{number}"
    if given:
        path = Path(given).absolute()
        if path.exists():
            return path
        if path != folder:  # service.cli/run's default, whether or not it exists: no news
            log.warning("INPUT_%d=%s does not exist: using the input layout's instead", number, given)
    return folder if folder.is_dir() else input_folder


def _listing(names: list[str]) -> str:
    more = f", … {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path)
    else:
        path.unlink()


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
