"""The stage plan run from the host: one compiled program per step of the plan, the optimiser
in device-side chunks, progress, snapshots and Ctrl-C between chunks.

`run_host` drives `jaxstyle.pipeline.run_plan` for one item (`itemwise.ONE`) or for a
batch laid over devices (`itemwise.Items`); `jaxstyle.single` and `jaxstyle.batch` are
thin adapters over it. Arrays are float32 `[H, W, 3]` RGB in [0, 1], with a leading batch
axis `[B, ...]` for a batch; per-item numbers (losses, status) are scalars or `[B]`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxstyle import optimize
from jaxstyle.config import Config
from jaxstyle.errors import DivergenceError, Interrupted
from jaxstyle.itemwise import Items
from jaxstyle.objective import Objective
from jaxstyle.optimize import DIVERGED, STATUS_NAMES, Progress, State
from jaxstyle.grid import slice_grid_host
from jaxstyle.pipeline import Inputs, Stage, fit, leave, render, run_plan, setup, upsample, upsample_settings
from jaxstyle.upsample import upsample_affine_host
from jaxstyle.vgg import VGGWeights

__all__ = ["HostRun", "ProgressFn", "SnapshotFn", "StageRecord", "run_host", "status_names"]

ProgressFn = Callable[[str, Progress], None]
SnapshotFn = Callable[[str, int, np.ndarray], None]


@dataclasses.dataclass
class StageRecord:
    """What one stage did: loss history `[steps(, B)]`; best loss, steps and status codes per
    item; the weighted loss terms at the best iterate; the result at full size, clipped."""

    history: np.ndarray
    best_loss: np.ndarray
    steps: np.ndarray
    status: np.ndarray
    terms: dict[str, np.ndarray]
    image: np.ndarray | None = None


@dataclasses.dataclass
class HostRun:
    """What `run_host` returns: the image(s) and a record per stage, with per-item notes and
    failures (a list of one entry for a single item) and the seconds of each phase."""

    image: jax.Array
    stages: dict[str, StageRecord]
    failed: list[str | None]
    notes: list[tuple[str, ...]]
    seconds: dict[str, float]
    look: jax.Array | None = None  # the grid whose slice the image is (`pipeline.run_plan`), or None


@functools.partial(jax.jit, static_argnames=("fn", "items", "static"))
def _program(fn: Callable, shared: Any, item: Any, *, items: Items, static: tuple[tuple[str, Any], ...]) -> Any:
    """One step of the plan as one program, over one item or a batch."""
    return items.apply(functools.partial(fn, **dict(static)), shared, item)


@functools.partial(jax.jit, static_argnames=("objective", "items"))
def _terms(objective: Objective, x: jax.Array, args: Any, *, items: Items) -> dict[str, jax.Array]:
    """The weighted loss terms of `x` (per item)."""
    return optimize.on_items(items, lambda s, a, _: objective(s, a)[1], x, args)


@functools.partial(jax.jit, static_argnames=("objective", "items"))
def _close(objective: Objective, state: State, args: Any, *, items: Items) -> tuple[State, dict[str, jax.Array]]:
    """`optimize.finalize` and the loss terms of the resulting best image, in one program."""
    state = optimize.finalize(objective, state, args, items=items)
    return state, _terms(objective, state.best_x, args, items=items)


def run_host(weights: VGGWeights, inputs: Inputs, *, config: Config, items: Items, count: int | None = None,
             content_full: Any = None, progress: ProgressFn | None = None, log_terms: bool = False,
             snapshot: SnapshotFn | None = None, snapshot_every: int = 0, start: Any = None) -> HostRun:
    """Run the plan of `config` on `inputs` (one item, or a batch whose first `count` items are real).

    content_full: the content photo at its own size, float32 `[H, W, 3]` on the host (for a
    batch, a sequence of `count` such photos, of any sizes), to deliver the image at that size.
    The image is then numpy (a list of arrays for a batch); else a jax.Array `[(B,) h, w, 3]`.
    progress: `progress(stage, Progress)` between chunks (`[count]` fields for a batch).
    log_terms: also evaluate the loss terms at each report (`Progress.terms`, one item only).
    snapshot: `snapshot(stage, iteration, best image)` about every `snapshot_every` iterations.
    start: a `pipeline.Start` to solve from instead of the preset's start (`pipeline.run_plan`).
    Raises `DivergenceError` when every item diverged at a stage's first step, `Interrupted`
    on Ctrl-C (with the best image so far).
    """
    count = count if items.batched else 1
    seconds: dict[str, float] = {}
    stages: dict[str, StageRecord] = {}
    failed: list[str | None] = [None] * count
    notes: list[tuple[str, ...]] = [() for _ in range(count)]
    phase = ["setup"]
    reporter: list[_Reporter | None] = [None]

    def call(fn: Callable, shared: Any, item: Any, *, config: Config, stage: Stage | None = None) -> Any:
        phase[0] = _phase(fn, stage, config)
        t0 = time.perf_counter()
        if fn is upsample:
            out = _upsample_items(item, config, count if items.batched else None)
        else:
            out = jax.block_until_ready(_program(fn, shared, item, items=items,
                                                 static=(("config", config), ("stage", stage))))
        seconds[phase[0]] = seconds.get(phase[0], 0.0) + time.perf_counter() - t0
        if fn is leave:  # a coarse stage's result at full size
            stages[stage.name].image = _host_image(out, count, items)
        return out

    def solve(stage: Stage, x0: jax.Array, args: Any) -> jax.Array:
        phase[0] = stage.name
        t0 = time.perf_counter()
        objective = stage.objective(config)
        opt_items = items.for_optimizer(zoom_linesearch=stage.opt.uses_zoom)
        report = _Reporter(stage, objective, args, inputs, config, opt_items, count, progress,
                           log_terms and not items.batched, snapshot, snapshot_every)
        reporter[0] = report
        state = optimize.init(stage.opt, x0, items=opt_items)
        state, history = optimize.run(objective, state, args, stage.opt, items=opt_items, callback=report,
                                      evaluate_last=False)
        state, terms = _close(objective, state, args, items=opt_items)
        record = StageRecord(history=history[:, :count] if items.batched else history,
                             **{k: np.asarray(v)[:count] if items.batched else np.asarray(v) for k, v in
                                (("best_loss", state.best_loss), ("steps", state.step), ("status", state.status))},
                             terms={k: np.asarray(v) for k, v in jax.device_get(terms).items()})
        if stage.grid:
            record.image = _host_image(_stage_image(state.best_x, stage, inputs, config, opt_items), count, items)
        elif stage.scale >= 1:
            record.image = _host_image(state.best_x, count, items)
        stages[stage.name] = record
        _check_divergence(stage.name, record, failed, notes)
        reporter[0] = None
        seconds[stage.name] = seconds.get(stage.name, 0.0) + time.perf_counter() - t0
        return state.best_x

    began = time.perf_counter()
    try:  # key None: each item draws from PRNGKey(config.seed) inside its program
        image, look = run_plan(weights, inputs, None, {}, config=config, call=call, solve=solve,
                               content_full=content_full, with_look=True, start=start)
    except KeyboardInterrupt:
        best = reporter[0].best_image() if reporter[0] is not None else None
        if best is None and stages:  # nothing better yet in this stage: the last stage's result
            best = stages[list(stages)[-1]].image
        where = {"smooth": "the final filter", "finish": "the final filter", "upsample": "the upsampling"}
        raise Interrupted(f"interrupted during {where.get(phase[0], phase[0])}", best) from None
    seconds["total"] = time.perf_counter() - began
    return HostRun(image=image, stages=stages, failed=failed, notes=notes, seconds=seconds, look=look)


def _phase(fn: Callable, stage: Stage | None, config: Config) -> str:
    """The name under which a step of the plan is timed (and reported when interrupted)."""
    if fn is setup:
        return "setup"
    if stage is not None:
        return stage.name
    if fn is upsample:
        return "upsample"
    if fn in (render, fit):
        return fn.__name__
    return "smooth" if config.smooth.enabled else "finish"


def _upsample_items(item: Any, config: Config, count: int | None) -> Any:
    """The upsampling stage on the host, per item (photos of any size share one tile program)."""
    full, content, x, look = item
    settings = upsample_settings(config)
    sliced = look is not None

    def one(full_i: np.ndarray, content_i: Any, x_i: Any, look_i: Any) -> np.ndarray:
        if sliced:
            return slice_grid_host(look_i, full_i)
        if tuple(np.shape(full_i)) == tuple(content_i.shape):
            return np.asarray(x_i)
        return np.clip(upsample_affine_host(full_i, np.asarray(content_i), np.asarray(x_i), **settings), 0.0, 1.0)

    if count is None:
        return one(full, content, x, look)
    return [one(full[i], content[i], x[i], None if look is None else look[i]) for i in range(count)]


def _stage_image(best: Any, stage: Stage, inputs: Inputs, config: Config, items: Items) -> jax.Array:
    """A stage's best iterate as an image at the working size: a grid rendered under the
    content, a coarse stage's image resized, else the iterate itself."""
    if stage.grid:
        return _program(render, (), (best, inputs.content), items=items, static=(("config", config), ("stage", None)))
    if stage.scale < 1:
        return _program(leave, (), (best, inputs), items=items, static=(("config", config), ("stage", stage)))
    return best


