"""The base of an image: an OCI archive (its layers, diff_ids and environment, kept as they are) or a rootfs tar.

A rootfs tarball becomes one layer with its bytes unchanged: uncompressed, or gzip as
given. Either way the files the common layer extends (`/etc/passwd`, `/etc/group`,
`/etc/shadow`, `/etc/gshadow`) are read from the base as a container would see them:
the last layer wins and whiteouts delete.

The base is also checked for what the image needs of it, before any build work: `/bin/sh`
and the tools of the entrypoint (ENTRYPOINT_TOOLS, the list common/entrypoint_lib.sh checks
in the Docker path) on the base's PATH, and a CA bundle for the user's overlay downloads.
A base that lacks any of them is refused with one line naming all that is missing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cli.errors import UserError
from cli.oci.layout import MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, BlobStore, Descriptor
from cli.oci.tarball import (
    MEDIA_TYPE_LAYER,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD,
    Entry,
    directory,
    normalize_member_name,
)

ACCOUNT_FILES = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ARCHITECTURE = "amd64"
OS = "linux"
CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# What common/entrypoint_lib.sh calls (EP_TOOLS there; a test keeps the two lists equal).
ENTRYPOINT_TOOLS = ("setpriv", "usermod", "groupmod", "groupadd", "getent")
SHELL = "bin/sh"
# Where distributions keep the CA bundle (Debian/Ubuntu/Alpine, then Fedora/RHEL); common/Dockerfile installs the first.
CA_BUNDLES = ("etc/ssl/certs/ca-certificates.crt", "etc/pki/tls/certs/ca-bundle.crt")
CA_CERTIFICATES = f"CA certificates (/{CA_BUNDLES[0]})"
# The Debian package of each part a base must have (what a base that lacks some is told to add).
DEBIAN_PACKAGE_OF = {
    f"/{SHELL}": "dash",
    "setpriv": "util-linux",
    "usermod": "passwd",
    "groupmod": "passwd",
    "groupadd": "passwd",
    "getent": "libc-bin",
    CA_CERTIFICATES: "ca-certificates",
}
# A Debian base with all of them (minbase brings dash and libc-bin); the README and the real-engine tests use it too.
DEBIAN_BASE_PACKAGES = ("passwd", "util-linux", "ca-certificates")
DEBIAN_BASE_RECIPE = (
    f"mmdebstrap --variant=minbase --include={','.join(DEBIAN_BASE_PACKAGES)} --mode=root bookworm base.tar"
)
MAX_LINK_DEPTH = 40
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# Docker's layer media types name the same bytes as OCI's; an OCI manifest must use OCI's.
LAYER_TYPES = {
    MEDIA_TYPE_LAYER: MEDIA_TYPE_LAYER,
    MEDIA_TYPE_LAYER_GZIP: MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD: MEDIA_TYPE_LAYER_ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar": MEDIA_TYPE_LAYER,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": MEDIA_TYPE_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": MEDIA_TYPE_LAYER_ZSTD,
}


@dataclass(frozen=True)
class AccountFile:
    """A base file the common layer rewrites, with the owner and mode it must keep."""

    path: str
    data: bytes
    mode: int
    uid: int
    gid: int


@dataclass
class BaseFacts:
    """What the merged layers of a base hold, as far as the image above needs to know."""

    files: dict[str, AccountFile] = field(default_factory=dict)  # the account files the common layer rewrites
    folders: dict[str, Entry] = field(default_factory=dict)  # every directory
    links: dict[str, str] = field(default_factory=dict)  # every symlink and its target
    regular: set[str] = field(default_factory=set)  # every other non-directory (files, hard links)

    def forget(self, path: str, itself: bool) -> None:
        """A whiteout: drop `path`'s contents, and `path` itself unless it is an opaque directory's marker."""
        for known in (self.files, self.folders, self.links):
            for key in [k for k in known if k.startswith(f"{path}/") or (itself and k == path)]:
                del known[key]
        self.regular = {k for k in self.regular if not (k.startswith(f"{path}/") or (itself and k == path))}

    def resolve(self, path: str) -> str | None:
        """`path` with every symlink followed as inside the image (`bin` -> `usr/bin`); None for a symlink loop."""
        parts = [p for p in path.split("/") if p]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            target = self.links.get("/".join([*resolved, part]))
            if target is None:  # a directory (tar archives may leave parents implicit) or the last part
                resolved.append(part)
                continue
            hops += 1
            if hops > MAX_LINK_DEPTH:
                return None
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
        return "/".join(resolved)

    def has_file(self, path: str) -> bool:
        found = self.resolve(path)
        return found is not None and (found in self.regular or found in self.files)

    def missing_for_image(self, search_path: str) -> list[str]:
        """What the base lacks of /bin/sh, ENTRYPOINT_TOOLS (looked up on `search_path`) and a CA bundle."""
        folders = [folder.strip("/") for folder in search_path.split(":") if folder.startswith("/")]
        missing = [] if self.has_file(SHELL) else [f"/{SHELL}"]
        missing += [tool for tool in ENTRYPOINT_TOOLS if not any(self.has_file(f"{d}/{tool}") for d in folders)]
        if not any(self.has_file(bundle) for bundle in CA_BUNDLES):
            missing.append(CA_CERTIFICATES)
        return missing


@dataclass(frozen=True)
class BaseImage:
    layers: list[Descriptor]
    diff_ids: list[str]
    env: list[str]
    history: list[dict[str, Any]]
    files: dict[str, AccountFile] = field(default_factory=dict)
    # The base's image config (`config` of its config blob): labels, ports, ... that FROM would inherit.
    config: dict[str, Any] = field(default_factory=dict)
    directories: dict[str, Entry] = field(default_factory=dict)
    description: str = ""


def import_base(path: Path, store: BlobStore) -> BaseImage:
    """Copy the base's layers into `store` and read what the image above needs from it."""
    if not path.is_file():
        raise UserError("no such base", path=path, fix="give an OCI archive or a rootfs tarball")
    names = _member_names(path)
    if "oci-layout" in names and "index.json" in names:
        return _import_oci_archive(path, store)
    if "manifest.json" in names and any(n.endswith("/layer.tar") for n in names):
        raise UserError(
            "this is a docker-archive (`docker save` of docker < 25), not an OCI archive",
            path=path,
            fix=f"convert it: skopeo copy docker-archive:{path} oci-archive:base-oci.tar",
        )
    return _import_rootfs(path, store)


