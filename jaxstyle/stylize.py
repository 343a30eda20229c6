"""The Deep Photo Style Transfer pipeline: stage 1, stage 2, smooth local affine.

Images are float32 `[H, W, 3]` RGB in [0, 1]; masks `[H, W, K]` one-hot stacks.

- `stylize(content, style, ...)`: the user-facing run. Accepts numpy arrays, JAX arrays
  or PIL images (and colour-coded or label masks), resizes, parses masks, resolves
  weights, then runs the stages with host progress reports between device-side chunks.
- `stylize_image(weights, content, style, content_mask, style_mask, config=...)`: the same
  pipeline as one pure, fixed-shape JAX function: it runs inside a caller's `jax.jit`, under
  `jax.vmap`, and (with Adam and a fixed budget) is reverse-differentiable with respect to
  its inputs, e.g. the style image or `loss_weights`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import io, masks as masks_lib
from jaxstyle.color import linear_color_transfer
from jaxstyle.config import Config, load_config
from jaxstyle.errors import DivergenceError, JaxstyleError
from jaxstyle.objective import Objective, prepare_targets
from jaxstyle.optimize import (DIVERGED, STATUS_NAMES, OptimConfig, Progress, State, finalize, minimize,
                               minimize_fixed)
from jaxstyle.smoothing import refine_detail, smooth_local_affine
from jaxstyle.vgg import VGGWeights
from jaxstyle.weights import resolve_weights

ProgressFn = Callable[[str, Progress], None]
SnapshotFn = Callable[[str, int, np.ndarray], None]


@dataclasses.dataclass
class Result:
    """What `stylize` returns: the image `[H, W, 3]` and how it was made.

    stages holds the intermediate images ("stage1", "stage2" before smoothing);
    history the per-iteration total loss of each stage; terms the weighted loss
    terms at each stage's best iterate; status why each stage stopped.
    """

    image: np.ndarray
    stages: dict[str, np.ndarray]
    history: dict[str, list[float]]
    terms: dict[str, dict[str, float]]
    status: dict[str, str]
    seconds: dict[str, float]
    notes: tuple[str, ...]
    config: Config


class Interrupted(JaxstyleError):
    """Ctrl-C during a run; `best_image` holds the best image so far (`[H, W, 3]`)."""

    def __init__(self, message: str, best_image: np.ndarray | None) -> None:
        super().__init__(message)
        self.best_image = best_image


def _resize(image: jax.Array, shape: tuple[int, int]) -> jax.Array:
    return jax.image.resize(image, (*shape, image.shape[-1]), method="linear", antialias=True)


def _scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    return max(8, round(shape[0] * scale)), max(8, round(shape[1] * scale))


def _stage_plan(cfg: Config) -> tuple[tuple[str, bool, OptimConfig], ...]:
    """(name, use_photo, optimiser settings) for each stage of `cfg.mode`."""
    stage2 = ("stage2", True, cfg.stage2)
    if cfg.mode == "single":
        return (stage2,)
    return (("stage1", False, cfg.stage1), stage2)


def stylize_image(weights: VGGWeights, content: jax.Array, style: jax.Array,
                  content_mask: jax.Array | None = None, style_mask: jax.Array | None = None, *,
                  config: Config, loss_weights: Mapping[str, jax.Array] | None = None,
                  key: jax.Array | None = None) -> jax.Array:
    """The whole pipeline as a pure function of arrays; returns the image `[H, W, 3]`.

    Args:
      weights: VGG network (arrays are traced; `arch`/`convention` are static).
      content: `[H, W, 3]`; style `[Hs, Ws, 3]`; masks `[H, W, K]`, `[Hs, Ws, K]` or None.
      config: static settings; each stage runs exactly its `iterations` (no tolerance stop).
      loss_weights: optional traced overrides of the term weights
        ({"content", "style", "tv", "photo"}), used as given: a "photo" override is the
        lambda of the run, not scaled by `config.loss.region_photo_scale`.
      key: PRNG key for the start's noise (`config.init`, `config.init_noise`); defaults to
        `jax.random.PRNGKey(config.seed)`.
    """
    targets = prepare_targets(weights, content, style, content_mask, style_mask, cfg=config.loss)
    if loss_weights:
        targets["weights"] = {**targets["weights"], **loss_weights}
    x = initial_image(content, style, content_mask, style_mask, config=config, key=key)
    for name, use_photo, opt in _stage_plan(config):
        fixed = dataclasses.replace(opt, tol=0.0)
        if name == "stage1" and config.mode == "coarse_to_fine":
            small = _scaled_shape(content.shape, config.coarse_scale)
            small_targets = _coarse_targets(weights, content, style, content_mask, style_mask, config, small)
            if loss_weights:
                small_targets["weights"] = {**small_targets["weights"], **loss_weights}
            y, _ = minimize_fixed(Objective(config.loss, use_photo), _resize(x, small),
                                  (weights, small_targets), fixed)
            x = _resize(y, content.shape[:2])
        else:
            if name == "stage2":
                x = stage2_start(x, content, config)
            x, _ = minimize_fixed(Objective(config.loss, use_photo), x, (weights, targets), fixed)
    return _finish(x, content, config)


def _coarse_targets(weights, content, style, content_mask, style_mask, config, small):
    style_small = _scaled_shape(style.shape, config.coarse_scale)
    cm = None if content_mask is None else _resize(content_mask, small)
    sm = None if style_mask is None else _resize(style_mask, style_small)
    feather = config.loss.mask_feather and max(1, round(config.loss.mask_feather * config.coarse_scale))
    no_photo = dataclasses.replace(config.loss, photo_weight=0.0, mask_feather=feather)
    return prepare_targets(weights, _resize(content, small), _resize(style, style_small), cm, sm, cfg=no_photo)


# The original's stage-1 start (neuralstyle_seg.lua: `torch.randn(...):mul(0.0001)` in its
# Caffe input units, BGR x 256 minus the mean pixel): the mean pixel itself, here in RGB [0, 1].
CAFFE_MEAN_RGB = (123.68 / 256, 116.779 / 256, 103.939 / 256)
MEAN_PIXEL_NOISE = 1e-4 / 256


def needs_key(config: Config) -> bool:
    """Whether the start `[H, W, 3]` of `config` draws random numbers."""
    return config.init == "mean_pixel" or config.init_noise > 0


def starts_from_content(config: Config) -> bool:
    """Whether the first stage starts from the content photo itself."""
    return config.init == "content" and config.init_noise <= 0


def initial_image(content: jax.Array, style: jax.Array, content_mask: jax.Array | None = None,
                  style_mask: jax.Array | None = None, *, config: Config,
                  key: jax.Array | None = None) -> jax.Array:
    """The first stage's start `[H, W, 3]`: `config.init`, plus `config.init_noise`.

    Inputs as in `stylize_image`; `key` defaults to `jax.random.PRNGKey(config.seed)`.
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