def _host_image(x: jax.Array, count: int, items: Items) -> np.ndarray:
    """`x` clipped to [0, 1] on the host, without a batch's padding."""
    x = np.asarray(x)
    return np.clip(x[:count] if items.batched else x, 0.0, 1.0)


def _check_divergence(name: str, record: StageRecord, failed: list[str | None], notes: list[tuple[str, ...]]) -> None:
    """Per item: a stage that diverged at its first step fails the item; later, a note."""
    codes, best, steps = (np.atleast_1d(a) for a in (record.status, record.best_loss, record.steps))
    for i in range(len(failed)):
        if codes[i] != DIVERGED or failed[i]:
            continue
        if not np.isfinite(best[i]):
            failed[i] = (f"{name} diverged at its first step (loss is NaN/Inf): lower the loss weights or the "
                         "learning rate, or check the inputs")
        else:
            notes[i] += (f"{name} diverged after {int(steps[i])} iterations; kept the best image (loss "
                         f"{best[i]:.4g}); consider fewer iterations or a smaller learning rate",)
    if all(failed):
        raise DivergenceError(failed[0])


def status_names(record: StageRecord) -> list[str]:
    """The stop reason of each item of a stage record."""
    return [STATUS_NAMES[int(c)] for c in np.atleast_1d(record.status)]


