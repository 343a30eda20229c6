"""Box sums and means over square windows of `(2r+1)^2` pixels (r = `radius`).

Conventions: `x` is `[H, W, ...]` (usually `[H, W, C]` float32); the box runs over the
first two axes and trailing axes ride along. Everything is computed in the dtype of `x`.
Batches come from `jax.vmap`.

Edge handling:

- `box_sum` keeps only windows lying entirely inside `x` ("valid"):
  `[H, W, ...] -> [H-2r, W-2r, ...]`, one sum per window centre at least r from every border.
- `box_spread` is its adjoint: each pixel sums the values of the inside windows that
  hold it, `[H-2r, W-2r, ...] -> [H, W, ...]`; `windows_per_pixel` is how many there are.
- `box_mean` keeps one window per pixel, truncated at the image border: the mean over the
  in-image pixels of each window, `[H, W, ...] -> [H, W, ...]` (MATLAB
  `boxfilter(x, r) ./ boxfilter(ones, r)`).

Numerics: narrow windows (up to `DIRECT_BOX_MAX_WIDTH` wide) are summed directly, wider
ones by per-block prefix and suffix sums (van Herk / Gil-Werman), so the cost does not grow
with the window and the rounding grows with the window, not with the image as it would
with one long cumsum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DIRECT_BOX_MAX_WIDTH", "box_mean", "box_spread", "box_sum", "box_sum_axis", "windows_per_pixel"]

# Windows up to this width are summed directly (width shifted adds, cheapest on CPU and
# GPU for the usual r = 1, 2); wider ones by per-block prefix/suffix sums, whose cost
# does not depend on the width.
DIRECT_BOX_MAX_WIDTH = 7


def box_sum_axis(x: jax.Array, width: int, axis: int) -> jax.Array:
    """Sums of `width` consecutive entries along `axis` ("valid": length N - width + 1)."""
    if width <= DIRECT_BOX_MAX_WIDTH:
        return _box_sum_axis_direct(x, width, axis)
    return _box_sum_axis_blocked(x, width, axis)


def _box_sum_axis_direct(x: jax.Array, width: int, axis: int) -> jax.Array:
    m = x.shape[axis] - width + 1
    return sum(jax.lax.slice_in_dim(x, t, t + m, axis=axis) for t in range(width))


def _box_sum_axis_blocked(x: jax.Array, width: int, axis: int) -> jax.Array:
    """`box_sum_axis` by per-block prefix P and suffix S sums over blocks of `width`.

    The window starting at a is S[a] + P[a + width - 1], or S[a] alone when a starts a
    block (van Herk / Gil-Werman). The cost does not depend on `width`, and rounding
    grows with `width`, not with N as it would with one long cumsum.
    """
    x = jnp.moveaxis(x, axis, 0)
    n = x.shape[0]
    blocks = -(-n // width)
    padded = jnp.pad(x, [(0, blocks * width - n)] + [(0, 0)] * (x.ndim - 1))
    grouped = padded.reshape(blocks, width, *x.shape[1:])
    prefix = jax.lax.cumsum(grouped, axis=1).reshape(padded.shape)
    suffix = jax.lax.cumsum(grouped, axis=1, reverse=True).reshape(padded.shape)
    m = n - width + 1
    starts_block = (np.arange(m) % width == 0).reshape((m,) + (1,) * (x.ndim - 1))
    out = suffix[:m] + jnp.where(starts_block, 0, prefix[width - 1:width - 1 + m])
    return jnp.moveaxis(out, 0, axis)


def box_sum(x: jax.Array, radius: int) -> jax.Array:
    """Sum over each (2r+1)^2 window lying inside `x`: `[H, W, ...] -> [H-2r, W-2r, ...]`."""
    width = 2 * radius + 1
    return box_sum_axis(box_sum_axis(x, width, 0), width, 1)


def box_spread(x: jax.Array, radius: int) -> jax.Array:
    """Adjoint of `box_sum`: each pixel sums its windows' values, `[H-2r, W-2r, ...] -> [H, W, ...]`."""
    pad = [(2 * radius, 2 * radius)] * 2 + [(0, 0)] * (x.ndim - 2)
    return box_sum(jnp.pad(x, pad), radius)


def windows_per_pixel(height: int, width: int, radius: int, dtype) -> jax.Array:
    """n_i, the number of inside windows containing pixel i: `[H, W]`."""
    def along(n):
        i = jnp.arange(n)
        return jnp.clip(jnp.minimum(i + radius, n - 1 - radius) - jnp.maximum(i - radius, radius) + 1, 0)
    return (along(height)[:, None] * along(width)[None, :]).astype(dtype)


def box_mean(x: jax.Array, radius: int) -> jax.Array:
    """Mean over the in-image pixels of each `(2 r + 1)^2` window: `[H, W, ...] -> [H, W, ...]`
    (MATLAB `boxfilter(x, r) ./ boxfilter(ones, r)`, as the guided filter's reference code)."""
    pad = [(radius, radius)] * 2 + [(0, 0)] * (x.ndim - 2)
    ones = jnp.ones(x.shape[:2] + (1,) * (x.ndim - 2), x.dtype)
    return box_sum(jnp.pad(x, pad), radius) / box_sum(jnp.pad(ones, pad), radius)
