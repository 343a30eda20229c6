"""The user-facing entry points of the pipeline (`jaxstyle.pipeline`), for one image pair.

Images are float32 `[H, W, 3]` RGB in [0, 1]; masks `[H, W, K]` one-hot stacks.

- `stylize(content, style, ...)`: the host-driven run. Accepts paths, numpy/JAX arrays or
  PIL images (and colour-coded or label masks), resizes, parses masks, resolves weights,
  then runs the plan with progress reports, snapshots and Ctrl-C between device-side
  chunks (`jaxstyle.host.run_host`).
- `stylize_image(weights, content, style, content_mask, style_mask, config=...)`: the same
  plan as one pure, fixed-shape JAX function: it runs inside a caller's `jax.jit`, under
  `jax.vmap`, and (with Adam and a fixed budget) is reverse-differentiable with respect to
  its inputs, e.g. the style image or `loss_weights`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import masks as masks_lib, reading, sizing
from jaxstyle.config import Config, load_config
from jaxstyle.errors import JaxstyleError
from jaxstyle.host import ProgressFn, SnapshotFn, run_host, status_names
from jaxstyle.itemwise import ONE
from jaxstyle.optimize import minimize_fixed
from jaxstyle.pipeline import Inputs, Stage, Start, check_sizes, check_start, direct, run_plan
from jaxstyle.vgg import VGGWeights
from jaxstyle.weights import resolve_weights

__all__ = ["Result", "check_result_memory", "full_size_content", "load_inputs", "stylize", "stylize_image"]


@dataclasses.dataclass
class Result:
    """What `stylize` returns: the image `[H, W, 3]` and how it was made.

    stages holds the intermediate images at the working size `working_size` ("stage1",
    "stage2" before the final filter); history the per-iteration total loss of each stage; terms the weighted loss
    terms at each stage's best iterate; status why each stage stopped; look the grid of affine
    maps `[gh, gw, gd, 3, 4]` whose slice under the content the image is (`jaxstyle.grid`; grid
    runs and `grid.project`, else None): it applies to other photos with `grid.slice_grid_host`.
    What is saved in a result file: `jaxstyle.job.result_metadata`.
    """

    image: np.ndarray
    stages: dict[str, np.ndarray]
    history: dict[str, list[float]]
    terms: dict[str, dict[str, float]]
    status: dict[str, str]
    seconds: dict[str, float]
    notes: tuple[str, ...]
    config: Config
    working_size: tuple[int, int] | None = None
    look: np.ndarray | None = None


def stylize_image(weights: VGGWeights, content: jax.Array, style: jax.Array,
                  content_mask: jax.Array | None = None, style_mask: jax.Array | None = None, *,
                  config: Config, loss_weights: Mapping[str, jax.Array] | None = None,
                  key: jax.Array | None = None, content_full: jax.Array | None = None,
                  start: jax.Array | None = None, start_hold: jax.Array | None = None) -> jax.Array:
    """The whole pipeline as a pure function of arrays; returns the image `[H, W, 3]` (at
    `content_full`'s size `[Hf, Wf, 3]` when that, the content photo at its own size, is given).

    Args:
      weights: VGG network (arrays are traced; `arch`/`convention` are static).
      content: `[H, W, 3]`; style `[Hs, Ws, 3]`; masks `[H, W, K]`, `[Hs, Ws, K]` or None.
      config: static settings; each stage runs exactly its `iterations` (no tolerance stop).
      loss_weights: optional traced overrides of the term weights
        ({"content", "style", "tv", "photo"}), used as given: a "photo" override is the
        lambda of the run, not scaled by `config.loss.region_photo_scale`.
      key: PRNG key for the start's noise (`config.init`, `config.init_noise`); defaults to
        `jax.random.PRNGKey(config.seed)`.
      start: a look `[gh, gw, gd, 3, 4]` to start from instead of `config.init`, with the
        nodes `pipeline.check_start` asks for; `start_hold` `[gh, gw]` in [0, 1] (default: ones)
        how much of each node starts from it (the rest from the preset's start) and how firmly
        `config.grid.anchor` holds it there.
    """

    def solve(stage: Stage, x0: jax.Array, args: Any) -> jax.Array:
        fixed = dataclasses.replace(stage.opt, tol=0.0)
        return minimize_fixed(stage.objective(config), x0, args, fixed)[0]

    inputs = Inputs(content, style, content_mask, style_mask)
    return run_plan(weights, inputs, key, loss_weights or {}, config=config, call=direct, solve=solve,
                    content_full=content_full, start=as_start(start, start_hold))


def as_start(look: Any, hold: Any = None) -> Start | None:
    """`pipeline.Start` of a look `[gh, gw, gd, 3, 4]` and its hold `[gh, gw]` (default: ones),
    float32; None without a look."""
    if look is None:
        return None
    look = jnp.asarray(look, jnp.float32)
    return Start(look, jnp.ones(look.shape[:2], jnp.float32) if hold is None else jnp.asarray(hold, jnp.float32))


def load_inputs(content: Any, style: Any, content_mask: Any = None, style_mask: Any = None, *,
                max_side: int | None = None, num_labels: int | None = None, buckets: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, tuple[str, ...]]:
    """Host-side preparation: images to float32 `[H, W, 3]` capped at `max_side` (sides then
    stretched to the nearest shared aspect, `sizing.bucket_shape`, with `buckets`), masks parsed.

    Accepts paths, numpy/JAX arrays and PIL images. Returns (content, style, content_mask
    `[H, W, K]` or None, style_mask `[Hs, Ws, K]` or None, notes for the user). Transparent
    pixels are put on white, with a note.
    """
    notes: list[str] = []

    def read(image: Any, which: str) -> np.ndarray:
        is_path = isinstance(image, (str, bytes)) or hasattr(image, "__fspath__")
        try:
            opaque = (reading.load_image(image, max_side=max_side, alpha="refuse") if is_path
                      else reading.to_numpy_image(image, alpha="refuse"))
        except JaxstyleError:
            composited = _as_image(image, max_side)  # raises that error again unless transparency was refused
            named = f" {image}" if is_path else ""
            notes.append(f"the {which} image{named} has transparent pixels: they were put on white "
                         "(flatten it onto the background you want first to choose another)")
            return composited
        return opaque if is_path else _capped(opaque, max_side)

    content = read(content, "content")
    style = read(style, "style")
    pair = None
    if content_mask is not None or style_mask is not None:  # matched to the photos' own aspect
        pair = masks_lib.parse_mask_pair(_as_mask(content_mask), _as_mask(style_mask),
                                         content_shape=content.shape[:2], style_shape=style.shape[:2],
                                         num_labels=num_labels)
    if buckets:  # then everything stretched to the bucket's shape
        content, style = (sizing.resize_image(a, sizing.bucket_shape(*a.shape[:2])) for a in (content, style))
    check_sizes(content.shape, style.shape)
    if pair is None:
        return content, style, None, None, tuple(notes)
    cmask, smask = (_nearest(m, a.shape[:2]) for m, a in ((pair.content, content), (pair.style, style)))
    return content, style, cmask, smask, (*notes, *pair.notes)


def _nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask stack `[h, w, K]` resampled to `shape` by the nearest pixel (one-hot stays one-hot)."""
    rows = (np.arange(shape[0]) + 0.5) * mask.shape[0] // shape[0]
    cols = (np.arange(shape[1]) + 0.5) * mask.shape[1] // shape[1]
    return mask[rows.astype(int)[:, None], cols.astype(int)[None, :]]


def _as_image(image: Any, max_side: int | None) -> np.ndarray:
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return reading.load_image(image, max_side=max_side)
    return _capped(reading.to_numpy_image(image), max_side)


def _capped(array: np.ndarray, max_side: int | None) -> np.ndarray:
    """A float32 `[H, W, 3]` image resized to at most `max_side` on its longer side."""
    if max_side and max(array.shape[:2]) > max_side:
        array = sizing.resize_image(array, sizing.fit_max_side(*array.shape[:2], max_side))
    return array


def _as_mask(mask: Any) -> Any:
    if mask is None:
        return None
    if isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__"):
        return reading.load_label_image(mask)
    if hasattr(mask, "mode") and hasattr(mask, "size"):  # a PIL image
        return np.asarray(mask.convert("RGB") if mask.mode not in ("L", "I", "I;16") else mask)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] not in (3,):  # a one-hot/soft stack [H, W, K]
        return np.argmax(mask, axis=-1).astype(np.int32)
    return mask


def stylize(content: Any, style: Any, *, content_mask: Any = None, style_mask: Any = None,
            config: Config | str = "default", overrides: Mapping[str, Any] | None = None,
            weights: VGGWeights | None = None, max_side: int | None = None,
            max_output_side: int | None = None, full_size: bool = True, content_is_full_size: bool = False,
            progress: ProgressFn | None = None, log_terms: bool = False,
            snapshot: SnapshotFn | None = None, snapshot_every: int = 0, start_look: Any = None,
            start_hold: Any = None) -> Result:
    """Transfer the look of `style` onto `content`; see the module docstring.

    Args:
      content, style: paths, `reading.Photo`s, numpy/JAX arrays (`[H, W, 3]` in [0, 1] or uint8)
        or PIL images.
      content_mask, style_mask: colour-coded or label masks (paths or arrays, at the photo's
        own size or the working size), both or neither.
      config: a `Config`, a preset name or a TOML path; `overrides` are dotted keys.
      weights: VGG weights (default: resolved from `config.backbone`).
      max_side: the working size, a cap on the longer side the optimisation runs at
        (default: `config.max_side`).
      max_output_side: a cap on the result's longer side (default: `config.max_output_side`;
        0: none). With `full_size` the result has the content photo's own size (after EXIF
        rotation) within that cap, carried there by the upsampling stage; without it, the
        working size.
      content_is_full_size: `content` is the photo at the result's size already, capped and
        checked for memory (`jaxstyle.job.read_content`): used as it is, not checked again.
      progress: called as `progress(stage_name, Progress)` between device-side chunks.
      log_terms: also evaluate the weighted loss terms at each report (`Progress.terms`;
        one extra forward pass per chunk).
      snapshot: called as `snapshot(stage_name, iteration, best_image)` about every
        `snapshot_every` iterations (rounded up to whole chunks).
      start_look: a look `[gh, gw, gd, 3, 4]` (`Result.look` of a run with the same preset and
        working size) to start from instead of the preset's start: a warm start, for a photo
        like the one that look was solved on (the next keyframe of a video, say); `start_hold`
        `[gh, gw]` in [0, 1] (default: ones): how much of each node starts from it (the rest from
        the preset's start) and how firmly `grid.anchor` holds it there.

    Raises:
      JaxstyleError for bad inputs (and a photo too large for the memory available), before
      any work; DivergenceError when a stage produced no finite improvement; Interrupted on
      Ctrl-C (with the best image so far).
    """
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    if isinstance(config, Config) and overrides:
        raise JaxstyleError("pass overrides with a preset name or path, or build the Config yourself")
    start = time.perf_counter()
    full = None
    if content_is_full_size:
        full = content = np.asarray(content)
    elif full_size:
        cap = cfg.max_output_side if max_output_side is None else max_output_side
        full = content = full_size_content(content, max_output_side=cap)
    content_a, style_a, cmask, smask, notes = load_inputs(
        content, style, content_mask, style_mask, max_side=max_side or cfg.max_side, buckets=cfg.buckets)
    weights = weights if weights is not None else resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)
    inputs = Inputs(*(None if a is None else jnp.asarray(a) for a in (content_a, style_a, cmask, smask)))
    start_at = as_start(start_look, start_hold)
    if start_at is not None:
        check_start(start_at, cfg, content_a.shape)
    loaded = time.perf_counter() - start
    run = run_host(jax.device_put(weights), inputs, config=cfg, items=ONE, content_full=full, progress=progress,
                   log_terms=log_terms, snapshot=snapshot, snapshot_every=snapshot_every, start=start_at)
    seconds = {**run.seconds, "setup": run.seconds.get("setup", 0.0) + loaded,
               "total": time.perf_counter() - start}
    stages = {k: r.image for k, r in run.stages.items()}
    return Result(image=np.asarray(run.image), stages=stages,
                  history={k: [float(v) for v in r.history] for k, r in run.stages.items()},
                  terms={k: {t: float(v) for t, v in r.terms.items()} for k, r in run.stages.items()},
                  status={k: status_names(r)[0] for k, r in run.stages.items()},
                  seconds=seconds, notes=tuple(notes) + run.notes[0], config=cfg,
                  working_size=tuple(content_a.shape[:2]), look=None if run.look is None else np.asarray(run.look))


