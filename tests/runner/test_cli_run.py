"""`python -m cli run FLAVOR --input DIR --output DIR [--python PATH | --prefix DIR]`: the image's runner, locally."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.runner.conftest import REPO, BaseEnv, Job
from tests.support.workspace import write_workspace


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    """A workspace with pytorch and tensorflow flavors (nothing locked or installed: `run` only checks the name)."""
    return write_workspace(tmp_path / "ws", "conda-forge")


def cli_run(manifest: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli", "run", "--manifest-path", str(manifest), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_run_with_python(job: Job, manifest: Path, runner_env: dict[str, str], base_env: BaseEnv) -> None:
    job.write(
        "main.py",
        """\
        import importlib.util, os, sys
        open(os.path.join(os.environ["OUTPUT_2"], "out.txt"), "w").write(sys.executable)
        visible = [name for name in ("runner", "cli") if importlib.util.find_spec(name) is not None]
        print("importable:", visible)
        """,
    )
    result = cli_run(
        manifest,
        runner_env,
        "pytorch",
        "--input",
        str(job.input_folder),
        "--output",
        str(job.output_folder),
        "--python",
        str(base_env.python),
    )
    assert result.returncode == 0, result.stderr
    assert "importable: []" in result.stdout
    with zipfile.ZipFile(job.output_folder / "output_2.zip") as bundle:
        assert bundle.read("out.txt").decode() == str(base_env.python)
    assert json.loads((job.output_folder / "logs" / "run.json").read_text())["status"] == "succeeded"


def test_exit_status_and_setup_failures_pass_through(
    job: Job, manifest: Path, runner_env: dict[str, str], base_env: BaseEnv
) -> None:
    args = [
        "pytorch",
        "--input",
        str(job.input_folder),
        "--output",
        str(job.output_folder),
        "--python",
        str(base_env.python),
    ]
    job.write("main.py", "raise SystemExit(7)\n")
    assert cli_run(manifest, runner_env, *args).returncode == 7
    (job.code / "main.py").rename(job.code / "first.py")
    job.write("second.py", "")
    result = cli_run(manifest, runner_env, *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("runner: error: 2 Python files and no main.py")


def test_run_options_reach_the_runner(
    job: Job, manifest: Path, runner_env: dict[str, str], base_env: BaseEnv, tmp_path: Path
) -> None:
    job.write("main.py", "raise SystemExit('not this one')\n")
    job.write("tool.py", "import basepkg, sys\nprint('basepkg', basepkg.VERSION, sys.argv[1:])\n")
    job.write("requirements.txt", "basepkg==2.0\n")
    cache = tmp_path / "cli-cache"
    result = cli_run(
        manifest,
        runner_env,
        "tensorflow",
        "--input",
        str(job.input_folder),
        "--output",
        str(job.output_folder),
        "--python",
        str(base_env.python),
        "--entrypoint",
        "tool.py",
        "--overlay-policy",
        "override",
        "--cache-dir",
        str(cache),
        "--",
        "x",
        "--flag",
    )
    assert result.returncode == 0, result.stderr
    assert "basepkg 2.0 ['x', '--flag']" in result.stdout
    assert list((cache / "overlays").iterdir())


def test_run_with_prefix(job: Job, manifest: Path, runner_env: dict[str, str], tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    job.write("main.py", "print('from the prefix')\n")
    result = cli_run(
        manifest,
        runner_env,
        "pytorch",
        "-i",
        str(job.input_folder),
        "-o",
        str(job.output_folder),
        "--prefix",
        str(prefix),
    )
    assert result.returncode == 0, result.stderr
    assert "from the prefix" in result.stdout


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        (
            ["--prefix", "{tmp}/empty"],
            {},
            "no bin/python in this prefix (install the flavor first: python -m cli install pytorch",
        ),
        (["--python", "{tmp}/nothing/python"], {}, "not an executable Python"),
        ([], {"PIXI_ENVIRONMENT_NAME": "tensorflow"}, "this shell is pixi environment 'tensorflow', not 'pytorch'"),
        (["--prefix", "{tmp}", "--python", "python3"], {}, "--python and --prefix both given"),
    ],
)
def test_bad_environment_choices(
    job: Job,
    manifest: Path,
    runner_env: dict[str, str],
    tmp_path: Path,
    extra: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    (tmp_path / "empty").mkdir()
    job.write("main.py", "")
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    result = cli_run(
        manifest, {**runner_env, **env}, "pytorch", "-i", str(job.input_folder), "-o", str(job.output_folder), *args
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_flavor_and_missing_input(job: Job, manifest: Path, runner_env: dict[str, str]) -> None:
    result = cli_run(manifest, runner_env, "jax", "-i", str(job.input_folder), "-o", str(job.output_folder))
    assert result.returncode == 2 and "unknown flavor 'jax'" in result.stderr
    result = cli_run(manifest, runner_env, "pytorch", "-i", str(job.root / "nowhere"), "-o", str(job.output_folder))
    assert result.returncode == 2 and "no such input folder" in result.stderr


def test_current_python_inside_the_flavors_pixi_shell(job: Job, manifest: Path, runner_env: dict[str, str]) -> None:
    job.write("main.py", "import sys\nprint(sys.executable)\n")
    result = cli_run(
        manifest,
        {**runner_env, "PIXI_ENVIRONMENT_NAME": "pytorch"},
        "pytorch",
        "-i",
        str(job.input_folder),
        "-o",
        str(job.output_folder),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sys.executable
