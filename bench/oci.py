"""Time and size of flavor images assembled by the OCI engine.

`--realistic`: both flavors of the committed pixi.lock at real size, on a synthetic channel
(`bench/realistic_channel.py`: one package per locked record, same name, version and build,
payload shaped like conda-forge's CUDA and ML packages). Reported per flavor: build time
with a cold and a warm package cache (warm: layers made before are reused; then the package
cache warm and the layer cache cold, every layer packed; and without the paths.json check, to
show what packing and the check cost), whether each meets the 60 s goal, CPU seconds and the
load average (the machine is shared), layer sizes,
bytes shared with the other flavor, bytes a registry sends for the second flavor after the
first, and bytes changed when one small package (numpy) and when the framework itself
(pytorch + libtorch, tensorflow + tensorflow-base) are relocked to another build. Every
figure is measured; sizes the lock lacks are estimated and listed. Disk: about 30 GB at the
peak, removed at the end (`--keep` keeps the channel).

    python bench/oci.py --realistic [--scale 1.0] [--work DIR] [--keep] [--compression zstd|gzip]

Without `--realistic`: the test fixture's workspace (pytorch + tensorflow on a local
channel, nothing from the internet), with one extra package in the flavor holding PAYLOAD MB of files (half
random bytes, half text, like binaries and Python sources) so that packing and compression
have something to chew on. The committed pixi.lock points at conda-forge, which is not
reachable offline, so it is not used here.

cold: empty package cache (archives verified and copied, extracted, linked, packed);
warm: the same cache again (linked and packed). Every build must give the same digest.

    python bench/oci.py [--flavor pytorch] [--payload-mb 200] [--repeat 2] [--compression zstd|gzip|none]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli.lockengine.manifest import load_workspace  # noqa: E402
from cli.oci import Compression, OciBuildResult, build_oci_image  # noqa: E402
from tests.oci.conftest import EXTRA_DEPENDENCIES, add_repository_files, make_rootfs, write_extra_packages  # noqa: E402
from tests.support.channel import build_channel, gpu_stack_packages  # noqa: E402
from tests.support.workspace import lock_and_export, write_workspace  # noqa: E402

PAYLOAD = "bench-payload"


def payload_package(channel: Path, work: Path, megabytes: int) -> None:
    """A linux-64 package with `megabytes` MB of files: half incompressible, half text."""
    import rattler_build

    files = work / "payload"
    shutil.rmtree(files, ignore_errors=True)
    generator = random.Random(0)
    chunk = 4 << 20
    half = megabytes * (1 << 20) // 2
    for number in range(max(1, half // chunk)):
        target = files / "lib" / f"libpayload{number}.so"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(generator.randbytes(min(chunk, half)))
    source = "".join(f"def function_{n}(x):\n    return x * {n} + {n % 7}\n\n" for n in range(2000)).encode()
    for number in range(max(1, half // max(1, len(source)))):
        target = files / "lib" / "python3.12" / "site-packages" / "payload" / f"module_{number}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source)
    rattler_build.assemble_package(
        PAYLOAD, "1.0.0", "linux-64", "h0_0", channel / "linux-64", files_dir=files,
        compression_level=1, detect_prefix=False, license="MIT",
    )  # fmt: skip


def prepare(root: Path, megabytes: int) -> Path:
    channel = root / "channel" / "gpu-forge"
    write_extra_packages(channel)
    payload_package(channel, root / "work", megabytes)
    build_channel(channel, gpu_stack_packages())
    workspace = write_workspace(root / "ws", channel.as_uri())
    manifest = workspace / "pixi.toml"
    manifest.write_text(
        manifest.read_text().replace('uv = "*"\n', f'uv = "*"\n{EXTRA_DEPENDENCIES}{PAYLOAD} = "*"\n', 1)
    )
    add_repository_files(workspace)
    return lock_and_export(workspace, generate=True)


def build(workspace: Path, flavor: str, base: Path, cache: Path, compression: Compression) -> OciBuildResult:
    output = cache.parent / "image.tar"
    return build_oci_image(
        load_workspace(workspace), flavor, base, output, cache_dir=cache, source_date_epoch=0, compression=compression
    )


def mb(size: float) -> str:
    return f"{size / 1e6:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavor", default="pytorch")
    parser.add_argument("--payload-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--compression", choices=[c.value for c in Compression], default=Compression.zstd.value)
    parser.add_argument("--realistic", action="store_true", help="both flavors of pixi.lock at real size")
    parser.add_argument("--scale", type=float, default=1.0, help="--realistic: scale every package's size")
    parser.add_argument("--work", type=Path, help="--realistic: working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="--realistic: keep the synthetic channel in --work")
    options = parser.parse_args()
    compression = Compression(options.compression)
    if options.realistic:
        from oci_realistic import run_realistic

        run_realistic(options.work, options.scale, options.keep, compression)
        return
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        workspace = prepare(root, options.payload_mb)
        base = make_rootfs(root / "base.tar")
        cold: list[float] = []
        warm: list[float] = []
        results: list[OciBuildResult] = []
        for number in range(options.repeat):
            cache = root / f"cache-{number}"
            for times in (cold, warm):
                start = time.perf_counter()
                results.append(build(workspace, options.flavor, base, cache, compression))
                times.append(time.perf_counter() - start)
        digests = {result.manifest_digest for result in results}
        last = results[-1]
        print(f"OCI image of '{options.flavor}' (fixture channel + {options.payload_mb} MB payload package, "
              f"{compression.value} layers), "
              f"{options.repeat} cold + {options.repeat} warm builds")  # fmt: skip
        print()
        print("| build | median s | min s | max s |")
        print("|---|---:|---:|---:|")
        for name, times in (("cold (empty package cache)", cold), ("warm (cache filled)", warm)):
            print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")
        print()
        print("| what | MB |")
        print("|---|---:|")
        print(f"| environment on disk (regular files) | {mb(last.environment_size)} |")
        for layer in last.layers:
            print(f"| layer {layer.role} {layer.label} ({layer.media_type.rsplit('.', 1)[-1]}) | {mb(layer.size)} |")
        print(f"| image archive (OCI layout tar) | {mb(last.archive_size)} |")
        print()
        print(f"manifest {last.manifest_digest}: {'the same for every build' if len(digests) == 1 else 'DIFFERS'}")
        if len(digests) != 1:
            sys.exit(1)


if __name__ == "__main__":
    main()