def stage2_start(stage1: jax.Array, content: jax.Array, config: Config) -> jax.Array:
    """Stage 2's start `[H, W, 3]` from stage 1's full-size result (`config.stage2_start`).

    The identity for "stage1", which is also the only start `Config` allows without a stage 1.
    """
    if config.stage2_start == "stage1":
        return stage1
    return _smooth(jnp.clip(stage1, 0.0, 1.0), content, config)


def _smooth(x: jax.Array, content: jax.Array, config: Config) -> jax.Array:
    """The smooth-local-affine filter with `config.smooth`'s settings; `x` in [0, 1]."""
    s = config.smooth
    return smooth_local_affine(x, content, radius=s.radius, edge=s.edge, eps=s.eps, patch_radius=s.patch_radius)


def _finish(x: jax.Array, content: jax.Array, config: Config) -> jax.Array:
    x = jnp.clip(x, 0.0, 1.0)
    if config.smooth.enabled:
        x = _smooth(x, content, config)
    if config.smooth.refine:
        x = refine_detail(x, content, radius=config.smooth.refine_radius, eps=config.smooth.refine_eps)
    return x


_prepare = jax.jit(prepare_targets, static_argnames=("cfg",))
_initial = jax.jit(initial_image, static_argnames=("config",))
_finish_jit = jax.jit(_finish, static_argnames=("config",))
_stage2_start_jit = jax.jit(stage2_start, static_argnames=("config",))


