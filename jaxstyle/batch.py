"""Many image pairs at once: the pipeline over a batch of pairs, sharded over devices.
`jaxstyle.runner` splits a manifest across hosts and feeds it here in buckets.

Arrays: contents float32 `[B, H, W, 3]`, styles `[B, Hs, Ws, 3]` (RGB in [0, 1]); masks
`[B, H, W, K]` and `[B, Hs, Ws, K]` one-hot stacks with one K for the whole batch (pad each
pair's own label set with `jaxstyle.masks.parse_mask_pair(..., num_labels=K)`).

Every item runs the plan of `jaxstyle.pipeline` through the same host driver as
`jaxstyle.stylize` (`jaxstyle.host.run_host`), with its own style image, masks and
optimiser state, so results equal single-image runs to float32 tolerance. Each step of
the plan is vmapped over the items with the VGG weights shared; the optimiser steps the
items as `strategy` says (`jaxstyle.itemwise`): "vmap" (one batched program), "map" (one
item after another, for optax's zoom line search) or "auto" ("map" with a zoom line
search, else "vmap"). scripts/bench_batch.py measures throughput for both.

Devices: with several devices the batch axis is laid over a 1-D mesh (inputs sharded over
"batch", weights replicated) and every program runs under `jax.shard_map`, so each device
works on its own items with no communication. B is padded to a multiple of the device
count by repeating the last item; the padding is dropped from the results.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxstyle.config import Config, load_config
from jaxstyle.errors import JaxstyleError
from jaxstyle.host import ProgressFn, run_host, status_names
from jaxstyle.itemwise import BATCH_AXIS, STRATEGIES, Items, batch_mesh, resolve_strategy
from jaxstyle.pipeline import Inputs, plan
from jaxstyle.vgg import VGGWeights
from jaxstyle.weights import resolve_weights


@dataclasses.dataclass
class BatchResult:
    """What `stylize_batch` returns for B pairs.

    images: `[B, H, W, 3]` jax.Array (sharded over the mesh's batch axis when B is a multiple
      of the device count; `np.asarray` fetches it), or with `contents_full` a list of B numpy
      images at those sizes.
    history: per stage, the total loss at each step `[steps, B]` (an item's entries repeat
      after it stopped; `steps[stage][i]` says how many are real).
    best_loss, steps: per stage `[B]`. status: per item, {stage: why it stopped}.
    failed: per item, None or the reason it failed (a stage diverged at its first step);
      a failed item's image is meaningless. notes: per item, things to tell the user.
    strategy: per stage, how the optimiser ran over the items ("vmap" or "map").
    """

    images: jax.Array
    history: dict[str, np.ndarray]
    best_loss: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]
    status: list[dict[str, str]]
    failed: list[str | None]
    notes: list[tuple[str, ...]]
    seconds: dict[str, float]
    config: Config
    strategy: dict[str, str]


def _check_batch(contents, styles, content_masks, style_masks) -> None:
    if contents.ndim != 4 or contents.shape[-1] != 3 or styles.ndim != 4 or styles.shape[-1] != 3:
        raise JaxstyleError(f"expected contents [B, H, W, 3] and styles [B, Hs, Ws, 3], got "
                            f"{tuple(contents.shape)} and {tuple(styles.shape)}; for one pair use jaxstyle.stylize")
    if contents.shape[0] != styles.shape[0] or contents.shape[0] == 0:
        raise JaxstyleError(f"got {contents.shape[0]} contents and {styles.shape[0]} styles; give one style "
                            "per content (repeat a shared style) and at least one pair")
    if (content_masks is None) != (style_masks is None):
        raise JaxstyleError("give both content and style masks, or neither")
    if content_masks is not None and (
            content_masks.ndim != 4 or style_masks.ndim != 4
            or content_masks.shape[:3] != contents.shape[:3] or style_masks.shape[:3] != styles.shape[:3]
            or content_masks.shape[-1] != style_masks.shape[-1]):
        raise JaxstyleError(f"masks {tuple(content_masks.shape)} / {tuple(style_masks.shape)} do not fit images "
                            f"{tuple(contents.shape)} / {tuple(styles.shape)}: expected [B, H, W, K] and "
                            "[B, Hs, Ws, K]; pad label sets with parse_mask_pair(num_labels=K)")


def _pad_items(array: np.ndarray | None, size: int) -> np.ndarray | None:
    """Repeat the last item so the leading axis has `size` entries."""
    if array is None or array.shape[0] == size:
        return array
    return np.concatenate([array, np.repeat(array[-1:], size - array.shape[0], axis=0)])


def stylize_batch(contents: Any, styles: Any, content_masks: Any = None, style_masks: Any = None, *,
                  config: Config | str = "default", weights: VGGWeights | None = None,
                  mesh: Mesh | None = None, strategy: str = "auto", contents_full: Sequence[Any] | None = None,
                  progress: ProgressFn | None = None) -> BatchResult:
    """Stylise B pairs of the same shapes at once; item i equals `stylize(contents[i], styles[i], ...)`.

    Args:
      contents: `[B, H, W, 3]`; styles `[B, Hs, Ws, 3]` (float32 in [0, 1]; numpy or JAX).
      content_masks, style_masks: `[B, H, W, K]`, `[B, Hs, Ws, K]` one-hot stacks, or both None.
      config: a `Config` or a preset name/path (shared by all items; its `max_side` is not
        applied here: resize before batching).
      weights: VGG weights (default: resolved from `config.backbone`).
      mesh: a 1-D mesh with axis "batch" (default: this process's devices when it has
        several; none with one device).
      strategy: how the optimiser runs over items: "auto", "vmap" or "map" (module docstring).
      contents_full: B content photos at their own sizes (float32 `[Hi, Wi, 3]` each, any
        sizes): the images are delivered at those sizes (a list of numpy arrays).
      progress: `progress(stage, Progress)` between device-side chunks; its loss fields are `[B]`.

    Raises `DivergenceError` when every item diverged at a stage's first step.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    resolve_strategy(strategy, zoom_linesearch=False)  # an unknown name fails before any work
    contents, styles = np.asarray(contents, np.float32), np.asarray(styles, np.float32)
    content_masks = None if content_masks is None else np.asarray(content_masks, np.float32)
    style_masks = None if style_masks is None else np.asarray(style_masks, np.float32)
    _check_batch(contents, styles, content_masks, style_masks)
    weights = weights if weights is not None else resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)
    if mesh is None and jax.local_device_count() > 1:
        mesh = batch_mesh()
    count = contents.shape[0]
    size = math.ceil(count / mesh.size) * mesh.size if mesh is not None else count
    arrays = [_pad_items(a, size) for a in (contents, styles, content_masks, style_masks)]
    if mesh is not None:
        weights = jax.device_put(weights, NamedSharding(mesh, PartitionSpec()))
        sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
        inputs = Inputs(*(None if a is None else jax.device_put(a, sharding) for a in arrays))
    else:
        weights = jax.device_put(weights)
        inputs = Inputs(*(None if a is None else jnp.asarray(a) for a in arrays))
    items = Items(strategy, mesh)
    if contents_full is not None and len(contents_full) != count:
        raise JaxstyleError(f"got {len(contents_full)} full-size contents for {count} pairs; give one per pair")
    full = None if contents_full is None else [np.asarray(c, np.float32) for c in contents_full]
    run = run_host(weights, inputs, config=cfg, items=items, count=count, content_full=full, progress=progress)
    stages = run.stages
    per_item = {name: status_names(r) for name, r in stages.items()}
    images = run.image if size == count or full is not None else run.image[:count]
    return BatchResult(images=images,
                       history={k: r.history for k, r in stages.items()},
                       best_loss={k: r.best_loss for k, r in stages.items()},
                       steps={k: r.steps for k, r in stages.items()},
                       status=[{k: v[i] for k, v in per_item.items()} for i in range(count)],
                       failed=run.failed, notes=run.notes, seconds=run.seconds, config=cfg,
                       strategy={s.name: items.for_optimizer(zoom_linesearch=s.opt.uses_zoom).strategy
                                 for s in plan(cfg)})


__all__ = ["BATCH_AXIS", "STRATEGIES", "BatchResult", "batch_mesh", "resolve_strategy", "stylize_batch"]
