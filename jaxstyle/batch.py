"""Many image pairs at once: the pipeline over a batch of pairs, sharded over devices and
split across hosts, and the resumable manifest runner behind `jaxstyle batch`.

Arrays: contents float32 `[B, H, W, 3]`, styles `[B, Hs, Ws, 3]` (RGB in [0, 1]); masks
`[B, H, W, K]` and `[B, Hs, Ws, K]` one-hot stacks with one K for the whole batch (pad each
pair's own label set with `jaxstyle.masks.parse_mask_pair(..., num_labels=K)`).

Every item runs the per-image pipeline of `jaxstyle.stylize` (same stages, optimiser step,
stopping rule and smoothing) with its own style image, masks and L-BFGS state, so results
equal single-image runs to float32 tolerance. Targets and smoothing are `jax.vmap`-ed over
items with the VGG weights shared. The optimiser steps each item in one of two ways, chosen
per stage (`strategy`):

- "vmap": `jax.vmap` of the step: one batched program, convolutions over B images at once.
  Without a line search (the L-BFGS default) the step has no data-dependent branches.
- "map": `lax.map` over the items on each device, each with the single-image step, one
  after another. For optax's zoom line search: it branches with `lax.cond` on per-item
  values, and under vmap a cond with a batched predicate becomes a select that evaluates
  both branches with every operand broadcast over the batch (the VGG weights too, turning
  convolutions into grouped ones).
- "auto" (default): "map" for a zoom line search, else "vmap".

Per-item CPU time relative to a single run (2-core CPU, 64x64, 6+6 iterations, B=4):
no line search: vmap 1.2x, map 2.7x (`lax.map` is a loop, and XLA:CPU runs backward
convolutions slowly inside loop bodies); zoom line search: map 1.0x, vmap 3.2x.
The step loop follows `optimize.resolve_loop` (host-dispatched steps on CPU, `lax.scan`
elsewhere). scripts/bench_batch.py measures throughput for both strategies.

Devices: with several devices the batch axis is laid over a 1-D mesh
(`NamedSharding(mesh, PartitionSpec("batch"))` for the inputs, weights replicated), and
each batched computation runs under `jax.shard_map`, so every device works on its own
items with no communication. (Left to `jit`'s sharding propagation, a vmapped zoom step's
grouped convolutions were partitioned with 180 all-gathers per chunk: 3.6x the CPU time
of the same chunk on one device, with 4 simulated CPU devices.) B is padded to a multiple
of the device count by repeating the last item; the padding is dropped from the results.

Hosts: items are independent, so processes split a manifest and each runs its share on its
own devices (a local mesh). That is ordinary multi-controller JAX and needs no cross-host
collectives for independent work. `initialize_distributed` joins the processes with
`jax.distributed`; process p takes the items whose manifest index i has
`i % process_count == p` (strided), writes its own outputs, and merges its entries into
OUTDIR/summary.json under a file lock.

Manifests (`read_manifest`): CSV with a header naming `content`, `style` and optionally
`content_mask`, `style_mask`, `output`, `overrides`; or JSON lines with those fields. Paths
are relative to the manifest's folder. `overrides` is a JSON object of dotted config keys
(`{"stage2.iterations": 50}`) applied after the run's config and flags. Items are grouped
into buckets by their full config, content and style shape (after the common size cap) and
label count (rounded up to a power of two); one bucket compiles once and runs in batches of
`batch_size` (the last padded by repeating an item).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxstyle import io
from jaxstyle.config import Config, load_config
from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.manifest import PROBLEM, read_rows
from jaxstyle.masks import parse_mask_pair
from jaxstyle.objective import Objective, prepare_targets
from jaxstyle.optimize import (DIVERGED, RUNNING, STATUS_NAMES, OptimConfig, Progress, State, finalize, init_state,
                               resolve_loop, step)
from jaxstyle.stylize import (ProgressFn, _coarse_targets, _finish, _resize, _scaled_shape, _stage_plan,
                              initial_image, load_inputs, starts_from_content)
from jaxstyle.vgg import VGGWeights
from jaxstyle.weights import resolve_weights

try:  # POSIX advisory locks for the shared summary; absent on Windows (one process there)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

BATCH_AXIS = "batch"
STRATEGIES = ("auto", "vmap", "map")
MANIFEST_FIELDS = ("content", "style", "content_mask", "style_mask", "output", "overrides")
REQUIRED_FIELDS = ("content", "style")
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".summary.lock"
DEFAULT_OUTPUT_SUFFIX = ".png"
STATUSES = ("done", "skipped", "failed")
# Environment variables for multi-process runs. jax itself reads only the coordinator's;
# the other two are read here (jax does not).
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


# ----------------------------------------------------------------------------- the batched pipeline


@dataclasses.dataclass
class BatchResult:
    """What `stylize_batch` returns for B pairs.

    images: `[B, H, W, 3]` jax.Array (sharded over the mesh's batch axis when B is a multiple
      of the device count; `np.asarray` fetches it).
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


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis "batch" over `devices` (default: this process's devices)."""
    devices = list(devices) if devices is not None else jax.local_devices()
    return Mesh(np.array(devices), (BATCH_AXIS,))


def resolve_strategy(strategy: str, cfg: OptimConfig) -> str:
    """"vmap" or "map" for a stage: "auto" is "map" with a zoom line search (whose conds would
    evaluate both branches under vmap) and "vmap" otherwise."""
    if strategy not in STRATEGIES:
        raise JaxstyleError(f"unknown batch strategy {strategy!r}{did_you_mean(strategy, STRATEGIES)}; "
                            f"choose one of {', '.join(STRATEGIES)}")
    if strategy == "auto":
        return "map" if cfg.method == "lbfgs" and cfg.linesearch == "zoom" else "vmap"
    return strategy


def _per_device(mesh: Mesh | None, fn: Callable, shared: Any, batched: Any) -> Any:
    """`fn(shared, batched)` on each device's slice of `batched` (leading axis B), with
    `shared` replicated; every output leaf has the batch axis first. No mesh: one call."""
    if mesh is None:
        return fn(shared, batched)
    spec = PartitionSpec(BATCH_AXIS)
    return jax.shard_map(fn, mesh=mesh, in_specs=(PartitionSpec(), spec), out_specs=spec,
                         check_vma=False)(shared, batched)


def _over_items(strategy: str, fn: Callable, batched: Any) -> Any:
    """`fn(item)` for every item of `batched` (leading axis), vmapped or one at a time."""
    return jax.vmap(fn)(batched) if strategy == "vmap" else jax.lax.map(fn, batched)


@functools.partial(jax.jit, static_argnames=("cfg", "mesh"))
def _prepare_many(weights, batch, *, cfg, mesh):
    def local(w, b):
        return jax.vmap(lambda c, s, cm, sm: prepare_targets(w, c, s, cm, sm, cfg=cfg))(*b)

    return _per_device(mesh, local, weights, batch)


@functools.partial(jax.jit, static_argnames=("config", "small", "mesh"))
def _coarse_many(weights, batch, *, config, small, mesh):
    def local(w, b):
        return jax.vmap(lambda c, s, cm, sm: _coarse_targets(w, c, s, cm, sm, config, small))(*b)

    return _per_device(mesh, local, weights, batch)


@functools.partial(jax.jit, static_argnames=("shape", "mesh"))
def _resize_many(images, *, shape, mesh):
    return _per_device(mesh, lambda _, x: jax.vmap(lambda image: _resize(image, shape))(x), (), images)


@functools.partial(jax.jit, static_argnames=("config", "mesh"))
def _initial_many(batch, key, *, config, mesh):
    """Each item's start: the same as its single run (`Config.init`, `Config.init_noise`)."""
    def local(k, b):
        return jax.vmap(lambda c, s, cm, sm: initial_image(c, s, cm, sm, config=config, key=k))(*b)

    return _per_device(mesh, local, key, batch)


@functools.partial(jax.jit, static_argnames=("config", "mesh"))
def _finish_many(images, contents, *, config, mesh):
    return _per_device(mesh, lambda _, b: jax.vmap(lambda x, c: _finish(x, c, config))(*b), (),
                       (images, contents))


@functools.partial(jax.jit, static_argnames=("cfg", "mesh"))
def _init_many(x0, *, cfg, mesh):
    return _per_device(mesh, lambda _, x: jax.vmap(lambda image: init_state(cfg, image))(x), (), x0)


@functools.partial(jax.jit, static_argnames=("fun", "cfg", "length", "strategy", "mesh"))
def run_chunk_batch(fun: Callable, cfg: OptimConfig, state: State, weights: VGGWeights, targets: Any,
                    budget: jax.Array, *, length: int, strategy: str, mesh: Mesh | None
                    ) -> tuple[State, jax.Array]:
    """`length` optimiser steps for each of B items; returns the state and losses `[length, B]`.

    `state` and `targets` carry a leading batch axis; `weights` are shared. Each item
    steps and stops on its own (`strategy` "vmap" or "map", see the module docstring).
    With `length` 1 there is no loop around the step (the host-dispatched form).
    """

    def item(w, b, s, t):
        if length == 1:
            s = step(fun, cfg, s, (w, t), b)
            return s, s.last_loss[None]

        def body(s, _):
            s = step(fun, cfg, s, (w, t), b)
            return s, s.last_loss

        return jax.lax.scan(body, s, None, length=length)  # state, losses [length]

    def local(shared, batched):
        return _over_items(strategy, lambda st: item(*shared, *st), batched)

    state, losses = _per_device(mesh, local, (weights, budget), (state, targets))
    return state, losses.T


@functools.partial(jax.jit, static_argnames=("fun", "strategy", "mesh"))
def _finalize_many(fun, state, weights, targets, *, strategy, mesh):
    def local(w, batched):
        return _over_items(strategy, lambda st: finalize(fun, st[0], (w, st[1])), batched)

    return _per_device(mesh, local, weights, (state, targets))


def _chunk(fun, cfg, state, weights, targets, budget, *, length, strategy, mesh) -> tuple[State, np.ndarray]:
    """`length` steps: one `lax.scan`, or (the "host" loop of `optimize.resolve_loop`, used
    on CPU) that many asynchronously dispatched steps. Returns the losses `[length, B]`."""
    if resolve_loop(cfg) == "scan":
        state, losses = run_chunk_batch(fun, cfg, state, weights, targets, budget, length=length,
                                        strategy=strategy, mesh=mesh)
        return state, np.asarray(jax.device_get(losses))
    parts = []
    for _ in range(length):
        state, losses = run_chunk_batch(fun, cfg, state, weights, targets, budget, length=1,
                                        strategy=strategy, mesh=mesh)
        parts.append(losses)
    return state, np.concatenate(jax.device_get(parts))


def minimize_batch(fun: Callable, x0: jax.Array, weights: VGGWeights, targets: Any, cfg: OptimConfig, *,
                   strategy: str = "auto", mesh: Mesh | None = None,
                   callback: Callable[[Progress, State], None] | None = None) -> tuple[State, np.ndarray]:
    """`optimize.minimize` for B items, each with its own state and stopping, weights shared.

    x0 `[B, H, W, 3]`; `targets` with a leading batch axis (B a multiple of the mesh size).
    Returns the final state (fields `[B, ...]`; use `best_x`) and the losses `[steps, B]`.
    Unlike `minimize(batched=True)`, which vmaps its `args` whole (copying the weights per
    item), only the targets are batched here.
    """
    strategy = resolve_strategy(strategy, cfg)
    state = _init_many(x0, cfg=cfg, mesh=mesh)
    budget = jnp.asarray(cfg.iterations, jnp.int32)
    losses = [np.zeros((0, x0.shape[0]), np.float32)]
    # Equal chunks of at most chunk_size steps that cover the budget with the least overshoot
    # (steps past an item's budget are no-ops that still cost a full step).
    length = math.ceil(cfg.iterations / max(1, math.ceil(cfg.iterations / cfg.chunk_size)))
    done = 0
    while done < cfg.iterations:
        steps = length if resolve_loop(cfg) == "scan" else min(length, cfg.iterations - done)
        state, chunk = _chunk(fun, cfg, state, weights, targets, budget, length=steps, strategy=strategy,
                              mesh=mesh)
        done += steps
        losses.append(chunk)
        status = np.asarray(jax.device_get(state.status))
        if callback is not None:
            callback(Progress(min(done, cfg.iterations), cfg.iterations, np.asarray(state.last_loss),
                              np.asarray(state.best_loss), status), state)
        if bool((status != RUNNING).all()):
            break
    state = _finalize_many(fun, state, weights, targets, strategy=strategy, mesh=mesh)
    return state, np.concatenate(losses)


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
                  mesh: Mesh | None = None, strategy: str = "auto",
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
      progress: `progress(stage, Progress)` between device-side chunks; its loss fields are `[B]`.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    resolve_strategy(strategy, cfg.stage2)  # an unknown name fails before any work
    contents, styles = np.asarray(contents, np.float32), np.asarray(styles, np.float32)
    content_masks = None if content_masks is None else np.asarray(content_masks, np.float32)
    style_masks = None if style_masks is None else np.asarray(style_masks, np.float32)
    _check_batch(contents, styles, content_masks, style_masks)
    start = time.perf_counter()
    weights = weights if weights is not None else resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)
    if mesh is None and jax.local_device_count() > 1:
        mesh = batch_mesh()
    count = contents.shape[0]
    size = math.ceil(count / mesh.size) * mesh.size if mesh is not None else count
    arrays = [_pad_items(a, size) for a in (contents, styles, content_masks, style_masks)]
    if mesh is not None:
        weights = jax.device_put(weights, NamedSharding(mesh, PartitionSpec()))
        sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
        batch = tuple(None if a is None else jax.device_put(a, sharding) for a in arrays)
    else:
        weights = jax.device_put(weights)
        batch = tuple(None if a is None else jnp.asarray(a) for a in arrays)
    c = batch[0]
    targets = jax.block_until_ready(_prepare_many(weights, batch, cfg=cfg.loss, mesh=mesh))
    seconds = {"setup": time.perf_counter() - start}

    x = c
    if not starts_from_content(cfg):
        x = _initial_many(batch, jax.random.PRNGKey(cfg.seed), config=cfg, mesh=mesh)
    history, best_loss, steps, strategies = {}, {}, {}, {}
    status: list[dict[str, str]] = [{} for _ in range(count)]
    failed: list[str | None] = [None] * count
    notes: list[tuple[str, ...]] = [() for _ in range(count)]
    for name, use_photo, opt in _stage_plan(cfg):
        t0 = time.perf_counter()
        stage_targets, x0 = targets, x
        if name == "stage1" and cfg.mode == "coarse_to_fine":
            small = _scaled_shape(contents.shape[1:], cfg.coarse_scale)
            stage_targets = _coarse_many(weights, batch, config=cfg, small=small, mesh=mesh)
            x0 = _resize_many(x, shape=small, mesh=mesh)
        callback = None if progress is None else functools.partial(_report, progress, name, count)
        strategies[name] = resolve_strategy(strategy, opt)
        state, losses = minimize_batch(Objective(cfg.loss, use_photo), x0, weights, stage_targets, opt,
                                       strategy=strategies[name], mesh=mesh, callback=callback)
        x = state.best_x
        if x0.shape != c.shape:
            x = _resize_many(x, shape=contents.shape[1:3], mesh=mesh)
        codes, best, done = (np.asarray(a)[:count] for a in (state.status, state.best_loss, state.step))
        history[name], best_loss[name], steps[name] = losses[:, :count], best, done
        for i in range(count):
            status[i][name] = STATUS_NAMES[int(codes[i])]
            if codes[i] != DIVERGED or failed[i]:
                continue
            if not np.isfinite(best[i]):
                failed[i] = (f"{name} diverged at its first step (loss is NaN/Inf): lower the loss weights "
                             "or the learning rate, or check the inputs")
            else:
                notes[i] += (f"{name} diverged after {int(done[i])} iterations; kept the best image "
                             f"(loss {best[i]:.4g})",)
        seconds[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    images = jax.block_until_ready(_finish_many(x, c, config=cfg, mesh=mesh))
    seconds["smooth" if cfg.smooth.enabled else "finish"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - start
    return BatchResult(images=images if size == count else images[:count], history=history,
                       best_loss=best_loss, steps=steps, status=status, failed=failed, notes=notes,
                       seconds=seconds, config=cfg, strategy=strategies)


def _report(progress: ProgressFn, name: str, count: int, p: Progress, state: State) -> None:
    progress(name, Progress(p.iteration, p.total, p.loss[:count], p.best_loss[:count], p.status[:count]))


# ----------------------------------------------------------------------------- hosts


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise JaxstyleError(f"${name} must be a whole number, got {value!r}") from None


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> tuple[int, int]:
    """Join a multi-process run with `jax.distributed.initialize`; returns (process index, count).

    Arguments win over the environment: $JAX_COORDINATOR_ADDRESS ("host:port" of process 0;
    jax reads it too), $JAX_NUM_PROCESSES and $JAX_PROCESS_ID (read here; jax does not).
    With none of the three set nothing is initialised (one process: (0, 1)). Call before
    anything touches a JAX backend. Each process then works on its own devices; see the
    module docstring for how work is split and why no cross-host collectives are needed.
    """
    coordinator = coordinator or os.environ.get(COORDINATOR_ENV) or None
    num_processes = num_processes if num_processes is not None else _env_int(NUM_PROCESSES_ENV)
    process_id = process_id if process_id is not None else _env_int(PROCESS_ID_ENV)
    settings = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if all(v is None for v in settings.values()) or jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    missing = [flag for flag, v in settings.items() if v is None]
    if missing:
        raise JaxstyleError(f"a multi-process run needs --coordinator, --num-processes and --process-id "
                            f"(or ${COORDINATOR_ENV}, ${NUM_PROCESSES_ENV}, ${PROCESS_ID_ENV}); missing "
                            f"{', '.join(missing)}")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise JaxstyleError(f"process id must be in 0..{num_processes - 1} and the process count at least 1, "
                            f"got --process-id {process_id} --num-processes {num_processes}")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return jax.process_index(), jax.process_count()


# ----------------------------------------------------------------------------- manifests


@dataclasses.dataclass(frozen=True)
class ManifestItem:
    """One row of a manifest. Paths are resolved against the manifest's folder.

    key: the item's name in summary.json (its output name, or "line N" when it has none).
    problem: why the row itself is unusable (then the item fails without being run).
    """

    index: int
    line: int
    content: Path | None
    style: Path | None
    content_mask: Path | None = None
    style_mask: Path | None = None
    output: str = ""
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    problem: str | None = None

    @property
    def key(self) -> str:
        return self.output or f"line {self.line}"


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestItem]:
    """Parse a CSV or JSON-lines manifest (see the module docstring).

    Raises `JaxstyleError` when the manifest itself is unusable (missing, unreadable, no
    header or a bad one, invalid JSON, no items). Problems with one row (a missing field,
    bad overrides, an output already used by another row) are recorded in that item's
    `problem` instead, so the other items still run.
    """
    path = Path(path)
    rows = read_rows(path, fields=MANIFEST_FIELDS, required=REQUIRED_FIELDS,
                     example='{"content": "a.jpg", "style": "b.jpg"}')
    items = [_item(i, line, row, path.parent) for i, (line, row) in enumerate(rows)]
    if not items:
        raise JaxstyleError(f"manifest {path} has no items; add one line per pair "
                            "(CSV header: content,style[,content_mask,style_mask,output,overrides])")
    return _mark_duplicates(items)


def _item(index: int, line: int, row: Mapping[str, Any], base: Path) -> ManifestItem:
    def problem(message: str) -> ManifestItem:
        output = row.get("output") if isinstance(row.get("output"), str) else ""
        return ManifestItem(index, line, None, None, output=output, problem=f"line {line}: {message}")

    if PROBLEM in row:
        return problem(row[PROBLEM])
    unknown = [k for k in row if k not in MANIFEST_FIELDS]
    if unknown:
        return problem(f"unknown field {unknown[0]!r}{did_you_mean(unknown[0], MANIFEST_FIELDS)}")
    paths: dict[str, Path | None] = {}
    for name in ("content", "style", "content_mask", "style_mask"):
        value = row.get(name)
        if value in (None, ""):
            paths[name] = None
        elif not isinstance(value, str):
            return problem(f"{name} must be a path (a string), got {value!r}")
        else:
            p = Path(value).expanduser()
            paths[name] = p if p.is_absolute() else base / p
    for name in REQUIRED_FIELDS:
        if paths[name] is None:
            return problem(f"no {name} path")
    output = row.get("output") or f"{paths['content'].stem}-{paths['style'].stem}{DEFAULT_OUTPUT_SUFFIX}"
    if not isinstance(output, str):
        return problem(f"output must be a file name, got {output!r}")
    overrides = row.get("overrides") or {}
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as e:
            return problem(f"overrides are not valid JSON ({e.msg}); write e.g. {{\"stage2.iterations\": 50}}")
    if not isinstance(overrides, dict):
        return problem(f"overrides must be a JSON object of dotted keys, got {overrides!r}")
    return ManifestItem(index, line, **paths, output=output, overrides=overrides)


def _mark_duplicates(items: list[ManifestItem]) -> list[ManifestItem]:
    first: dict[str, ManifestItem] = {}
    out = []
    for item in items:
        name = os.path.normcase(os.path.normpath(item.output)) if item.output else None
        if name in first and item.problem is None:
            item = dataclasses.replace(item, problem=(
                f"line {item.line}: output {item.output!r} is also the output of line {first[name].line}; "
                "give each item its own output name"), output=f"{item.output} (line {item.line})")
        elif name is not None:
            first.setdefault(name, item)
        out.append(item)
    return out


def process_share(items: Sequence[ManifestItem], process_index: int, process_count: int) -> list[ManifestItem]:
    """The items process `process_index` runs: manifest indices i with i % process_count == process_index."""
    return [item for item in items if item.index % process_count == process_index]


def safe_output_path(outdir: Path, name: str) -> Path:
    """OUTDIR/name, refusing names that leave OUTDIR (absolute, '..', or through a symlink)
    and suffixes `jaxstyle.io.save_image` cannot write."""
    pure = PurePath(name)
    if not name or pure.is_absolute() or pure.drive or pure.root:
        raise JaxstyleError(f"output {name!r} must be a relative file name inside the output folder")
    if ".." in pure.parts:
        raise JaxstyleError(f"output {name!r} contains '..'; outputs must stay inside the output folder")
    if pure.suffix.lower() not in io.SAVE_FORMATS:
        raise JaxstyleError(f"output {name!r} must end in one of {', '.join(io.SAVE_FORMATS)}")
    root = outdir.resolve()
    target = (outdir / pure).resolve()
    if not target.is_relative_to(root):
        raise JaxstyleError(f"output {name!r} leads outside the output folder (to {target}) through a "
                            "symbolic link; choose another name")
    return target


# ----------------------------------------------------------------------------- running a manifest


@dataclasses.dataclass
class ManifestReport:
    """What `run_manifest` did in this process: counts of its items, and the merged summary."""

    done: int
    skipped: int
    failed: int
    summary_path: Path
    summary: dict[str, Any]


@dataclasses.dataclass
class _Loaded:
    item: ManifestItem
    output: Path
    content: np.ndarray  # [H, W, 3]
    style: np.ndarray  # [Hs, Ws, 3]
    content_mask: np.ndarray | None  # [H, W, k]
    style_mask: np.ndarray | None  # [Hs, Ws, k]
    notes: tuple[str, ...]


class _Bar:
    """Items finished out of the total, with throughput and ETA, on one stderr line."""

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO | None):
        self.total, self.stream = total, stream
        self.finished = self.processed = 0
        self.started: float | None = None
        self.tty = stream is not None and stream.isatty()
        self.detail = ""

    def begin(self) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def advance(self, finished: int, processed: int = 0) -> None:
        self.finished += finished
        self.processed += processed
        self.detail = ""
        self.draw(always=True)

    def stage(self, name: str, p: Progress) -> None:
        self.detail = f" | {name} {p.iteration}/{p.total}"
        self.draw(always=False)

    def draw(self, *, always: bool) -> None:
        if self.stream is None or not (self.tty or always):
            return
        filled = self.WIDTH * self.finished // max(self.total, 1)
        text = f"batch {self.finished}/{self.total} [{'#' * filled}{'.' * (self.WIDTH - filled)}]"
        if self.started is not None and self.processed:
            rate = self.processed / (time.perf_counter() - self.started)
            eta = (self.total - self.finished) / rate
            text += f" {rate:.3g} items/s, ETA {_clock(eta)}"
        text += self.detail
        self.stream.write(f"\r{text}\033[K" if self.tty else f"{text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _labels_bucket(k: int) -> int:
    """Label count rounded up to a power of two (bounds the number of compiled shapes)."""
    return 1 << max(0, k - 1).bit_length()


def run_manifest(manifest: str | os.PathLike[str], outdir: str | os.PathLike[str], *,
                 config: str = "default", overrides: Mapping[str, Any] | None = None,
                 max_side: int | None = None, iterations: int | None = None, batch_size: int | None = None,
                 force: bool = False, weights: VGGWeights | None = None, strategy: str = "auto",
                 process_index: int | None = None, process_count: int | None = None,
                 progress: bool = True, stream: TextIO | None = None) -> ManifestReport:
    """Stylise every item of `manifest` (this process's share) into `outdir`.

    Settings: `config` (preset name or TOML path), then `overrides` (dotted keys), then
    `max_side` and `iterations` (both stages), then the item's own overrides. Items whose
    output exists are skipped unless `force`. A bad item (unreadable or missing file, a mask
    that does not fit, an output outside `outdir`, divergence) fails alone, with its reason
    in OUTDIR/summary.json, which is merged with earlier runs' and other processes' entries
    after every batch. `batch_size` defaults to the number of local devices; `strategy` is
    passed to `stylize_batch`.
    `process_index`/`process_count` default to `jax.process_index()`/`jax.process_count()`.
    With `progress`, a progress bar goes to `stream` (default: stderr).
    Raises `JaxstyleError` when the manifest or the base config is unusable.
    """
    manifest = Path(manifest)
    outdir = Path(outdir)
    items = read_manifest(manifest)
    settings = dict(overrides or {})
    if max_side is not None:
        settings["max_side"] = max_side
    if iterations is not None:
        settings.update({"stage1.iterations": iterations, "stage2.iterations": iterations})
    base_config = load_config(config, settings)  # a bad config or flag fails the whole run (exit 2)
    batch_size = batch_size or jax.local_device_count()
    if batch_size < 1:
        raise JaxstyleError(f"batch size must be at least 1, got {batch_size}")
    if outdir.exists() and not outdir.is_dir():
        raise JaxstyleError(f"{outdir} exists and is not a folder; choose another output folder (-o)")
    outdir.mkdir(parents=True, exist_ok=True)
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    share = process_share(items, index, count)

    configs: dict[str, Config] = {"{}": base_config}
    weights_cache: dict[tuple[str, bool], VGGWeights] = {}
    records: dict[str, dict[str, Any]] = {}
    buckets: dict[tuple, list[_Loaded]] = {}
    bar = _Bar(len(share), (stream or sys.stderr) if progress else None)
    meta = {"manifest": str(manifest.resolve()), "config": config, "process_count": count}

    def record(item: ManifestItem, status: str, **extra: Any) -> None:
        records[item.key] = {"index": item.index, "line": item.line, "output": item.output,
                             "content": _str(item.content), "style": _str(item.style),
                             "content_mask": _str(item.content_mask), "style_mask": _str(item.style_mask),
                             "status": status, "process": index, **extra}

    def item_config(item: ManifestItem) -> Config:
        key = json.dumps(item.overrides, sort_keys=True)
        if key not in configs:
            configs[key] = load_config(config, {**settings, **item.overrides})
        return configs[key]

    def get_weights(cfg: Config) -> VGGWeights:
        if weights is not None:
            return weights
        key = (cfg.backbone, cfg.allow_fallback)
        if key not in weights_cache:
            weights_cache[key] = resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)
        return weights_cache[key]

    def run(cfg: Config, labels: int, group: list[_Loaded]) -> None:
        bar.begin()
        t0 = time.perf_counter()
        try:
            result = stylize_batch(*_stack(group, labels, batch_size), config=cfg, weights=get_weights(cfg),
                                   strategy=strategy, progress=bar.stage)
            images = np.asarray(result.images)
        except (JaxstyleError, RuntimeError) as e:  # e.g. out of device memory: this batch fails, not the run
            for loaded in group:
                record(loaded.item, "failed", reason=f"{type(e).__name__}: {e}")
            bar.advance(len(group), len(group))
            _merge_summary(outdir, records, meta)
            return
        each = (time.perf_counter() - t0) / len(group)
        for i, loaded in enumerate(group):
            notes = list(loaded.notes + result.notes[i])
            if result.failed[i]:
                record(loaded.item, "failed", reason=result.failed[i], stages=result.status[i], notes=notes)
                continue
            try:
                loaded.output.parent.mkdir(parents=True, exist_ok=True)
                protect = [p for p in (loaded.item.content, loaded.item.style, loaded.item.content_mask,
                                       loaded.item.style_mask) if p is not None]
                io.save_image(images[i], loaded.output, overwrite=True, protect=protect, metadata={
                    "content": str(loaded.item.content), "style": str(loaded.item.style),
                    "content_mask": _str(loaded.item.content_mask), "style_mask": _str(loaded.item.style_mask),
                    "config": cfg.to_dict(), "status": result.status[i], "notes": notes})
            except (JaxstyleError, OSError) as e:
                record(loaded.item, "failed", reason=str(e), stages=result.status[i], notes=notes)
                continue
            record(loaded.item, "done", seconds=round(each, 3), stages=result.status[i], notes=notes)
        bar.advance(len(group), len(group))
        _merge_summary(outdir, records, meta)

    try:
        for item in share:
            if item.problem:
                record(item, "failed", reason=item.problem)
                bar.advance(1)
                continue
            try:
                output = safe_output_path(outdir, item.output)
                if output.exists() and not force:
                    record(item, "skipped")
                    bar.advance(1)
                    continue
                cfg = item_config(item)
                content, style, cmask, smask, notes = load_inputs(
                    item.content, item.style, item.content_mask, item.style_mask, max_side=cfg.max_side)
            except (JaxstyleError, OSError) as e:
                record(item, "failed", reason=str(e))
                bar.advance(1)
                continue
            labels = _labels_bucket(1 if cmask is None else cmask.shape[-1])
            key = (cfg, content.shape, style.shape, labels)
            buckets.setdefault(key, []).append(_Loaded(item, output, content, style, cmask, smask, notes))
            if len(buckets[key]) == batch_size:
                run(cfg, labels, buckets.pop(key))
        for (cfg, _, _, labels), group in list(buckets.items()):
            run(cfg, labels, group)
    except KeyboardInterrupt:  # keep what finished; a rerun skips it
        _merge_summary(outdir, records, meta)
        raise
    finally:
        bar.close()
    summary = _merge_summary(outdir, records, meta)
    statuses = [r["status"] for r in records.values()]
    return ManifestReport(done=statuses.count("done"), skipped=statuses.count("skipped"),
                          failed=statuses.count("failed"), summary_path=outdir / SUMMARY_NAME, summary=summary)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _stack(group: list[_Loaded], labels: int, batch_size: int):
    """contents, styles, content masks, style masks of a bucket, padded to `batch_size` items
    and `labels` label channels (zero channels, as `parse_mask_pair(num_labels=...)` pads)."""
    group = group + [group[-1]] * (batch_size - len(group))
    contents = np.stack([g.content for g in group])
    styles = np.stack([g.style for g in group])
    if all(g.content_mask is None for g in group):
        return contents, styles, None, None
    cms, sms = [], []
    for g in group:
        if g.content_mask is None:
            pair = parse_mask_pair(None, None, content_shape=g.content.shape[:2], style_shape=g.style.shape[:2],
                                   num_labels=labels)
            cm, sm = pair.content, pair.style
        else:
            extra = labels - g.content_mask.shape[-1]
            cm, sm = (np.pad(m, ((0, 0), (0, 0), (0, extra))) for m in (g.content_mask, g.style_mask))
        cms.append(cm)
        sms.append(sm)
    return contents, styles, np.stack(cms), np.stack(sms)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (shared by the processes of a multi-process run)."""
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def read_summary(outdir: str | os.PathLike[str]) -> dict[str, Any]:
    """OUTDIR/summary.json ({} when there is none yet)."""
    path = Path(outdir) / SUMMARY_NAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise JaxstyleError(f"{path} is unreadable ({e}); move it away to start a fresh summary") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise JaxstyleError(f"{path} is not a jaxstyle batch summary; move it away or choose another output folder")
    return data


def _merge_summary(outdir: Path, records: Mapping[str, dict[str, Any]], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `records` (by item key) into OUTDIR/summary.json, atomically and under a lock.

    Entries of other items (other processes, earlier runs) are kept; this run's replace theirs.
    """
    path = outdir / SUMMARY_NAME
    with _locked(outdir / LOCK_NAME):
        entries = {e["key"]: e for e in read_summary(outdir).get("items", [])}
        entries.update({key: {"key": key, **r} for key, r in records.items()})
        items = sorted(entries.values(), key=lambda e: (e.get("index", math.inf), e["key"]))
        counts = {s: sum(e["status"] == s for e in items) for s in STATUSES}
        summary = {**meta, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "counts": counts, "items": items}
        _write_text_atomically(path, json.dumps(summary, indent=2) + "\n")
    return summary


def _write_text_atomically(path: Path, text: str) -> None:
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                         delete=False, encoding="utf-8")
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


__all__ = [
    "BATCH_AXIS", "STRATEGIES", "BatchResult", "ManifestItem", "ManifestReport", "batch_mesh",
    "initialize_distributed", "minimize_batch", "process_share", "read_manifest", "read_summary",
    "resolve_strategy", "run_chunk_batch", "run_manifest", "safe_output_path", "stylize_batch",
]
