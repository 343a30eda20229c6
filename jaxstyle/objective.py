"""The style-transfer objective: targets computed once, then a pure `image -> (loss, terms)`.

Images are float32 `[H, W, 3]` RGB in [0, 1]; masks are `[H, W, K]` soft one-hot stacks
at image resolution (`jaxstyle.masks`). Everything here is jit-, vmap- and grad-friendly:
`prepare_targets` is a pure function of arrays (so gradients can flow to the style image),
and `make_objective` closes over a static `LossConfig` and the target arrays.

    targets = prepare_targets(weights, content, style, content_mask, style_mask, cfg=cfg)
    objective = make_objective(cfg, weights, targets)
    loss, terms = objective(image)   # terms: content, style, tv, photo (weighted)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxstyle import laplacian as lap
from jaxstyle import losses
from jaxstyle.color import feather_masks
from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.grid import apply_maps, flat_variation, roughness, slice_maps
from jaxstyle.masks import propagate_masks, with_style_fallback
from jaxstyle.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGWeights, check_layers, features

__all__ = [
    "GridObjective", "LOSS_TERMS", "LossConfig", "Objective", "loss_weights", "make_objective", "prepare_targets",
]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights and layers of the objective (defaults: the original implementation's).

    photo_weight is lambda, the weight of sum_c v_c^T L v_c (0 disables the term and
    skips building the Laplacian). style_normalization: "none" (the original's absolute
    Gram errors) or "target" (each layer's and region's error relative to its target Gram;
    see `losses.style_loss`). mask_feather: with several regions, soften each image's masks
    along its own colours (`jaxstyle.color.feather_masks` with this radius) before the style
    loss uses them, so a border that crosses smooth shading blends over about that many
    pixels instead of switching targets from one pixel to the next (0: masks as given).
    region_photo_scale: with several regions, lambda is photo_weight times this. Each
    region then asks for its own look, which one global recolouring need not give, so at
    the same lambda a segmented result is less locally affine than a global transfer
    (`docs/presets.md`); a scale > 1 holds segmented runs to the same photorealism.
    """

    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 1e-3
    photo_weight: float = 1e4
    content_layers: tuple[str, ...] = CONTENT_LAYERS
    style_layers: tuple[str, ...] = STYLE_LAYERS
    pooling: str = "max"
    laplacian_radius: int = 1
    laplacian_eps: float = 1e-7
    laplacian_form: str = "auto"
    style_normalization: str = "none"
    mask_feather: int = 0
    region_photo_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.region_photo_scale > 0:
            raise JaxstyleError(f"region_photo_scale must be > 0 (a factor on photo_weight), "
                                f"got {self.region_photo_scale}")
        if self.mask_feather < 0:
            raise JaxstyleError(f"mask_feather must be >= 0 (a radius in px), got {self.mask_feather}")
        if self.style_normalization not in losses.STYLE_NORMALIZATIONS:
            raise JaxstyleError(f"unknown style_normalization {self.style_normalization!r}"
                                f"{did_you_mean(self.style_normalization, losses.STYLE_NORMALIZATIONS)}; "
                                f"choose one of {', '.join(losses.STYLE_NORMALIZATIONS)}")

    def with_updates(self, **changes: Any) -> LossConfig:
        """A copy with `changes`; unknown field names get a 'did you mean' hint."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise JaxstyleError(f"unknown loss setting {key!r}{did_you_mean(key, names)}")
        return dataclasses.replace(self, **changes)


def _all_layers(cfg: LossConfig) -> tuple[str, ...]:
    return tuple(dict.fromkeys(cfg.content_layers + cfg.style_layers))


def prepare_targets(weights: VGGWeights, content: jax.Array, style: jax.Array,
                    content_mask: jax.Array | None = None, style_mask: jax.Array | None = None, *,
                    cfg: LossConfig) -> dict[str, Any]:
    """Everything the objective compares against, computed once.

    Args:
      weights: the VGG network.
      content: `[H, W, 3]` content image (also the Laplacian's guide).
      style: `[Hs, Ws, 3]` style image.
      content_mask, style_mask: `[H, W, K]` and `[Hs, Ws, K]` soft one-hot stacks with the
        same K, or both None (one region covering everything).
      cfg: which layers, and whether to build the Laplacian (photo_weight > 0).

    Returns:
      A pytree: content features per content layer, style Grams `[K, C, C]` per style layer,
      content masks per style layer `[h, w, K]`, the Laplacian operator (or None), and the
      term weights as arrays (replace `targets["weights"]` to trace them; with K > 1 the
      photorealism weight is photo_weight * region_photo_scale).
    """
    layers = check_layers(weights.arch, _all_layers(cfg))
    if (content_mask is None) != (style_mask is None):
        raise JaxstyleError("give both a content mask and a style mask, or neither")
    if content_mask is None:
        # Derived from the (traced) images rather than constants, so XLA does not spend
        # seconds constant-folding the mask propagation at compile time.
        # (x * 0 is not folded: NaN). stop_gradient: masks carry no derivative, and the mask
        # propagation's reduce_window has no reverse-mode rule.
        content_mask = jax.lax.stop_gradient(content[..., :1] * 0 + 1).astype(jnp.float32)
        style_mask = jax.lax.stop_gradient(style[..., :1] * 0 + 1).astype(jnp.float32)
    if content_mask.shape[:2] != content.shape[:2] or style_mask.shape[:2] != style.shape[:2]:
        raise JaxstyleError(f"masks {content_mask.shape[:2]} / {style_mask.shape[:2]} do not match images "
                            f"{content.shape[:2]} / {style.shape[:2]}: parse them with jaxstyle.masks")
    if content_mask.shape[-1] != style_mask.shape[-1]:
        raise JaxstyleError(f"content mask has {content_mask.shape[-1]} labels, style mask "
                            f"{style_mask.shape[-1]}: build both with jaxstyle.masks.parse_mask_pair")
    if cfg.mask_feather > 0:
        content_mask = feather_masks(content, content_mask, radius=cfg.mask_feather)
        style_mask = feather_masks(style, style_mask, radius=cfg.mask_feather)
    unit = losses.feature_unit(weights.convention)
    content_feats = features(weights, content, layers, pooling=cfg.pooling)
    style_feats = features(weights, style, cfg.style_layers, pooling=cfg.pooling)
    content_masks = propagate_masks(content_mask, arch=weights.arch, layers=cfg.style_layers)
    # A style region too small to survive downsampling takes the whole style image there.
    style_masks = with_style_fallback(propagate_masks(style_mask, arch=weights.arch, layers=cfg.style_layers))
    grams = {layer: losses.masked_grams(unit * style_feats[layer], style_masks[layer])[0]
             for layer in cfg.style_layers}
    laplacian = None
    if cfg.photo_weight != 0:
        laplacian = lap.build_laplacian(content, radius=cfg.laplacian_radius, eps=cfg.laplacian_eps,
                                        form=cfg.laplacian_form)
    return {
        "content": {layer: unit * content_feats[layer] for layer in cfg.content_layers},
        "grams": grams,
        "masks": content_masks,
        "laplacian": laplacian,
        "weights": loss_weights(cfg, regions=content_mask.shape[-1]),
    }


LOSS_TERMS = ("content", "style", "tv", "photo")


def loss_weights(cfg: LossConfig, *, regions: int = 1) -> dict[str, jax.Array]:
    """The term weights as arrays, so they can be traced (vmapped, differentiated).

    `regions`: the number of mask labels K; with K > 1 the photorealism weight is
    photo_weight * region_photo_scale.
    """
    photo = cfg.photo_weight * (cfg.region_photo_scale if regions > 1 else 1.0)
    return {"content": jnp.float32(cfg.content_weight), "style": jnp.float32(cfg.style_weight),
            "tv": jnp.float32(cfg.tv_weight), "photo": jnp.float32(photo)}


def make_objective(cfg: LossConfig, weights: VGGWeights, targets: dict[str, Any], *,
                   use_photo: bool = True):
    """A pure `image [H, W, 3] -> (loss, {content, style, tv, photo})`, each term weighted.

    The term weights come from `targets["weights"]` (arrays, see `loss_weights`), so a
    caller may trace them; the photorealism term is included when `use_photo` and the
    targets hold a Laplacian.
    """
    layers = _all_layers(cfg)
    unit = losses.feature_unit(weights.convention)
    w = targets["weights"]

    def objective(image: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        feats = features(weights, image, layers, pooling=cfg.pooling)
        content = sum(losses.content_loss(unit * feats[layer], targets["content"][layer])
                      for layer in cfg.content_layers)
        style = sum(losses.style_loss(unit * feats[layer], targets["masks"][layer], targets["grams"][layer],
                                      normalization=cfg.style_normalization)
                    for layer in cfg.style_layers)
        tv = losses.total_variation(image * losses.CAFFE_PIXEL_SCALE)
        terms = {"content": w["content"] * content, "style": w["style"] * style, "tv": w["tv"] * tv}
        if use_photo and targets["laplacian"] is not None:
            terms["photo"] = w["photo"] * lap.quadratic_energy(targets["laplacian"], image)
        else:
            terms["photo"] = jnp.zeros((), image.dtype)
        return sum(terms.values()), terms

    return objective


@dataclasses.dataclass(frozen=True)
class Objective:
    """Hashable objective for the optimiser: `Objective(cfg)(image, (weights, targets))`.

    Being a frozen dataclass of static settings, equal instances share one compiled step.
    """

    cfg: LossConfig
    use_photo: bool = True

    def __call__(self, image: jax.Array, args: tuple[VGGWeights, dict[str, Any]]
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
        weights, targets = args
        return make_objective(self.cfg, weights, targets, use_photo=self.use_photo)(image)


@dataclasses.dataclass(frozen=True)
class GridObjective(Objective):
    """`Objective` of a grid of affine maps `[gh, gw, gd, 3, 4]` (`jaxstyle.grid`): it scores
    the grid sliced under the content at the stage's size, `targets["guide"]` `[H, W, 3]`, plus
    `smooth` times the grid's spatial roughness (`jaxstyle.grid.roughness`, the term "grid"): where
    the content is flat, maps that change from node to node paint shapes the content does not
    have, which the 3x3 matting term barely sees; plus `flat` times the sliced maps' change
    between neighbouring pixels of like colour (`jaxstyle.grid.flat_variation`, colour scale
    `flat_sigma`), which lets maps change across the content's edges only; plus, when the targets
    hold an `"anchor"` (`pipeline.Start`, a warm start), `anchor` times the squared distance of
    the sliced image from the slice of the start's look, each node's difference weighted by its
    hold, in Caffe pixel units (as the total variation is), so that the solve stays near the look
    it started from where that look was solved. All three are the term "grid"."""

    smooth: float = 0.0
    flat: float = 0.0
    flat_sigma: float = 0.05
    anchor: float = 0.0

    def __call__(self, look: jax.Array, args: tuple[VGGWeights, dict[str, Any]]
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
        # The barrier keeps XLA from fusing the slicing into the first convolution's input,
        # which made each evaluation about 1.5x slower on the CPU.
        guide = args[1]["guide"]
        maps = slice_maps(look, guide)
        image = jax.lax.optimization_barrier(apply_maps(maps, guide))
        loss, terms = super().__call__(image, args)
        terms["grid"] = self.smooth * roughness(look)
        if self.flat:
            terms["grid"] = terms["grid"] + self.flat * flat_variation(maps, guide, sigma=self.flat_sigma)
        if self.anchor and "anchor" in args[1]:  # the change from the start's slice (slicing is linear)
            start = args[1]["anchor"]
            moved = apply_maps(slice_maps((look - start.look) * start.hold[:, :, None, None, None], guide), guide)
            terms["grid"] = terms["grid"] + self.anchor * jnp.sum(jnp.square(moved * losses.CAFFE_PIXEL_SCALE))
        return loss + terms["grid"], terms
