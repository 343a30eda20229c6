"""Minimise an image objective with optax (L-BFGS with zoom line search, or Adam).

The variable is a float32 `[H, W, 3]` image (any pytree works). The objective is a
hashable callable `fun(x, args) -> (loss, terms)` whose arrays travel in `args`, so one
compiled step serves every image of the same shape.

Two drivers share one pure step:
- `minimize` / `run`: iterations run on the device in chunks; the host wakes only between
  chunks to report progress. One item, or a batch whose items step and stop on their own
  (`jaxstyle.itemwise.Items`: vmapped, mapped, sharded over a mesh). Tracks the best
  iterate, stops on a budget, a relative-improvement tolerance, NaN/Inf or a blow-up. A
  chunk is one `lax.scan` on accelerators; on the CPU backend it is a run of
  asynchronously dispatched jitted steps, because XLA:CPU runs backward convolutions
  several times slower inside a loop body than at top level.
- `minimize_fixed`: a fixed number of steps in one `lax.scan`, with no host interaction:
  runs inside a caller's `jit`/`vmap`, and with Adam it is reverse-differentiable.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.itemwise import ONE, Items

__all__ = [
    "BUDGET", "CONVERGED", "DIVERGED", "OptimConfig", "Progress", "STATUS_NAMES", "State", "chunk_length", "finalize",
    "init", "init_state", "make_solver", "minimize", "minimize_fixed", "on_items", "resolve_loop", "run", "run_chunk",
    "step",
]

METHODS = ("lbfgs", "adam")
LINESEARCHES = ("none", "zoom")
LOOPS = ("auto", "scan", "host")

# Status codes carried on the device (per item when vmapped).
RUNNING, CONVERGED, BUDGET, DIVERGED = 0, 1, 2, 3
STATUS_NAMES = {RUNNING: "running", CONVERGED: "converged", BUDGET: "budget", DIVERGED: "diverged"}


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """How to minimise.

    iterations: step budget. linesearch (L-BFGS): "none" takes the step `lbfgs_step` times
    the L-BFGS direction, as the original's torch `optim.lbfgs` does (one evaluation per
    iteration); "zoom" uses optax's zoom line search (several evaluations, inside a
    `while` loop). loop: "auto" (host-dispatched steps on CPU, `lax.scan` elsewhere),
    "scan" or "host". tol: stop when the loss improves by less than tol (relative)
    over `chunk_size` steps (0 disables). blowup: a loss above blowup x the initial loss
    counts as divergence. learning_rate: Adam's step in image units (L-BFGS uses its
    line search). adam_eps: Adam's denominator floor; a value comparable to the gradient
    scale makes the update a smooth function of the inputs (useful when differentiating
    through the optimisation: with a tiny eps the first steps are ~lr * sign(gradient)). chunk_size: steps per device call between host reports.
    """

    method: str = "lbfgs"
    iterations: int = 1000
    memory_size: int = 20
    linesearch: str = "none"
    lbfgs_step: float = 1.0
    max_linesearch_steps: int = 16
    learning_rate: float = 0.01
    adam_eps: float = 1e-8
    tol: float = 0.0
    blowup: float = 1e3
    chunk_size: int = 25
    loop: str = "auto"

    def __post_init__(self) -> None:
        for name, value, choices in (("linesearch", self.linesearch, LINESEARCHES), ("loop", self.loop, LOOPS)):
            if value not in choices:
                raise JaxstyleError(f"unknown {name} {value!r}{did_you_mean(value, choices)}; "
                                    f"choose one of {', '.join(choices)}")
        if self.method not in METHODS:
            raise JaxstyleError(f"unknown optimiser {self.method!r}{did_you_mean(self.method, METHODS)}; "
                                f"choose one of {', '.join(METHODS)}")
        if self.iterations < 0 or self.chunk_size < 1:
            raise JaxstyleError(f"iterations must be >= 0 and chunk_size >= 1, got {self.iterations}, "
                                f"{self.chunk_size}")
        if self.memory_size < 1:
            raise JaxstyleError(f"memory_size must be >= 1 (the past steps L-BFGS keeps), got {self.memory_size}")

    @property
    def uses_zoom(self) -> bool:
        """Whether steps run optax's zoom line search (L-BFGS with linesearch "zoom")."""
        return self.method == "lbfgs" and self.linesearch == "zoom"


def make_solver(cfg: OptimConfig) -> optax.GradientTransformationExtraArgs:
    """The optax transformation for `cfg.method`."""
    if cfg.uses_zoom:
        return optax.lbfgs(
            memory_size=cfg.memory_size,
            linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=cfg.max_linesearch_steps,
                                                      initial_guess_strategy="one"))
    if cfg.method == "lbfgs":
        return optax.lbfgs(learning_rate=cfg.lbfgs_step, memory_size=cfg.memory_size, linesearch=None)
    return optax.adam(cfg.learning_rate, eps=cfg.adam_eps)


