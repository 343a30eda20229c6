"""Full-resolution output: carry a result computed at the working size to the photo's size.

Images as in `jaxstyle.images`: `content_full` is `[H, W, 3]`; `content_small` and
`result_small` are `[h, w, 3]`, the working size (usually H >= h).

The result of photo style transfer is, around every pixel, an affine function of the
content's colours (the matting-Laplacian model), so it travels to full size as a field of
local affine colour maps rather than as pixels (He & Sun 2015, "fast guided filter";
Chen et al. 2016, "bilateral guided upsampling"):

1. `fit_affine`, at the working size: for every pixel k the ridge regression
   `min_A sum_j w_kj |A [c_j; 1] - o_j|^2 / sum_j w_kj + eps |A[:, :3] - P[:, :3]|^2`
   over the `(2 radius + 1)^2` window of k (in-image pixels), with colour weights
   `w_kj = exp(-|c_j - c_k|^2 / (2 fit_sigma_range^2))`, so that a window does not mix
   surfaces of very different colours. The ridge pulls the 3x3 colour part toward the image's global
   least-squares map P (`global_affine`), not toward 0: a window too flat to tell keeps
   the global gain, so the full-size photo's fine texture, invisible at the working size,
   still comes through. The maps are then averaged over the same weighted window, as the
   guided filter averages the maps of the windows that hold a pixel.      -> `[h, w, 3, 4]`
2. `joint_bilateral_upsample` of the maps (Kopf et al. 2007): output pixel p sits at
   working-size position `u_p = (p + 1/2) h / H - 1/2` (per axis; pixel centres aligned)
   and takes the mean of the maps of the `(2 support)^2` samples q around u_p, weighted by
   `tent(u_p - q) * (exp(-|content_full_p - content_small_q|^2 / (2 sigma_range^2)) + RANGE_FLOOR)`
   with `tent(t) = prod_axes max(0, 1 - |t| / support)`. The floor keeps the weights from
   all vanishing: a thin line that the working size does not show falls back to the spatial
   mean of its neighbours' maps, applied to its own colour. These colour weights keep a
   strong edge's two sides apart; the fit's are wider (`fit_sigma_range`), because colour
   weights there make neighbouring maps differ wherever the texture is contrasty, and the
   output then stops being locally affine in the full-size content.
3. `A_p [content_full_p; 1]`, clipped to [0, 1].                            -> `[H, W, 3]`

Steps 2 and 3 run tile by tile: `tile x tile` output pixels at a time, each tile slicing
the working-size samples it reaches, so the working memory is one tile's whatever H x W
(besides the `[H, W, 3]` input and output). Every output pixel is computed from global
coordinates by the same arithmetic, so tiles join without seams and the tile size does not
change the result. `upsample_affine` loops over the tiles inside the traced program
(`jax.lax.fori_loop` writing each tile in place: pure, jit/vmap/grad); `upsample_affine_host`
loops on the host over one compiled tile program that serves every photo size (numpy in
and out, the device holding one tile: meant for the command line and 12-50 MP photos).

The output is linear in `result_small` before clipping (the weights depend on the contents
only), hence differentiable w.r.t. it.

Numerics (float32): a window that hardly varies along some colour direction leaves that
column of its map to the ridge, which divides rounding of ~1e-9 by `eps`; such columns
carry errors of ~1e-4, harmless because they multiply the colour deviations that are
small along that direction (a global map is reproduced to ~2e-6). Mixed working-size
pixels, which straddle a content edge, hold blends of the two sides' results that no
single affine map of their colour explains; the maps fitted around them tilt along the
edge's colour direction, so within one working-size pixel of a strong edge the output
errs by a fraction of the texture's deviation along that direction.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from numbers import Real

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.errors import JaxstyleError
from jaxstyle.images import as_float, check_image
from jaxstyle.smoothing import solve_sym3

__all__ = [
    "DEFAULT_TILE", "PRIOR_RIDGE", "RANGE_FLOOR", "fit_affine", "global_affine", "joint_bilateral_upsample",
    "tile_origins", "upsample_affine", "upsample_affine_host",
]

DEFAULT_RADIUS = 1  # fit windows of 3x3 working-size pixels
DEFAULT_EPS = 1e-5  # ridge toward the global map, in colour variance (std 0.003, ~1 level of 255)
DEFAULT_SIGMA_RANGE = 0.1  # upsampling: colours this far apart (RGB distance) count as different surfaces
DEFAULT_FIT_SIGMA_RANGE = 0.5  # fitting: only very different colours are kept out of a window
DEFAULT_SUPPORT = 2  # tent half-width in working-size pixels: 4x4 samples per output pixel
DEFAULT_TILE = 64  # output pixels per tile side (small tiles stay in cache: fastest on CPU)
PRIOR_RIDGE = 1e-6  # global fit: colour directions varying by less than a std of 1e-3 get no gain
RANGE_FLOOR = 1e-6  # added to every colour weight, so the weights never all vanish
MAPS = 12  # numbers per affine colour map: 3x3 matrix and offset


# ----------------------------------------------------------------------------- checks


def _check_pair(content_small: jax.Array, result_small: jax.Array) -> None:
    if content_small.shape != result_small.shape:
        raise JaxstyleError(f"result_small {result_small.shape[1]}x{result_small.shape[0]} does not "
                            f"match content_small {content_small.shape[1]}x{content_small.shape[0]} "
                            "(width x height): pass the content resized to the working size")


def _check_int(name: str, value, minimum: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise JaxstyleError(f"{name} must be a Python int (it fixes array shapes), got "
                            f"{type(value).__name__}; under jax.jit mark it static") from None
    if value < minimum:
        raise JaxstyleError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_positive(name: str, value) -> None:
    """Checks concrete numbers; traced values pass through unchecked."""
    if isinstance(value, Real) and not value > 0:
        raise JaxstyleError(f"{name} must be > 0, got {value}")


# ----------------------------------------------------------------------------- fitting


def global_affine(content: jax.Array, result: jax.Array, *,
                  ridge: float | jax.Array = PRIOR_RIDGE) -> jax.Array:
    """The least-squares affine colour map of a whole image, `result ~ A [content; 1]`.

    `content`, `result` `[h, w, 3]` -> `A` `[3, 4]`: `A[:, :3]` acts on content RGB,
    `A[:, 3]` is the offset. Solved on mean-centred colours with `ridge |A[:, :3]|^2` added
    to the mean squared error; the ridge only decides colour directions the image hardly
    varies in.
    """
    content = as_float(check_image(content, "content"))
    result = as_float(check_image(result, "result"))
    _check_pair(content, result)
    _check_positive("ridge", ridge)
    dtype = jnp.result_type(content, result)
    c = content.reshape(-1, 3).astype(dtype)  # [n, 3]
    o = result.reshape(-1, 3).astype(dtype)  # [n, 3]
    mean_c, mean_o = c.mean(0), o.mean(0)  # [3]
    dc, do = c - mean_c, o - mean_o
    n = c.shape[0]
    cov = dc.T @ dc / n + ridge * jnp.eye(3, dtype=dtype)  # [3, 3]
    cross = dc.T @ do / n  # [3 in, 3 out]
    colour = jnp.linalg.solve(cov, cross).T  # [out, in]
    return jnp.concatenate([colour, (mean_o - colour @ mean_c)[:, None]], axis=1)


def fit_affine(content_small: jax.Array, result_small: jax.Array, *, radius: int = DEFAULT_RADIUS,
               eps: float | jax.Array = DEFAULT_EPS,
               sigma_range: float | jax.Array = DEFAULT_SIGMA_RANGE,
               prior: jax.Array | None = None, average: bool = True) -> jax.Array:
    """Per-pixel affine colour maps `result_small ~ A [content_small; 1]`: `[h, w, 3, 4]`.

    For pixel k, `A_k` minimises
    `sum_j w_kj |A [c_j; 1] - o_j|^2 / sum_j w_kj + eps |A[:, :3] - prior[:, :3]|^2` over the
    in-image pixels j of the `(2 radius + 1)^2` window around k, with
    `w_kj = exp(-|c_j - c_k|^2 / (2 sigma_range^2))` (c: `content_small`, o: `result_small`).
    `prior` is `[3, 4]` or per pixel `[h, w, 3, 4]` (default: `global_affine` of the pair).
    With `average`, each pixel's map is then the `w_kj`-weighted mean of the maps of its
    window. `[..., :3]` weights content RGB, `[..., 3]` is the offset.
    """
    content_small = as_float(check_image(content_small, "content_small"))
    result_small = as_float(check_image(result_small, "result_small"))
    _check_pair(content_small, result_small)
    r = _check_int("radius", radius, 0)
    _check_positive("eps", eps)
    _check_positive("sigma_range", sigma_range)
    dtype = jnp.result_type(content_small, result_small)
    c, o = content_small.astype(dtype), result_small.astype(dtype)
    prior = global_affine(c, o) if prior is None else jnp.asarray(prior, dtype)
    h, w, _ = c.shape

    pad = ((r, r), (r, r), (0, 0))
    c_pad, o_pad = jnp.pad(c, pad), jnp.pad(o, pad)  # [h+2r, w+2r, 3]
    inside_pad = jnp.pad(jnp.ones((h, w), dtype), pad[:2])  # [h+2r, w+2r]
    scale = 1.0 / (2.0 * jnp.square(jnp.asarray(sigma_range, dtype)))
    offsets = [(dy, dx) for dy in range(2 * r + 1) for dx in range(2 * r + 1)]

    def weight(dy: int, dx: int) -> tuple[jax.Array, jax.Array]:
        d = c_pad[dy:dy + h, dx:dx + w] - c  # [h, w, 3]: colour relative to the centre's
        return inside_pad[dy:dy + h, dx:dx + w] * jnp.exp(-jnp.sum(d * d, -1) * scale), d

    # Moments of colours and results relative to the centre pixel's (small numbers, so
    # little float32 cancellation when centring).
    s0 = jnp.zeros((h, w), dtype)  # sum w
    s1 = jnp.zeros((h, w, 3), dtype)  # sum w d
    t1 = jnp.zeros((h, w, 3), dtype)  # sum w e
    s2 = jnp.zeros((h, w, 3, 3), dtype)  # sum w d d^T
    x2 = jnp.zeros((h, w, 3, 3), dtype)  # sum w d e^T
    for dy, dx in offsets:
        wt, d = weight(dy, dx)
        e = o_pad[dy:dy + h, dx:dx + w] - o  # [h, w, 3]
        wd = wt[..., None] * d
        s0, s1, t1 = s0 + wt, s1 + wd, t1 + wt[..., None] * e
        s2 = s2 + wd[..., :, None] * d[..., None, :]
        x2 = x2 + wd[..., :, None] * e[..., None, :]
    mean_d, mean_e = s1 / s0[..., None], t1 / s0[..., None]  # [h, w, 3]
    cov = s2 / s0[..., None, None] - mean_d[..., :, None] * mean_d[..., None, :]  # [h, w, 3, 3]
    cross = x2 / s0[..., None, None] - mean_d[..., :, None] * mean_e[..., None, :]  # [h, w, in, out]
    prior_t = jnp.swapaxes(prior[..., :3], -1, -2)  # [(h, w,) in, out]
    colour_t = solve_sym3(cov + eps * jnp.eye(3, dtype=dtype), cross + eps * prior_t)
    colour = jnp.swapaxes(colour_t, -1, -2)  # [h, w, out, in]
    offset = o + mean_e - jnp.einsum("hwoi,hwi->hwo", colour, c + mean_d)  # [h, w, 3]
    maps = jnp.concatenate([colour, offset[..., None]], axis=-1)  # [h, w, 3, 4]
    if not average or r == 0:
        return maps
    maps_pad = jnp.pad(maps.reshape(h, w, MAPS), pad)
    total = jnp.zeros((h, w, MAPS), dtype)
    for dy, dx in offsets:
        total = total + weight(dy, dx)[0][..., None] * maps_pad[dy:dy + h, dx:dx + w]
    return (total / s0[..., None]).reshape(h, w, 3, 4)


# ----------------------------------------------------------------------------- upsampling


def _axis_grid(start, length: int, n_small, step, support: int, span: int, dtype):
    """Samples and tent weights along one axis for the output indices `start + [0, length)`.

    `step` = n_small / n_full (rounded to `dtype` once, the same for every tile). Returns
    (indices `[2 support, length]` into the `span` samples that begin at `origin`, tent
    weights `[2 support, length]`, 0 for samples off the image, `origin`).
    """
    u = ((start + jnp.arange(length)).astype(dtype) + 0.5) * step - 0.5  # [length]
    first = jnp.floor(u).astype(jnp.int32) - support + 1  # [length]
    origin = jnp.floor((jnp.asarray(start).astype(dtype) + 0.5) * step - 0.5).astype(jnp.int32)
    origin = origin - support + 1
    q = first[None, :] + jnp.arange(2 * support, dtype=jnp.int32)[:, None]  # [2s, length]
    tent = jnp.maximum(0.0, 1.0 - jnp.abs(u[None, :] - q.astype(dtype)) / support)
    inside = (q >= 0) & (q < n_small)
    return jnp.clip(q - origin, 0, span - 1), jnp.where(inside, tent, 0.0).astype(dtype), origin


def _span(n_full: int, n_small: int, tile: int, support: int) -> int:
    """Working-size samples that `tile` consecutive output pixels reach along one axis."""
    return math.ceil((tile - 1) * n_small / n_full) + 2 * support + 1


def _pad_samples(values: jax.Array, guide_small: jax.Array, support: int,
                 span: tuple[int, int]) -> jax.Array:
    """`[D + 3, h + 2 pad + span_y, w + 2 pad + span_x]`, channels first: the values and guide
    colours of the samples, zero-padded so that every tile's slab is in bounds."""
    pad = support + 1
    samples = jnp.concatenate([values, guide_small.astype(values.dtype)], -1).transpose(2, 0, 1)
    return jnp.pad(samples, ((0, 0), (pad, pad + span[0]), (pad, pad + span[1])))


