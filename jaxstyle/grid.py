"""The look as an object: a bilateral grid of affine colour maps, sliced under the content.

Images are float32 `[H, W, 3]` RGB in [0, 1]. A grid is float32 `[gh, gw, gd, 3, 4]`: at each
node (row, column, guide level) an affine colour map `[A | b]` (Chen et al. 2016, bilateral
guided upsampling; Gharbi et al. 2017, HDRNet; Xia et al. 2020, joint bilateral learning).

Slicing a grid under a photo gives every pixel p the map interpolated at its position and its
guide value (the content's luma), and applies it to the pixel's own colour:

    out_p = M(p, g(p)) [c_p - 1/2; 1],   M = sum_n tent_y tent_x tent_g M_n   (trilinear)

so the output is, around every pixel, an affine function of the content's colours by
construction (the paper's photorealism model, Luan et al. 2017), wherever the guide varies
slowly. Node positions are normalised to the photo (pixel centres `(i + 1/2) / H` span the
rows' nodes 0..gh-1), so one grid slices under the photo at any size: the working size the
optimisation sees, and the photo's own size (`slice_grid_host`, tile by tile).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.errors import JaxstyleError
from jaxstyle.images import check_image
from jaxstyle.upsample import tile_origins

__all__ = [
    "CENTRE", "TILE", "apply_maps", "fit_grid", "global_affine", "grid_shape", "guide", "identity_grid", "interpolate",
    "flat_variation", "roughness", "slice_grid", "slice_grid_host", "slice_maps", "tent_weights",
]

LUMA = (0.299, 0.587, 0.114)  # the guide: Rec. 601 luma of the content
# The start's fit (`fit_grid`): a node's 4x4 normal equations get this ridge times its weight,
# toward the photo's global affine map, so nodes with few or flat pixels keep the global map.
FIT_RIDGE = 1e-2
EMPTY_NODE = 1e-6  # the ridge's floor, in pixels' worth of weight
TILE = 256
# Maps act on colours centred here, `out = A (c - CENTRE) + b`: the offset then no longer moves
# with the colour part, which conditions the optimisation.
CENTRE = 0.5  # full-size slicing works in TILE x TILE tiles: one program for every photo size


def grid_shape(hw: tuple[int, int], *, cell: int, depth: int) -> tuple[int, int, int]:
    """Nodes (rows, columns, guide levels) of a grid over a working size `hw` with nodes
    about `cell` px apart (at least two per axis)."""
    if cell < 1 or depth < 2:
        raise JaxstyleError(f"grid.cell must be >= 1 and grid.depth >= 2, got {cell} and {depth}")
    return max(2, round(hw[0] / cell) + 1), max(2, round(hw[1] / cell) + 1), depth


def identity_grid(shape: tuple[int, int, int], dtype=jnp.float32) -> jax.Array:
    """The grid `[*shape, 3, 4]` whose every node is the identity map."""
    eye = jnp.eye(3, 4, dtype=dtype).at[:, 3].set(CENTRE)
    return jnp.broadcast_to(eye, (*shape, 3, 4))


def guide(image: jax.Array) -> jax.Array:
    """The guide `[H, W]` in [0, 1]: the image's luma."""
    return jnp.clip(image @ jnp.asarray(LUMA, image.dtype), 0.0, 1.0)


def tent_weights(start, count: int, total, nodes: int, dtype=jnp.float32) -> jax.Array:
    """`[count, nodes]` linear-interpolation weights of pixels `start .. start+count-1` of an
    axis of `total` pixels onto `nodes` evenly spread nodes (`start`, `total` may be traced)."""
    pos = (start + jnp.arange(count, dtype=dtype) + 0.5) / total * (nodes - 1)
    return jnp.maximum(0.0, 1.0 - jnp.abs(pos[:, None] - jnp.arange(nodes, dtype=dtype)))


def _level_weights(g: jax.Array, depth: int) -> jax.Array:
    """`[..., depth]` tent weights of guide values `g` in [0, 1] onto `depth` levels."""
    z = g[..., None] * (depth - 1)
    return jnp.maximum(0.0, 1.0 - jnp.abs(z - jnp.arange(depth, dtype=g.dtype)))


def interpolate(values: jax.Array, g: jax.Array, wy: jax.Array, wx: jax.Array) -> jax.Array:
    """Trilinear interpolation of node values `[gh, gw, gd, K]` at every pixel: rows' weights
    `wy [H, gh]`, columns' `wx [W, gw]`, guide `g [H, W]` -> `[H, W, K]`. Linear in `values`."""
    rows = jnp.einsum("yi,ijzk->yjzk", wy, values)  # [H, gw, gd, K]
    spatial = jnp.einsum("xj,yjzk->yxzk", wx, rows)  # [H, W, gd, K]
    return jnp.einsum("yxz,yxzk->yxk", _level_weights(g, values.shape[2]), spatial)