def check_base(facts: BaseFacts, env: list[str], source: Path) -> None:
    """Refuse a base that cannot run the entrypoint or verify TLS, in one line naming everything it lacks."""
    search_path = next((item.partition("=")[2] for item in env if item.startswith("PATH=")), DEFAULT_PATH)
    missing = facts.missing_for_image(search_path)
    if missing:
        packages = ", ".join(dict.fromkeys(DEBIAN_PACKAGE_OF[item] for item in missing))
        raise UserError(
            f"the base lacks {', '.join(missing)}, which the image's entrypoint and the user's downloads need",
            path=source,
            fix=f"add {packages} (Debian's package names) to the base, or make one that has all: {DEBIAN_BASE_RECIPE}",
        )


def _member_names(path: Path) -> set[str]:
    try:
        with tarfile.open(path, "r:*") as archive:
            return {normalize_member_name(name) for name in archive.getnames()}
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UserError(
            f"not a tar archive: {error}", path=path, fix="give an OCI archive or a (gzip) rootfs tarball"
        ) from error


def _compression_of(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def _import_rootfs(path: Path, store: BlobStore) -> BaseImage:
    with path.open("rb") as handle:
        kind = _compression_of(handle.read(4))
    if kind == "zstd" or (kind == "none" and not _plain_tar(path)):
        raise UserError(
            "a rootfs tarball must be an uncompressed or gzip tar",
            path=path,
            fix="decompress it, or recompress it with gzip",
        )
    blob_hash = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            blob_hash.update(chunk)
    digest = f"sha256:{blob_hash.hexdigest()}"
    media_type = MEDIA_TYPE_LAYER_GZIP if kind == "gzip" else MEDIA_TYPE_LAYER
    with path.open("rb") as handle:
        layer = store.copy_stream(handle, digest, media_type)
    diff_id = digest if kind == "none" else _diff_id(store.path(digest), kind)
    facts = read_base_facts([(store.path(digest), kind)], source=path)
    env = [f"PATH={DEFAULT_PATH}"]
    check_base(facts, env, path)
    return BaseImage(
        layers=[layer],
        diff_ids=[diff_id],
        env=env,
        history=[],
        files=facts.files,
        directories=facts.folders,
        description=f"rootfs tarball {digest}",
    )


def _plain_tar(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:"):
            return True
    except tarfile.TarError:
        return False


def _diff_id(blob: Path, kind: str) -> str:
    digest = hashlib.sha256()
    with _open_layer(blob, kind) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


@contextmanager
def _open_layer(blob: Path, kind: str) -> Iterator[IO[bytes]]:
    """The uncompressed tar stream of a layer blob."""
    with blob.open("rb") as raw:
        if kind == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield stream  # type: ignore[misc]
        elif kind == "zstd":
            try:
                import zstandard
            except ImportError as error:
                raise UserError(
                    "the base has a zstd layer and the Python module zstandard is not installed",
                    fix="pip install zstandard, or convert the base: skopeo copy --dest-compress-format gzip ...",
                ) from error
            with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
                yield stream
        else:
            yield raw


def read_base_facts(layers: list[tuple[Path, str]], source: Path) -> BaseFacts:
    """/etc/passwd and friends, every directory, symlink and file, as the merged layers show them.

    Later layers win and whiteouts delete, as in a container's root filesystem.
    """
    facts = BaseFacts()
    for blob, kind in layers:
        with _open_layer(blob, kind) as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                name = normalize_member_name(member.name)
                if not name:
                    continue
                folder, _, base_name = name.rpartition("/")
                if base_name == ".wh..wh..opq":
                    facts.forget(folder, itself=False)
                    continue
                if base_name.startswith(".wh."):
                    facts.forget(f"{folder}/{base_name[4:]}" if folder else base_name[4:], itself=True)
                    continue
                if member.isdir():
                    facts.links.pop(name, None)
                    facts.regular.discard(name)
                    facts.folders[name] = directory(name, mode=member.mode & 0o7777, uid=member.uid, gid=member.gid)
                    continue
                if name in facts.folders:  # a file over a lower layer's directory hides its contents
                    facts.forget(name, itself=True)
                facts.links.pop(name, None)
                facts.regular.discard(name)
                facts.files.pop(name, None)
                if name in ACCOUNT_FILES:
                    if not member.isfile():
                        raise UserError(
                            f"/{name} in the base is not a regular file",
                            path=source,
                            fix=f"use a base with a plain /{name}",
                        )
                    handle = archive.extractfile(member)
                    assert handle is not None
                    facts.files[name] = AccountFile(name, handle.read(), member.mode & 0o7777, member.uid, member.gid)
                elif member.issym():
                    facts.links[name] = member.linkname
                else:
                    facts.regular.add(name)
    return facts


def _import_oci_archive(path: Path, store: BlobStore) -> BaseImage:
    with tarfile.open(path, "r:*") as archive:
        members = {normalize_member_name(m.name): m for m in archive.getmembers() if m.isfile()}

        def read_blob(digest: str) -> bytes:
            member = members.get(f"blobs/{digest.replace(':', '/', 1)}")
            if member is None:
                raise UserError(f"the OCI archive has no blob {digest}", path=path, fix="export the base again")
            handle = archive.extractfile(member)
            assert handle is not None
            data = handle.read()
            if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
                raise UserError(f"blob {digest} does not match its digest", path=path, fix="export the base again")
            return data

        index = _json(read_file(archive, members, "index.json", path), path, "index.json")
        manifest_descriptor = _pick_manifest(index, read_blob, path)
        manifest = _json(read_blob(manifest_descriptor["digest"]), path, "the manifest")
        config = _json(read_blob(manifest["config"]["digest"]), path, "the image config")
        if config.get("architecture", ARCHITECTURE) != ARCHITECTURE or config.get("os", OS) != OS:
            raise UserError(
                f"the base is {config.get('os')}/{config.get('architecture')}, not {OS}/{ARCHITECTURE}",
                path=path,
                fix="export the linux/amd64 variant of the base",
            )
        layers: list[Descriptor] = []
        kinds: list[tuple[Path, str]] = []
        for layer in manifest.get("layers", []):
            media_type = LAYER_TYPES.get(layer.get("mediaType", ""))
            if media_type is None:
                raise UserError(
                    f"unsupported base layer type {layer.get('mediaType')!r}",
                    path=path,
                    fix="use a base whose layers are plain OCI or docker layers",
                )
            member = members.get(f"blobs/{layer['digest'].replace(':', '/', 1)}")
            if member is None:
                raise UserError(f"the OCI archive has no blob {layer['digest']}", path=path, fix="export it again")
            handle = archive.extractfile(member)
            assert handle is not None
            try:
                layers.append(store.copy_stream(handle, layer["digest"], media_type))
            except ValueError as error:
                raise UserError(str(error), path=path, fix="export the base again") from error
            kind = "gzip" if media_type == MEDIA_TYPE_LAYER_GZIP else "zstd" if media_type.endswith("zstd") else "none"
            kinds.append((store.path(layer["digest"]), kind))
    diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
    if len(diff_ids) != len(layers):
        raise UserError(
            f"the base config lists {len(diff_ids)} diff_ids for {len(layers)} layers", path=path, fix="export it again"
        )
    image_config = config.get("config") or {}
    history = list(config.get("history") or [])
    facts = read_base_facts(kinds, source=path)
    env = list(image_config.get("Env") or [f"PATH={DEFAULT_PATH}"])
    check_base(facts, env, path)
    return BaseImage(
        layers=layers,
        diff_ids=diff_ids,
        env=env,
        history=history,
        config=dict(image_config),
        files=facts.files,
        directories=facts.folders,
        description=f"OCI image {manifest_descriptor['digest']}",
    )


def read_file(archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, path: Path) -> bytes:
    member = members.get(name)
    if member is None:
        raise UserError(f"the OCI archive has no {name}", path=path, fix="export the base again")
    handle = archive.extractfile(member)
    assert handle is not None
    return handle.read()


def _json(data: bytes, path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError as error:
        raise UserError(f"{what} is not JSON: {error}", path=path, fix="export the base again") from error
    if not isinstance(document, dict):
        raise UserError(f"{what} is not a JSON object", path=path, fix="export the base again")
    return document


def _pick_manifest(index: dict[str, Any], read_blob: Any, path: Path) -> dict[str, Any]:
    """The one linux/amd64 image manifest of the index, looking one level into a nested index."""
    candidates = list(index.get("manifests") or [])
    for _ in range(2):
        images = [m for m in candidates if m.get("mediaType") in (MEDIA_TYPE_MANIFEST, DOCKER_MANIFEST)]
        nested = [m for m in candidates if m.get("mediaType") in (MEDIA_TYPE_INDEX, DOCKER_LIST)]
        matching = [m for m in images if _is_target(m)]
        if len(matching) == 1:
            return matching[0]
        if len(images) == 1 and not nested:
            return images[0]
        if images or len(nested) != 1:
            break
        candidates = list(_json(read_blob(nested[0]["digest"]), path, "the nested index").get("manifests") or [])
    raise UserError(
        "cannot pick one linux/amd64 image in the OCI archive's index.json",
        path=path,
        fix=f"export a single image: skopeo copy --override-arch {ARCHITECTURE} docker://<base> oci-archive:base.tar",
    )


def _is_target(descriptor: dict[str, Any]) -> bool:
    platform = descriptor.get("platform")
    if not platform:
        return False
    return bool(platform.get("os") == OS and platform.get("architecture") == ARCHITECTURE)
