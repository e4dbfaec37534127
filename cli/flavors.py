"""Flavors: a folder flavors/<name>/ with metadata.yml plus the pixi environment of the same name.

Nothing lists flavors in code; adding one (say JAX) means a feature + environment in
pixi.toml and a folder here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cli.errors import UserError
from cli.lockengine.manifest import Workspace

FLAVORS_DIR = "flavors"
METADATA_NAME = "metadata.yml"
RUNTIME_NAME = "runtime.yml"
# Where pixi puts a flavor's environment (`cli install`'s own default place is ENVS_DIR, below).
PIXI_ENVS_DIR = Path(".pixi") / "envs"
ENVIRONMENT_KEY = "environment"
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by the images themselves or by oSPARC's backend: a flavor default for one of them would be wrong or ignored.
RESERVED_VARIABLES = frozenset(
    {
        "PATH", "HOME", "CONDA_PREFIX", "RUNNER_PYTHON", "RUNNER_FLAVOR", "RUNNER_HOME", "RUNNER_CACHE_DIR",
        "INPUT_FOLDER", "OUTPUT_FOLDER", "LOG_FOLDER", "SC_USER_NAME", "SC_USER_ID", "SC_USER_HOME",
        "SC_COMP_SERVICES_SCHEDULED_AS", "SIMCORE_NANO_CPUS_LIMIT", "SIMCORE_MEMORY_BYTES_LIMIT",
        "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_REQUIRE_CUDA",
    }
)  # fmt: skip
# Environments that are tools, not runner flavors.
NON_FLAVOR_ENVIRONMENTS = frozenset({"default", "dev"})


@dataclass(frozen=True)
class Flavor:
    name: str
    folder: Path

    @property
    def metadata_path(self) -> Path:
        return self.folder / METADATA_NAME

    @property
    def runtime_path(self) -> Path:
        return self.folder / RUNTIME_NAME

    @property
    def environment(self) -> str:
        return self.name


def pixi_prefix(workspace: Workspace, flavor: str) -> Path:
    """Where `pixi install -e FLAVOR` puts it."""
    return workspace.root / PIXI_ENVS_DIR / flavor


def environment_defaults(flavor: Flavor) -> dict[str, str]:
    """`environment:` of flavors/<name>/runtime.yml: variables the image sets (and `cli run` too) unless given."""
    import yaml

    path = flavor.runtime_path
    if not path.is_file():
        return {}
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserError(f"not valid YAML: {error}".replace("\n", " "), path=path, fix="correct the syntax") from None
    table = document.get(ENVIRONMENT_KEY) if isinstance(document, dict) else None
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise UserError(f"'{ENVIRONMENT_KEY}' is not a mapping", path=path, fix="write it as NAME: value lines")
    variables = {}
    for name, value in table.items():
        if not isinstance(name, str) or not VARIABLE_NAME.match(name):
            raise UserError(f"'{ENVIRONMENT_KEY}.{name}' is not a variable name", path=path, fix="use NAME_LIKE_THIS")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise UserError(f"'{ENVIRONMENT_KEY}.{name}' is not a plain value", path=path, fix="quote it as a string")
        if name in RESERVED_VARIABLES:
            raise UserError(
                f"'{ENVIRONMENT_KEY}.{name}' is set by the image or by oSPARC, not by a flavor",
                path=path,
                fix=f"remove {name}",
            )
        if "\n" in str(value):
            raise UserError(f"'{ENVIRONMENT_KEY}.{name}' spans lines", path=path, fix="give a one-line value")
        variables[name] = str(value)
    return variables


def flavor_folders(workspace: Workspace) -> dict[str, Path]:
    base = workspace.root / FLAVORS_DIR
    if not base.is_dir():
        return {}
    return {p.name: p for p in sorted(base.iterdir()) if (p / METADATA_NAME).is_file()}


def check_flavor_folders(workspace: Workspace) -> dict[str, Path]:
    """The flavor folders, each of which must name an environment of pixi.toml."""
    folders = flavor_folders(workspace)
    for name, folder in folders.items():
        if name not in workspace.environments:
            raise UserError(
                f"flavor folder has no environment '{name}' in pixi.toml",
                path=folder / METADATA_NAME,
                fix=f"add [feature.{name}] and `{name} = [...]` under [environments], or remove the folder",
            )
    return folders


def discover_flavors(workspace: Workspace) -> list[Flavor]:
    """Every flavor, checked against pixi.toml: a folder without environment is an error, and so is the reverse."""
    folders = check_flavor_folders(workspace)
    environments = set(workspace.environments) - NON_FLAVOR_ENVIRONMENTS
    for name in sorted(environments - set(folders)):
        raise UserError(
            f"environment '{name}' has no flavor folder",
            path=workspace.manifest_path,
            fix=f"add {FLAVORS_DIR}/{name}/{METADATA_NAME}, or list it as a tool environment",
        )
    return [Flavor(name, folder) for name, folder in folders.items()]


def get_flavor(workspace: Workspace, name: str) -> Flavor:
    flavors = {f.name: f for f in discover_flavors(workspace)}
    if name not in flavors:
        raise UserError(
            f"unknown flavor '{name}'",
            path=workspace.root / FLAVORS_DIR,
            fix=f"known flavors: {', '.join(flavors) or 'none'}",
        )
    return flavors[name]


ENVS_DIR = ".envs"


def default_prefix(workspace: Workspace, flavor: str) -> Path:
    """Where `cli install FLAVOR` puts the flavor's environment when no --prefix is given (and `cli run` looks)."""
    return workspace.root / ENVS_DIR / flavor
