"""Tiny wheels written by hand (zip + METADATA + WHEEL + RECORD) and a PEP 503 index: no network, no build backend."""

from __future__ import annotations

import base64
import hashlib
import html
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
    record = [f"{path},{_record_hash(text.encode())},{len(text.encode())}" for path, text in files.items()]
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = folder / wheel.file_name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, text in files.items():
            bundle.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), text)
    return path


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
