"""Build planning: which images to build, in which order, with which tags, build args and labels.

The order is common → the shared stage (once) → each flavor: the shared stage
(flavors/Dockerfile.shared) is the common image plus the packages every flavor locks
identically (envs/_shared/), and every flavor image is built FROM it, installing only its own
packages (envs/<flavor>/<subdir>.own.explicit). Flavor images then share the stage's layers,
the CUDA libraries among them, as the OCI engine's images share their shared-package layers.
The same steps feed `cli build` (as engine commands) and the generated docker-compose.yml
(without the per-commit provenance), so the two cannot drift apart.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from cli.flavors import Flavor, environment_defaults
from cli.images import naming
from cli.images.labels import runtime_labels, simcore_labels
from cli.images.metadata import ServiceMetadata, load_metadata
from cli.images.provenance import FLAVOR_LABEL
from cli.lockengine.manifest import Workspace


class Engine(StrEnum):
    docker = "docker"
    podman = "podman"
    # daemonless: assembles an OCI image layout from the lock (cli/oci), no engine executable
    oci = "oci"


@dataclass(frozen=True)
class FlavorSpec:
    """What planning needs to know of one flavor: its validated metadata and its static labels."""

    name: str
    folder: Path
    metadata: ServiceMetadata
    labels: dict[str, str]
    fragment: Path | None = None  # relative to the workspace root
    # The flavor's ENV defaults (runtime.yml `environment:`), set by both engines on the final image.
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, workspace: Workspace, flavor: Flavor) -> FlavorSpec:
        metadata = load_metadata(flavor.metadata_path)
        labels = {**simcore_labels(metadata), **runtime_labels(flavor.runtime_path), FLAVOR_LABEL: flavor.name}
        fragment = naming.fragment_path(flavor)
        relative = fragment.relative_to(workspace.root) if fragment else None
        environment = environment_defaults(flavor)
        return cls(flavor.name, flavor.folder, metadata, labels, relative, environment)


@dataclass(frozen=True)
class BuildStep:
    """One image build; `dockerfile` is relative to the build context (the workspace root)."""

    name: str
    dockerfile: Path
    tags: tuple[str, ...]
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    flavor: str | None = None
    push: bool = False
    # ENV the Dockerfile does not spell, appended to it by `cli build` (see cli/images/dockerfiles.py).
    env: dict[str, str] = field(default_factory=dict)
    # The step whose image this one is built FROM (None: an image from a registry).
    parent: str | None = None
    # The committed Dockerfile that `dockerfile`, a rendered copy, was made from (None: `dockerfile` is committed).
    rendered_from: Path | None = None

    @property
    def image(self) -> str:
        return self.tags[0]


@dataclass(frozen=True)
class BuildFacts:
    """Per-build extras that never go into a committed file: provenance labels and derived build args."""

    common_labels: dict[str, str] = field(default_factory=dict)
    flavor_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    flavor_args: dict[str, dict[str, str]] = field(default_factory=dict)
    common_args: dict[str, str] = field(default_factory=dict)
    shared_labels: dict[str, str] = field(default_factory=dict)
    shared_args: dict[str, str] = field(default_factory=dict)


def common_step(workspace: Workspace, base_image: str = naming.DEFAULT_BASE_IMAGE) -> BuildStep:
    return BuildStep(
        name=naming.COMMON,
        dockerfile=naming.COMMON_DOCKERFILE,
        tags=(naming.common_image(workspace),),
        build_args={"BASE_IMAGE": base_image},
    )


def shared_step(workspace: Workspace) -> BuildStep:
    """The shared stage FROM common: built once, whichever flavors are built on it."""
    return BuildStep(
        name=naming.SHARED,
        dockerfile=naming.SHARED_DOCKERFILE,
        tags=(naming.shared_image(workspace),),
        build_args={"COMMON_IMAGE": naming.common_image(workspace)},
        parent=naming.COMMON,
    )


def flavor_steps(workspace: Workspace, spec: FlavorSpec, registry: str | None = None) -> list[BuildStep]:
    """The flavor image FROM the shared stage; with a fragment, the fragment's image FROM that one carries the
    final tag."""
    final_tags = (spec.metadata.image, *((naming.with_registry(spec.metadata.image, registry),) if registry else ()))
    generic = BuildStep(
        name=spec.name,
        dockerfile=naming.FLAVOR_DOCKERFILE,
        tags=final_tags,
        build_args={"FLAVOR": spec.name, "SHARED_IMAGE": naming.shared_image(workspace)},
        labels=dict(spec.labels),
        flavor=spec.name,
        push=registry is not None,
        env=dict(spec.environment),
        parent=naming.SHARED,
    )
    if spec.fragment is None:
        return [generic]
    base_tag = f"{naming.common_image(workspace).split('/')[0]}/{spec.name}-base:{spec.metadata.version}"
    base = replace(
        generic, name=f"{spec.name}-base", tags=(base_tag,), labels={FLAVOR_LABEL: spec.name}, push=False, env={}
    )
    return [
        base,
        replace(
            generic,
            dockerfile=spec.fragment,
            build_args={"FLAVOR": spec.name, "FLAVOR_IMAGE": base_tag},
            parent=base.name,
        ),
    ]


def plan_builds(
    workspace: Workspace,
    flavors: list[FlavorSpec],
    *,
    base_image: str = naming.DEFAULT_BASE_IMAGE,
    registry: str | None = None,
    facts: BuildFacts | None = None,
) -> list[BuildStep]:
    """Common first, then the shared stage once (when a flavor is built), then each flavor in the order given;
    `facts` add provenance labels and args."""
    facts = facts or BuildFacts()
    common = common_step(workspace, base_image)
    steps = [
        replace(
            common,
            build_args={**common.build_args, **facts.common_args},
            labels={**common.labels, **facts.common_labels},
        )
    ]
    if flavors:
        shared = shared_step(workspace)
        steps.append(
            replace(
                shared,
                build_args={**shared.build_args, **facts.shared_args},
                labels={**shared.labels, **facts.shared_labels},
            )
        )
    for spec in flavors:
        for step in flavor_steps(workspace, spec, registry):
            steps.append(
                replace(
                    step,
                    build_args={**step.build_args, **facts.flavor_args.get(spec.name, {})},
                    labels={**step.labels, **facts.flavor_labels.get(spec.name, {})},
                )
            )
    return steps


def ignore_file(step: BuildStep, root: Path) -> Path:
    """The committed `<Dockerfile>.dockerignore`: BuildKit reads it next to the Dockerfile (a rendered copy gets a
    copy of it there); podman is told with --ignorefile."""
    return root / f"{step.rendered_from or step.dockerfile}.dockerignore"


def build_command(step: BuildStep, engine: Engine, root: Path, *, buildkit: bool = True) -> list[str]:
    """The engine's build command; `buildkit=False` for a docker without buildx (its legacy builder)."""
    command = [engine.value, "build", "--file", str(root / step.dockerfile)]
    if engine is Engine.podman and ignore_file(step, root).is_file():
        command += ["--ignorefile", str(ignore_file(step, root))]
    if engine is Engine.docker and buildkit:
        command += ["--progress=plain"]
    for tag in step.tags:
        command += ["--tag", tag]
    for key, value in step.build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    for key, value in step.labels.items():
        command += ["--label", f"{key}={value}"]
    command.append(str(root))
    return command


