"""`python -m cli run FLAVOR --output DIR (--input DIR | --port KEY=FILE …) [--python PATH | --prefix DIR]`."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.runner.conftest import REPO, BaseEnv, Job
from tests.support.workspace import write_workspace


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    """A workspace with pytorch and tensorflow flavors (nothing locked or installed: `run` only reads flavors/)."""
    return write_workspace(tmp_path / "ws", "conda-forge")


def cli_run(
    manifest: Path | None, env: dict[str, str], *args: str, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    where = ["--manifest-path", str(manifest)] if manifest is not None else []
    command = [sys.executable, "-m", "cli", "run", *where, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def folders(job: Job) -> list[str]:
    return ["-i", str(job.input_folder), "-o", str(job.output_folder)]


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


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
    result = cli_run(manifest, runner_env, "pytorch", *folders(job), "--python", str(base_env.python))
    assert result.returncode == 0, result.stderr
    assert "importable: []" in result.stdout
    with zipfile.ZipFile(job.output_folder / "output_2.zip") as bundle:
        assert bundle.read("out.txt").decode() == str(base_env.python)
    assert json.loads((job.output_folder / "logs" / "run.json").read_text())["status"] == "succeeded"
    # the output ports of the flavor's metadata, as the backend reads them
    assert "output output_1: output_1.zip (22 bytes)" in result.stderr
    assert "output output_2: output_2.zip" in result.stderr


def test_exit_status_and_setup_failures_pass_through(
    job: Job, manifest: Path, runner_env: dict[str, str], base_env: BaseEnv
) -> None:
    args = ["pytorch", *folders(job), "--python", str(base_env.python)]
    job.write("main.py", "raise SystemExit(7)\n")
    assert cli_run(manifest, runner_env, *args).returncode == 7
    (job.code / "main.py").rename(job.code / "first.py")
    job.write("second.py", "")
    refused = cli_run(manifest, runner_env, *args)
    assert refused.returncode == 2
    assert last_line(refused).startswith("error: runner: OUTPUT_FOLDER")
    assert "already holds files from an earlier run" in last_line(refused)
    result = cli_run(manifest, runner_env, *args, "--clean-outputs")
    assert result.returncode == 2
    assert last_line(result).startswith("error: runner: 2 Python files and no main.py")


def test_run_options_reach_the_runner(
    job: Job, manifest: Path, runner_env: dict[str, str], base_env: BaseEnv, tmp_path: Path
) -> None:
    job.write("main.py", "raise SystemExit('not this one')\n")
    job.write("tool.py", "import basepkg, sys\nprint('basepkg', basepkg.VERSION, sys.argv[1:])\n")
    job.write("requirements.txt", "basepkg==2.0\n")
    cache = tmp_path / "cli-cache"
    logs = tmp_path / "logs"
    result = cli_run(
        manifest,
        runner_env,
        "tensorflow",
        *folders(job),
        "--python",
        str(base_env.python),
        "--entrypoint",
        "tool.py",
        "--overlay-policy",
        "override",
        "--cache-dir",
        str(cache),
        "--logs",
        str(logs),
        "--",
        "x",
        "--flag",
    )
    assert result.returncode == 0, result.stderr
    assert "basepkg 2.0 ['x', '--flag']" in result.stdout
    assert list((cache / "overlays").iterdir())
    assert (logs / "run.json").is_file() and not (job.output_folder / "logs").exists()


def test_run_with_prefix(job: Job, manifest: Path, runner_env: dict[str, str], tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    job.write("main.py", "print('from the prefix')\n")
    result = cli_run(manifest, runner_env, "pytorch", *folders(job), "--prefix", str(prefix))
    assert result.returncode == 0, result.stderr
    assert "from the prefix" in result.stdout


# --- which environment: .pixi/envs/FLAVOR, then .envs/FLAVOR, never the CLI's own -----------------------------------

PREFIX_SCRIPT = "import sys, basepkg\nprint('prefix', sys.prefix, 'basepkg', basepkg.VERSION)\n"


def link_environment(manifest: Path, place: str, flavor: str, base_env: BaseEnv) -> Path:
    """An environment at the workspace's `place` (the test base venv, linked so that its pyvenv.cfg is found)."""
    prefix = manifest / place / flavor
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.symlink_to(base_env.root)
    return prefix


def test_no_environment_gives_both_ways_to_get_one(job: Job, manifest: Path, runner_env: dict[str, str]) -> None:
    job.write("main.py", "raise SystemExit('must not run')\n")
    result = cli_run(manifest, runner_env, "pytorch", *folders(job))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {manifest}: no environment for flavor 'pytorch' at {manifest}/.pixi/envs/pytorch")
    assert "`pixi install -e pytorch`" in line and "`python -m cli install pytorch` (into .envs/pytorch)" in line
    assert "--python" in line
    assert not job.output_folder.exists()