def _check(grid: jax.Array, image: jax.Array) -> None:
    if grid.ndim != 5 or grid.shape[-2:] != (3, 4):
        raise JaxstyleError(f"a grid is [gh, gw, gd, 3, 4], got shape {tuple(grid.shape)}; batch with jax.vmap")
    check_image(image, "image")


def apply_maps(maps: jax.Array, image: jax.Array) -> jax.Array:
    """Per-pixel affine maps `[H, W, 3, 4]` applied to `image [H, W, 3]` (centred) -> `[H, W, 3]`.

    Written out channel by channel: XLA ran the same contraction as a dot with the pixels as
    batch dimensions about 4x slower on the CPU."""
    c = image - CENTRE
    return jnp.stack([maps[..., r, 0] * c[..., 0] + maps[..., r, 1] * c[..., 1] + maps[..., r, 2] * c[..., 2]
                      + maps[..., r, 3] for r in range(3)], -1)


def slice_maps(grid: jax.Array, image: jax.Array) -> jax.Array:
    """The grid's maps sliced under `image [H, W, 3]`: every pixel's map `[H, W, 3, 4]`."""
    _check(grid, image)
    (h, w, _), (gh, gw, gd) = image.shape, grid.shape[:3]
    wy, wx = tent_weights(0, h, h, gh, image.dtype), tent_weights(0, w, w, gw, image.dtype)
    return interpolate(grid.reshape(gh, gw, gd, 12), guide(image), wy, wx).reshape(h, w, 3, 4)


def slice_grid(grid: jax.Array, image: jax.Array) -> jax.Array:
    """The grid's maps sliced under `image [H, W, 3]` and applied to it -> `[H, W, 3]`
    (not clipped). Pure: jit, vmap and grad with respect to both."""
    return apply_maps(slice_maps(grid, image), image)


def flat_variation(maps: jax.Array, image: jax.Array, *, sigma: float) -> jax.Array:
    """How much per-pixel maps `[H, W, 3, 4]` change between neighbouring pixels where `image`
    `[H, W, 3]` does not: the sum over horizontally and vertically adjacent pixels p, q of
    exp(-|c_p - c_q|^2 / (2 sigma^2)) |M_p - M_q|^2, divided by H W. Maps may change across the
    content's edges; inside its flat areas they must stay put, so no shape is painted there."""
    total = 0.0
    for axis in (0, 1):
        weight = jnp.exp(-jnp.sum(jnp.square(jnp.diff(image, axis=axis)), -1) / (2 * sigma ** 2))
        total = total + jnp.sum(weight * jnp.sum(jnp.square(jnp.diff(maps, axis=axis)), (-2, -1)))
    return total / (image.shape[0] * image.shape[1])


def roughness(grid: jax.Array) -> jax.Array:
    """Mean squared difference of the maps of spatially neighbouring nodes (rows and columns,
    not luma levels): 0 for a grid that varies only with the guide, a tone curve per luma."""
    rows = jnp.mean(jnp.square(grid[1:] - grid[:-1]))
    cols = jnp.mean(jnp.square(grid[:, 1:] - grid[:, :-1]))
    return rows + cols


def global_affine(content: jax.Array, target: jax.Array, *, ridge: float = 1e-6) -> jax.Array:
    """The least-squares affine map `[3, 4]` from `content` to `target` (both `[H, W, 3]`),
    with a small ridge on its colour part toward the identity (for a photo of one colour)."""
    c1 = jnp.concatenate([content - CENTRE, jnp.ones_like(content[..., :1])], -1).reshape(-1, 4)
    n = c1.shape[0]
    reg = ridge * jnp.diag(jnp.asarray([1.0, 1.0, 1.0, 0.0], content.dtype))
    lhs = c1.T @ c1 / n + reg
    rhs = c1.T @ target.reshape(-1, 3) / n + reg @ jnp.eye(4, 3, dtype=content.dtype)
    return jnp.linalg.solve(lhs, rhs).T


