"""Content, masked style and total-variation losses: pure functions of features.

Features are `[h, w, C]` float32 activations of one image at one layer; masks are
`[h, w, K]` soft one-hot stacks already propagated to that layer (`jaxstyle.masks`);
images are `[H, W, 3]` RGB in [0, 1]. Batches come from `jax.vmap`.

Formulas follow the original implementation (luanfujun/deep-photo-styletransfer,
`neuralstyle_seg.lua`):

- content: mean over elements of (F - T)^2;
- style, per label k with mask M_k at this layer and m_k = mean(M_k):
  G_k = (M_k F)^T (M_k F) / (h w C m_k), loss = sum_k m_k * mean((G_k - T_k)^2),
  where T_k is the same Gram of the style image under its own mask for label k;
  a label with m_k = 0 contributes nothing;
- total variation: 0.5 * sum over the [H-1, W-1] block of (dx^2 + dy^2), the form
  whose gradient the original hand-codes.

Normalisation across backbones (`unit_scale`): the original's weights (content 5,
style 100, TV 1e-3) are tuned for Caffe VGG-19, whose input is the image in
[0, 255] (BGR, mean removed). torchvision weights take (x - mean) / std instead,
about 255 * 0.226 = 57.7 times smaller inputs, so every activation is roughly that
much smaller and the squared losses ~3.3e3 times smaller, which would silently
reweight content against TV and the photorealism term. We therefore express
features in "Caffe units": activations of torchvision-convention networks are
multiplied by `feature_unit(convention)` = 255 * mean(ImageNet std) before any loss,
and image-space terms (TV) are measured on the image scaled to [0, 255]. A ReLU
network without biases is exactly positively homogeneous, so this fixes the
dominant input-scale effect; biases and the networks' own per-layer scales are not
calibrated (no Caffe VGG-19 is available to calibrate against), which is why
presets tune their weights per backbone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxstyle.vgg import IMAGENET_STD_RGB

__all__ = [
    "CAFFE_PIXEL_SCALE", "STYLE_NORMALIZATIONS", "content_loss", "feature_unit", "gram", "masked_grams", "style_loss",
    "total_variation",
]

CAFFE_PIXEL_SCALE = 255.0


def feature_unit(convention: str) -> float:
    """Factor that brings activations of a `convention` network to Caffe units."""
    if convention == "caffe":
        return 1.0
    return CAFFE_PIXEL_SCALE * sum(IMAGENET_STD_RGB) / 3.0


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error between `[h, w, C]` features and their target."""
    return jnp.mean(jnp.square(features - target))


def masked_grams(features: jax.Array, masks: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Normalised Gram matrices of mask-weighted features, one per label.

    Args:
      features: `[h, w, C]`.
      masks: `[h, w, K]` soft masks at this layer's resolution.

    Returns:
      grams `[K, C, C]` = (M_k F)^T (M_k F) / (h w C m_k) (zero where m_k = 0),
      and region shares `[K]` m_k = mean(M_k).
    """
    if features.shape[:2] != masks.shape[:2]:
        raise ValueError(f"mask {masks.shape[:2]} does not match features {features.shape[:2]}: "
                         "propagate masks with jaxstyle.masks.propagate_masks for this layer")
    h, w, c = features.shape
    flat = features.reshape(h * w, c)  # [P, C]
    m = masks.reshape(h * w, -1)  # [P, K]
    shares = jnp.mean(m, axis=0)  # [K]
    # (M_k F)^T (M_k F) = F^T (M_k^2 F) for every k as one [C, P] x [P, K C] product: on the CPU
    # 1.3-2x faster, with its gradient, than K batched products of the masked features.
    weighted = (jnp.square(m)[:, :, None] * flat[:, None, :]).reshape(h * w, -1)  # [P, K C]
    grams = (flat.T @ weighted).reshape(c, -1, c).transpose(1, 0, 2)  # [K, C, C]
    denom = h * w * c * shares
    safe = jnp.where(shares > 0, denom, 1.0)
    grams = jnp.where((shares > 0)[:, None, None], grams / safe[:, None, None], 0.0)
    return grams, shares


def gram(features: jax.Array) -> jax.Array:
    """Normalised Gram matrix `[C, C]` = F^T F / (h w C) of `[h, w, C]` features."""
    grams, _ = masked_grams(features, jnp.ones((*features.shape[:2], 1), features.dtype))
    return grams[0]


STYLE_NORMALIZATIONS = ("none", "target")


def style_loss(features: jax.Array, masks: jax.Array, target_grams: jax.Array, *,
               normalization: str = "none") -> jax.Array:
    """Segmented style loss at one layer.

    normalization "none" (the original): sum_k m_k * mean((G_k - T_k)^2), in the squared
    units of the features, so layers with large activations dominate. "target": each
    label's error relative to its target, sum_k m_k * |G_k - T_k|_F^2 / |T_k|_F^2: every
    layer and region counts by its relative mismatch (the quantity
    `jaxstyle.metrics.gram_distance` reports), independent of the backbone's scales.

    Args:
      features: `[h, w, C]` of the image being optimised.
      masks: `[h, w, K]` content masks at this layer.
      target_grams: `[K, C, C]` from `masked_grams` of the style image under its masks.
      normalization: "none" or "target".
    """
    grams, shares = masked_grams(features, masks)
    per_label = jnp.mean(jnp.square(grams - target_grams), axis=(1, 2))  # [K]
    if normalization == "target":
        scale = jnp.mean(jnp.square(target_grams), axis=(1, 2))  # [K]
        per_label = jnp.where(scale > 0, per_label / jnp.where(scale > 0, scale, 1.0), 0.0)
    elif normalization != "none":
        raise ValueError(f"unknown style normalization {normalization!r}; choose one of "
                         f"{', '.join(STYLE_NORMALIZATIONS)}")
    return jnp.sum(shares * per_label)


def total_variation(image: jax.Array) -> jax.Array:
    """0.5 * sum of squared right and down differences over the `[H-1, W-1]` block."""
    core = image[:-1, :-1]
    dx = core - image[:-1, 1:]
    dy = core - image[1:, :-1]
    return 0.5 * (jnp.sum(jnp.square(dx)) + jnp.sum(jnp.square(dy)))