@pytest.mark.parametrize(("places", "used"), [([".envs"], ".envs"), ([".envs", ".pixi/envs"], ".pixi/envs")])
def test_the_flavors_environment_is_found(
    job: Job, manifest: Path, runner_env: dict[str, str], base_env: BaseEnv, places: list[str], used: str
) -> None:
    prefixes = {place: link_environment(manifest, place, "pytorch", base_env) for place in places}
    link_environment(manifest, ".pixi/envs", "tensorflow", base_env)  # another flavor's is never taken
    job.write("main.py", PREFIX_SCRIPT)
    result = cli_run(manifest, runner_env, "pytorch", *folders(job))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["prefix", str(prefixes[used]), "basepkg", "1.0"]
    run = json.loads((job.output_folder / "logs" / "run.json").read_text())
    assert run["python"] == str(prefixes[used] / "bin" / "python")


def test_python_runs_without_a_pixi_toml(job: Job, runner_env: dict[str, str], base_env: BaseEnv, tmp_path: Path):
    elsewhere = tmp_path / "no-workspace"
    elsewhere.mkdir()
    job.write("main.py", PREFIX_SCRIPT)
    result = cli_run(None, runner_env, "pytorch", *folders(job), "--python", str(base_env.python), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "basepkg 1.0" in result.stdout
    without = cli_run(
        None, runner_env, "pytorch", "-i", str(job.input_folder), "-o", str(tmp_path / "o"), cwd=elsewhere
    )
    ported = cli_run(
        None, runner_env, "pytorch", "--port", f"input_1={job.code / 'main.py'}", "-o", str(tmp_path / "o"),
        "--python", str(base_env.python), cwd=elsewhere,
    )  # fmt: skip
    for refused in (without, ported):  # one check, one message: the ports are the flavor's, read from its workspace
        assert refused.returncode == 2
        assert refused.stderr.strip() == (
            f"error: {elsewhere}: no pixi.toml in this folder or above "
            "(run from the workspace root or pass --manifest-path; only --python with --input runs without one)"
        )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--prefix", "{tmp}/empty"], "no bin/python in this prefix (install the flavor first: python -m cli install"),
        (["--python", "{tmp}/nothing/python"], "not an executable Python"),
        (["--prefix", "{tmp}", "--python", "python3"], "--python and --prefix both given"),
        (["--port", "input_1={tmp}/x"], "give the inputs either as --input DIR or as --port KEY=FILE"),
    ],
)
def test_bad_environment_choices(
    job: Job, manifest: Path, runner_env: dict[str, str], tmp_path: Path, extra: list[str], expected: str
) -> None:
    (tmp_path / "empty").mkdir()
    job.write("main.py", "")
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    result = cli_run(manifest, runner_env, "pytorch", *folders(job), *args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_flavor_and_missing_input(job: Job, manifest: Path, runner_env: dict[str, str]) -> None:
    result = cli_run(manifest, runner_env, "jax", *folders(job))
    assert result.returncode == 2 and "unknown flavor 'jax'" in result.stderr
    result = cli_run(manifest, runner_env, "pytorch", "-i", str(job.root / "nowhere"), "-o", str(job.output_folder))
    assert result.returncode == 2 and "no such input folder" in result.stderr


# --- the flavor's runtime.yml environment ----------------------------------------------------------------------------


def test_the_flavors_environment_defaults_apply_and_the_callers_win(
    job: Job, manifest: Path, runner_env: dict[str, str], base_env: BaseEnv
) -> None:
    runtime = manifest / "flavors" / "tensorflow" / "runtime.yml"
    document = yaml.safe_load(runtime.read_text())
    document["environment"] = {"TF_FORCE_GPU_ALLOW_GROWTH": True, "FLAVOR_LEVEL": 3}
    runtime.write_text(yaml.safe_dump(document))
    job.write("main.py", "import os\nprint(os.environ['TF_FORCE_GPU_ALLOW_GROWTH'], os.environ['FLAVOR_LEVEL'])\n")
    args = ["tensorflow", *folders(job), "--python", str(base_env.python), "--clean-outputs"]
    assert cli_run(manifest, runner_env, *args).stdout.split() == ["true", "3"]
    assert cli_run(manifest, {**runner_env, "FLAVOR_LEVEL": "9"}, *args).stdout.split() == ["true", "9"]
    pytorch = cli_run(manifest, runner_env, "pytorch", *args[1:])
    assert "KeyError" in pytorch.stderr  # the defaults are tensorflow's only
    document["environment"] = ["TF_FORCE_GPU_ALLOW_GROWTH=true"]
    runtime.write_text(yaml.safe_dump(document))
    result = cli_run(manifest, runner_env, *args)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {runtime}: 'environment' is not a mapping (write it as NAME: value lines)"


# --- inputs staged and outputs read as oSPARC's backend does ---------------------------------------------------------

STAGED_SCRIPT = """\
import json, os
from pathlib import Path

folder = Path(os.environ["INPUT_FOLDER"])
print("listing", sorted(p.name for p in folder.iterdir()))
print("INPUT_2 is INPUT_FOLDER", os.environ["INPUT_2"] == str(folder))
print("values", json.loads((folder / "inputs.json").read_text()))
print("helper", __import__("helper").X, (folder / "settings.json").read_text())
(Path(os.environ["OUTPUT_2"]) / "result.csv").write_text("x,y\\n")
"""


@pytest.fixture()
def ported(manifest: Path, tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """The pytorch flavor with ports of every kind the backend treats apart, and a file for each."""
    metadata_path = manifest / "flavors" / "pytorch" / "metadata.yml"
    metadata = yaml.safe_load(metadata_path.read_text())
    port = {"label": "In", "description": "A port"}
    metadata["inputs"] = {
        "input_1": {**port, "displayOrder": 1, "type": "data:*/*"},
        "input_2": {**port, "displayOrder": 2, "type": "data:*/*"},
        "input_3": {**port, "displayOrder": 3, "type": "data:application/zip"},
        "input_4": {**port, "displayOrder": 4, "type": "number"},
        "input_5": {**port, "displayOrder": 5, "type": "data:*/*", "fileToKeyMap": {"settings.json": "input_5"}},
    }
    metadata_path.write_text(yaml.safe_dump(metadata, sort_keys=False))
    files = tmp_path / "files"
    files.mkdir()
    code = files / "code.zip"
    with zipfile.ZipFile(code, "w") as bundle:
        bundle.writestr("main.py", STAGED_SCRIPT)
        bundle.writestr("helper.py", "X = 42\n")
    (files / "data.csv").write_text("a,b\n")
    with zipfile.ZipFile(files / "archive.zip", "w") as bundle:
        bundle.writestr("kept.txt", "a zip kept as a zip\n")
    (files / "my-settings.json").write_text('{"lr": 0.1}')
    return manifest, {"code": code, "data": files / "data.csv", "archive": files / "archive.zip"}


def port_args(files: dict[str, Path], settings: Path | None = None) -> list[str]:
    settings = settings or files["code"].with_name("my-settings.json")
    given = {
        "input_1": files["code"],
        "input_2": files["data"],
        "input_3": files["archive"],
        "input_4": "2.5",
        "input_5": settings,
    }
    return [argument for key, value in given.items() for argument in ("--port", f"{key}={value}")]


def test_ports_are_staged_and_read_as_the_backend_does(
    ported: tuple[Path, dict[str, Path]], runner_env: dict[str, str], base_env: BaseEnv, tmp_path: Path
) -> None:
    manifest, files = ported
    staging = tmp_path / "staged"
    common = ["pytorch", "--python", str(base_env.python), *port_args(files)]
    output = ["-o", str(tmp_path / "out")]
    result = cli_run(manifest, runner_env, *common, *output, "--staging", str(staging))
    assert result.returncode == 0, result.stderr
    listing = ["archive.zip", "data.csv", "helper.py", "inputs.json", "main.py", "settings.json"]
    assert result.stdout.splitlines() == [
        f"listing {listing}",
        "INPUT_2 is INPUT_FOLDER True",
        "values {'input_4': 2.5}",
        'helper 42 {"lr": 0.1}',
    ]
    assert sorted(p.name for p in staging.iterdir()) == listing
    assert f"input input_1: {files['code']} -> unpacked flat: 2 files" in result.stderr
    assert "input input_5: " in result.stderr and "-> settings.json" in result.stderr
    assert "output output_2: output_2.zip (" in result.stderr
    with zipfile.ZipFile(tmp_path / "out" / "output_2.zip") as bundle:
        assert bundle.read("result.csv") == b"x,y\n"


def test_a_missing_output_port_fails_the_local_run_as_it_would_fail_the_job(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a runner that lost an output gets here: metadata.yml may declare no port the runner does not write."""
    from cli.flavors import get_flavor
    from cli.local_run import report_outputs
    from cli.lockengine.manifest import load_workspace

    flavor = get_flavor(load_workspace(manifest), "pytorch")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "output_1.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: 22 bytes
    assert report_outputs(flavor, outputs) == 4
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "output output_1: output_1.zip (22 bytes)"
    assert lines[-1] == (
        f"error: {outputs}: output port(s) output_2 (output_2.zip) missing: oSPARC would fail this job "
        "(write them, or give the ports a default in metadata.yml)"
    )


def test_a_zip_on_a_port_with_a_file_map_is_refused_as_the_backend_does(
    ported: tuple[Path, dict[str, Path]], runner_env: dict[str, str], base_env: BaseEnv, tmp_path: Path
) -> None:
    manifest, files = ported
    args = ["pytorch", "-o", str(tmp_path / "out"), "--python", str(base_env.python)]
    result = cli_run(manifest, runner_env, *args, *port_args(files, settings=files["archive"]))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "input port 'input_5' has a fileToKeyMap (settings.json) and gets a zip: oSPARC refuses this" in line
    unknown = cli_run(manifest, runner_env, *args, "--port", f"input_9={files['data']}")
    assert unknown.returncode == 2 and "no input port 'input_9'" in unknown.stderr
