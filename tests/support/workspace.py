"""A runner workspace (pixi.toml + flavors/) on a local channel, as a maintainer would write it."""

from __future__ import annotations

from pathlib import Path

import yaml

PIXI_TOML = """\
[workspace]
name = "fixture-runners"
version = "0.1.0"
channels = ["{channel}"]
platforms = [{{ platform = "linux-64", cuda = "12" }}]

[feature.cuda.dependencies]
cuda-version = "12.*"

[feature.runner.dependencies]
python = "3.12.*"
uv = "*"

[feature.pytorch.dependencies]
pytorch = {{ version = "*", build = "cuda*" }}
torchvision = "*"

[feature.tensorflow.dependencies]
tensorflow = {{ version = "*", build = "cuda*" }}

[environments]
pytorch = ["pytorch", "cuda", "runner"]
tensorflow = ["tensorflow", "cuda", "runner"]
"""


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
    (root / "pixi.toml").write_text(PIXI_TOML.format(channel=channel_url))
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