def check_result_memory(content: Any, *, max_output_side: int = 0) -> None:
    """Refuse, before any work, a content photo whose full-size result (longer side capped at
    `max_output_side`, 0: no cap) would not fit in the memory available: a file from its
    header, before it is decoded; an image in memory, which already holds one copy, from its
    shape. Anything else passes (the loaders say what they expected)."""
    size = reading.image_size(content)
    if size is None:
        return
    if isinstance(content, (str, bytes)) or hasattr(content, "__fspath__"):
        copies, what = sizing.FULL_SIZE_COPIES, f"the result of {content}"
    else:
        copies, what = sizing.FULL_SIZE_COPIES - 1, "the result"
    full = sizing.fit_max_side(*size, max_output_side) if max_output_side else size
    sizing.check_memory(full, copies=copies, what=what)


def full_size_content(content: Any, *, max_output_side: int = 0) -> np.ndarray:
    """The content photo at its own size (EXIF rotation applied), float32 `[H, W, 3]`, its longer
    side capped at `max_output_side` (0: no cap). A photo too large for the memory available is
    refused first (`check_result_memory`)."""
    check_result_memory(content, max_output_side=max_output_side)
    if isinstance(content, reading.Photo):
        pixels = content.pixels
    elif isinstance(content, (str, bytes)) or hasattr(content, "__fspath__"):
        pixels = reading.read_photo(content).pixels
    else:
        pixels = reading.to_numpy_image(content)
    if max_output_side and max(pixels.shape[:2]) > max_output_side:
        pixels = sizing.resize_image(pixels, sizing.fit_max_side(*pixels.shape[:2], max_output_side))
    return pixels
