"""`cli export`: conda-lock v1 and @EXPLICIT files, derived from pixi.lock only, byte-stable."""

from __future__ import annotations

import hashlib
from pathlib import Path

from conda_lock.lockfile import parse_conda_lock_file
from rattler.explicit_environment import ExplicitEnvironmentSpec

from tests.support.cli import error_line, run_cli
from tests.support.locks import lock_records


def locked(workspace: Path, environment: str) -> dict[str, tuple[str, str, str]]:
    return {
        name: (str(r.version), r.url, r.sha256.hex() if r.sha256 else "")
        for name, r in lock_records(workspace / "pixi.lock", environment).items()
    }


def test_exports_read_back_with_conda_lock_and_rattler(workspace: Path) -> None:
    assert run_cli("lock", cwd=workspace).returncode == 0
    result = run_cli("export", cwd=workspace)
    assert result.returncode == 0, result.stderr
    for flavor in ("pytorch", "tensorflow"):
        expected = locked(workspace, flavor)
        conda_lock = parse_conda_lock_file(workspace / "envs" / flavor / "conda-lock.yml")
        assert conda_lock.metadata.platforms == ["linux-64"]
        assert conda_lock.metadata.channels and conda_lock.metadata.content_hash["linux-64"]
        assert {p.name: (p.version, p.url, p.hash.sha256) for p in conda_lock.package} == expected
        assert all(p.hash.md5 and p.manager == "conda" for p in conda_lock.package)

        explicit = ExplicitEnvironmentSpec.from_path(workspace / "envs" / flavor / "linux-64.explicit")
        urls = [entry.url.split("#")[0] for entry in explicit.packages]
        assert sorted(urls) == sorted(url for _, url, _ in expected.values())
        # dependency order: python before anything that depends on it
        names = [Path(url).name for url in urls]
        python_at = next(i for i, n in enumerate(names) if n.startswith("python-"))
        flavor_at = next(i for i, n in enumerate(names) if n.startswith(f"{flavor}-"))
        assert python_at < flavor_at


def test_exports_are_byte_stable_and_record_their_source(workspace: Path) -> None:
    assert run_cli("lock", cwd=workspace).returncode == 0
    assert run_cli("export", cwd=workspace).returncode == 0
    files = sorted((workspace / "envs").rglob("*"))
    first = {p: p.read_bytes() for p in files if p.is_file()}
    for path in first:
        path.unlink()
    assert run_cli("export", cwd=workspace).returncode == 0
    assert {p: p.read_bytes() for p in first} == first
    header = (workspace / "envs" / "pytorch" / "conda-lock.yml").read_text().splitlines()[1]
    assert header.startswith("# pixi-lock-environment-sha256: ")
    assert len(header.split()[-1]) == len(hashlib.sha256().hexdigest())


def test_export_check_finds_an_edited_export_and_a_relock(workspace: Path) -> None:
    assert run_cli("lock", cwd=workspace).returncode == 0
    assert run_cli("export", cwd=workspace).returncode == 0
    assert run_cli("export", "--check", cwd=workspace).returncode == 0
    explicit = workspace / "envs" / "tensorflow" / "linux-64.explicit"
    explicit.write_text(explicit.read_text() + "# edited\n")
    check = run_cli("export", "--check", cwd=workspace)
    assert check.returncode == 1 and "linux-64.explicit: differs from pixi.lock" in check.stdout
    assert run_cli("export", cwd=workspace).returncode == 0
    manifest = workspace / "pixi.toml"
    manifest.write_text(
        manifest.read_text().replace('version = "*", build = "cuda*" }', 'version = "2.4.*", build = "cuda*" }', 1)
    )
    assert run_cli("lock", cwd=workspace).returncode == 0
    check = run_cli("export", "--check", cwd=workspace)
    assert check.returncode == 1 and "envs/pytorch/conda-lock.yml" in check.stdout
    assert "envs/tensorflow" not in check.stdout  # an unrelated flavor's export stays fresh


def test_a_package_without_a_hash_is_one_line_and_exit_2(locked_workspace: Path) -> None:
    """conda-lock needs a hash per package: refused with the package named, not a pydantic traceback."""
    lock = locked_workspace / "pixi.lock"
    lines = lock.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("- conda: ") and "/cudnn-" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("- "))
    lock.write_text(
        "".join(
            lines[:start] + [x for x in lines[start:end] if not x.startswith(("  sha256:", "  md5:"))] + lines[end:]
        )
    )
    before = {p: p.read_bytes() for p in (locked_workspace / "envs").rglob("*") if p.is_file()}
    result = run_cli("export", cwd=locked_workspace)
    assert result.returncode == 2
    line = error_line(result)
    assert "cudnn-9.1.0-h1_0.conda" in line and "has no sha256 or md5" in line
    assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in before} == before  # nothing half-written


def test_named_platforms_are_written_as_their_subdir(locked_workspace: Path) -> None:
    """The fixture's CUDA platform is pixi's `linux-64-cuda-12` (`p1` in the lock); conda tools see linux-64."""
    assert "- name: p1\n  subdir: linux-64\n" in (locked_workspace / "pixi.lock").read_text()
    explicit = (locked_workspace / "envs" / "pytorch" / "linux-64.explicit").read_text()
    assert "# platform: linux-64\n" in explicit
    conda_lock = (locked_workspace / "envs" / "pytorch" / "conda-lock.yml").read_text()
    assert "platform: linux-64\n" in conda_lock and "p1" not in conda_lock and "cuda-12" not in conda_lock
