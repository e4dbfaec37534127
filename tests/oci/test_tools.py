"""Acceptance: container tools read the archive, and the unpacked image runs the runner on a sample input.

- `skopeo inspect oci-archive:` shows the labels and layers;
- `skopeo copy` into containers-storage (the library `podman load` uses) accepts it, digest intact,
  and `podman load` loads it, with zstd layers (the default) and with gzip layers;
- `umoci unpack` gives a rootfs in which the flavor's python runs the runner: by the unpacked
  paths everywhere, and for real through `chroot` (entrypoint, user switch, service.cli/run,
  runner) where root may make a mount namespace; `audit prefix` passes on the unpacked
  environment. umoci 0.4 reads no zstd: these use `--compression gzip` images.

skopeo, umoci and podman are Debian packages (`apt-get install skopeo umoci podman`); without them these tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from cli.lockengine.manifest import load_workspace
from cli.oci import Compression, build_oci_image
from tests.oci.conftest import BASE_EPOCH, REPO, Built

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
REFERENCE = "docker.io/simcore/services/comp/osparc-{flavor}-runner:1.0.0"
MAIN_PY = """\
import os
import sys
from pathlib import Path

out = Path(os.environ["OUTPUT_1"])
flavor = os.environ.get("RUNNER_FLAVOR")
(out / "result.txt").write_text(f"uid={os.getuid()} python={sys.executable} flavor={flavor}\\n")
print("hello from the image")
"""


def run(*command: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False, env=env)


@needs_skopeo
def test_skopeo_inspect_shows_labels_and_layers(built_images: dict[str, Built]) -> None:
    built = built_images["pytorch"]
    done = run("skopeo", "inspect", f"oci-archive:{built.archive}")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["Digest"] == built.result.manifest_digest
    assert shown["Layers"] == [layer.digest for layer in built.result.layers]
    assert shown["Labels"]["io.simcore.key"] == '{"key": "simcore/services/comp/osparc-pytorch-runner"}'
    assert shown["Labels"]["io.osparc.runner.flavor"] == "pytorch"
    assert shown["Architecture"] == "amd64" and shown["Os"] == "linux"
    named = run("skopeo", "inspect", f"oci-archive:{built.archive}:{REFERENCE.format(flavor='pytorch')}")
    assert named.returncode == 0, named.stderr
    raw = run("skopeo", "inspect", "--raw", f"oci-archive:{built.archive}")
    assert json.loads(raw.stdout)["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


@needs_skopeo
@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_containers_storage_accepts_it_as_podman_load_would(
    built_images: dict[str, Built], gzip_image: Built, tmp_path: Path, compression: str
) -> None:
    built = built_images["pytorch"] if compression == "zstd" else gzip_image
    assert {layer.media_type for layer in built.result.layers[1:]} == {Compression(compression).media_type}
    store = f"containers-storage:[vfs@{tmp_path / 'storage'}+{tmp_path / 'run'}]"
    name = REFERENCE.format(flavor="pytorch")
    done = run("skopeo", "copy", "--quiet", f"oci-archive:{built.archive}", f"{store}{name}")
    if done.returncode != 0 and "operation not permitted" in done.stderr.lower():
        pytest.skip(f"containers-storage is not usable here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    shown = json.loads(run("skopeo", "inspect", f"{store}{name}").stdout)
    assert shown["Digest"] == built.result.manifest_digest
    assert shown["Layers"] == [layer.digest for layer in built.result.layers]
    assert shown["Labels"]["io.osparc.runner.flavor"] == "pytorch"


@needs_podman
@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_podman_loads_both_compressions(
    built_images: dict[str, Built], gzip_image: Built, tmp_path: Path, compression: str
) -> None:
    """`podman load` of the archive, in a storage of the test's own; the loaded image has every layer."""
    built = built_images["pytorch"] if compression == "zstd" else gzip_image
    with tempfile.TemporaryDirectory(prefix="oci-podman-") as runroot:  # podman wants a runroot under 50 characters
        podman = ["podman", "--root", str(tmp_path / "root"), "--runroot", runroot, "--storage-driver", "vfs"]
        done = run(*podman, "load", "-q", "-i", built.archive)
        if done.returncode != 0 and "operation not permitted" in done.stderr.lower():
            pytest.skip(f"podman storage is not usable here: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        name = REFERENCE.format(flavor="pytorch")
        shown = json.loads(run(*podman, "image", "inspect", name).stdout)[0]
    assert shown["RootFS"]["Layers"] == [layer.diff_id for layer in built.result.layers]
    assert shown["Labels"]["io.osparc.runner.flavor"] == "pytorch"


def umoci_unpack(archive: Path, flavor: str, target: Path) -> Path:
    layout = target / "layout"
    layout.mkdir(parents=True)
    with tarfile.open(archive) as bundle:
        bundle.extractall(layout, filter="data")
    bundle_dir = target / "bundle"
    command = ["umoci", "unpack", "--image", f"{layout}:{REFERENCE.format(flavor=flavor)}", str(bundle_dir)]
    if os.geteuid() != 0:
        command.insert(2, "--rootless")
    done = run(*command)
    assert done.returncode == 0, done.stderr
    return bundle_dir


def sample_job(root: Path) -> tuple[Path, Path]:
    inputs, outputs = root / "input", root / "output"
    for n in range(1, 6):
        (inputs / f"input_{n}").mkdir(parents=True)
    (inputs / "input_1" / "main.py").write_text(MAIN_PY)
    outputs.mkdir()
    return inputs, outputs


def check_outputs(outputs: Path, flavor: str) -> str:
    result = (outputs / "output_1" / "result.txt").read_text()
    assert f"flavor={flavor}" in result
    with zipfile.ZipFile(outputs / "output_1.zip") as archive:
        assert archive.read("result.txt").decode() == result
    return result


@needs_umoci
def test_umoci_unpack_and_run_the_runner_by_the_unpacked_paths(
    gzip_image: Built, oci_template: Path, tmp_path: Path
) -> None:
    built = gzip_image
    bundle = umoci_unpack(built.archive, "pytorch", tmp_path / "unpack")
    rootfs = bundle / "rootfs"
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh", "/usr/local/lib/osparc-runner/entrypoint.sh", "run"]
    assert config["process"]["cwd"] == "/home/scu"
    if os.geteuid() == 0:
        assert (rootfs / "home" / "scu").stat().st_uid == 8004
        assert (rootfs / "home" / "scu" / "service.cli" / "run").stat().st_uid == 8004
    assert (rootfs / "etc" / "os-release").read_text().startswith('NAME="tiny test rootfs"')  # the base
    assert "scu:x:8004:8004" in (rootfs / "etc" / "passwd").read_text()
    prefix = rootfs / "opt" / "conda" / "envs" / "flavor"
    assert (prefix / "share" / "pytorch" / "README.txt").is_file()
    audit = run(
        sys.executable, "-m", "cli", "audit", "prefix", "pytorch", prefix, "--manifest-path", oci_template,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert audit.returncode == 0, audit.stdout + audit.stderr  # conda-meta is complete across the layers

    inputs, outputs = sample_job(tmp_path / "job")
    env = {
        "PATH": os.environ["PATH"],
        "INPUT_FOLDER": str(inputs),
        "OUTPUT_FOLDER": str(outputs),
        "RUNNER_HOME": str(rootfs / "opt" / "runner"),
        "RUNNER_PYTHON": str(prefix / "bin" / "python"),
        "RUNNER_FLAVOR": "pytorch",
        "RUNNER_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = run("sh", rootfs / "home" / "scu" / "service.cli" / "run", env=env)
    assert done.returncode == 0, done.stderr
    assert "hello from the image" in done.stdout
    result = check_outputs(outputs, "pytorch")
    assert f"python={rootfs}/opt/conda/envs/flavor/bin/python" in result


def _namespaces_work() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("chroot") is None:
        return False
    return run("unshare", "--mount", "--propagation", "private", "true").returncode == 0


MERGED_USR = ("bin", "sbin", "lib", "lib64")


def interpreter_home() -> Path | None:
    """The folder to bind for the interpreter the fixture `python` links to (None: it cannot be bound alone)."""
    home = Path(sys.base_prefix).resolve()
    if home == Path("/usr"):
        return home  # a system python: inside the bound /usr/bin and /usr/lib already
    if home.is_relative_to("/usr"):
        return None  # e.g. /usr/local: binding it would hide the image's /usr/local
    return home


def merged_usr_rootfs(path: Path) -> Path:
    """A base with /bin, /lib, ... -> usr/... and empty /usr/bin, /usr/lib, ...: the host's are bound there."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:

        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.mtime = BASE_EPOCH
            if data is None:
                archive.addfile(info)
            else:
                import io

                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))

        for name in ("dev", "etc", "proc", "root", "tmp", "usr", *(f"usr/{d}" for d in MERGED_USR)):
            folder = tarfile.TarInfo(name)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            add(folder)
        for name in MERGED_USR:
            link = tarfile.TarInfo(name)
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, f"usr/{name}", 0o777
            add(link)
        for name, text, mode in (
            *((f"usr/bin/{tool}", "", 0o755) for tool in ("sh", "setpriv", "getent")),  # hidden by the host's
            *((f"usr/sbin/{tool}", "", 0o755) for tool in ("usermod", "groupmod", "groupadd")),
            ("etc/ssl/certs/ca-certificates.crt", "", 0o644),
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
            ("etc/group", "root:x:0:\n", 0o644),
            ("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640),
            ("etc/gshadow", "root:*::\n", 0o640),
        ):
            file = tarfile.TarInfo(name)
            file.mode = mode
            add(file, text.encode())
    return path


@needs_umoci
@pytest.mark.skipif(not _namespaces_work(), reason="needs root, unshare --mount and chroot")
@pytest.mark.skipif(not Path("/usr/lib64").is_dir() or not Path("/bin").is_symlink(), reason="needs a merged-usr host")
@pytest.mark.skipif(interpreter_home() is None, reason="the test interpreter lives under /usr/local")
def test_chroot_runs_entrypoint_service_and_runner(oci_workspace: Path, tmp_path: Path) -> None:
    """The image run as a container would run it: entrypoint as root, scu takes the mounts' owner, then the runner.

    The base holds no programs: the host's /usr/{bin,sbin,lib,lib64} are bound into the
    unpacked rootfs (sh, setpriv, usermod ... and libc), and the host interpreter's folder,
    which the fixture channel's `python` links to. Everything else is the image's own:
    /etc/passwd with scu, the entrypoint, service.cli/run, the runner and the environment.
    """
    archive = tmp_path / "image.tar"
    base = merged_usr_rootfs(tmp_path / "base.tar")
    build_oci_image(
        load_workspace(oci_workspace), "pytorch", base, archive, cache_dir=tmp_path / "cache",
        compression=Compression.gzip,
    )  # fmt: skip
    bundle = umoci_unpack(archive, "pytorch", tmp_path / "unpack")
    rootfs = bundle / "rootfs"
    process = json.loads((bundle / "config.json").read_text())["process"]
    binds = [(f"/usr/{d}", rootfs / "usr" / d) for d in MERGED_USR]
    home = interpreter_home()
    if home is not None and home != Path("/usr"):
        binds.append((str(home), rootfs / home.relative_to("/")))
        binds[-1][1].mkdir(parents=True, exist_ok=True)
        for parent in binds[-1][1].parents:
            if parent == rootfs:
                break
            parent.chmod(0o755)  # scu must traverse to the bound interpreter
    inputs, outputs = sample_job(tmp_path / "job")
    for folder in (inputs, outputs, *inputs.iterdir()):
        os.chown(folder, 1234, 1234)
    for path in inputs.rglob("*"):
        os.chown(path, 1234, 1234)
    binds += [("/proc", rootfs / "proc"), ("/dev", rootfs / "dev"), (str(inputs), rootfs / "inputs")]
    binds += [(str(outputs), rootfs / "outputs")]
    script = "set -eu\n" + "".join(f"mount --bind '{source}' '{target}'\n" for source, target in binds)
    script += f"exec chroot '{rootfs}' /usr/bin/env -i \"$@\"\n"
    (tmp_path / "namespace.sh").write_text(script)
    command = [*process["env"], *process["args"]]
    done = run("unshare", "--mount", "--propagation", "private", "sh", tmp_path / "namespace.sh", *command)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scu takes UID 1234" in done.stderr
    assert "hello from the image" in done.stdout
    result = check_outputs(outputs, "pytorch")
    assert result.startswith("uid=1234 python=/opt/conda/envs/flavor/bin/python ")
    assert (outputs / "output_1.zip").stat().st_uid == 1234
