"""The README's Python example runs as written (on two small photos named as in the example)."""

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_photo
from jaxstyle import writing

README = Path(__file__).parent.parent / "README.md"


def python_example() -> str:
    """The first ```python block after the README's '## Python' heading."""
    text = README.read_text()
    section = text[text.index("\n## Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_has_a_python_example():
    code = python_example()
    compile(code, "README.md", "exec")
    assert "jaxstyle.stylize(" in code and "stylize_image" in code and "stylize_batch" in code


@pytest.mark.slow  # runs the fast preset four ways, one of them reverse-mode: CI runs it via -m slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    writing.save_image(synthetic_photo(32, 48, 0), "content.jpg")
    writing.save_image(synthetic_photo(36, 40, 3)[..., ::-1], "style.jpg")
    namespace: dict = {}
    exec(compile(python_example(), "README.md", "exec"), namespace)
    assert Path("out.png").is_file()
    assert np.isfinite(np.asarray(namespace["g"])).all() and np.asarray(namespace["g"]).shape == (36, 40, 3)
    assert np.asarray(namespace["out"].images).shape == (2, 32, 48, 3)
    assert float(namespace["photo"]) < 1e-3 * float(np.sum(namespace["content"] ** 2))
