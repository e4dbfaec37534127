"""Tiny wheels written by hand (zip + METADATA + WHEEL + RECORD) and a PEP 503 index: no network, no build backend.

Also a wheel re-made from a distribution installed here (`wheel_from_installed`): the
runner needs `packaging` in its base environment, and the tests' base venvs get it
offline from the copy the test environment already has.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.metadata
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FakeWheel:
    name: str
    version: str
    requires: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)

    @property
    def distribution(self) -> str:
        return re.sub(r"[-_.]+", "_", self.name)

    @property
    def file_name(self) -> str:
        return f"{self.distribution}-{self.version}-py3-none-any.whl"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, wheel: FakeWheel) -> Path:
    """Write `wheel` into `folder`; its module `<name>` holds VERSION, so a script can tell which copy it imported."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{wheel.distribution}-{wheel.version}.dist-info"
    module = wheel.distribution.lower()
    files = dict(wheel.files) or {f"{module}/__init__.py": f"VERSION = {wheel.version!r}\n"}
    metadata = f"Metadata-Version: 2.1\nName: {wheel.name}\nVersion: {wheel.version}\n"
    metadata += "".join(f"Provides-Extra: {extra}\n" for extra in wheel.extras)
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in wheel.requires)
    files[f"{info}/METADATA"] = metadata
    files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return write_wheel(folder / wheel.file_name, info, {name: text.encode() for name, text in files.items()})


def write_wheel(path: Path, info: str, files: dict[str, bytes]) -> Path:
    """Zip `files` (dist-info included, RECORD made here) into the wheel at `path`."""
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in files.items()]
    record.append(f"{info}/RECORD,,")
    files = {**files, f"{info}/RECORD": ("\n".join(record) + "\n").encode()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
        for name, data in files.items():
            bundle.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return path


def wheel_from_installed(folder: Path, name: str) -> Path:
    """A pure-Python wheel of the distribution `name` installed in this interpreter (byte code and RECORD left out)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = importlib.metadata.distribution(name)
    version = dist.version
    distribution = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    info = f"{distribution}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for entry in dist.files or ():
        parts = entry.parts
        if "__pycache__" in parts or entry.suffix == ".pyc" or parts[-1] in ("RECORD", "INSTALLER", "REQUESTED"):
            continue
        if parts[-1] == "direct_url.json" or (parts[0].endswith(".dist-info") and parts[-1] == "WHEEL"):
            continue
        target = "/".join((info, *parts[1:])) if parts[0].endswith(".dist-info") else "/".join(parts)
        files[target] = Path(str(entry.locate())).read_bytes()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return write_wheel(folder / f"{distribution}-{version}-py3-none-any.whl", info, files)


def write_simple_index(wheels: Path, index: Path) -> Path:
    """A PEP 503 'simple' index (one page per project, file:// links with sha256 fragments) for --index-url."""
    projects: dict[str, list[Path]] = {}
    for path in sorted(wheels.glob("*.whl")):
        project = re.sub(r"[-_.]+", "-", path.name.split("-")[0]).lower()
        projects.setdefault(project, []).append(path)
    index.mkdir(parents=True, exist_ok=True)
    links = []
    for project, paths in projects.items():
        page = index / project
        page.mkdir(exist_ok=True)
        anchors = "".join(
            f'<a href="{p.resolve().as_uri()}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}">'
            f"{html.escape(p.name)}</a><br>\n"
            for p in paths
        )
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{anchors}</body></html>\n")
        links.append(f'<a href="{project}/">{project}</a><br>\n')
    (index / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{''.join(links)}</body></html>\n")
    return index


# What the fixture index holds: a "base" package in two versions, packages that need it, CUDA look-alikes.
FIXTURE_WHEELS = (
    FakeWheel("basepkg", "1.0"),
    FakeWheel("basepkg", "2.0"),
    FakeWheel("userpkg", "1.0", requires=("basepkg>=1",)),
    FakeWheel("needsnew", "1.0", requires=("basepkg>=2",)),
    FakeWheel("fancy", "1.0", requires=('basepkg>=2 ; extra == "new"',), extras=("new",)),
    FakeWheel("onlyhere", "0.3"),
    FakeWheel("nvidia-cudnn-cu12", "9.1.0.70"),
    FakeWheel("gputool", "1.0", requires=("nvidia-cudnn-cu12>=9",)),
    FakeWheel("tensorflow", "2.17.0", requires=('nvidia-cudnn-cu12>=9 ; extra == "and-cuda"',), extras=("and-cuda",)),
    FakeWheel("torch", "2.5.0+cu124"),
)
