"""The OCI image layout: a content-addressed blob store, canonical JSON, and the layout packed as one tar.

`pack_layout` writes `oci-layout`, `index.json`, a docker-load `manifest.json` and
`blobs/sha256/*` as a deterministic tar (sorted, mtime SOURCE_DATE_EPOCH, root-owned,
uncompressed: the layers inside are compressed already).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cli.oci.tarball import Entry, directory, file_bytes, file_copy, write_tar

MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
CHUNK = 1 << 20


def canonical_json(document: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: one document, one byte string."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            document["annotations"] = dict(self.annotations)
        if self.platform:
            document["platform"] = dict(self.platform)
        return document

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


class BlobStore:
    """`<root>/blobs/sha256/<hex>`: each blob once, whatever how many layers or images name it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algorithm, _, hex_ = digest.partition(":")
        if algorithm != "sha256" or len(hex_) != 64:
            raise ValueError(f"not a sha256 digest: {digest}")
        return self.blobs / hex_

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        target = self.path(digest)
        if not target.is_file():
            target.write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    def put_json(self, document: Any, media_type: str) -> Descriptor:
        return self.put_bytes(canonical_json(document), media_type)

    def adopt(self, path: Path, digest: str, media_type: str) -> Descriptor:
        """File an already hashed blob (moved, not copied)."""
        target = self.path(digest)
        size = path.stat().st_size
        if target.is_file():
            path.unlink()
        else:
            os.replace(path, target)
        return Descriptor(media_type, digest, size)

    def copy_stream(self, source: IO[bytes], digest: str, media_type: str) -> Descriptor:
        """Copy a blob from a stream, checking it has the digest it claims."""
        target = self.path(digest)
        partial = target.with_name(target.name + ".part")
        hasher = hashlib.sha256()
        size = 0
        with partial.open("wb") as handle:
            while chunk := source.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
                handle.write(chunk)
        actual = f"sha256:{hasher.hexdigest()}"
        if actual != digest:
            partial.unlink()
            raise ValueError(f"blob {digest} has the content of {actual}")
        os.replace(partial, target)
        return Descriptor(media_type, digest, size)

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()


def docker_reference(image: str) -> str:
    """`simcore/services/comp/x:1.0.0` -> `docker.io/simcore/services/comp/x:1.0.0` (docker's own normalisation)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    if not rest:
        return f"docker.io/library/{image}"
    return f"docker.io/{image}"


def index_document(manifest: Descriptor) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [manifest.as_json()]}


def docker_manifest(config: Descriptor, layers: list[Descriptor], image: str) -> list[dict[str, Any]]:
    """`manifest.json` of `docker save`, so that docker engines older than 25 load the archive too."""
    return [
        {
            "Config": f"blobs/sha256/{config.hex}",
            "RepoTags": [image],
            "Layers": [f"blobs/sha256/{layer.hex}" for layer in layers],
        }
    ]


def pack_layout(
    store: BlobStore,
    manifest: Descriptor,
    config: Descriptor,
    layers: list[Descriptor],
    image: str,
    output: Path,
    epoch: int,
) -> int:
    """Write the layout of one image as a tar at `output` (atomically); returns its size in bytes."""
    reference = docker_reference(image)
    named = Descriptor(
        manifest.media_type,
        manifest.digest,
        manifest.size,
        annotations={REF_NAME: reference, CONTAINERD_NAME: reference},
    )
    used = {manifest.digest, config.digest, *(layer.digest for layer in layers)}
    entries: list[Entry] = [
        file_bytes("oci-layout", canonical_json(LAYOUT_VERSION)),
        file_bytes("index.json", canonical_json(index_document(named))),
        file_bytes("manifest.json", canonical_json(docker_manifest(config, layers, image))),
        directory("blobs"),
        directory("blobs/sha256"),
    ]
    entries += [file_copy(f"blobs/sha256/{d.split(':', 1)[1]}", store.path(d), mode=0o644) for d in sorted(used)]
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.part")
    try:
        with partial.open("wb") as handle:
            write_tar(entries, handle, epoch)
        partial.chmod(0o644)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return output.stat().st_size


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