def push_commands(steps: list[BuildStep], engine: Engine) -> list[list[str]]:
    """Push the registry-qualified tag of every step marked for pushing (flavor images, not common)."""
    return [[engine.value, "push", step.tags[-1]] for step in steps if step.push]


def commands(steps: list[BuildStep], engine: Engine, root: Path, *, buildkit: bool = True) -> list[list[str]]:
    return [build_command(step, engine, root, buildkit=buildkit) for step in steps] + push_commands(steps, engine)


def as_text(command: list[str]) -> str:
    return shlex.join(command)


def build_facts(workspace: Workspace, flavors: list[FlavorSpec]) -> BuildFacts:
    """Provenance of this build: the commit, pixi.lock's commit time, and per flavor its export and CUDA.

    The flavor's build args carry CUDA_VERSION (micromamba's __cuda) and NVIDIA_REQUIRE_CUDA, the driver floor.
    """
    from cli.images import provenance

    source = provenance.source_facts(workspace)
    epoch = {"SOURCE_DATE_EPOCH": str(source.epoch)}
    flavor_labels: dict[str, dict[str, str]] = {}
    flavor_args: dict[str, dict[str, str]] = {}
    for spec in flavors:
        facts = provenance.flavor_facts(workspace, spec.name)
        flavor_labels[spec.name] = {
            **provenance.oci_labels(source, spec.metadata.name, spec.metadata.version),
            **provenance.flavor_labels(facts),
        }
        flavor_args[spec.name] = {
            **epoch,
            **({"CUDA_VERSION": facts.cuda_version} if facts.cuda_version else {}),
            "NVIDIA_REQUIRE_CUDA": provenance.nvidia_require_cuda(facts),
        }
    return BuildFacts(
        common_labels=provenance.oci_labels(source, f"{workspace.name} common", workspace.version),
        flavor_labels=flavor_labels,
        flavor_args=flavor_args,
        common_args=epoch,
        shared_labels={
            **provenance.oci_labels(source, f"{workspace.name} shared packages", workspace.version),
            **provenance.shared_labels(workspace),
        },
        shared_args=epoch,
    )
