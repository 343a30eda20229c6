"""Region-wise linear colour transfer: a start for the optimisation that already has the style's colours.

For each label k the content's colours in region k (mean mu_c, covariance S_c) are mapped
onto the style region's (mu_s, S_s) by the linear Monge-Kantorovich map of Pitie and
Kokaram ("The linear Monge-Kantorovitch linear colour mapping for example-based colour
transfer", CVMP 2007):

    T = S_c^-1/2 (S_c^1/2 S_s S_c^1/2)^1/2 S_c^-1/2,     x -> T (x - mu_c) + mu_s,

the symmetric T with T S_c T = S_s that moves colours least (in the mean-squared sense)
among all affine maps with those moments. An affine map of the colours has zero
matting-Laplacian energy, so the result inside one region is exactly what the
photorealism term allows; across region borders the maps are blended by the (soft)
content masks. Covariances get `eps * I` added, so flat regions stay finite.

Hard masks make a seam wherever a region border crosses smoothly shaded content (a border
drawn by hand, or found on the coarse feature grid): two different affine maps meet there, a
step that the matting Laplacian penalises and a short stage 2 does not remove.
`feather_radius > 0` blends the maps with `feather_masks` instead: the masks passed through a
guided filter (He, Sun and Tang 2010) guided by the content, so the weights switch at colour
edges and blend over about `feather_radius` px elsewhere; the region statistics still come
from the masks as given.

Pure JAX: jit-, vmap- and grad-able; masks as in `jaxstyle.objective.prepare_targets`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxstyle.masks import with_style_fallback
from jaxstyle.smoothing import guided_filter

DEFAULT_EPS = 1e-4  # colour variance floor (a standard deviation of 0.01 on [0, 1])
# Guided-filter ridge for feathering: windows whose colour variance is well above it (a step of
# ~0.06 or more) keep the masks' switch sharp.
FEATHER_EPS = 1e-3


def _weighted_moments(pixels: jax.Array, weights: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """Mean `[K, 3]` and covariance `[K, 3, 3]` of `pixels [N, 3]` under `weights [N, K]`."""
    total = jnp.maximum(jnp.sum(weights, axis=0), 1e-12)                     # [K]
    mean = (weights.T @ pixels) / total[:, None]                               # [K, 3]
    centred = pixels[None, :, :] - mean[:, None, :]                            # [K, N, 3]
    cov = jnp.einsum("nk,kni,knj->kij", weights, centred, centred) / total[:, None, None]
    return mean, cov + eps * jnp.eye(3, dtype=pixels.dtype)


def _sqrt_and_inverse_sqrt(s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """S^1/2 and S^-1/2 of symmetric positive definite `[..., 3, 3]`."""
    values, vectors = jnp.linalg.eigh(s)
    values = jnp.maximum(values, jnp.finfo(s.dtype).tiny)
    root = jnp.sqrt(values)
    def build(d):
        return jnp.einsum("...ij,...j,...kj->...ik", vectors, d, vectors)
    return build(root), build(1 / root)


def monge_kantorovich_map(cov_from: jax.Array, cov_to: jax.Array) -> jax.Array:
    """The symmetric `T [..., 3, 3]` with `T cov_from T = cov_to` (Pitie and Kokaram 2007)."""
    root, inv_root = _sqrt_and_inverse_sqrt(cov_from)
    middle, _ = _sqrt_and_inverse_sqrt(root @ cov_to @ root)
    return inv_root @ middle @ inv_root


def feather_masks(content: jax.Array, content_mask: jax.Array, *, radius: int,
                  eps: float = FEATHER_EPS) -> jax.Array:
    """Content masks `[H, W, K]` feathered along the content `[H, W, 3]`: each channel through
    `jaxstyle.guided_filter(content, ., radius, eps)`, negatives cut, then rescaled so every
    pixel keeps its total coverage (1 inside the labels, 0 outside). -> `[H, W, K]`. One region
    (K = 1) has nothing to blend with and is returned as it is."""
    mask = content_mask.astype(content.dtype)
    if mask.shape[-1] == 1:
        return mask
    soft = jnp.maximum(guided_filter(content, mask, radius=radius, eps=eps), 0.0)  # [H, W, K]
    total, cover = jnp.sum(soft, -1, keepdims=True), jnp.sum(mask, -1, keepdims=True)
    return jnp.where(total > 0, soft * cover / jnp.where(total > 0, total, 1.0), mask)


def linear_color_transfer(content: jax.Array, style: jax.Array, content_mask: jax.Array | None = None,
                          style_mask: jax.Array | None = None, *, eps: float = DEFAULT_EPS,
                          feather_radius: int = 0) -> jax.Array:
    """Content `[H, W, 3]` recoloured region by region to the style's colour statistics.

    Args:
      content: `[H, W, 3]` RGB in [0, 1]; style `[Hs, Ws, 3]`.
      content_mask, style_mask: `[H, W, K]` and `[Hs, Ws, K]` soft one-hot stacks, or both
        None (one region each). A label with (almost) no style pixels takes the whole style
        image's statistics, as the style loss does; content pixels outside every label keep
        their colour.
      eps: added to each covariance's diagonal.
      feather_radius: blend the regions' maps with `feather_masks` of this radius (a static
        int; 0: with the masks as given).

    Returns:
      `[H, W, 3]`, clipped to [0, 1].
    """
    if content_mask is None:
        content_mask = jnp.ones(content.shape[:2] + (1,), content.dtype)
        style_mask = jnp.ones(style.shape[:2] + (1,), style.dtype)
    style_mask = with_style_fallback({"pixels": style_mask})["pixels"]  # the style loss's rule
    c_pixels, s_pixels = content.reshape(-1, 3), style.reshape(-1, 3)
    c_weights = content_mask.reshape(-1, content_mask.shape[-1]).astype(content.dtype)
    s_weights = style_mask.reshape(-1, style_mask.shape[-1]).astype(style.dtype)
    mu_c, cov_c = _weighted_moments(c_pixels, c_weights, eps)
    mu_s, cov_s = _weighted_moments(s_pixels, s_weights, eps)
    t = monge_kantorovich_map(cov_c, cov_s)                                   # [K, 3, 3]
    mapped = jnp.einsum("kij,knj->kni", t, c_pixels[None] - mu_c[:, None]) + mu_s[:, None]  # [K, N, 3]
    if feather_radius > 0:
        c_weights = feather_masks(content, content_mask, radius=feather_radius).reshape(c_weights.shape)
    total = jnp.sum(c_weights, axis=1)                                         # [N]
    blended = jnp.einsum("nk,kni->ni", c_weights, mapped) / jnp.maximum(total, 1e-12)[:, None]
    out = jnp.where(total[:, None] > 0, blended, c_pixels)
    return jnp.clip(out, 0.0, 1.0).reshape(content.shape)


__all__ = ["DEFAULT_EPS", "FEATHER_EPS", "feather_masks", "linear_color_transfer", "monge_kantorovich_map"]
