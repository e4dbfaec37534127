"""The fixture flavor's workspace: a pixi.toml on the engine channel, one flavor, this repository's image files.

The flavor (`fixture`) has what a real one has: a feature and environment in pixi.toml (with
the `cuda` and `runner` features: cuda-version, python, uv, packaging), a
`flavors/fixture/metadata.yml` whose outputs carry oSPARC's `fileToKeyMap`, and a
`runtime.yml` with resources and an ENV default. The Dockerfiles, the entrypoint and the
runner are copied from this repository, so the images built from it are this repository's.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.workspace import add_image_files, lock_and_export, pixi_toml

REPO = Path(__file__).resolve().parents[2]
FLAVOR = "fixture"
FLAVOR_DEFAULT = ("FIXTURE_FLAVOR_DEFAULT", "from runtime.yml")
OUTPUT_PORTS = ("output_1", "output_2")
# The runner imports `packaging`, which the fixture flavor must carry as a real one does.
RUNNER_EXTRA = 'packaging = "*"\n'


def metadata(service: str) -> dict[str, object]:
    return {
        "name": "Engine fixture runner",
        "key": f"simcore/services/comp/{service}",
        "type": "computational",
        "integration-version": "2.0.0",
        "version": "1.0.0",
        "description": "The fixture flavor the real-engine tests build and run",
        "contact": "maintainers@example.org",
        "authors": [{"name": "Runner Maintainers", "email": "maintainers@example.org", "affiliation": "Example"}],
        "inputs": {
            f"input_{n}": {"displayOrder": n, "label": f"Input {n}", "description": f"Input {n}", "type": "data:*/*"}
            for n in (1, 2)
        },
        "outputs": {
            port: {
                "displayOrder": n,
                "label": f"Output {n}",
                "description": f"Output {n}, zipped",
                "type": "data:*/*",
                "fileToKeyMap": {f"{port}.zip": port},
            }
            for n, port in enumerate(OUTPUT_PORTS, start=1)
        },
    }


def runtime() -> dict[str, object]:
    limits = {"NanoCPUs": 2_000_000_000, "MemoryBytes": 2 << 30}
    return {
        "restart-policy": "no-restart",
        "settings": [{"name": "Resources", "type": "Resources", "value": {"Limits": limits}}],
        "environment": dict([FLAVOR_DEFAULT]),
    }


def write_engine_workspace(root: Path, channel: Path, python: str, token: str) -> Path:
    """Write, lock, export and generate the fixture workspace; `token` keeps image names apart between sessions."""
    root.mkdir(parents=True)
    minor = ".".join(python.split(".")[:2])
    features = {FLAVOR: 'fixture-lib = "*"\n'}
    manifest = pixi_toml(channel.as_uri(), features, name=f"engine-{token}", python=minor, runner_extra=RUNNER_EXTRA)
    (root / "pixi.toml").write_text(manifest)
    folder = root / "flavors" / FLAVOR
    folder.mkdir(parents=True)
    (folder / "metadata.yml").write_text(yaml.safe_dump(metadata(f"engine-fixture-{token}"), sort_keys=False))
    (folder / "runtime.yml").write_text(yaml.safe_dump(runtime(), sort_keys=False))
    add_image_files(root, runner=True)
    return lock_and_export(root, generate=True)


def output_files(workspace: Path) -> list[str]:
    """The files oSPARC reads back: every output port's `fileToKeyMap` names."""
    document = yaml.safe_load((workspace / "flavors" / FLAVOR / "metadata.yml").read_text())
    return [name for port in document["outputs"].values() for name in port.get("fileToKeyMap", {})]
