"""Smooth local affine: the post-process of Deep Photo Style Transfer (Luan et al. 2017).

Images as in `jaxstyle.images` (float16 and bfloat16 ones are filtered in float32). The
filter takes a stylised `output` and the `content` photo and returns an image that is,
around every pixel, an affine function of the content's colours, so content edges stay
sharp and textures do not smear:

1. `local_affine_coefficients`: for each pixel i, the ridge-regularised least-squares
   affine map `A_i` (`[3, 4]`: 3x3 colour matrix, then offset) with
   `A_i [I_k; 1] ~ O_k` over the `(2 p + 1)^2` window around i (p = `patch_radius`).
   The ridge `eps * |colour part|^2` leaves the offset free. -> `[H, W, 3, 4]`
2. `joint_bilateral`: those 12 numbers per pixel are averaged over a `(2 r + 1)^2`
   window (r = `radius`) with weights
   `exp(-(dx^2 + dy^2) / (2 (r/3)^2)) * exp(-mean_c (I_j - I_i)_c^2 / (2 edge^2))`,
   guided by the content I.                                      -> `[H, W, 12]`
3. result_i = smoothed A_i [I_i; 1], clipped to [0, 1].          -> `[H, W, 3]`

Fidelity to the original (`cuda_utils.cu`, `best_local_affine_kernel`,
`bilateral_smooth_kernel`, `reconstruction_best_kernel`; `SmoothLocalAffine` in
`deepmatting_seg.lua`; `gen_all.py` passes `-f_radius 15 -f_edge 0.01`):

- The kernel receives an `epsilon` argument (1e-7 from every caller) but never reads it;
  it adds a fixed 1e-3 to the three colour diagonal entries of `M^T M`. `eps` here is that
  ridge, default `ORIGINAL_RIDGE = 1e-3`.
- Windows are truncated at the image border (only in-image pixels count), in both steps;
  the filter divides by the sum of the in-image weights. Spatial sigma is `radius / 3`,
  range sigma is `edge`, and the colour distance is the mean over the three channels.
- The original works in double precision in BGR order; we work in float32 on centred
  window moments, which is algebraically the same solve because the offset is not
  penalised. Channel order does not matter (full 3x3 map, isotropic ridge).
- The kernels do not clip; the callers clip when writing 8-bit images. We clip.

Everything is linear in `output`, so the filter is differentiable w.r.t. it (and w.r.t.
`content`). Settings that fix shapes (`radius`, `patch_radius`) are Python ints; under
`jax.jit` pass them as static arguments. Memory stays `O(H W)`: the filter scans over
rows of offsets and accumulates numerator and denominator.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

from jaxstyle.boxfilter import box_mean
from jaxstyle.errors import JaxstyleError
from jaxstyle.images import as_float, check_image

__all__ = [
    "apply_affine", "guided_filter", "joint_bilateral", "local_affine_coefficients", "refine_detail",
    "smooth_local_affine", "solve_sym3",
]

ORIGINAL_RIDGE = 1e-3  # cuda_utils.cu: Mt_M[i][i] = 1e-3 for the colour rows
DEFAULT_RADIUS = 15  # gen_all.py: -f_radius 15
DEFAULT_EDGE = 0.01  # gen_all.py: -f_edge 0.01
DEFAULT_PATCH_RADIUS = 1  # -patch 3
SPATIAL_SIGMA_PER_RADIUS = 1.0 / 3.0  # deepmatting_seg.lua: sigma1 = filter_radius / 3


def _check_same_hw(a_name: str, a: jax.Array, b_name: str, b: jax.Array) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise JaxstyleError(f"{a_name} {a.shape[1]}x{a.shape[0]} does not match {b_name} "
                            f"{b.shape[1]}x{b.shape[0]} (width x height): resize one to the other")


def _check_radius(name: str, value: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise JaxstyleError(f"{name} must be a Python int (it fixes array shapes), got "
                            f"{type(value).__name__}; under jax.jit mark it static") from None
    if value < 0:
        raise JaxstyleError(f"{name} must be >= 0, got {value}")
    return value


def _check_positive(name: str, value: float | jax.Array) -> None:
    """Checks concrete numbers; traced values pass through unchecked."""
    if isinstance(value, (int, float)) and not value > 0:
        raise JaxstyleError(f"{name} must be > 0, got {value}")


def _box_offsets(radius: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(2 * radius + 1) for dx in range(2 * radius + 1)]


def local_affine_coefficients(output: jax.Array, content: jax.Array, *,
                              patch_radius: int = DEFAULT_PATCH_RADIUS,
                              eps: float | jax.Array = ORIGINAL_RIDGE) -> jax.Array:
    """Per-pixel best affine map from `content` colours to `output` colours.

    For pixel i with window N_i (the in-image pixels within `patch_radius`), returns
    `A_i = argmin_A sum_{k in N_i} |A [I_k; 1] - O_k|^2 + eps |A[:, :3]|_F^2`.

    Args:
      output: `[H, W, 3]` the image to explain.
      content: `[H, W, 3]` the colours the maps act on.
      patch_radius: window half-width (1: 3x3 windows, as the original).
      eps: ridge on the 3x3 colour part (the original's fixed 1e-3).

    Returns:
      `[H, W, 3, 4]` in the inputs' float dtype; `[..., c, :3]` weights content RGB for output channel c,
      `[..., c, 3]` is its offset.
    """
    output = as_float(check_image(output, "output"))
    content = as_float(check_image(content, "content"))
    _check_same_hw("output", output, "content", content)
    p = _check_radius("patch_radius", patch_radius)
    _check_positive("eps", eps)
    h, w, _ = output.shape

    dtype = jnp.result_type(output, content)
    output, content = output.astype(dtype), content.astype(dtype)
    pad = ((p, p), (p, p), (0, 0))
    content_pad = jnp.pad(content, pad)  # [h+2p, w+2p, 3]
    output_pad = jnp.pad(output, pad)  # [h+2p, w+2p, 3]
    inside_pad = jnp.pad(jnp.ones((h, w, 1), dtype), pad)  # [h+2p, w+2p, 1]
    offsets = _box_offsets(p)

    def window(x: jax.Array, dy: int, dx: int) -> jax.Array:
        return x[dy:dy + h, dx:dx + w]

    count = sum(window(inside_pad, dy, dx) for dy, dx in offsets)  # [h, w, 1]
    mean_in = sum(window(content_pad, dy, dx) for dy, dx in offsets) / count  # [h, w, 3]
    mean_out = sum(window(output_pad, dy, dx) for dy, dx in offsets) / count  # [h, w, 3]

    cov = jnp.zeros((h, w, 3, 3), dtype)  # sum (I - mean)(I - mean)^T
    cross = jnp.zeros((h, w, 3, 3), dtype)  # sum (I - mean_in)(O - mean_out)^T
    for dy, dx in offsets:
        inside = window(inside_pad, dy, dx)
        di = (window(content_pad, dy, dx) - mean_in) * inside  # [h, w, 3]
        do = window(output_pad, dy, dx) - mean_out  # [h, w, 3]
        cov = cov + di[..., :, None] * di[..., None, :]
        cross = cross + di[..., :, None] * do[..., None, :]

    colour = solve_sym3(cov + eps * jnp.eye(3, dtype=dtype), cross)  # [h, w, in, out]
    colour = jnp.swapaxes(colour, -1, -2)  # [h, w, out, in]
    offset = mean_out - jnp.einsum("hwoi,hwi->hwo", colour, mean_in)  # [h, w, 3]
    return jnp.concatenate([colour, offset[..., None]], axis=-1)


def solve_sym3(m: jax.Array, b: jax.Array) -> jax.Array:
    """`m^{-1} b` for symmetric 3x3 `m` `[..., 3, 3]` by cofactors (elementwise, no LAPACK)."""
    a, bb, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 1], m[..., 1, 2], m[..., 2, 2]
    c00, c01, c02 = d * f - e * e, c * e - bb * f, bb * e - c * d
    c11, c12, c22 = a * f - c * c, bb * c - a * e, a * d - bb * bb
    det = a * c00 + bb * c01 + c * c02
    adj = jnp.stack([jnp.stack([c00, c01, c02], -1),
                     jnp.stack([c01, c11, c12], -1),
                     jnp.stack([c02, c12, c22], -1)], -2)  # [..., 3, 3]
    return jnp.einsum("...ij,...jk->...ik", adj, b) / det[..., None, None]


def joint_bilateral(values: jax.Array, guide: jax.Array, *, radius: int = DEFAULT_RADIUS,
                    edge: float | jax.Array = DEFAULT_EDGE) -> jax.Array:
    """Edge-aware average of `values` `[H, W, D]` guided by `guide` `[H, W, 3]`.

    `out_i = sum_j w_ij v_j / sum_j w_ij` over in-image j with `|dx|, |dy| <= radius`,
    `w_ij = exp(-(dx^2 + dy^2) / (2 (radius/3)^2) - mean_c (g_j - g_i)_c^2 / (2 edge^2))`.
    `radius=0` returns `values` unchanged. Returns `[H, W, D]` in the inputs' float dtype.
    """
    values = as_float(check_image(values, "values", channels=None))
    guide = as_float(check_image(guide, "guide"))
    _check_same_hw("values", values, "guide", guide)
    r = _check_radius("radius", radius)
    _check_positive("edge", edge)
    if r == 0:
        return values
    h, w, _ = values.shape

    dtype = jnp.result_type(values, guide)
    values, guide = values.astype(dtype), guide.astype(dtype)  # one dtype for the scan carry
    pad = ((r, r), (r, r), (0, 0))
    values_pad = jnp.pad(values, pad)  # [h+2r, w+2r, D]
    guide_pad = jnp.pad(guide, pad)  # [h+2r, w+2r, 3]
    inside_pad = jnp.pad(jnp.ones((h, w), dtype), pad[:2])  # [h+2r, w+2r]
    spatial_scale = 1.0 / (2.0 * (r * SPATIAL_SIGMA_PER_RADIUS) ** 2)
    range_scale = 1.0 / (3.0 * 2.0 * jnp.square(jnp.asarray(edge, dtype)))  # mean of 3

    def one_row_of_offsets(carry, dy):
        num, den = carry  # [h, w, D], [h, w]
        rows_v = jax.lax.dynamic_slice_in_dim(values_pad, dy, h, axis=0)  # [h, w+2r, D]
        rows_g = jax.lax.dynamic_slice_in_dim(guide_pad, dy, h, axis=0)  # [h, w+2r, 3]
        rows_in = jax.lax.dynamic_slice_in_dim(inside_pad, dy, h, axis=0)  # [h, w+2r]
        dy2 = jnp.square(dy - r).astype(dtype)
        for dx in range(2 * r + 1):  # unrolled: XLA fuses the row into few passes
            diff = rows_g[:, dx:dx + w] - guide
            logw = (dy2 + (dx - r) ** 2) * spatial_scale + jnp.sum(diff * diff, -1) * range_scale
            weight = rows_in[:, dx:dx + w] * jnp.exp(-logw)  # [h, w]
            num = num + weight[..., None] * rows_v[:, dx:dx + w]
            den = den + weight
        return (num, den), None

    init = (jnp.zeros_like(values), jnp.zeros((h, w), dtype))
    # Checkpointed: reverse mode recomputes the weights instead of storing (2r+1)^2 maps.
    (num, den), _ = jax.lax.scan(jax.checkpoint(one_row_of_offsets), init, jnp.arange(2 * r + 1))
    return num / den[..., None]  # the centre tap has weight 1, so den >= 1


def apply_affine(coefficients: jax.Array, content: jax.Array) -> jax.Array:
    """`A_i [I_i; 1]` per pixel: `[H, W, 3, 4]`, `[H, W, 3]` -> `[H, W, 3]` (not clipped)."""
    check_image(content, "content")
    return jnp.einsum("hwoi,hwi->hwo", coefficients[..., :3], content) + coefficients[..., 3]


def smooth_local_affine(output: jax.Array, content: jax.Array, *, radius: int = DEFAULT_RADIUS,
                        edge: float | jax.Array = DEFAULT_EDGE,
                        patch_radius: int = DEFAULT_PATCH_RADIUS,
                        eps: float | jax.Array = ORIGINAL_RIDGE) -> jax.Array:
    """DPST's smooth-local-affine post-process of `output` `[H, W, 3]` guided by `content`.

    Local affine maps (`patch_radius`, ridge `eps`) from content to output colours,
    joint-bilaterally smoothed (`radius`, range sigma `edge`) under the content, applied
    to the content and clipped to [0, 1]. Returns `[H, W, 3]` in the inputs' float dtype.
    """
    output = as_float(check_image(output, "output"))
    content = as_float(check_image(content, "content"))
    _check_same_hw("output", output, "content", content)
    radius = _check_radius("radius", radius)
    _check_positive("edge", edge)
    h, w, _ = output.shape
    coefficients = local_affine_coefficients(output, content, patch_radius=patch_radius, eps=eps)
    smoothed = joint_bilateral(coefficients.reshape(h, w, 12), content, radius=radius, edge=edge)
    return jnp.clip(apply_affine(smoothed.reshape(h, w, 3, 4), content), 0.0, 1.0)


# ----------------------------------------------------------------------------- refine

REFINE_RADIUS = 8  # refine_posterization.m: r = 8
REFINE_EPS = 0.01  # refine_posterization.m: eps = 0.1^2


def guided_filter(guide: jax.Array, source: jax.Array, *, radius: int = REFINE_RADIUS,
                  eps: float | jax.Array = REFINE_EPS) -> jax.Array:
    """He, Sun and Tang's guided filter with a colour guide (`guidedfilter_color.m`).

    Every `(2 r + 1)^2` window (truncated at the border) fits `source ~ a^T guide + b` by
    ridge regression (ridge `eps`); each pixel averages the fits of the windows that hold it
    and applies them to its guide colour. `guide` `[H, W, 3]`, `source` `[H, W, C]`, filtered
    channel by channel -> `[H, W, C]` in the inputs' float dtype.
    """
    guide = as_float(check_image(guide, "guide"))
    source = as_float(check_image(source, "source", channels=None))
    _check_same_hw("guide", guide, "source", source)
    r = _check_radius("radius", radius)
    _check_positive("eps", eps)
    dtype = jnp.result_type(guide, source)
    guide, source = guide.astype(dtype), source.astype(dtype)
    mean_i = box_mean(guide, r)  # [h, w, 3]
    mean_p = box_mean(source, r)  # [h, w, C]
    cov_ip = box_mean(guide[..., :, None] * source[..., None, :], r) - mean_i[..., :, None] * mean_p[..., None, :]
    var_i = box_mean(guide[..., :, None] * guide[..., None, :], r) - mean_i[..., :, None] * mean_i[..., None, :]
    a = solve_sym3(var_i + eps * jnp.eye(3, dtype=dtype), cov_ip)  # [h, w, 3, C]
    b = mean_p - jnp.einsum("hwic,hwi->hwc", a, mean_i)  # [h, w, C]
    return jnp.einsum("hwic,hwi->hwc", box_mean(a, r), guide) + box_mean(b, r)


def refine_detail(output: jax.Array, content: jax.Array, *, radius: int = REFINE_RADIUS,
                  eps: float | jax.Array = REFINE_EPS) -> jax.Array:
    """The original's optional de-posterisation (`refine_posterization.m`): adds the content's
    detail layer, `content - guided_filter(content, content)`, to `output`, clipped to [0, 1].

    `output`, `content` `[H, W, 3]` -> `[H, W, 3]`. The detail layer is what an edge-preserving
    smoothing of the content removes (fine texture and edges below the `eps` contrast), so
    flat, posterised patches of `output` get the content's texture back.
    """
    output = as_float(check_image(output, "output"))
    content = as_float(check_image(content, "content"))
    _check_same_hw("output", output, "content", content)
    detail = content - guided_filter(content, content, radius=radius, eps=eps)
    return jnp.clip(output + detail.astype(output.dtype), 0.0, 1.0)
