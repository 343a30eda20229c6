"""The wheel a user installs: package data, presets, licence, and a build without setuptools warnings."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # builds a wheel in an isolated pip environment (a few seconds with pip's cache)
def test_the_wheel_ships_data_presets_and_licence(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for name in ("jaxstyle", "configs"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-v", "-w", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "absent from the `packages`" not in done.stdout + done.stderr

    (wheel,) = tmp_path.glob("jaxstyle-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = z.read(metadata).decode()
    data = {p.name for p in (ROOT / "jaxstyle" / "data").iterdir()}
    assert {f"jaxstyle/data/{n}" for n in data} <= names
    assert {f"jaxstyle/configs/{p.name}" for p in (ROOT / "configs").glob("*.toml")} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in meta
