"""Presets and settings: TOML files read into frozen dataclasses.

A preset (`configs/NAME.toml`, shipped inside the package as `jaxstyle.configs`) or a
user's TOML file names any subset of the fields below; unknown keys are errors with a
"did you mean" hint. Overrides from the command line are dotted keys
(`stage1.iterations=200`, `loss.style_weight=50`) applied last.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.objective import LossConfig
from jaxstyle.optimize import OptimConfig

__all__ = ["Config", "GridConfig", "SmoothConfig", "UpsampleConfig", "load_config", "parse_overrides", "preset_names"]

MODES = ("two_stage", "single", "coarse_to_fine")
INITS = ("content", "mean_pixel", "color_transfer")
STAGE2_STARTS = ("stage1", "smoothed")


@dataclasses.dataclass(frozen=True)
class UpsampleConfig:
    """The last stage: the working-size result carried to the content photo's own size as a
    field of local affine colour maps (`jaxstyle.upsample.upsample_affine`): fit windows of
    `radius` with colour sigma `fit_sigma_range` and ridge `eps` toward the global map,
    upsampled with colour sigma `sigma_range` and tent half-width `support` (working-size
    pixels), computed in `tile x tile` output tiles."""

    radius: int = 1
    eps: float = 1e-5
    sigma_range: float = 0.1
    fit_sigma_range: float = 0.5
    support: int = 2
    tile: int = 256

    def __post_init__(self) -> None:  # checked here, not after the optimisation has run
        for name, value, low in (("radius", self.radius, 0), ("support", self.support, 1), ("tile", self.tile, 1)):
            if value < low:
                raise JaxstyleError(f"upsample.{name} must be >= {low}, got {value}")
        for name, value in (("eps", self.eps), ("sigma_range", self.sigma_range),
                            ("fit_sigma_range", self.fit_sigma_range)):
            if not value > 0:
                raise JaxstyleError(f"upsample.{name} must be > 0, got {value}")


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """The look as the unknown (`jaxstyle.grid`): with `enabled`, every stage optimises a
    bilateral grid of affine colour maps sliced under the content, nodes about `cell`
    working-size pixels apart over `depth` luma levels, instead of the pixels; the grid,
    sliced under the photo at its own size, is the full-size result. `project`: the finished
    image is replaced by its fit on such a grid, which no speckle survives (for pixel solves).
    `smooth`: weight of the grid's spatial roughness in the objective (`jaxstyle.grid.roughness`),
    which keeps the maps from painting shapes into flat areas. `flat`: weight of the maps'
    change between neighbouring pixels of like colour (`jaxstyle.grid.flat_variation`, colour
    scale `flat_sigma`), which lets them change across the content's edges only. `fit_ridge`: a
    fit's per-node least squares lean toward the global affine map by this much. `anchor`: in a
    solve started from a given look (a video's keyframe from the one before), weight of the sliced
    result's squared distance from that look's slice, in the loss's pixel units (`GridObjective`)."""

    enabled: bool = False
    project: bool = False
    cell: int = 16
    depth: int = 8
    smooth: float = 0.0
    flat: float = 0.0
    flat_sigma: float = 0.05
    fit_ridge: float = 1e-2
    anchor: float = 0.0

    def __post_init__(self) -> None:
        if self.cell < 1 or self.depth < 2:
            raise JaxstyleError(f"grid.cell must be >= 1 and grid.depth >= 2, got {self.cell} and {self.depth}")
        if not self.smooth >= 0:
            raise JaxstyleError(f"grid.smooth must be >= 0, got {self.smooth}")
        if not self.flat >= 0 or not self.flat_sigma > 0:
            raise JaxstyleError(f"grid.flat must be >= 0 and grid.flat_sigma > 0, "
                                f"got {self.flat} and {self.flat_sigma}")
        if not self.fit_ridge > 0:
            raise JaxstyleError(f"grid.fit_ridge must be > 0, got {self.fit_ridge}")
        if not self.anchor >= 0:
            raise JaxstyleError(f"grid.anchor must be >= 0, got {self.anchor}")


@dataclasses.dataclass(frozen=True)
class SmoothConfig:
    """The final smooth-local-affine filter (the original: radius 15, edge 0.01, and a fixed
    ridge of 1e-3 in its affine fits; see `jaxstyle.smoothing`), then optionally the original's
    de-posterisation `refine` (the content's detail layer added back through a guided filter of
    radius `refine_radius` and ridge `refine_eps`, `jaxstyle.smoothing.refine_detail`).
    reference_side > 0: `radius` is in pixels of a photo whose longer side is reference_side
    (the original filters its 700 px outputs), so at another working size the window covers
    the same share of the photo (`radius_for`); 0: `radius` pixels at every size."""

    enabled: bool = True
    radius: int = 15
    reference_side: int = 0
    edge: float = 0.01
    eps: float = 1e-3
    patch_radius: int = 1
    refine: bool = False
    refine_radius: int = 8
    refine_eps: float = 0.01

    def __post_init__(self) -> None:  # checked here, not after the optimisation has run
        if self.radius < 0 or self.reference_side < 0:
            raise JaxstyleError(f"smooth.radius and smooth.reference_side must be >= 0, got "
                                f"{self.radius} and {self.reference_side}")
        for name, value in (("patch_radius", self.patch_radius), ("refine_radius", self.refine_radius)):
            if value < 0:
                raise JaxstyleError(f"smooth.{name} must be >= 0, got {value}")
        for name, value in (("edge", self.edge), ("eps", self.eps), ("refine_eps", self.refine_eps)):
            if not value > 0:
                raise JaxstyleError(f"smooth.{name} must be > 0, got {value}")

    def radius_for(self, shape: tuple[int, ...]) -> int:
        """The filter's radius at an image of `shape` `[H, W, ...]` (see reference_side);
        a scaled radius stays at least 1 unless `radius` is 0."""
        if self.reference_side == 0 or self.radius == 0:
            return self.radius
        return max(1, round(self.radius * max(shape[:2]) / self.reference_side))


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything `jaxstyle.stylize` needs besides the images; `Config()` is the `default`
    preset (`configs/default.toml`) but for its name.

    mode: "two_stage" (the paper: stage 1 without the photorealism term, stage 2 with it,
    from stage 1's result), "single" (stage 2 only, from the content), or
    "coarse_to_fine" (stage 1 at `coarse_scale` of the size, upsampled, then stage 2).
    max_side: the working size (the optimisation's longer side, px); max_output_side: a cap on
    the result's longer side (0: the content photo's own size; `upsample` carries the result
    there). buckets: both photos are stretched at the working size to the nearest of a few
    aspects (`sizing.bucket_shape`, at most 16% apart), so photos of any size share a few
    compiled shapes; the full-size stage restores the photo's exact aspect.
    backbone: "vgg16" (bundled), "vgg19" or a path to a canonical .npz;
    allow_fallback lets a missing VGG-19 fall back to the bundled VGG-16 (with a warning).
    init: the first stage's start. "content" (the content photo), "mean_pixel" (what the
    original's stage 1, neuralstyle_seg.lua, starts from: randn * 1e-4 in Caffe input
    units, i.e. the ImageNet mean colour (123.68, 116.779, 103.939) / 256 plus noise of
    standard deviation 1e-4 / 256) or "color_transfer" (the content photo with each
    region's colours mapped linearly onto the style region's mean and covariance,
    `jaxstyle.color.linear_color_transfer`; `init_feather` > 0 blends the regions' maps
    with masks feathered along the content's colour edges over about that many pixels,
    `jaxstyle.color.feather_masks`, so the start has no seams). `init_noise` adds Gaussian noise of that
    standard deviation on top of any of them; the noise draws from `seed`.
    stage2_start: what stage 2 starts from after stage 1. "stage1" (the paper: stage 1's
    result) or "smoothed" (stage 1's result through the smooth-local-affine filter with the
    `smooth` settings, i.e. already a locally affine function of the content, so stage 2's
    few steps add back only the style the photorealism term allows instead of first undoing
    stage 1's non-affine texture). Needs a stage 1 (not mode "single").
    start_recolor: with stage2_start "smoothed", how far (0 to 1) stage 2's start moves toward
    the style's colours, region by region (`linear_color_transfer` of the smoothed image,
    regions blended as for `init_feather`): the filter pulls colours back toward the
    content's, and stage 2's few steps under a high lambda do not bring them back.
    """

    name: str = "custom"
    backbone: str = "vgg16"
    allow_fallback: bool = False
    mode: str = "coarse_to_fine"
    max_side: int = 512
    max_output_side: int = 0
    buckets: bool = True
    coarse_scale: float = 0.5
    seed: int = 0
    init: str = "color_transfer"
    init_noise: float = 0.0
    init_feather: int = 8
    stage2_start: str = "stage1"
    start_recolor: float = 0.0
    loss: LossConfig = LossConfig(style_weight=3000.0, photo_weight=1e5, mask_feather=8)
    stage1: OptimConfig = OptimConfig(iterations=40, tol=1e-4)
    stage2: OptimConfig = OptimConfig(iterations=10, tol=1e-4)
    smooth: SmoothConfig = SmoothConfig(enabled=False)
    upsample: UpsampleConfig = UpsampleConfig()
    grid: GridConfig = GridConfig(enabled=True, cell=8, flat=3e10, anchor=1.0)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise JaxstyleError(f"unknown mode {self.mode!r}{did_you_mean(self.mode, MODES)}; "
                                f"choose one of {', '.join(MODES)}")
        if self.init not in INITS:
            raise JaxstyleError(f"unknown init {self.init!r}{did_you_mean(self.init, INITS)}; "
                                f"choose one of {', '.join(INITS)}")
        if self.stage2_start not in STAGE2_STARTS:
            raise JaxstyleError(f"unknown stage2_start {self.stage2_start!r}"
                                f"{did_you_mean(self.stage2_start, STAGE2_STARTS)}; "
                                f"choose one of {', '.join(STAGE2_STARTS)}")
        if self.stage2_start != "stage1" and self.mode == "single":
            raise JaxstyleError(f"stage2_start = {self.stage2_start!r} needs a stage 1: use mode "
                                "\"two_stage\" or \"coarse_to_fine\", or stage2_start = \"stage1\"")
        if self.grid.enabled and self.stage2_start != "stage1":
            raise JaxstyleError("grid.enabled carries the grid from stage to stage: set stage2_start = \"stage1\"")
        if not 0 <= self.start_recolor <= 1:
            raise JaxstyleError(f"start_recolor must be between 0 and 1, got {self.start_recolor}")
        if self.start_recolor > 0 and self.stage2_start != "smoothed":
            raise JaxstyleError("start_recolor recolours stage 2's smoothed start: set stage2_start = "
                                "\"smoothed\" too, or start_recolor = 0")
        if self.init_feather < 0:
            raise JaxstyleError(f"init_feather must be >= 0, got {self.init_feather}")
        if self.init_noise < 0:
            raise JaxstyleError(f"init_noise must be >= 0, got {self.init_noise}")
        if self.seed < 0:
            raise JaxstyleError(f"seed must be from 0 to {2**31 - 1}, got {self.seed}: give 0 or a positive "
                                "whole number")
        if not 0 < self.coarse_scale <= 1:
            raise JaxstyleError(f"coarse_scale must be in (0, 1], got {self.coarse_scale}")
        if self.max_side < 1:
            raise JaxstyleError(f"max_side must be at least 1 (pixels), got {self.max_side}")
        if self.max_output_side < 0:
            raise JaxstyleError(f"max_output_side must be >= 0 (0: the photo's own size), got {self.max_output_side}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for metadata and logs)."""
        return dataclasses.asdict(self)


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Instantiate dataclass `cls` from a mapping, recursing into nested dataclasses."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise JaxstyleError(f"unknown setting {where + key!r}{did_you_mean(key, fields, prefix=where)}; "
                                f"known: {', '.join(fields)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise JaxstyleError(f"setting {where}{key} must be a table, got {value!r}")
            kwargs[key] = _build(hint, value, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(hint, value, f"{where}{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise JaxstyleError(f"setting {name} must be a list, got {value!r}")
        return tuple(str(v) for v in value)
    if hint is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes", "on"):
                return True
            if value.lower() in ("false", "0", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise JaxstyleError(f"setting {name} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        lowest, highest = -(2**31), 2**31 - 1  # whole-number settings (counts, sizes, the seed) are JAX's int32
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}... ({len(repr(value))} characters)"
        try:
            number = float(value)
        except OverflowError:  # a whole number past float's range: TOML integers have any size
            number = math.inf
        except (TypeError, ValueError):
            raise JaxstyleError(f"setting {name} must be a number, got {shown}") from None
        if hint is int and not lowest <= number <= highest:
            raise JaxstyleError(f"setting {name} must be a whole number from {lowest} to {highest}, got {shown}")
        if not math.isfinite(number):  # TOML reads nan and inf; no setting means anything with them
            raise JaxstyleError(f"setting {name} must be a finite number, got {shown}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise JaxstyleError(f"setting {name} must be a number, got {shown}") from None
        if hint is int and isinstance(value, float) and value != int(value):
            raise JaxstyleError(f"setting {name} must be a whole number, got {shown}")
        return number
    return str(value) if hint is str else value


def preset_names() -> tuple[str, ...]:
    """Names of the shipped presets."""
    root = importlib.resources.files("jaxstyle.configs")
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml")))


def _read_toml(text: str | bytes, where: str) -> dict[str, Any]:
    """The TOML document `text` (bytes: a file's, which TOML requires to be UTF-8)."""
    try:
        return tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as e:
        raise JaxstyleError(f"{where} is not UTF-8 text (byte {e.start} is {text[e.start]:#04x}); save it "
                            "as UTF-8, as TOML requires") from None
    except tomllib.TOMLDecodeError as e:
        raise JaxstyleError(f"{where} is not valid TOML: {e}") from None


def load_config(name_or_path: str | os.PathLike[str] = "default", overrides: Mapping[str, Any] | None = None) -> Config:
    """A preset by name, or a user's TOML file layered over the preset it names in `base`.

    A user file may start with `base = "fast"` (default: "default") and then override
    any field. `overrides` maps dotted keys to values and is applied last.
    """
    data = _load_layers(os.fspath(name_or_path))
    for dotted, value in (overrides or {}).items():
        table = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise JaxstyleError(f"cannot override {dotted}: {part} is not a table")
        table[leaf] = value
    return _build(Config, data, "")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` items (`--set` on the command line and in the scripts) as `load_config` overrides.

    KEY is a dotted setting name; VALUE is read as a TOML value when it parses (`50`, `1e-3`,
    `true`, `"vgg19"`) and kept as the string otherwise (`vgg19`). `load_config` checks both.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise JaxstyleError(f"--set expects KEY=VALUE (e.g. --set loss.style_weight=50), got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def _load_layers(name_or_path: str, depth: int = 0) -> dict[str, Any]:
    if depth > 4:
        raise JaxstyleError("config files name each other as 'base' in a cycle")
    if not isinstance(name_or_path, str):  # a file's `base = 5`
        raise JaxstyleError(f"base must be a preset name ({', '.join(preset_names())}) or the path of a .toml "
                            f"file, in quotes; got base = {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise JaxstyleError(f"config file {path} does not exist")
        data = _read_toml(path.read_bytes(), f"config file {path}")
        base = data.pop("base", "default")
        merged = _load_layers(base, depth + 1) if base else {}
        return _merge(merged, data)
    names = preset_names()
    if name_or_path not in names:
        raise JaxstyleError(f"unknown preset {name_or_path!r}{did_you_mean(name_or_path, names)}; "
                            f"presets: {', '.join(names)}, or give a path to a .toml file")
    text = importlib.resources.files("jaxstyle.configs").joinpath(f"{name_or_path}.toml").read_text()
    data = _read_toml(text, f"preset {name_or_path}")
    base = data.pop("base", None)  # a preset may be its base plus differences
    data["name"] = data.get("name", name_or_path)
    return _merge(_load_layers(base, depth + 1), data) if base else data


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out