@dataclasses.dataclass
class _Reporter:
    """Host-side hook between chunks: progress, optional loss terms and snapshots."""

    stage: Stage
    objective: Objective
    args: Any
    inputs: Inputs
    config: Config
    items: Items
    count: int
    progress: ProgressFn | None
    log_terms: bool
    snapshot: SnapshotFn | None
    snapshot_every: int
    latest: State | None = None
    last_snapshot: int = 0

    def __call__(self, p: Progress, state: State) -> None:
        self.latest = state
        if self.items.batched:
            p = Progress(p.iteration, p.total, p.loss[:self.count], p.best_loss[:self.count], p.status[:self.count])
        if self.log_terms:
            terms = jax.device_get(_terms(self.objective, state.best_x, self.args, items=self.items))
            p.terms = {k: float(v) for k, v in terms.items()}
        if self.progress is not None:
            self.progress(self.stage.name, p)
        if self.snapshot is not None and self.snapshot_every > 0 and \
                p.iteration - self.last_snapshot >= self.snapshot_every:
            self.last_snapshot = p.iteration
            self.snapshot(self.stage.name, p.iteration, self.best_image())

    def best_image(self) -> np.ndarray | None:
        """The best iterate so far at full size, clipped (None before a finite loss)."""
        state = self.latest
        if state is None or not np.all(np.isfinite(np.asarray(state.best_loss))):
            return None
        best = _stage_image(state.best_x, self.stage, self.inputs, self.config, self.items)
        return np.clip(np.asarray(best), 0.0, 1.0)

