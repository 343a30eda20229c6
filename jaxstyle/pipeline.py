"""The stage plan of one item, written once: start, stages, stage-2 start, final filter.

Images are float32 `[H, W, 3]` RGB in [0, 1]; masks `[H, W, K]` one-hot stacks or None.

`run_plan` is the whole Deep Photo Style Transfer pipeline as a loop over pure item
functions, each of the form `fn(shared, item, *, config, stage)`:

    setup   (weights, key), (inputs, loss_weights, Start) -> (targets, start)
    enter   weights, (inputs, targets, x)          -> (x0, stage targets)   per stage
    [solve] the stage's optimisation                -> best iterate          (the caller's)
    leave   (), (x, inputs)                         -> x at working size     coarse stages
    render  (), (look, content)                     -> x at working size     grid runs
    fit     (), (x, content)                        -> (the look of x, its slice)   grid.project
    finish  (), (x, content)                        -> the image
    upsample (), (content_full, content, x, look)   -> the image at the content photo's own size

With `config.grid.enabled` the unknown of every stage is the look, a bilateral grid of affine
colour maps (`jaxstyle.grid`): `setup` fits it to the start, the stages optimise it (the grid
does not depend on the stage's size), `render` slices it under the content, and `upsample`
slices it under the photo at its own size. With `config.grid.project` the finished image is
replaced by its fit on the grid, so that no pixel leaves the affine model (a pixel solve's
speckles are not representable), and that look is carried to full size.

It takes how to run an item function (`call`) and how to solve a stage (`solve`):
`jaxstyle.stylize_image` calls the functions directly and solves with
`optimize.minimize_fixed` (pure: jit, vmap, grad); `jaxstyle.host.run_host` compiles each
into one program (vmapped or sharded over a batch) and solves with the chunked host driver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.color import linear_color_transfer
from jaxstyle.config import Config
from jaxstyle import grid
from jaxstyle.errors import JaxstyleError
from jaxstyle.objective import GridObjective, Objective, prepare_targets
from jaxstyle.optimize import OptimConfig
from jaxstyle.smoothing import refine_detail, smooth_local_affine
from jaxstyle.upsample import upsample_affine
from jaxstyle.vgg import VGGWeights

__all__ = [
    "CAFFE_MEAN_RGB", "Inputs", "MIN_SIDE", "Stage", "Start", "check_sizes", "check_start", "coarse_targets", "direct",
    "enter", "filters", "finish", "fit", "grid_shape", "initial_image", "leave", "needs_key", "plan", "render",
    "resize", "run_plan", "scaled_shape", "setup", "smooth", "upsample", "upsample_settings", "with_guide",
]

# The original's stage-1 start (neuralstyle_seg.lua: `torch.randn(...):mul(0.0001)` in its
# Caffe input units, BGR x 256 minus the mean pixel): the mean pixel itself, here in RGB [0, 1].
CAFFE_MEAN_RGB = (123.68 / 256, 116.779 / 256, 103.939 / 256)
MEAN_PIXEL_NOISE = 1e-4 / 256
# VGG's deepest layers (relu5_x) see the image at 1/16 (four 2x2 poolings): smaller sides leave them
# no pixels. Both photos at the working size, and every coarse stage, have at least this many a side.
MIN_SIDE = 16


class Inputs(NamedTuple):
    """One item's photos and masks (a leading batch axis on every array for a batch)."""

    content: jax.Array  # [H, W, 3]
    style: jax.Array  # [Hs, Ws, 3]
    content_mask: jax.Array | None = None  # [H, W, K]
    style_mask: jax.Array | None = None  # [Hs, Ws, K]


class Start(NamedTuple):
    """A solve's given start (a video's keyframe from the keyframe before): the look
    `[gh, gw, gd, 3, 4]`, and `[gh, gw]` in [0, 1] how much of each spatial node starts from it
    and how firmly `config.grid.anchor` holds it there (0 where the look was not solved on the
    content, say: such nodes start from the preset's start)."""

    look: jax.Array
    hold: jax.Array


@dataclasses.dataclass(frozen=True)
class Stage:
    """One optimisation stage: its name, whether the photorealism term is on, its optimiser,
    the scale it works at (coarse stages < 1), whether it starts from the smoothed result and
    whether its unknown is a grid of affine maps (`jaxstyle.grid`) rather than the pixels."""

    name: str
    use_photo: bool
    opt: OptimConfig
    scale: float = 1.0
    smoothed_start: bool = False
    grid: bool = False

    def objective(self, config: Config) -> Objective:
        if self.grid:
            return GridObjective(config.loss, self.use_photo, smooth=config.grid.smooth,
                                 flat=config.grid.flat, flat_sigma=config.grid.flat_sigma,
                                 anchor=config.grid.anchor)
        return Objective(config.loss, self.use_photo)

    @property
    def enters(self) -> bool:
        """Whether `enter` changes anything (otherwise callers may skip it)."""
        return self.scale < 1 or self.smoothed_start


