"""A CycloneDX (1.6) SBOM of one flavor and platform, made from pixi.lock alone.

Each locked conda package is a component with a `pkg:conda/…` package URL (build, channel,
subdir and archive type as qualifiers, as the purl spec's conda type defines them), its
archive's sha256 and md5, its licence (an SPDX id, expression or name) and its download URL;
the dependency graph follows the records' `depends`. The flavor itself is the metadata
component, depending on the packages pixi.toml asks for.

The serial number is derived from the locked content, so the same lock gives the same BOM;
the timestamp is SOURCE_DATE_EPOCH when set (reproducible builds), else now.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL

from cli.audit.readers import LockedPackage, archive_name, from_record
from cli.errors import UserError
from cli.flavors import get_flavor
from cli.lockengine.lockfile import DEFAULT_PLATFORM, locked_records, read_lock
from cli.lockengine.manifest import Workspace

SCHEMA_VERSION = SchemaVersion.V1_6
TOOL_NAME = "osparc-ml-runners"
ANACONDA_ORG = "https://conda.anaconda.org/"
_NO_LICENCE = frozenset({"", "none", "unknown", "noassertion"})


def pick_platform(workspace: Workspace, flavor: str, platform: str | None) -> str:
    """The platform asked for, else the flavor's only one, else linux-64 (what the images run)."""
    names = workspace.platform_names(flavor)
    if platform is not None:
        return workspace.platform_names(flavor, [platform])[0]
    if len(names) == 1:
        return names[0]
    if DEFAULT_PLATFORM in names:
        return DEFAULT_PLATFORM
    raise UserError(f"flavor '{flavor}' has several platforms", fix=f"pass --platform (one of {', '.join(names)})")


def channel_of(package: LockedPackage) -> str:
    """`https://conda.anaconda.org/conda-forge/linux-64/x.conda` → `conda-forge`; other hosts keep their URL."""
    url = package.url
    base = url[: -len(archive_name(url))].rstrip("/")
    if package.subdir and base.endswith("/" + package.subdir):
        base = base[: -len(package.subdir) - 1]
    if base.startswith(ANACONDA_ORG):
        return base[len(ANACONDA_ORG) :]
    return base


def package_url(package: LockedPackage) -> PackageURL:
    file_name = archive_name(package.url)
    archive_type = "tar.bz2" if file_name.endswith(".tar.bz2") else "conda"
    qualifiers = {"build": package.build, "channel": channel_of(package), "subdir": package.subdir or "", "type": ""}
    qualifiers["type"] = archive_type
    return PackageURL(
        type="conda", name=package.name, version=package.version, qualifiers={k: v for k, v in qualifiers.items() if v}
    )


def _licences(package: LockedPackage) -> list[Any]:
    text = (package.license or "").strip()
    if text.lower() in _NO_LICENCE:
        return []
    return [LicenseFactory().make_from_string(text)]


def component(package: LockedPackage) -> Component:
    purl = package_url(package)
    hashes = []
    if package.sha256:
        hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=package.sha256))
    if package.md5:
        hashes.append(HashType(alg=HashAlgorithm.MD5, content=package.md5))
    references = []
    if package.url:
        references.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(package.url)))
    return Component(
        name=package.name,
        version=package.version,
        type=ComponentType.LIBRARY,
        bom_ref=purl.to_string(),
        purl=purl,
        hashes=hashes,
        licenses=_licences(package),
        external_references=references,
        properties=[Property(name="conda:build", value=package.build)],
    )


def _flavor_version(workspace: Workspace, flavor: str) -> str | None:
    try:
        data = yaml.safe_load(get_flavor(workspace, flavor).metadata_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UserError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return str(version) if version is not None else None


def _timestamp() -> datetime:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(tz=UTC).replace(microsecond=0)


def _tool_version() -> str | None:
    try:
        from importlib.metadata import version

        return version(TOOL_NAME)
    except Exception:  # not installed as a distribution (run from a checkout)
        return None


def _depends_names(package: LockedPackage) -> list[str]:
    return sorted({d.split(" ")[0].split("[")[0] for d in package.depends if not d.startswith("__")})


def build_bom(workspace: Workspace, flavor: str, platform: str | None = None) -> Bom:
    chosen = pick_platform(workspace, flavor, platform)
    lock = read_lock(workspace)
    packages = sorted((from_record(r) for r in locked_records(workspace, flavor, chosen, lock=lock)), key=_sort_key)
    components = {p.name: component(p) for p in packages}
    content = "\n".join(f"{p.url}#{p.sha256 or p.md5 or ''}" for p in packages)
    digest = hashlib.sha256(f"{flavor}\n{chosen}\n{content}".encode()).hexdigest()
    root = Component(
        name=flavor,
        version=_flavor_version(workspace, flavor),
        type=ComponentType.APPLICATION,
        bom_ref=f"flavor:{flavor}@{chosen}",
        description=f"{workspace.name} flavor '{flavor}' ({chosen}), as locked in pixi.lock",
        properties=[
            Property(name="pixi:environment", value=flavor),
            Property(name="pixi:platform", value=chosen),
            Property(name="pixi:lock-content-sha256", value=digest),
        ],
    )
    tool = Component(name=TOOL_NAME, version=_tool_version(), type=ComponentType.APPLICATION)
    bom = Bom(
        components=list(components.values()),
        serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"urn:osparc-ml-runners:{digest}"),
        metadata=BomMetaData(component=root, tools=ToolRepository(components=[tool]), timestamp=_timestamp()),
    )
    requested = sorted(workspace.resolve(flavor).specs_by_platform.get(chosen, {}))
    bom.register_dependency(root, [components[n] for n in requested if n in components])
    for package in packages:
        bom.register_dependency(
            components[package.name], [components[n] for n in _depends_names(package) if n in components]
        )
    return bom


def _sort_key(package: LockedPackage) -> tuple[str, str, str]:
    return (package.name, package.version, package.build)


def render_bom(bom: Bom) -> str:
    return JsonV1Dot6(bom).output_as_string(indent=2)


def write_bom(text: str, output: Path) -> None:
    from cli.fileio import atomic_write_text

    atomic_write_text(output, text if text.endswith("\n") else text + "\n")