def load_inputs(content: Any, style: Any, content_mask: Any = None, style_mask: Any = None, *,
                max_side: int | None = None, num_labels: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, tuple[str, ...]]:
    """Host-side preparation: images to float32 `[H, W, 3]` capped at `max_side`, masks parsed.

    Accepts paths, numpy/JAX arrays and PIL images. Returns (content, style, content_mask
    `[H, W, K]` or None, style_mask `[Hs, Ws, K]` or None, notes for the user).
    """
    content = _as_image(content, max_side)
    style = _as_image(style, max_side)
    if content_mask is None and style_mask is None:
        return content, style, None, None, ()
    pair = masks_lib.parse_mask_pair(_as_mask(content_mask), _as_mask(style_mask),
                                     content_shape=content.shape[:2], style_shape=style.shape[:2],
                                     num_labels=num_labels)
    return content, style, pair.content, pair.style, tuple(pair.notes)


def _as_image(image: Any, max_side: int | None) -> np.ndarray:
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return io.load_image(image, max_side=max_side)
    array = io.to_numpy_image(image)
    if max_side and max(array.shape[:2]) > max_side:
        array = io.resize_image(array, io.fit_max_side(*array.shape[:2], max_side))
    return array


def _as_mask(mask: Any) -> Any:
    if mask is None:
        return None
    if isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__"):
        return io.load_label_image(mask)
    if hasattr(mask, "mode") and hasattr(mask, "size"):  # a PIL image
        return np.asarray(mask.convert("RGB") if mask.mode not in ("L", "I", "I;16") else mask)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] not in (3,):  # a one-hot/soft stack [H, W, K]
        return np.argmax(mask, axis=-1).astype(np.int32)
    return mask