def plan(config: Config) -> tuple[Stage, ...]:
    """The stages of `config.mode`, in order."""
    on_grid = config.grid.enabled
    stage2 = Stage("stage2", True, config.stage2, smoothed_start=config.stage2_start == "smoothed", grid=on_grid)
    if config.mode == "single":
        return (stage2,)
    scale = config.coarse_scale if config.mode == "coarse_to_fine" else 1.0
    return Stage("stage1", False, config.stage1, scale=scale, grid=on_grid), stage2


def resize(image: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """`[h, w, C]` to `[*shape, C]`, linear with antialiasing."""
    return jax.image.resize(image, (*shape, image.shape[-1]), method="linear", antialias=True)


def scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """(height, width) of `shape` times `scale`, the scale raised (aspect kept, at most 1) where
    the shorter side would fall below `MIN_SIDE`."""
    h, w = round(shape[0] * scale), round(shape[1] * scale)
    if min(h, w) >= MIN_SIDE:
        return h, w
    scale = min(1.0, MIN_SIDE / min(shape[0], shape[1]))
    return round(shape[0] * scale), round(shape[1] * scale)


def check_sizes(content_shape: tuple[int, ...], style_shape: tuple[int, ...]) -> None:
    """Refuse, before any work, photos whose working size `(H, W, ...)` has a side below `MIN_SIDE`."""
    for name, shape in (("content", content_shape), ("style", style_shape)):
        h, w = shape[:2]
        if min(h, w) < MIN_SIDE:
            need = -(-MIN_SIDE * max(h, w) // min(h, w))
            raise JaxstyleError(
                f"the {name} image is {w}x{h} px at the working size and the network needs at least {MIN_SIDE} px "
                f"a side: use a {name} photo at least {MIN_SIDE} px on its shorter side with a working size of at "
                f"least {need} px (--max-side, max_side= in Python), or crop a long, thin photo")


def needs_key(config: Config) -> bool:
    """Whether the start of `config` draws random numbers."""
    return config.init == "mean_pixel" or config.init_noise > 0


def initial_image(content: jax.Array, style: jax.Array, content_mask: jax.Array | None = None,
                  style_mask: jax.Array | None = None, *, config: Config,
                  key: jax.Array | None = None) -> jax.Array:
    """The first stage's start `[H, W, 3]`: `config.init`, plus `config.init_noise`.

    `key` defaults to `jax.random.PRNGKey(config.seed)`.
    """
    x = content
    if config.init == "color_transfer":
        x = linear_color_transfer(content, style, content_mask, style_mask, feather_radius=config.init_feather)
    if not needs_key(config):
        return x
    key = jax.random.PRNGKey(config.seed) if key is None else key
    if config.init == "mean_pixel":
        key, sub = jax.random.split(key)
        mean = jnp.asarray(CAFFE_MEAN_RGB, content.dtype)
        x = mean + MEAN_PIXEL_NOISE * jax.random.normal(sub, content.shape, content.dtype)
    if config.init_noise > 0:
        x = x + config.init_noise * jax.random.normal(key, content.shape, content.dtype)
    return x


def smooth(x: jax.Array, content: jax.Array, config: Config) -> jax.Array:
    """The smooth-local-affine filter with `config.smooth`'s settings; `x` in [0, 1]."""
    s = config.smooth
    return smooth_local_affine(x, content, radius=s.radius_for(content.shape), edge=s.edge, eps=s.eps,
                               patch_radius=s.patch_radius)


def coarse_targets(weights: VGGWeights, inputs: Inputs, config: Config, shape: tuple[int, int]) -> dict[str, Any]:
    """Targets of a coarse stage: both photos and masks at `config.coarse_scale`, no Laplacian."""
    style_shape = scaled_shape(inputs.style.shape, config.coarse_scale)
    cm = None if inputs.content_mask is None else resize(inputs.content_mask, shape)
    sm = None if inputs.style_mask is None else resize(inputs.style_mask, style_shape)
    feather = config.loss.mask_feather and max(1, round(config.loss.mask_feather * config.coarse_scale))
    no_photo = dataclasses.replace(config.loss, photo_weight=0.0, mask_feather=feather)
    content = resize(inputs.content, shape)
    return with_guide(prepare_targets(weights, content, resize(inputs.style, style_shape), cm, sm, cfg=no_photo),
                      content, config)


def with_guide(targets: dict[str, Any], content: jax.Array, config: Config) -> dict[str, Any]:
    """`targets` with the content `[H, W, 3]` a grid is sliced under (`GridObjective`), for grid runs."""
    return {**targets, "guide": content} if config.grid.enabled else targets


def grid_shape(config: Config, content_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Nodes of the look of `config` over a working size `(H, W, ...)`."""
    return grid.grid_shape(content_shape[:2], cell=config.grid.cell, depth=config.grid.depth)


def check_start(start: Start, config: Config, content_shape: tuple[int, ...]) -> None:
    """Refuse a start that `setup` cannot use for a working size `(H, W, ...)`: a grid run's look
    must have the run's own nodes, a pixel solve's be any grid of affine maps; `hold` is
    `[gh, gw]` in [0, 1]."""
    want = (*grid_shape(config, content_shape), 3, 4)
    shape = tuple(start.look.shape)
    fits = shape == want if config.grid.enabled else (len(shape) == 5 and shape[3:] == (3, 4)
                                                      and min(shape[:3]) >= 2)
    if not fits:
        raise JaxstyleError(f"the start look has shape {list(shape)}; this run needs {list(want)} (a look solved "
                            f"with the same preset at the same working size)")
    hold = np.asarray(start.hold)
    if hold.shape != shape[:2] or not (np.all(hold >= 0) and np.all(hold <= 1)):
        raise JaxstyleError(f"the start's hold must be [gh, gw] = {list(shape[:2])} in [0, 1], got shape "
                            f"{list(hold.shape)}" + ("" if hold.shape != shape[:2] else " with values outside"))


def setup(shared: tuple[VGGWeights, jax.Array | None],
          item: tuple[Inputs, Mapping[str, jax.Array], Start | None], *,
          config: Config, stage: Stage | None = None) -> tuple[dict[str, Any], jax.Array]:
    """Full-size targets (with `loss_weights` overriding the term weights) and the start: from
    `config.init`, or, when the item's `Start` is given, its look (a grid run's unknown: the
    start's look node by node as far as its hold, the preset's own start for the rest, so
    content the look was not solved on starts as a cold solve would; with `config.grid.anchor`
    the `Start` is also the targets' "anchor"; a pixel solve's start: its slice under the
    content)."""
    weights, key = shared
    inputs, loss_weights, start = item
    targets = with_guide(prepare_targets(weights, *inputs, cfg=config.loss), inputs.content, config)
    targets["weights"] = {**targets["weights"], **loss_weights}
    if start is not None and not config.grid.enabled:
        return targets, jnp.clip(grid.slice_grid(start.look, inputs.content), 0.0, 1.0)
    x = initial_image(*inputs, config=config, key=key)
    if config.grid.enabled:  # the look that reproduces the start best
        x = grid.fit_grid(inputs.content, x, grid_shape(config, inputs.content.shape), ridge=config.grid.fit_ridge)
    if start is not None:
        held = start.hold[:, :, None, None, None]
        x = held * start.look + (1 - held) * x
        if config.grid.anchor:
            targets = {**targets, "anchor": start}
    return targets, x


def enter(weights: VGGWeights, item: tuple[Inputs, dict[str, Any], jax.Array], *, config: Config,
          stage: Stage) -> tuple[jax.Array, dict[str, Any]]:
    """A stage's start and targets: at the coarse size, or from the smoothed previous result."""
    inputs, targets, x = item
    if stage.scale < 1:
        shape = scaled_shape(inputs.content.shape, stage.scale)
        small = coarse_targets(weights, inputs, config, shape)
        small["weights"] = targets["weights"]  # the run's term weights (overrides included)
        if "anchor" in targets:  # a look does not depend on the size it is sliced at
            small["anchor"] = targets["anchor"]
        return (x if stage.grid else resize(x, shape)), small
    if stage.smoothed_start:
        x = smooth(jnp.clip(x, 0.0, 1.0), inputs.content, config)
        if config.start_recolor > 0:
            moved = linear_color_transfer(x, inputs.style, inputs.content_mask, inputs.style_mask,
                                          feather_radius=config.init_feather)
            x = x + config.start_recolor * (moved - x)
    return x, targets


def leave(shared: Any, item: tuple[jax.Array, Inputs], *, config: Config, stage: Stage) -> jax.Array:
    """A stage's result at the content's size."""
    x, inputs = item
    return x if x.shape == inputs.content.shape else resize(x, inputs.content.shape[:2])


def render(shared: Any, item: tuple[jax.Array, jax.Array], *, config: Config, stage: Stage | None = None
           ) -> jax.Array:
    """The look `[gh, gw, gd, 3, 4]` sliced under the content at the working size -> `[H, W, 3]`."""
    look, content = item
    return grid.slice_grid(look, content)


def fit(shared: Any, item: tuple[jax.Array, jax.Array], *, config: Config, stage: Stage | None = None
        ) -> tuple[jax.Array, jax.Array]:
    """The look `[gh, gw, gd, 3, 4]` that reproduces the image `x` `[H, W, 3]` from the content
    best, and its slice under the content, clipped to [0, 1] (the image it stands for)."""
    x, content = item
    look = grid.fit_grid(content, x, grid_shape(config, content.shape), ridge=config.grid.fit_ridge)
    return look, jnp.clip(grid.slice_grid(look, content), 0.0, 1.0)


def finish(shared: Any, item: tuple[jax.Array, jax.Array], *, config: Config, stage: Stage | None = None
           ) -> jax.Array:
    """The final image `[H, W, 3]`: clipped, smooth-local-affine filtered, optionally refined."""
    x, content = item
    x = jnp.clip(x, 0.0, 1.0)
    if config.smooth.enabled:
        x = smooth(x, content, config)
    if config.smooth.refine:
        x = refine_detail(x, content, radius=config.smooth.refine_radius, eps=config.smooth.refine_eps)
    return x


def upsample_settings(config: Config) -> dict[str, Any]:
    """Keyword settings of `jaxstyle.upsample.upsample_affine` (and its host loop) for `config`."""
    u = config.upsample
    return {"radius": u.radius, "eps": u.eps, "sigma_range": u.sigma_range, "fit_sigma_range": u.fit_sigma_range,
            "support": u.support, "tile": u.tile}


def filters(config: Config) -> bool:
    """Whether `finish` changes more than the range (the final filter or the detail refinement)."""
    return config.smooth.enabled or config.smooth.refine


def upsample(shared: Any, item: tuple[jax.Array, jax.Array, jax.Array, jax.Array | None], *, config: Config,
             stage: Stage | None = None) -> jax.Array:
    """The last stage: the working-size image `[h, w, 3]` carried to `content_full`'s size
    `[H, W, 3]`: the look, when the image is one, sliced under it; else local affine colour maps
    of the content fitted to the image (the identity when H, W == h, w)."""
    full, content, x, look = item
    if look is not None:
        return jnp.clip(grid.slice_grid(look, full), 0.0, 1.0)
    if full.shape == content.shape:
        return x
    return upsample_affine(full, content, x, **upsample_settings(config))


Call = Callable[..., Any]  # call(fn, shared, item, *, config, stage) -> fn's output
Solve = Callable[[Stage, jax.Array, tuple[VGGWeights, dict[str, Any]]], jax.Array]


def direct(fn: Callable, shared: Any, item: Any, **static: Any) -> Any:
    """`call` for `run_plan` that runs the item function as it is (inside the caller's trace)."""
    return fn(shared, item, **static)


def run_plan(weights: VGGWeights, inputs: Inputs, key: jax.Array | None, loss_weights: Mapping[str, jax.Array],
             *, config: Config, call: Call, solve: Solve, content_full: Any = None, with_look: bool = False,
             start: Start | None = None) -> Any:
    """The pipeline for one item (see the module docstring); returns the image `[H, W, 3]`,
    at the size of `content_full` (the content photo at its own size) when it is given; with
    `with_look`, `(image, look)`: the grid `[gh, gw, gd, 3, 4]` whose slice the image is (grid
    runs and `grid.project`), else None. `start`: a look to start from instead of `config.init`
    (`Start`, `check_start`)."""
    check_sizes(inputs.content.shape[-3:], inputs.style.shape[-3:])
    targets, x = call(setup, (weights, key), (inputs, dict(loss_weights), start), config=config)
    for stage in plan(config):
        x0, stage_targets = x, targets
        if stage.enters:
            x0, stage_targets = call(enter, weights, (inputs, targets, x), config=config, stage=stage)
        x = solve(stage, x0, (weights, stage_targets))
        if stage.scale < 1 and not stage.grid:
            x = call(leave, (), (x, inputs), config=config, stage=stage)
    look = None
    if config.grid.enabled:
        look, x = x, call(render, (), (x, inputs.content), config=config)
    x = call(finish, (), (x, inputs.content), config=config)
    if filters(config):  # the filtered image is no longer the look's slice
        look = None
    if config.grid.project:
        look, x = call(fit, (), (x, inputs.content), config=config)
    if content_full is not None:
        x = call(upsample, (), (content_full, inputs.content, x, look), config=config)
    return (x, look) if with_look else x
