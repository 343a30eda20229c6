"""Settings: `Config()` is the `default` preset, which names every setting, and the other presets
are `base = "default"` plus their differences; the seed is checked where the settings are read (a
negative seed is refused with one line that says what to give instead, from Python, a TOML file,
`--set` and `--seed`)."""

import dataclasses
import importlib.resources
import tomllib

import pytest
from typer.testing import CliRunner

from jaxstyle import reading
from jaxstyle.cli import app
from jaxstyle.config import Config, load_config, parse_overrides
from jaxstyle.errors import JaxstyleError

REFUSAL = "seed must be from 0 to 2147483647, got -1: give 0 or a positive whole number"


def preset_file(name: str) -> dict:
    return tomllib.loads(importlib.resources.files("jaxstyle.configs").joinpath(f"{name}.toml").read_text())


def dotted(table: dict, where: str = "") -> dict:
    """`{"loss": {"tv_weight": 1}}` as `{"loss.tv_weight": 1}`."""
    out = {}
    for key, value in table.items():
        out.update(dotted(value, f"{where}{key}.") if isinstance(value, dict) else {where + key: value})
    return out


def test_config_defaults_are_the_default_preset_which_names_every_setting():
    assert dataclasses.replace(Config(), name="default") == load_config("default")
    assert dotted(preset_file("default")).keys() == dotted(Config().to_dict()).keys()


@pytest.mark.parametrize("name", ["fast", "paper"])
def test_other_presets_are_default_plus_only_their_differences(name):
    data = preset_file(name)
    assert data.pop("base") == "default"
    preset, default = dotted(load_config(name).to_dict()), dotted(load_config("default").to_dict())
    same = [key for key in dotted(data) if preset[key] == default[key]]
    assert same == [], f"{name}.toml repeats default's value of {same}"
    assert preset["name"] == name


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
    content, style = reading.sample_paths()
    result = CliRunner().invoke(app, ["transfer", content, style, "-o", str(tmp_path / "out.png"), *option])
    assert result.exit_code == 2, result.output
    assert "seed must be from 0 to 2147483647, got -1" in result.output and list(tmp_path.iterdir()) == []