class State(NamedTuple):
    """Optimiser state; every field gains a leading axis when vmapped."""

    x: Any
    opt_state: Any
    best_x: Any
    best_loss: jax.Array
    first_loss: jax.Array
    last_loss: jax.Array
    ref_loss: jax.Array
    step: jax.Array
    status: jax.Array


def init_state(cfg: OptimConfig, x0: Any) -> State:
    """Initial state at `x0` (losses start at +inf until the first step evaluates them)."""
    inf = jnp.asarray(jnp.inf, jnp.result_type(*jax.tree_util.tree_leaves(x0)))
    # Strong types throughout, so the state after a step has the same avals as before it
    # (optax's line-search info starts weakly typed) and each step compiles once.
    opt_state = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.asarray(a).dtype), make_solver(cfg).init(x0))
    return State(x=x0, opt_state=opt_state, best_x=x0, best_loss=inf, first_loss=inf,
                 last_loss=inf, ref_loss=inf, step=jnp.zeros((), jnp.int32),
                 status=jnp.asarray(RUNNING, jnp.int32))


def step(fun: Callable, cfg: OptimConfig, state: State, args: Any, budget: jax.Array) -> State:
    """One optimiser step; a no-op once the state has stopped. Pure and jit-able."""
    solver = make_solver(cfg)

    def value_fn(x):
        return fun(x, args)[0]

    if cfg.uses_zoom:
        value, grad = optax.value_and_grad_from_state(value_fn)(state.x, state=state.opt_state)
        updates, opt_state = solver.update(grad, state.opt_state, state.x, value=value, grad=grad,
                                           value_fn=value_fn)
    else:
        value, grad = jax.value_and_grad(value_fn)(state.x)
        updates, opt_state = solver.update(grad, state.opt_state, state.x)
    new_x = optax.apply_updates(state.x, updates)

    finite = jnp.isfinite(value) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g))
                                                      for g in jax.tree_util.tree_leaves(grad)]))
    first = jnp.where(state.step == 0, value, state.first_loss)
    blown = value > cfg.blowup * jnp.abs(first) + 1e-12
    improved = finite & (value < state.best_loss)
    best_x = jax.tree_util.tree_map(lambda b, x: jnp.where(improved, x, b), state.best_x, state.x)
    best_loss = jnp.where(improved, value, state.best_loss)
    count = state.step + 1
    # Relative improvement of the best loss over each window of chunk_size steps (the best,
    # not the current loss: L-BFGS without a line search is not monotone).
    at_window = (count % cfg.chunk_size) == 0
    stalled = (at_window & (cfg.tol > 0) & jnp.isfinite(state.ref_loss)
               & (state.ref_loss - best_loss <= cfg.tol * jnp.abs(state.ref_loss)))
    ref_loss = jnp.where(at_window, best_loss, state.ref_loss)
    status = jnp.where(~finite | blown, DIVERGED,
                       jnp.where(stalled, CONVERGED, jnp.where(count >= budget, BUDGET, RUNNING)))
    proposed = State(x=new_x, opt_state=opt_state, best_x=best_x, best_loss=best_loss, first_loss=first,
                     last_loss=value, ref_loss=ref_loss, step=count, status=status.astype(jnp.int32))
    active = state.status == RUNNING
    return jax.tree_util.tree_map(lambda new, old: jnp.where(active, new, old), proposed, state)


def on_items(items: Items, fn: Callable, state: Any, args: Any, extra: Any = ()) -> Any:
    """`fn(state, args, extra)` for one item, or per item of a batch: item i gets `state[i]`
    and, with `args = (shared, per_item)`, the args `(shared, per_item[i])`; `extra` is
    shared by all."""
    if not items.batched:
        return fn(state, args, extra)
    shared, per_item = args
    return items.apply(lambda sh, it: fn(it[0], (sh[0], it[1]), sh[1]), (shared, extra), (state, per_item))


@functools.partial(jax.jit, static_argnames=("cfg", "items"))
def init(cfg: OptimConfig, x0: Any, *, items: Items = ONE) -> State:
    """`init_state` for one item, or for each item of a batch `x0` `[B, ...]`."""
    return items.apply(lambda _, x: init_state(cfg, x), (), x0)


@functools.partial(jax.jit, static_argnames=("fun", "cfg", "length", "items"))
def run_chunk(fun: Callable, cfg: OptimConfig, state: State, args: Any, budget: jax.Array, *,
              length: int, items: Items = ONE) -> tuple[State, jax.Array]:
    """`length` steps on the device; returns the new state and each step's loss `[length]`
    (`[length, B]` for a batch, where `args = (shared, per_item)` and each item steps and
    stops on its own). With `length` 1 there is no loop around the step."""

    def chunk(s: State, a: Any, b: jax.Array) -> tuple[State, jax.Array]:
        if length == 1:
            s = step(fun, cfg, s, a, b)
            return s, s.last_loss[None]

        def body(s, _):
            s = step(fun, cfg, s, a, b)
            return s, s.last_loss

        return jax.lax.scan(body, s, None, length=length)

    state, losses = on_items(items, chunk, state, args, budget)
    return state, (losses.T if items.batched else losses)


