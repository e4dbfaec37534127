"""The Docker path's split of the flavors (issue 12 point 2): envs/_shared/ and envs/<flavor>/<subdir>.own.explicit.

Checked against the whole-flavor exports written by the same `export`, read back with
conda-lock and the audit's reader, not against lists written here: the shared export holds
exactly what both flavors lock with the same sha256 (a `noarch: python` package only with the
same python), each own export the rest of its flavor, every package once, dependencies first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cli.audit.readers import read_snapshot
from cli.lockengine.manifest import load_workspace
from cli.lockengine.sharing import shared_identities
from tests.images.conftest import cli
from tests.oci.conftest import write_entry_point_package
from tests.support.channel import FakePackage, build_channel, gpu_stack_packages, host_python
from tests.support.workspace import add_image_files, lock_and_export, write_workspace

FLAVORS = ("pytorch", "tensorflow")
URL_LINE = re.compile(r"^(?P<url>\S+)#sha256:(?P<sha256>[0-9a-f]{64})$")


def listed(path: Path) -> list[tuple[str, str]]:
    """(url, sha256) of every package line of an @EXPLICIT file written by the split, in order."""
    lines = path.read_text().splitlines()
    assert "@EXPLICIT" in lines
    packages = []
    for line in lines[lines.index("@EXPLICIT") + 1 :]:
        match = URL_LINE.match(line)
        assert match, line  # every package carries its sha256, as CEP 23 writes it
        packages.append((match["url"], match["sha256"]))
    return packages


def locked(workspace: Path, flavor: str) -> dict[str, dict[str, object]]:
    """The flavor's whole conda-lock.yml export, by URL."""
    document = yaml.safe_load((workspace / "envs" / flavor / "conda-lock.yml").read_text())
    return {p["url"]: p for p in document["package"] if p["manager"] == "conda"}


def name_of(url: str) -> str:
    return url.rsplit("/", 1)[1].rsplit("-", 2)[0]


def in_dependency_order(packages: list[tuple[str, str]], lock: dict[str, dict[str, object]]) -> bool:
    seen: set[str] = set()
    names = {name_of(url) for url, _ in packages}
    for url, _ in packages:
        depends = lock[url]["dependencies"]
        assert isinstance(depends, dict)
        if any(dep in names and dep not in seen for dep in depends):
            return False
        seen.add(name_of(url))
    return True


def test_shared_and_own_partition_each_flavor(locked_workspace: Path) -> None:
    envs = locked_workspace / "envs"
    shared = listed(envs / "_shared" / "linux-64.explicit")
    whole = {flavor: {(url, str(p["hash"]["sha256"])) for url, p in locked(locked_workspace, flavor).items()}  # type: ignore[index]
             for flavor in FLAVORS}  # fmt: skip
    assert set(shared) == whole["pytorch"] & whole["tensorflow"]  # this channel has no noarch: python package
    assert {name_of(url) for url, _ in shared} == {"cuda-version", "cudnn", "numpy", "python", "uv"}
    for flavor in FLAVORS:
        own = listed(envs / flavor / "linux-64.own.explicit")
        assert set(own) == whole[flavor] - set(shared) and len(own) == len(set(own))
        assert in_dependency_order(own, locked(locked_workspace, flavor)), flavor
        # The audit's reader (which `audit lock` uses) reads the same packages back.
        (environment,) = read_snapshot(envs / flavor / "linux-64.own.explicit").packages
        assert environment == flavor
    assert in_dependency_order(shared, locked(locked_workspace, "pytorch"))
    assert [name_of(url) for url, _ in shared].index("python") < [name_of(url) for url, _ in shared].index("numpy")


def test_the_split_follows_the_one_rule_of_the_layer_plan(locked_workspace: Path) -> None:
    from cli.lockengine.lockfile import locked_records

    workspace = load_workspace(locked_workspace)
    records = {flavor: locked_records(workspace, flavor, "linux-64") for flavor in FLAVORS}
    identities = shared_identities(records)
    shared = {sha for _, sha in listed(locked_workspace / "envs" / "_shared" / "linux-64.explicit")}
    assert shared == identities  # no noarch: python here, so an identity is the sha256


