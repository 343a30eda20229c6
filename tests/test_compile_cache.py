"""The command line's persistent compilation cache: where it lives, when it is refused, and that
JAX really uses it (fresh processes, since JAX's cache is configured once per process)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from jaxstyle import compile_cache as cc


@pytest.mark.parametrize("value", ["", "0", "off", "OFF", "no", "false", " none "])
def test_switched_off(value):
    assert cc.compile_cache_path({cc.ENV: value}) is None


def test_path_from_the_environment(tmp_path):
    assert cc.compile_cache_path({cc.ENV: str(tmp_path / "x")}) == tmp_path / "x"
    assert cc.compile_cache_path({cc.ENV: "~/x"}) == Path.home() / "x"


def test_default_is_under_the_jaxstyle_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path))
    assert cc.compile_cache_path({}) == tmp_path / "xla"


def test_unsafe_folders_are_refused(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert cc.unsafe_reason(private) is None
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert "chmod 700" in cc.unsafe_reason(shared)
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert "not a folder" in cc.unsafe_reason(a_file)


def test_an_already_configured_cache_is_kept():
    import jax

    configured = jax.config.jax_compilation_cache_dir
    if not configured:
        pytest.skip("the test suite's own cache is switched off")
    assert cc.enable_compile_cache({cc.ENV: "/nonexistent/elsewhere"}) == (Path(configured), None)


PROBE = """
import json, sys
import jax, jax.numpy as jnp
from jaxstyle.compile_cache import enable_compile_cache
path, why = enable_compile_cache()
threshold = jax.config.jax_persistent_cache_min_compile_time_secs
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # cache even this tiny program
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()
print(json.dumps({"path": path and str(path), "why": why, "jax": jax.config.jax_compilation_cache_dir,
                  "threshold": threshold}))
"""


def probe(env_update: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in (cc.ENV, "JAX_COMPILATION_CACHE_DIR", cc.MIN_COMPILE_ENV)}
    env.update(env_update)
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_fresh_process_writes_compiled_programs_to_a_private_folder(tmp_path):
    folder = tmp_path / "deep" / "xla"
    out = probe({cc.ENV: str(folder)})
    assert out == {"path": str(folder), "why": None, "jax": str(folder), "threshold": cc.MIN_COMPILE_SECONDS}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert any(folder.iterdir())


def test_a_users_own_compile_time_threshold_wins(tmp_path):
    out = probe({cc.ENV: str(tmp_path / "xla"), cc.MIN_COMPILE_ENV: "0"})
    assert out["path"] == str(tmp_path / "xla") and out["threshold"] == 0


def test_a_fresh_process_refuses_a_folder_others_can_write(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    out = probe({cc.ENV: str(folder)})
    assert out["path"] is None and "chmod 700" in out["why"] and not out["jax"]
    assert not any(folder.iterdir())


def test_switched_off_in_a_fresh_process(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path))
    out = probe({cc.ENV: "off", "JAXSTYLE_CACHE": str(tmp_path)})
    assert out["path"] is None and cc.ENV in out["why"] and not out["jax"]
    assert not (tmp_path / "xla").exists()


def test_jax_own_setting_wins(tmp_path):
    theirs = tmp_path / "theirs"
    out = probe({cc.ENV: str(tmp_path / "ours"), "JAX_COMPILATION_CACHE_DIR": str(theirs)})
    assert out["path"] == str(theirs) and out["jax"] == str(theirs)
    assert not (tmp_path / "ours").exists()