@functools.partial(jax.jit, static_argnames=("fun", "items"))
def finalize(fun: Callable, state: State, args: Any, *, items: Items = ONE) -> State:
    """Evaluate the last iterate and keep it if it beats the best one seen."""

    def one(s: State, a: Any, _: Any) -> State:
        value = fun(s.x, a)[0]
        better = jnp.isfinite(value) & (value < s.best_loss) & (s.status != DIVERGED)
        best_x = jax.tree_util.tree_map(lambda b, x: jnp.where(better, x, b), s.best_x, s.x)
        return s._replace(best_x=best_x, best_loss=jnp.where(better, value, s.best_loss))

    return on_items(items, one, state, args)


def resolve_loop(cfg: OptimConfig) -> str:
    """"scan" or "host" for `cfg.loop` on the default backend (see the module docstring)."""
    if cfg.loop != "auto":
        return cfg.loop
    return "host" if jax.default_backend() == "cpu" else "scan"


def chunk_length(cfg: OptimConfig) -> int:
    """Steps per chunk: equal chunks of at most `chunk_size` that cover the budget with the
    least overshoot (one compiled length; steps past the budget are no-ops)."""
    return math.ceil(cfg.iterations / max(1, math.ceil(cfg.iterations / cfg.chunk_size)))


@dataclasses.dataclass
class Progress:
    """What the driver reports to its callback after each chunk (host values; `[B]` for a batch)."""

    iteration: int
    total: int
    loss: Any
    best_loss: Any
    status: Any
    terms: dict[str, float] | None = None


def minimize(fun: Callable, x0: Any, args: Any, cfg: OptimConfig, *, items: Items = ONE,
             callback: Callable[[Progress, State], None] | None = None,
             evaluate_last: bool = True) -> tuple[State, np.ndarray]:
    """Minimise from `x0` (one item, or a batch `[B, ...]` with `args = (shared, per_item)`).

    Returns the final state and the loss history `[steps]` (`[steps, B]` for a batch, where
    an item's entries repeat after it stopped; `state.step` says how many are real). See `run`.
    """
    return run(fun, init(cfg, x0, items=items), args, cfg, items=items, callback=callback,
               evaluate_last=evaluate_last)


def run(fun: Callable, state: State, args: Any, cfg: OptimConfig, *, items: Items = ONE,
        callback: Callable[[Progress, State], None] | None = None,
        evaluate_last: bool = True) -> tuple[State, np.ndarray]:
    """Run the optimiser from `state` in device-side chunks until every item has stopped.

    The result to use is `state.best_x` (the best iterate evaluated); `state.status` says
    why it stopped (STATUS_NAMES). `callback(progress, state)` runs on the host between
    chunks; a KeyboardInterrupt there (or Ctrl-C) propagates, and the caller keeps the
    last state it was given. `evaluate_last=False` skips the closing `finalize` (the last
    iterate is not compared yet), for a caller that fuses it into its own program.
    """
    budget = np.int32(cfg.iterations)
    scan = resolve_loop(cfg) == "scan"
    length = chunk_length(cfg)
    history: list[np.ndarray] = [np.zeros((0, *np.shape(state.step)), np.float32)]
    done = 0
    while done < cfg.iterations:
        if scan:
            state, losses = run_chunk(fun, cfg, state, args, budget, length=length, items=items)
            done += length
        else:  # dispatch is asynchronous: the host waits only at the chunk's end
            parts = []
            for _ in range(min(length, cfg.iterations - done)):
                state, losses = run_chunk(fun, cfg, state, args, budget, length=1, items=items)
                parts.append(losses)
                done += 1
            losses = np.concatenate(jax.device_get(parts))
        history.append(np.asarray(jax.device_get(losses)))
        status = np.asarray(jax.device_get(state.status))
        if callback is not None:
            callback(Progress(min(done, cfg.iterations), cfg.iterations, np.asarray(state.last_loss),
                              np.asarray(state.best_loss), status), state)
        if bool((status != RUNNING).all()):
            break
    losses = np.concatenate(history)
    if not items.batched:  # steps after a stop repeat the last loss
        losses = losses[: int(state.step)]
    return (finalize(fun, state, args, items=items) if evaluate_last else state), losses


def minimize_fixed(fun: Callable, x0: Any, args: Any, cfg: OptimConfig) -> tuple[Any, jax.Array]:
    """Exactly `cfg.iterations` steps in one `lax.scan`, no host interaction.

    Returns the best iterate (as `minimize` does: the final iterate is evaluated too) and
    the losses `[iterations]`. Pure: usable inside a caller's `jax.jit`/`jax.vmap`, and with
    `method="adam"` differentiable with respect to `x0` and `args` (a zoom line search is a
    while loop, which is not reverse-differentiable). Divergence stops the updates (the
    state freezes) rather than raising.
    """
    state = init_state(cfg, x0)
    budget = jnp.asarray(cfg.iterations, jnp.int32)

    def body(s, _):
        s = step(fun, cfg, s, args, budget)
        return s, s.last_loss

    state, losses = jax.lax.scan(body, state, None, length=cfg.iterations)
    return finalize(fun, state, args).best_x, losses
