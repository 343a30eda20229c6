"""The optax drivers: chunked host loop, fixed-budget pure loop, stopping and divergence."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.errors import JaxstyleError
from jaxstyle.itemwise import Items
from jaxstyle.optimize import (BUDGET, CONVERGED, DIVERGED, OptimConfig, chunk_length, finalize, minimize,
                               minimize_fixed, run_chunk)


def compiled_steps() -> int:
    """Compiled variants of the step, whichever loop driver ran it."""
    return run_chunk._cache_size()


@dataclasses.dataclass(frozen=True)
class Quadratic:
    """sum((a * (x - b))^2) + a tiny quartic, minimum at b."""

    def __call__(self, x, args):
        a, b = args
        r = a * (x - b)
        return jnp.sum(r ** 2) + 1e-3 * jnp.sum(r ** 4), {}


@dataclasses.dataclass(frozen=True)
class Explodes:
    """Finite for a few steps of Adam, then NaN: x wanders into log of a negative number."""

    def __call__(self, x, args):
        return -jnp.sum(x) + jnp.sum(jnp.log(1.5 - x)), {}


ARGS = (jnp.linspace(0.5, 2.0, 24).reshape(2, 4, 3), jnp.full((2, 4, 3), 0.3))


@pytest.mark.parametrize("method,linesearch", [("lbfgs", "none"), ("lbfgs", "zoom"), ("adam", "none")])
def test_converges_to_the_minimum(method, linesearch):
    cfg = OptimConfig(method=method, linesearch=linesearch, iterations=400 if method == "adam" else 40,
                      learning_rate=0.05, chunk_size=10)
    state, history = minimize(Quadratic(), jnp.zeros((2, 4, 3)), ARGS, cfg)
    np.testing.assert_allclose(state.best_x, ARGS[1], atol=2e-3)
    assert history[0] > history[-1] and len(history) == int(state.step)
    assert int(state.status) in (BUDGET, CONVERGED)


def test_tolerance_stops_early_and_budget_is_respected():
    cfg = OptimConfig(iterations=500, chunk_size=5, tol=1e-6)
    state, history = minimize(Quadratic(), jnp.zeros((2, 4, 3)), ARGS, cfg)
    assert int(state.status) == CONVERGED and int(state.step) < 500
    state, _ = minimize(Quadratic(), jnp.zeros((2, 4, 3)), ARGS, OptimConfig(iterations=7, chunk_size=5))
    assert int(state.step) == 7 and int(state.status) == BUDGET


def test_skipping_the_last_evaluation_leaves_it_to_finalize():
    cfg = OptimConfig(iterations=6, chunk_size=3)
    done, history = minimize(Quadratic(), jnp.zeros((2, 4, 3)), ARGS, cfg)
    raw, raw_history = minimize(Quadratic(), jnp.zeros((2, 4, 3)), ARGS, cfg, evaluate_last=False)
    np.testing.assert_array_equal(raw_history, history)
    # L-BFGS's last step improves this quadratic: only the closing evaluation sees it
    assert float(done.best_loss) < float(raw.best_loss)
    again = finalize(Quadratic(), raw, ARGS)
    np.testing.assert_array_equal(again.best_x, done.best_x)
    assert float(again.best_loss) == float(done.best_loss)


def test_divergence_is_detected_and_best_is_kept():
    cfg = OptimConfig(method="adam", learning_rate=0.5, iterations=50, chunk_size=10)
    state, history = minimize(Explodes(), jnp.zeros((3,)), None, cfg)
    assert int(state.status) == DIVERGED
    assert bool(jnp.all(jnp.isfinite(state.best_x))) and np.isfinite(float(state.best_loss))
    assert float(state.best_loss) == pytest.approx(min(h for h in history if np.isfinite(h)))


@pytest.mark.parametrize("loop", ["scan", "host"])
def test_step_compiles_once_for_many_chunks_and_new_data(loop):
    cfg = OptimConfig(iterations=30, chunk_size=10, loop=loop)
    before = compiled_steps()
    minimize(Quadratic(), jnp.zeros((2, 4, 3)), ARGS, cfg)
    after_first = compiled_steps()
    other = (ARGS[0] * 2, ARGS[1] + 0.1)
    minimize(Quadratic(), jnp.ones((2, 4, 3)), other, cfg)  # same shapes, new values
    assert after_first - before == 1
    assert compiled_steps() == after_first


@pytest.mark.parametrize("method,linesearch", [("lbfgs", "none"), ("lbfgs", "zoom"), ("adam", "none")])
def test_scan_and_host_loops_agree(method, linesearch):
    results = []
    for loop in ("scan", "host"):
        cfg = OptimConfig(method=method, linesearch=linesearch, iterations=12, chunk_size=5, loop=loop)
        state, history = minimize(Quadratic(), jnp.zeros((2, 4, 3)), ARGS, cfg)
        results.append((np.asarray(state.best_x), history))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5)


def test_batched_items_stop_independently_and_match_single_runs():
    cfg = OptimConfig(iterations=40, chunk_size=10, tol=1e-7)
    xs = jnp.zeros((2, 2, 4, 3))
    args = (jnp.stack([ARGS[0], ARGS[0] * 3]), jnp.stack([ARGS[1], ARGS[1] * 2]))
    batch, _ = minimize(Quadratic(), xs, args, cfg, items=Items("vmap"))
    for i in range(2):
        single, _ = minimize(Quadratic(), xs[i], (args[0][i], args[1][i]), cfg)
        np.testing.assert_allclose(batch.best_x[i], single.best_x, rtol=1e-5, atol=1e-6)
        assert int(batch.step[i]) == int(single.step)


def test_fixed_budget_runs_inside_jit_and_vmap_and_adam_is_differentiable():
    cfg = OptimConfig(method="adam", iterations=20, learning_rate=0.05)

    def solve(b):
        x, losses = minimize_fixed(Quadratic(), jnp.zeros((2, 4, 3)), (ARGS[0], b), cfg)
        return x, losses

    x, losses = jax.jit(solve)(ARGS[1])
    assert losses.shape == (20,) and float(losses[-1]) < float(losses[0])
    xs, _ = jax.vmap(solve)(jnp.stack([ARGS[1], ARGS[1] + 0.2]))
    np.testing.assert_allclose(xs[0], x, rtol=1e-6)

    def scalar(b):
        return jnp.sum(solve(b)[0] ** 2)

    g = jax.jit(jax.grad(scalar))(ARGS[1])
    d = jax.random.normal(jax.random.PRNGKey(0), ARGS[1].shape)
    eps = 1e-3
    fd = (scalar(ARGS[1] + eps * d) - scalar(ARGS[1] - eps * d)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(g, d), fd, rtol=1e-2)


def test_bad_settings_are_named():
    with pytest.raises(JaxstyleError, match="did you mean 'lbfgs'"):
        OptimConfig(method="lbgfs")
    with pytest.raises(JaxstyleError, match="iterations"):
        OptimConfig(iterations=-1)
    with pytest.raises(JaxstyleError, match="did you mean 'zoom'"):
        OptimConfig(linesearch="zom")