def fit_grid(content: jax.Array, target: jax.Array, shape: tuple[int, int, int], *,
             ridge: float = FIT_RIDGE) -> jax.Array:
    """A grid `[*shape, 3, 4]` whose slice under `content` approximates `target` (`[H, W, 3]`):
    each node solves the least-squares fit of its pixels, weighted by their interpolation
    weights onto it, with a ridge (times the node's weight) toward the global affine map."""
    h, w, _ = content.shape
    gh, gw, gd = shape
    wy, wx = tent_weights(0, h, h, gh, content.dtype), tent_weights(0, w, w, gw, content.dtype)
    g = guide(content)
    c1 = jnp.concatenate([content - CENTRE, jnp.ones_like(content[..., :1])], -1)  # [H, W, 4]
    per_pixel = jnp.concatenate([
        (c1[..., :, None] * c1[..., None, :]).reshape(h, w, 16),
        (c1[..., :, None] * target[..., None, :]).reshape(h, w, 12),
        jnp.ones((h, w, 1), content.dtype)], -1)  # [H, W, 29]
    splat = jax.linear_transpose(lambda v: interpolate(v, g, wy, wx),
                                 jax.ShapeDtypeStruct((gh, gw, gd, 29), content.dtype))
    (sums,) = splat(per_pixel)
    # A node no pixel reaches (a guide level the photo lacks there) takes the global map.
    reg = (ridge * sums[..., 28:] + EMPTY_NODE)[..., None]  # [gh, gw, gd, 1, 1]
    lhs = sums[..., :16].reshape(gh, gw, gd, 4, 4) + reg * jnp.eye(4, dtype=content.dtype)
    prior = global_affine(content, target)  # [3, 4]
    rhs = sums[..., 16:28].reshape(gh, gw, gd, 4, 3) + reg * prior.T
    return jnp.linalg.solve(lhs, rhs).swapaxes(-1, -2)  # [gh, gw, gd, 3, 4]


def _corners(pos: jax.Array, nodes: int) -> tuple[jax.Array, jax.Array]:
    """The lower of the two nodes around each position (clamped) and the weight of the upper."""
    low = jnp.clip(jnp.floor(pos), 0, nodes - 2)
    return low.astype(jnp.int32), jnp.clip(pos - low, 0.0, 1.0)


@jax.jit
def _slice_tile(grid: jax.Array, tile: jax.Array, y0, x0, hw) -> jax.Array:
    """`slice_grid` of one `[T, T', 3]` tile at `(y0, x0)` of a photo of size `hw`, clipped.

    The same tent weights as `slice_grid`, but each pixel gathers only its 2 x 2 column and
    level neighbours (a photo is far larger than the grid, so dense weights would waste most
    of the work on zeros)."""
    gh, gw, gd = grid.shape[:3]
    dtype = tile.dtype
    t, u = tile.shape[:2]
    wy = tent_weights(y0.astype(dtype), t, hw[0].astype(dtype), gh, dtype)
    rows = jnp.einsum("yi,ijk->yjk", wy, grid.reshape(gh, gw, gd * 12).astype(dtype))  # [T, gw, gd * 12]
    rows = rows.reshape(t * gw * gd, 12)
    xpos = (x0.astype(dtype) + jnp.arange(u, dtype=dtype) + 0.5) / hw[1].astype(dtype) * (gw - 1)
    j, fx = _corners(xpos, gw)  # [T']
    k, fz = _corners(guide(tile) * (gd - 1), gd)  # [T, T']
    base = (jnp.arange(t, dtype=jnp.int32)[:, None] * gw + j[None, :]) * gd + k  # [T, T']
    maps = 0.0
    for dj, wj in ((0, 1 - fx), (1, fx)):
        for dk, wk in ((0, 1 - fz), (1, fz)):
            maps = maps + (wj[None, :] * wk)[..., None] * jnp.take(rows, base + dj * gd + dk, axis=0)
    return jnp.clip(apply_maps(maps.reshape(t, u, 3, 4), tile), 0.0, 1.0)


def slice_grid_host(grid, photo) -> np.ndarray:
    """`slice_grid` under a photo of any size, clipped to [0, 1]: numpy `[H, W, 3]` in and out,
    in `TILE x TILE` tiles (one compiled program per grid shape, whatever the photo's size)."""
    full = np.asarray(photo)
    grid = jnp.asarray(grid)
    _check(grid, full)
    h, w, _ = full.shape
    th, tw = min(TILE, h), min(TILE, w)
    hw = np.asarray([h, w], np.int32)
    out = np.empty((h, w, 3), np.float32)
    for y0 in tile_origins(h, th):
        for x0 in tile_origins(w, tw):
            tile = np.ascontiguousarray(full[y0:y0 + th, x0:x0 + tw], np.float32)
            out[y0:y0 + th, x0:x0 + tw] = np.asarray(_slice_tile(grid, tile, np.int32(y0), np.int32(x0), hw))
    return out

