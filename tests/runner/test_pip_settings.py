"""A user's pip settings reach the overlay (mapped to uv) or are refused in one line; run.json records the sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.errors import OverlayError
from runner.pip_settings import configuration_files, read_pip_settings
from runner.requirements import read_requirements
from runner.sources import redact, resolve_sources
from runner.uv import Uv
from tests.runner.conftest import Job, RunJob, UvRecorder, error_line

SCRIPT = "import userpkg\nprint('userpkg imported')\n"


def sources_of(job: Job) -> dict[str, object]:
    return job.summary()["overlay"]["sources"]  # type: ignore[index,no-any-return]


def test_pip_index_url_is_honoured_and_recorded(job: Job, run_job: RunJob, simple_index: Path) -> None:
    job.write("requirements.txt", "userpkg\n")
    job.write("main.py", SCRIPT)
    result = run_job(env={"UV_FIND_LINKS": "", "PIP_INDEX_URL": simple_index.as_uri()})
    assert result.returncode == 0, result.stderr
    assert "userpkg imported" in result.stdout
    assert sources_of(job)["index"] == {"url": simple_index.as_uri(), "from": "PIP_INDEX_URL"}
    assert f"packages from: index {simple_index.as_uri()} (PIP_INDEX_URL)" in result.stderr


def test_pip_extra_index_url_and_find_links_add_up(
    job: Job, run_job: RunJob, simple_index: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-links"
    empty.mkdir()
    job.write("requirements.txt", "userpkg\n")
    job.write("main.py", SCRIPT)
    env = {
        "UV_FIND_LINKS": "",
        "PIP_NO_INDEX": "false",
        "PIP_EXTRA_INDEX_URL": f"{simple_index.as_uri()} file:///nonexistent/simple",
        "PIP_FIND_LINKS": f"{empty} {wheelhouse}",
    }
    result = run_job(env=env)
    assert result.returncode == 0, result.stderr
    sources = sources_of(job)
    assert [x["url"] for x in sources["extra_indexes"]] == [simple_index.as_uri(), "file:///nonexistent/simple"]  # type: ignore[index,union-attr]
    assert [(x["url"], x["from"]) for x in sources["find_links"]] == [  # type: ignore[index,union-attr]
        (str(empty), "PIP_FIND_LINKS"),
        (str(wheelhouse), "PIP_FIND_LINKS"),
    ]


def test_a_pip_conf_file_is_honoured(job: Job, run_job: RunJob, wheelhouse: Path, tmp_path: Path) -> None:
    config = tmp_path / "pip.conf"
    config.write_text(
        f"[global]\nindex-url = file:///nonexistent/simple\nfind-links = {wheelhouse}\n[install]\nno-index = yes\n"
    )
    job.write("requirements.txt", "userpkg\n")
    job.write("main.py", SCRIPT)
    result = run_job(env={"UV_FIND_LINKS": "", "PIP_CONFIG_FILE": str(config)})
    assert result.returncode == 0, result.stderr
    sources = sources_of(job)
    assert sources["no_index"] == f"{config} [install]"
    assert sources["index"] is None
    assert sources["find_links"] == [{"url": str(wheelhouse), "from": f"{config} [global]"}]


def test_requirements_lines_and_uv_variables_come_first(
    job: Job, run_job: RunJob, simple_index: Path, wheelhouse: Path
) -> None:
    job.write("requirements.txt", f"--index-url {simple_index.as_uri()}\nuserpkg\n")
    job.write("main.py", SCRIPT)
    env = {"UV_DEFAULT_INDEX": "file:///uv/simple", "PIP_INDEX_URL": "file:///pip/simple", "UV_FIND_LINKS": ""}
    result = run_job(env=env)
    assert result.returncode == 0, result.stderr
    # A file: URL in requirements.txt is a local folder: read (in the image, from root's copy) and keyed by content.
    assert sources_of(job)["index"] == {"url": str(simple_index), "from": "requirements.txt --index-url"}


def test_a_setting_that_cannot_be_honoured_is_refused_in_one_line(
    job: Job, run_job: RunJob, uv_recorder: UvRecorder, tmp_path: Path
) -> None:
    config = tmp_path / "pip.conf"
    config.write_text("[install]\nuser = true\n")
    job.write("requirements.txt", "userpkg\n")
    job.write("main.py", SCRIPT)
    result = run_job(env={"PIP_NO_DEPS": "1", "PIP_CONFIG_FILE": str(config)})
    assert result.returncode == 3
    line = error_line(result)
    assert "pip setting(s) the overlay cannot honour" in line
    assert "PIP_NO_DEPS: no-deps" in line and f"{config} [install]: user" in line
    assert "PIP_CONFIG_FILE=/dev/null" in line
    assert uv_recorder.calls() == []


def test_settings_without_effect_are_named_not_dropped(job: Job, run_job: RunJob) -> None:
    job.write("requirements.txt", "userpkg\n")
    job.write("main.py", SCRIPT)
    result = run_job(env={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_COMPILE": "1", "PIP_SHINY": "x"})
    assert result.returncode == 0, result.stderr
    [line] = [x for x in result.stderr.splitlines() if "pip settings with no effect" in x]
    assert "disable-pip-version-check (PIP_DISABLE_PIP_VERSION_CHECK: pip's own behaviour)" in line
    assert "no-compile (PIP_NO_COMPILE: an overlay is always a fresh, byte-compiled install)" in line
    assert "shiny (PIP_SHINY: not a pip install option, pip ignores it too)" in line


def test_a_requirements_file_without_an_overlay_never_reads_pip_settings(
    job: Job, run_job: RunJob, tmp_path: Path
) -> None:
    """Settings matter only when something is installed: a base-satisfied file runs even with a refused one."""
    job.write("requirements.txt", "basepkg\n")
    job.write("main.py", "print('on the base')\n")
    result = run_job(env={"PIP_NO_DEPS": "1"})
    assert result.returncode == 0 and "on the base" in result.stdout


# --- reading pip's configuration as pip does ---------------------------------------------------------------------


@pytest.fixture()
def pip_home(tmp_path: Path) -> dict[str, str]:
    """An environment whose pip files all live under tmp_path (only /etc/pip.conf stays where pip looks)."""
    home, xdg, prefix = tmp_path / "home", tmp_path / "xdg", tmp_path / "prefix"
    for folder in (home / ".pip", home / ".config" / "pip", xdg / "pip", prefix):
        folder.mkdir(parents=True)
    (xdg / "pip" / "pip.conf").write_text("[global]\nindex-url = file:///global\ntimeout = 5\n")
    (home / ".pip" / "pip.conf").write_text("[global]\nindex-url = file:///legacy-user\n")
    (home / ".config" / "pip" / "pip.conf").write_text("[global]\nindex-url = file:///user\nretries = 2\n")
    (prefix / "pip.conf").write_text("[global]\nfind-links = ./wheels\n[install]\ntimeout = 9\n[freeze]\nall = yes\n")
    return {"HOME": str(home), "XDG_CONFIG_DIRS": str(xdg), "XDG_CONFIG_HOME": str(home / ".config")}


def test_files_are_read_in_pips_order(pip_home: dict[str, str], tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    files = configuration_files(pip_home, prefix)
    ours = [f for f in files if str(f).startswith(str(tmp_path))]
    assert ours == [
        tmp_path / "xdg" / "pip" / "pip.conf",
        tmp_path / "home" / ".pip" / "pip.conf",
        tmp_path / "home" / ".config" / "pip" / "pip.conf",
        prefix / "pip.conf",
    ]
    settings = read_pip_settings(pip_home, prefix)
    assert settings.get("index-url").value == "file:///user"  # type: ignore[union-attr]
    assert settings.get("timeout").origin == f"{prefix / 'pip.conf'} [install]"  # type: ignore[union-attr]
    assert settings.get("all") is None  # [freeze] is not pip install's
    with_variable = read_pip_settings({**pip_home, "PIP_DEFAULT_TIMEOUT": "60"}, prefix)
    assert (with_variable.get("timeout").value, with_variable.get("timeout").origin) == ("60", "PIP_DEFAULT_TIMEOUT")  # type: ignore[union-attr]


def test_pip_config_file_replaces_the_user_files_and_dev_null_reads_none(
    pip_home: dict[str, str], tmp_path: Path
) -> None:
    named = tmp_path / "named.conf"
    named.write_text("[global]\nextra-index-url = file:///a file:///b\n")
    files = configuration_files({**pip_home, "PIP_CONFIG_FILE": str(named)}, tmp_path / "prefix")
    assert files[-1] == named and not [f for f in files if "home" in f.parts]
    assert configuration_files({**pip_home, "PIP_CONFIG_FILE": os.devnull}, tmp_path / "prefix") == []
    settings = read_pip_settings({**pip_home, "PIP_CONFIG_FILE": str(named)}, tmp_path / "prefix")
    assert settings.get("extra-index-url").values == ["file:///a", "file:///b"]  # type: ignore[union-attr]


def test_an_unreadable_pip_conf_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "pip.conf"
    broken.write_text("index-url = no section\n")
    settings = read_pip_settings({"PIP_CONFIG_FILE": str(broken)}, tmp_path)  # kept until an overlay is needed
    with pytest.raises(OverlayError) as caught:
        settings.refuse_unmappable()
    assert caught.value.one_line().startswith(f"{broken}: cannot read this pip configuration file")
    assert "\n" not in caught.value.one_line()


def resolve(tmp_path: Path, environ: dict[str, str], lines: str = "userpkg\n"):  # type: ignore[no-untyped-def]
    path = tmp_path / "requirements.txt"
    path.write_text(lines)
    environ = {"PIP_CONFIG_FILE": os.devnull, **environ}
    requirements = read_requirements(path, environ)
    return resolve_sources(requirements, environ, read_pip_settings(environ, tmp_path))


def test_transport_settings_map_to_uvs_variables_without_overriding_them(tmp_path: Path) -> None:
    environ = {"PIP_CERT": "/etc/ca.pem", "PIP_TIMEOUT": "30", "PIP_PROXY": "http://proxy:3128", "PIP_RETRIES": "7"}
    sources = resolve(tmp_path, environ)
    assert sources.environment == {
        "SSL_CERT_FILE": "/etc/ca.pem",
        "UV_HTTP_TIMEOUT": "30",
        "UV_HTTP_RETRIES": "7",
        "HTTPS_PROXY": "http://proxy:3128",
        "HTTP_PROXY": "http://proxy:3128",
    }
    mine = resolve(tmp_path, {**environ, "SSL_CERT_FILE": "/mine.pem", "https_proxy": "http://mine:1"})
    assert "SSL_CERT_FILE" not in mine.environment and "HTTPS_PROXY" not in mine.environment


def test_trusted_hosts_pre_and_binary_choices_become_uv_options(tmp_path: Path) -> None:
    environ = {"PIP_TRUSTED_HOST": "a.example b.example", "PIP_PRE": "yes", "PIP_ONLY_BINARY": "numpy,scipy"}
    args = resolve(tmp_path, environ).args()
    assert args[:2] == ["--only-binary", ":all:"]  # the runner's default comes first, so later choices win
    assert [a for i, a in enumerate(args) if "--allow-insecure-host" in args[i - 1 : i + 1]] == [
        "--allow-insecure-host",
        "a.example",
        "--allow-insecure-host",
        "b.example",
    ]
    assert "--prerelease" in args and "numpy" in args and "scipy" in args


def test_uv_variables_are_merged_and_taken_out_of_uvs_environment(tmp_path: Path) -> None:
    environ = {
        "UV_INDEX": "corp=https://corp.example/simple",
        "UV_EXTRA_INDEX_URL": "https://extra.example/simple",
        "UV_FIND_LINKS": "/a,/b",
        "PIP_EXTRA_INDEX_URL": "https://pip.example/simple https://extra.example/simple",
    }
    sources = resolve(tmp_path, environ, "--extra-index-url https://file.example/simple\nuserpkg\n")
    assert [(x.value, x.origin) for x in sources.extra_indexes] == [
        ("https://file.example/simple", "requirements.txt --extra-index-url"),
        ("https://corp.example/simple", "UV_INDEX"),
        ("https://extra.example/simple", "UV_EXTRA_INDEX_URL"),
        ("https://pip.example/simple", "PIP_EXTRA_INDEX_URL"),
    ]
    assert [x.value for x in sources.find_links] == ["/a", "/b"]
    uv_env = sources.uv_environment({**environ, "UV_OFFLINE": "1"})
    assert uv_env["UV_OFFLINE"] == "1" and not {"UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS"} & set(uv_env)


def test_credentials_never_reach_run_json_or_the_transcript(tmp_path: Path) -> None:
    assert redact("https://user:s3cret@corp.example/simple") == "https://user:***@corp.example/simple"
    assert redact("https://tok3n@corp.example/simple") == "https://***@corp.example/simple"
    assert redact("file:///a/b@c") == "file:///a/b@c"
    assert redact("error: GET https://u:p@h/x failed") == "error: GET https://u:***@h/x failed"
    sources = resolve(tmp_path, {"PIP_INDEX_URL": "https://user:s3cret@corp.example/simple"})
    assert "s3cret" not in repr(sources.record()) and "s3cret" not in sources.describe()
    transcript = tmp_path / "uv.log"
    Uv(Path("/bin/echo"), {}, transcript).run(sources.args(), cwd=tmp_path)
    assert "s3cret" not in transcript.read_text() and "user:***@corp.example" in transcript.read_text()


def test_a_constraint_file_from_pip_counts_in_the_overlay_key(tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("userpkg<=1.0\n")
    first = resolve(tmp_path, {"PIP_CONSTRAINT": str(constraints)}).key_lines()
    constraints.write_text("userpkg<=0.9\n")
    second = resolve(tmp_path, {"PIP_CONSTRAINT": str(constraints)}).key_lines()
    assert ["-c", str(constraints)] == first[first.index("-c") : first.index("-c") + 2]
    assert first != second