def _bilateral_tile(samples: jax.Array, guide: jax.Array, y0, x0, *, small_hw, steps,
                    support: int, span: tuple[int, int], sigma_range) -> jax.Array:
    """Joint bilateral upsampling of the output pixels `[y0, y0 + T) x [x0, x0 + T')`.

    Channels first: `samples` from `_pad_samples` `[D + 3, ...]`, `guide` `[3, T, T']` the
    tile's full-size colours. Returns the weighted means of the values, `[D, T, T']`.
    """
    _, th, tw = guide.shape
    dtype = guide.dtype
    depth = samples.shape[0] - 3
    ly, wy, oy = _axis_grid(y0, th, small_hw[0], steps[0], support, span[0], dtype)
    lx, wx, ox = _axis_grid(x0, tw, small_hw[1], steps[1], support, span[1], dtype)
    pad = support + 1
    slab = jax.lax.dynamic_slice(samples, (jnp.int32(0), oy + pad, ox + pad),
                                 (depth + 3, span[0], span[1]))  # [D + 3, Sy, Sx]
    values, colours = slab[:depth], slab[depth:]
    scale = 1.0 / (2.0 * jnp.square(jnp.asarray(sigma_range, dtype)))
    taps = 2 * support

    def add_tap(tap, carry):  # sample (a, b) of every pixel's (2 support)^2 neighbourhood
        num, den = carry  # [D, T, T'], [T, T']
        a, b = tap // taps, tap % taps
        colour = jnp.take(jnp.take(colours, lx[b], axis=2), ly[a], axis=1)  # [3, T, T']
        d = guide - colour
        weight = wy[a][:, None] * wx[b][None, :] * (
            jnp.exp(-(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]) * scale) + RANGE_FLOOR)
        num = num + weight * jnp.take(jnp.take(values, lx[b], axis=2), ly[a], axis=1)
        return num, den + weight

    init = (jnp.zeros((depth, th, tw), dtype), jnp.zeros((th, tw), dtype))
    num, den = jax.lax.fori_loop(0, taps * taps, add_tap, init)
    return num / den