@pytest.fixture(scope="module")
def two_pythons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flavors `a` and `b` on two python builds, both with numpy and the noarch: python `entry-tool`."""
    channel = tmp_path_factory.mktemp("two-pythons") / "forge"
    write_entry_point_package(channel)
    other_python = FakePackage("python", "3.12.1", "h0_0_cpython", license="Python-2.0",
                               files={"lib/python3.12/os.txt": "another stdlib marker\n"},
                               symlinks={"bin/python": host_python()})  # fmt: skip
    build_channel(channel, [*gpu_stack_packages(), other_python])
    root = write_workspace(tmp_path_factory.mktemp("two-pythons-ws") / "ws", channel.as_uri(), flavors=("a", "b"))
    (root / "pixi.toml").write_text(
        f'[workspace]\nname = "two-pythons"\nversion = "0.1.0"\nchannels = ["{channel.as_uri()}"]\n'
        'platforms = ["linux-64"]\n\n'
        '[feature.a.dependencies]\npython = "==3.12.0"\nnumpy = "*"\nentry-tool = "*"\n\n'
        '[feature.b.dependencies]\npython = "==3.12.1"\nnumpy = "*"\nentry-tool = "*"\n\n'
        '[environments]\na = ["a"]\nb = ["b"]\n'
    )
    return lock_and_export(root)


def test_a_noarch_python_package_is_shared_only_with_the_same_python(two_pythons: Path) -> None:
    envs = two_pythons / "envs"
    entry = {url for url, _ in listed(envs / "a" / "linux-64.own.explicit") if name_of(url) == "entry-tool"}
    assert entry == {url for url, _ in listed(envs / "b" / "linux-64.own.explicit") if name_of(url) == "entry-tool"}
    assert entry  # the same archive in both flavors, yet each installs it: its files are its python's
    shared = {name_of(url) for url, _ in listed(envs / "_shared" / "linux-64.explicit")}
    assert "numpy" in shared and not shared & {"python", "entry-tool"}


def test_one_flavor_shares_with_nobody(tmp_path: Path, gpu_channel: Path) -> None:
    root = write_workspace(tmp_path / "ws", gpu_channel.as_uri(), flavors=("pytorch",))
    manifest = root / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('tensorflow = ["tensorflow", "cuda", "runner"]\n', ""))
    lock_and_export(root)
    assert listed(root / "envs" / "_shared" / "linux-64.explicit") == []  # the stage's environment starts empty
    everything = {(url, str(p["hash"]["sha256"])) for url, p in locked(root, "pytorch").items()}  # type: ignore[index]
    assert set(listed(root / "envs" / "pytorch" / "linux-64.own.explicit")) == everything


def test_stale_or_missing_split_exports_are_found_with_the_package(locked_workspace: Path) -> None:
    own = locked_workspace / "envs" / "tensorflow" / "linux-64.own.explicit"
    own.write_text("\n".join(line for line in own.read_text().splitlines() if "/tensorflow-" not in line) + "\n")
    (locked_workspace / "envs" / "_shared" / "linux-64.explicit").unlink()
    check = cli("export", "--check", "--manifest-path", locked_workspace)
    assert check.returncode == 1
    assert "envs/_shared/linux-64.explicit: missing" in check.stdout
    assert "envs/tensorflow/linux-64.own.explicit: differs from pixi.lock" in check.stdout
    audit = cli("audit", "lock", "--json", "--manifest-path", locked_workspace)
    assert audit.returncode == 1, audit.stderr
    findings = {f["subject"]: f for f in json.loads(audit.stdout)["exports"]}
    assert set(findings) == {"envs/_shared/linux-64.explicit", "envs/tensorflow/linux-64.own.explicit"}
    assert {f["check"] for f in findings.values()} == {"export-stale"}  # envs/_shared/ is no orphan
    detail = findings["envs/tensorflow/linux-64.own.explicit"]["detail"]
    assert "tensorflow [linux-64]: 2.17.0 cuda120py312_h6_202 in pixi.lock, absent in the export" in detail
    rewrite = cli("export", "--manifest-path", locked_workspace)
    assert rewrite.returncode == 0, rewrite.stderr
    assert "wrote envs/_shared/linux-64.explicit" in rewrite.stdout
    assert cli("export", "--check", "--manifest-path", locked_workspace).returncode == 0


def test_exporting_one_flavor_writes_the_shared_export_and_its_own(workspace: Path) -> None:
    lock = cli("lock", "--manifest-path", workspace)
    assert lock.returncode == 0, lock.stderr
    done = cli("export", "pytorch", "--manifest-path", workspace)
    assert done.returncode == 0, done.stderr
    assert (workspace / "envs" / "_shared" / "linux-64.explicit").is_file()
    assert (workspace / "envs" / "pytorch" / "linux-64.own.explicit").is_file()
    assert not (workspace / "envs" / "tensorflow").exists()
    # What is shared is decided over every flavor, whichever are exported.
    names = {name_of(url) for url, _ in listed(workspace / "envs" / "_shared" / "linux-64.explicit")}
    assert "pytorch" not in names and "cudnn" in names


def test_a_build_refuses_a_stale_split_export(locked_workspace: Path) -> None:
    add_image_files(locked_workspace)
    assert cli("generate", "--manifest-path", locked_workspace).returncode == 0
    assert cli("build", "all", "--dry-run", "--manifest-path", locked_workspace).returncode == 0
    own = locked_workspace / "envs" / "pytorch" / "linux-64.own.explicit"
    own.write_text(own.read_text().replace("#sha256:", "#sha256:0", 1))
    done = cli("build", "all", "--dry-run", "--manifest-path", locked_workspace)
    assert done.returncode == 2 and "refusing to build: 1 stale input(s)" in done.stderr
    assert "envs/pytorch/linux-64.own.explicit: differs from pixi.lock" in done.stderr
    (locked_workspace / "flavors" / "Dockerfile.shared").unlink()
    missing = cli("build", "pytorch", "--dry-run", "--manifest-path", locked_workspace)
    assert f"{locked_workspace / 'flavors' / 'Dockerfile.shared'}: missing" in missing.stderr
