"""A runner workspace (pixi.toml + flavors/) on a local channel, as a maintainer would write it."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# What a maintainer's checkout holds for building images: the Dockerfiles, the entrypoint, and the
# `<Dockerfile>.dockerignore` files BuildKit and podman read beside them.
IMAGE_FILES = (
    ".dockerignore",
    "common/Dockerfile",
    "common/Dockerfile.dockerignore",
    "common/entrypoint.sh",
    "common/entrypoint_lib.sh",
    "flavors/Dockerfile",
    "flavors/Dockerfile.dockerignore",
    "flavors/Dockerfile.shared",
    "flavors/Dockerfile.shared.dockerignore",
)

FLAVOR_DEPENDENCIES = {
    "pytorch": 'pytorch = { version = "*", build = "cuda*" }\ntorchvision = "*"\n',
    "tensorflow": 'tensorflow = { version = "*", build = "cuda*" }\n',
}


def pixi_toml(
    channel_url: str,
    flavors: Mapping[str, str] = FLAVOR_DEPENDENCIES,
    *,
    name: str = "fixture-runners",
    python: str = "3.12",
    runner_extra: str = "",
) -> str:
    """The manifest of a runner workspace: shared `cuda` and `runner` features, one feature and
    environment a flavor (`flavors`: name → its `[feature.<name>.dependencies]` lines)."""
    features = "".join(f"[feature.{flavor}.dependencies]\n{lines}\n" for flavor, lines in flavors.items())
    environments = "".join(f'{flavor} = ["{flavor}", "cuda", "runner"]\n' for flavor in flavors)
    return (
        f'[workspace]\nname = "{name}"\nversion = "0.1.0"\nchannels = ["{channel_url}"]\n'
        'platforms = [{ platform = "linux-64", cuda = "12" }]\n\n'
        '[feature.cuda.dependencies]\ncuda-version = "12.*"\n\n'
        f'[feature.runner.dependencies]\npython = "{python}.*"\nuv = "*"\n{runner_extra}\n'
        f"{features}[environments]\n{environments}"
    )


def flavor_metadata(flavor: str, version: str = "1.0.0") -> dict[str, object]:
    service = f"osparc-{flavor}-runner"
    return {
        "name": f"oSPARC {flavor} runner",
        "key": f"simcore/services/comp/{service}",
        "type": "computational",
        "integration-version": "2.0.0",
        "version": version,
        "description": f"Runs user Python code on a locked {flavor} GPU stack",
        "contact": "maintainers@example.org",
        "authors": [{"name": "Runner Maintainers", "email": "maintainers@example.org", "affiliation": "Example"}],
        "inputs": {
            f"input_{n}": {
                "displayOrder": n,
                "label": f"Input {n}",
                "description": f"Input folder {n}" + (" with the script and requirements.txt" if n == 1 else ""),
                "type": "data:*/*",
            }
            for n in range(1, 3)
        },
        "outputs": {
            f"output_{n}": {
                "displayOrder": n,
                "label": f"Output {n}",
                "description": f"Output folder {n}, zipped",
                "type": "data:*/*",
                "fileToKeyMap": {f"output_{n}.zip": f"output_{n}"},
            }
            for n in range(1, 3)
        },
    }


def write_workspace(root: Path, channel_url: str, flavors: tuple[str, ...] = ("pytorch", "tensorflow")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pixi.toml").write_text(pixi_toml(channel_url))
    for flavor in flavors:
        folder = root / "flavors" / flavor
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metadata.yml").write_text(yaml.safe_dump(flavor_metadata(flavor), sort_keys=False))
        (folder / "runtime.yml").write_text(yaml.safe_dump({"resources": {"VRAM": 1}}, sort_keys=False))
    return root


def lock_and_export(root: Path, *, generate: bool = False) -> Path:
    """In-process `python -m cli lock && python -m cli export` (and `python -m cli generate` if asked)."""
    from cli.images.generated import write_generated
    from cli.lockengine.export import write_exports
    from cli.lockengine.locking import LockRequest, lock_workspace, write_result
    from cli.lockengine.manifest import load_workspace

    workspace = load_workspace(root)
    write_result(lock_workspace(workspace, LockRequest()))
    write_exports(workspace)
    if generate:
        write_generated(workspace)
    return root


def committed_workspace(target: Path) -> Path:
    """A copy of this repository's committed workspace: the files at its top (pixi.toml, pixi.lock, …),
    flavors/ and envs/ (what the benches run the CLI on, away from the working tree)."""
    target.mkdir(parents=True)
    for path in REPO.iterdir():
        if path.is_file() and not path.name.startswith("."):
            shutil.copy(path, target / path.name)
    for folder in ("flavors", "envs"):
        shutil.copytree(REPO / folder, target / folder)
    return target


def locked_one_package_workspace(root: Path, channel: Path, package: str, name: str) -> Path:
    """A workspace whose default environment is `package` from `channel`, locked in-process (the benches')."""
    from cli.lockengine.locking import LockRequest, lock_workspace, write_result
    from cli.lockengine.manifest import load_workspace

    root.mkdir(parents=True, exist_ok=True)
    (root / "pixi.toml").write_text(
        f'[workspace]\nname = "{name}"\nchannels = ["{channel.as_uri()}"]\nplatforms = ["linux-64"]\n\n'
        f'[dependencies]\n{package} = "*"\n'
    )
    write_result(lock_workspace(load_workspace(root), LockRequest()))
    return root


def add_image_files(root: Path, *, runner: bool = False) -> Path:
    """Copy this repository's image files (and, with `runner`, runner/) into a test workspace, as in a checkout."""
    for relative in IMAGE_FILES:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)
    if runner:
        shutil.copytree(REPO / "runner", root / "runner", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root