def _tile_shape(full_hw: tuple[int, int], tile: int | None) -> tuple[int, int]:
    return full_hw if tile is None else (min(tile, full_hw[0]), min(tile, full_hw[1]))


def tile_origins(n_full: int, size: int) -> list[int]:
    """Tile starts along one axis: every `size`, the last one moved back to end at the border."""
    return [min(start, n_full - size) for start in range(0, n_full, size)]


def _tiled(values: jax.Array, guide_small: jax.Array, guide_full: jax.Array,
           finish: Callable[[jax.Array, jax.Array], jax.Array], channels: int, *,
           sigma_range, support: int, tile: int | None) -> jax.Array:
    """`finish(means [D, T, T'], guide [3, T, T']) -> [C, T, T']` tile by tile -> `[H, W, C]`.

    Tiles step by `tile`; the last row and column of tiles are moved back to end at the
    border, so every tile lies inside the image (pixels in two tiles are computed twice,
    identically). `jax.lax.fori_loop` writes each tile into the output in place.
    """
    (hf, wf, _), (hs, ws, _) = guide_full.shape, guide_small.shape
    th, tw = _tile_shape((hf, wf), tile)
    dtype = guide_full.dtype
    span = (_span(hf, hs, th, support), _span(wf, ws, tw, support))
    samples = _pad_samples(values, guide_small, support, span)
    one_tile = functools.partial(
        _bilateral_tile, small_hw=(hs, ws), steps=(np.asarray(hs / hf, dtype), np.asarray(ws / wf, dtype)),
        support=support, span=span, sigma_range=sigma_range)

    @jax.checkpoint  # reverse mode recomputes a tile instead of storing its weights
    def tile_at(y0, x0):
        y0, x0 = jnp.asarray(y0, jnp.int32), jnp.asarray(x0, jnp.int32)
        guide = jax.lax.dynamic_slice(guide_full, (y0, x0, jnp.int32(0)), (th, tw, 3))
        guide = guide.transpose(2, 0, 1)  # [3, T, T']
        return finish(one_tile(samples, guide, y0, x0), guide).transpose(1, 2, 0)  # [T, T', C]

    ys = jnp.asarray(tile_origins(hf, th), jnp.int32)
    xs = jnp.asarray(tile_origins(wf, tw), jnp.int32)
    if ys.size * xs.size == 1:
        return tile_at(0, 0)

    def body(index, out):
        y0, x0 = ys[index // xs.size], xs[index % xs.size]
        return jax.lax.dynamic_update_slice(out, tile_at(y0, x0), (y0, x0, jnp.int32(0)))

    return jax.lax.fori_loop(0, ys.size * xs.size, body, jnp.zeros((hf, wf, channels), dtype))


def joint_bilateral_upsample(values: jax.Array, guide_small: jax.Array, guide_full: jax.Array, *,
                             sigma_range: float | jax.Array = DEFAULT_SIGMA_RANGE,
                             support: int = DEFAULT_SUPPORT, tile: int | None = DEFAULT_TILE
                             ) -> jax.Array:
    """Joint bilateral upsampling (Kopf et al. 2007) of `values` `[h, w, D]` -> `[H, W, D]`.

    Output pixel p, at working-size position `u_p = (p + 1/2) h / H - 1/2` per axis, is the
    mean of `values` over the `(2 support)^2` in-image samples q around u_p, weighted by
    `tent(u_p - q) * (exp(-|guide_full_p - guide_small_q|^2 / (2 sigma_range^2)) + RANGE_FLOOR)`,
    `tent(t) = prod_axes max(0, 1 - |t| / support)`. `guide_small` `[h, w, 3]`,
    `guide_full` `[H, W, 3]`; computed in `tile x tile` output tiles (`None`: one tile).
    """
    guide_small = as_float(check_image(guide_small, "guide_small"))
    guide_full = as_float(check_image(guide_full, "guide_full"))
    values = jnp.asarray(check_image(values, "values", channels=None))
    if values.shape[:2] != guide_small.shape[:2]:
        raise JaxstyleError(f"values must be [h, w, D] at the size of guide_small "
                            f"{tuple(guide_small.shape[:2])}, got shape {tuple(values.shape)}")
    support = _check_int("support", support, 1)
    tile = None if tile is None else _check_int("tile", tile, 1)
    _check_positive("sigma_range", sigma_range)
    dtype = jnp.result_type(values, guide_small, guide_full, jnp.float32)
    return _tiled(values.astype(dtype), guide_small.astype(dtype), guide_full.astype(dtype),
                  lambda means, _: means, values.shape[-1], sigma_range=sigma_range,
                  support=support, tile=tile)


def _apply_maps(means: jax.Array, content: jax.Array) -> jax.Array:
    """`A [c; 1]` clipped to [0, 1], channels first: maps `[12, T, T']`, content `[3, T, T']`."""
    maps = means.reshape(3, 4, *means.shape[1:])  # [out, in + offset, T, T']
    out = maps[:, 0] * content[0] + maps[:, 1] * content[1] + maps[:, 2] * content[2] + maps[:, 3]
    return jnp.clip(out, 0.0, 1.0)  # [3, T, T']


def _check_settings(content_small, result_small, support, tile, sigma_range, fit_sigma_range):
    content_small = as_float(check_image(content_small, "content_small"))
    result_small = as_float(check_image(result_small, "result_small"))
    _check_pair(content_small, result_small)
    _check_positive("sigma_range", sigma_range)
    _check_positive("fit_sigma_range", fit_sigma_range)
    tile = None if tile is None else _check_int("tile", tile, 1)
    return content_small, result_small, _check_int("support", support, 1), tile


def upsample_affine(content_full: jax.Array, content_small: jax.Array, result_small: jax.Array, *,
                    radius: int = DEFAULT_RADIUS, eps: float | jax.Array = DEFAULT_EPS,
                    sigma_range: float | jax.Array = DEFAULT_SIGMA_RANGE,
                    fit_sigma_range: float | jax.Array = DEFAULT_FIT_SIGMA_RANGE,
                    support: int = DEFAULT_SUPPORT, tile: int | None = DEFAULT_TILE) -> jax.Array:
    """`result_small` `[h, w, 3]` carried to the size of `content_full` `[H, W, 3]`.

    Fits local affine colour maps from `content_small` to `result_small` (`fit_affine`:
    window `radius`, ridge `eps` toward the global map, colour sigma `fit_sigma_range`),
    upsamples them joint-bilaterally under the contents (`joint_bilateral_upsample`: tent of
    half-width `support` working-size pixels, colour sigma `sigma_range`), applies them to
    `content_full` and clips to [0, 1]. Runs over `tile x tile` output tiles in a
    `jax.lax.fori_loop` (`None`: one tile); the tiling does not change the result.
    `radius`, `support`, `tile` fix shapes: static under `jax.jit`. Returns `[H, W, 3]`.
    """
    content_full = as_float(check_image(content_full, "content_full"))
    content_small, result_small, support, tile = _check_settings(
        content_small, result_small, support, tile, sigma_range, fit_sigma_range)
    dtype = jnp.result_type(content_full, content_small, result_small)
    content_full, content_small = content_full.astype(dtype), content_small.astype(dtype)
    result_small = result_small.astype(dtype)
    h, w, _ = content_small.shape
    maps = fit_affine(content_small, result_small, radius=radius, eps=eps, sigma_range=fit_sigma_range)
    return _tiled(maps.reshape(h, w, MAPS), content_small, content_full, _apply_maps, 3,
                  sigma_range=sigma_range, support=support, tile=tile)


# ----------------------------------------------------------------------------- host loop


@functools.partial(jax.jit, static_argnames=("support", "span", "radius"))
def _host_maps(content_small, result_small, eps, sigma_range, *, radius: int, support: int,
               span: tuple[int, int]) -> jax.Array:
    h, w, _ = content_small.shape
    maps = fit_affine(content_small, result_small, radius=radius, eps=eps, sigma_range=sigma_range)
    return _pad_samples(maps.reshape(h, w, MAPS), content_small, support, span)


@functools.partial(jax.jit, static_argnames=("support", "span"))
def _host_tile(samples, guide, y0, x0, small_hw, steps, sigma_range, *, support: int,
               span: tuple[int, int]) -> jax.Array:
    guide = guide.transpose(2, 0, 1)  # [3, T, T']
    means = _bilateral_tile(samples, guide, y0, x0, small_hw=small_hw, steps=steps,
                            support=support, span=span, sigma_range=sigma_range)
    return _apply_maps(means, guide).transpose(1, 2, 0)  # [T, T', 3]


def upsample_affine_host(content_full, content_small, result_small, *,
                         radius: int = DEFAULT_RADIUS, eps: float = DEFAULT_EPS,
                         sigma_range: float = DEFAULT_SIGMA_RANGE,
                         fit_sigma_range: float = DEFAULT_FIT_SIGMA_RANGE, support: int = DEFAULT_SUPPORT,
                         tile: int = 256) -> np.ndarray:
    """`upsample_affine` with the tile loop on the host: numpy `[H, W, 3]` in and out.

    The maps are fitted once at the working size; then one compiled tile program (its
    shapes depend on `tile`, `support` and the working size only, so it serves every photo
    size with H >= h and W >= w) runs tile by tile on slices of `content_full`, writing into a
    numpy output. The device holds one tile at a time. Same tiles and arithmetic as
    `upsample_affine` (equal to float32 rounding). Not traceable: use `upsample_affine`
    under `jit`, `vmap` or `grad`.
    """
    full = check_image(np.asarray(content_full), "content_full")
    content_small, result_small, support, tile = _check_settings(
        content_small, result_small, support, tile, sigma_range, fit_sigma_range)
    dtype = np.dtype(jnp.result_type(full.dtype, content_small.dtype, jnp.float32))
    content_small, result_small = content_small.astype(dtype), result_small.astype(dtype)
    (hf, wf, _), (hs, ws, _) = full.shape, content_small.shape
    if hf < hs or wf < ws:
        raise JaxstyleError(f"content_full {wf}x{hf} is smaller than the working size {ws}x{hs}: "
                            "upsample_affine_host only upsamples; use upsample_affine")
    th, tw = _tile_shape((hf, wf), tile)
    span = (th + 2 * support, tw + 2 * support)  # enough for any step <= 1
    samples = _host_maps(content_small, result_small, eps, fit_sigma_range, radius=radius,
                         support=support, span=span)
    small_hw = np.asarray([hs, ws], np.int32)
    steps = (np.asarray(hs / hf, dtype), np.asarray(ws / wf, dtype))
    out = np.empty((hf, wf, 3), dtype)
    for y0 in tile_origins(hf, th):
        for x0 in tile_origins(wf, tw):
            guide = np.ascontiguousarray(full[y0:y0 + th, x0:x0 + tw], dtype)
            out[y0:y0 + th, x0:x0 + tw] = np.asarray(_host_tile(
                samples, guide, np.int32(y0), np.int32(x0), small_hw, steps, sigma_range,
                support=support, span=span))
    return out