def stylize(content: Any, style: Any, *, content_mask: Any = None, style_mask: Any = None,
            config: Config | str = "default", overrides: Mapping[str, Any] | None = None,
            weights: VGGWeights | None = None, max_side: int | None = None,
            progress: ProgressFn | None = None, log_terms: bool = False,
            snapshot: SnapshotFn | None = None, snapshot_every: int = 0) -> Result:
    """Transfer the look of `style` onto `content`; see the module docstring.

    Args:
      content, style: paths, numpy/JAX arrays (`[H, W, 3]` in [0, 1] or uint8) or PIL images.
      content_mask, style_mask: colour-coded or label masks (paths or arrays), both or neither.
      config: a `Config`, a preset name or a TOML path; `overrides` are dotted keys.
      weights: VGG weights (default: resolved from `config.backbone`).
      max_side: cap on the longer side (default: `config.max_side`).
      progress: called as `progress(stage_name, Progress)` between device-side chunks.
      log_terms: also evaluate the weighted loss terms at each report (`Progress.terms`;
        one extra forward pass per chunk).
      snapshot: called as `snapshot(stage_name, iteration, best_image)` about every
        `snapshot_every` iterations (rounded up to whole chunks).

    Raises:
      DivergenceError when a stage produced no finite improvement; Interrupted on Ctrl-C
      (with the best image so far).
    """
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    if isinstance(config, Config) and overrides:
        raise JaxstyleError("pass overrides with a preset name or path, or build the Config yourself")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    content_a, style_a, cmask, smask, notes = load_inputs(
        content, style, content_mask, style_mask, max_side=max_side or cfg.max_side)
    weights = weights if weights is not None else resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)
    weights = jax.device_put(weights)
    c, s = jnp.asarray(content_a), jnp.asarray(style_a)
    cm = None if cmask is None else jnp.asarray(cmask)
    sm = None if smask is None else jnp.asarray(smask)
    targets = _prepare(weights, c, s, cm, sm, cfg=cfg.loss)
    jax.block_until_ready(targets)
    timings["setup"] = time.perf_counter() - start

    x = c if starts_from_content(cfg) else _initial(c, s, cm, sm, config=cfg)
    stages: dict[str, np.ndarray] = {}
    history: dict[str, list[float]] = {}
    terms: dict[str, dict[str, float]] = {}
    status: dict[str, str] = {}
    for name, use_photo, opt in _stage_plan(cfg):
        t0 = time.perf_counter()
        stage_targets, x0 = targets, x
        if name == "stage1" and cfg.mode == "coarse_to_fine":
            small = _scaled_shape(c.shape, cfg.coarse_scale)
            stage_targets = jax.jit(_coarse_targets, static_argnums=(5, 6))(weights, c, s, cm, sm, cfg, small)
            x0 = _resize(x, small)
        elif name == "stage2" and cfg.stage2_start != "stage1":  # (skips compiling an identity)
            x0 = _stage2_start_jit(x, c, cfg)
        objective = Objective(cfg.loss, use_photo)
        reporter = _Reporter(name, objective, (weights, stage_targets), c.shape[:2], progress,
                             log_terms, snapshot, snapshot_every)
        try:
            state, losses = _run_stage(name, objective, x0, (weights, stage_targets), opt, reporter)
        except Interrupted as stop:
            if stop.best_image is None and stages:  # nothing better yet in this stage
                stop.best_image = stages[list(stages)[-1]]
            raise
        state, stage_terms = _finalize_with_terms(objective, state, (weights, stage_targets))
        best = state.best_x
        if x0.shape != c.shape:
            best = _resize(best, c.shape[:2])
        history[name] = losses
        status[name] = STATUS_NAMES[int(state.status)]
        terms[name] = {k: float(v) for k, v in jax.device_get(stage_terms).items()}
        if int(state.status) == DIVERGED:
            if not np.isfinite(float(state.best_loss)):
                raise DivergenceError(f"{name} diverged at its first step (loss is NaN/Inf): lower the "
                                      "loss weights or the learning rate, or check the inputs")
            notes += (f"{name} diverged after {int(state.step)} iterations; kept the best image "
                      f"(loss {float(state.best_loss):.4g}); consider fewer iterations or a smaller "
                      "learning rate",)
        x = best
        stages[name] = np.asarray(jnp.clip(x, 0, 1))
        timings[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        final = np.asarray(jax.block_until_ready(_finish_jit(x, c, cfg)))
    except KeyboardInterrupt:
        raise Interrupted("interrupted during the final filter", stages[list(stages)[-1]]) from None
    timings["smooth" if cfg.smooth.enabled else "finish"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    return Result(image=final, stages=stages, history=history, terms=terms, status=status,
                  seconds=timings, notes=tuple(notes), config=cfg)


@dataclasses.dataclass
class _Reporter:
    """Host-side hook between chunks: progress, optional loss terms and snapshots."""

    name: str
    objective: Objective
    args: Any
    shape: tuple[int, int]
    progress: ProgressFn | None
    log_terms: bool
    snapshot: SnapshotFn | None
    snapshot_every: int
    latest: Any = None
    last_snapshot: int = 0

    def __call__(self, p: Progress, state) -> None:
        self.latest = state
        if self.log_terms:
            terms = jax.device_get(_terms_jit(self.objective, state.best_x, self.args))
            p.terms = {k: float(v) for k, v in terms.items()}
        if self.progress is not None:
            self.progress(self.name, p)
        if self.snapshot is not None and self.snapshot_every > 0 and \
                p.iteration - self.last_snapshot >= self.snapshot_every:
            self.last_snapshot = p.iteration
            self.snapshot(self.name, p.iteration, self.best_image())

    def best_image(self) -> np.ndarray | None:
        state = self.latest
        if state is None or not np.isfinite(float(state.best_loss)):
            return None
        best = state.best_x
        if best.shape[:2] != self.shape:
            best = _resize(best, self.shape)
        return np.asarray(jnp.clip(best, 0, 1))


@functools.partial(jax.jit, static_argnums=0)
def _terms_jit(objective: Objective, image: jax.Array, args: Any) -> dict[str, jax.Array]:
    return objective(image, args)[1]


@functools.partial(jax.jit, static_argnums=0)
def _finalize_with_terms(objective: Objective, state: State, args: Any) -> tuple[State, dict[str, jax.Array]]:
    """`optimize.finalize` and the loss terms of the resulting best image, in one program."""
    state = finalize(objective, state, args)
    return state, objective(state.best_x, args)[1]


def _run_stage(name: str, objective: Objective, x0: jax.Array, args: Any, opt: OptimConfig,
               reporter: _Reporter):
    """Run one stage; on Ctrl-C raise `Interrupted` with the best image so far."""
    try:
        state, history = minimize(objective, x0, args, opt, callback=reporter, evaluate_last=False)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted during {name}", reporter.best_image()) from None
    return state, [float(v) for v in history]
