"""The settings' seed is checked where the settings are read: a negative seed is refused with one
line that says what to give instead, from Python, a TOML file, `--set` and `--seed`."""

import pytest
from typer.testing import CliRunner

from jaxstyle import io
from jaxstyle.cli import app
from jaxstyle.config import Config, load_config, parse_overrides
from jaxstyle.errors import JaxstyleError

REFUSAL = "seed must be from 0 to 2147483647, got -1: give 0 or a positive whole number"


def test_a_negative_seed_is_refused_where_the_settings_are_read(tmp_path):
    with pytest.raises(JaxstyleError, match=REFUSAL):
        Config(seed=-1)
    with pytest.raises(JaxstyleError, match=REFUSAL):
        load_config("default", parse_overrides(["seed=-1"]))
    mine = tmp_path / "mine.toml"
    mine.write_text('base = "fast"\nseed = -1\n')
    with pytest.raises(JaxstyleError, match=REFUSAL):
        load_config(mine)
    assert load_config("default", {"seed": 0}).seed == 0 and Config(seed=2**31 - 1).seed == 2**31 - 1


@pytest.mark.parametrize("option", [["--seed", "-1"], ["--set", "seed=-1"]])
def test_the_command_line_refuses_a_negative_seed_before_any_work(tmp_path, option):
    content, style = io.sample_paths()
    result = CliRunner().invoke(app, ["transfer", content, style, "-o", str(tmp_path / "out.png"), *option])
    assert result.exit_code == 2, result.output
    assert "seed must be from 0 to 2147483647, got -1" in result.output and list(tmp_path.iterdir()) == []
