"""jaxstyle: Deep Photo Style Transfer (Luan et al., CVPR 2017) in JAX.

Arrays are float32 `[H, W, 3]` RGB in [0, 1]; batches come from `jax.vmap`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxstyle._version import __version__
from jaxstyle.batch import BatchResult, stylize_batch
from jaxstyle.color import linear_color_transfer
from jaxstyle.config import Config, load_config
from jaxstyle.errors import DivergenceError, Interrupted, JaxstyleError, WeightsError
from jaxstyle.evaluate import evaluate_files
from jaxstyle.io import load_image, read_metadata, save_image, to_numpy_image
from jaxstyle.laplacian import (build_laplacian, laplacian_matvec, laplacian_residual_map,
                                matting_laplacian, matting_operator, photorealism_loss,
                                quadratic_energy)
from jaxstyle.losses import content_loss, gram, masked_grams, style_loss, total_variation
from jaxstyle.masks import MaskPair, parse_mask_pair, propagate_masks
from jaxstyle.metrics import evaluate_triple
from jaxstyle.objective import LossConfig, Objective, make_objective, prepare_targets
from jaxstyle.optimize import OptimConfig, minimize, minimize_fixed
from jaxstyle.smoothing import guided_filter, refine_detail, smooth_local_affine
from jaxstyle.pipeline import initial_image, run_plan
from jaxstyle.stylize import Result, stylize, stylize_image
from jaxstyle.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGWeights, features
from jaxstyle.weights import embedded_vgg16, fetch_weights, import_weights, resolve_weights


def extract_features(image: jax.Array, layers: Sequence[str] = STYLE_LAYERS, *,
                     backbone: str = "vgg16") -> dict[str, jax.Array]:
    """VGG activations of `image` (`[H, W, 3]` or `[B, H, W, 3]`, RGB in [0, 1]).

    Loads (once, then cached) the weights that `backbone` resolves to: 'vgg16' (bundled),
    'vgg19' (from the cache) or a path to a canonical `.npz`. Returns `{layer: [(B,) h, w, C]}`.
    """
    weights = resolve_weights(backbone)
    image = jnp.asarray(image, jnp.float32)
    layers = tuple(layers)
    if image.ndim == 4:
        return jax.vmap(lambda im: features(weights, im, layers))(image)
    return features(weights, image, layers)


__all__ = [
    "BatchResult", "CONTENT_LAYERS", "Config", "DivergenceError", "Interrupted", "JaxstyleError", "LossConfig",
    "MaskPair", "Objective", "OptimConfig", "Result", "STYLE_LAYERS", "VGGWeights", "WeightsError",
    "__version__", "build_laplacian", "content_loss", "embedded_vgg16", "evaluate_files",
    "evaluate_triple", "extract_features", "features", "fetch_weights", "gram", "guided_filter",
    "import_weights", "initial_image", "laplacian_matvec", "laplacian_residual_map",
    "linear_color_transfer", "load_config", "load_image", "make_objective", "masked_grams",
    "matting_laplacian", "matting_operator", "minimize", "minimize_fixed", "parse_mask_pair",
    "photorealism_loss", "prepare_targets", "propagate_masks", "quadratic_energy", "read_metadata",
    "refine_detail", "resolve_weights", "run_plan", "save_image", "smooth_local_affine", "style_loss",
    "stylize", "stylize_batch", "stylize_image", "to_numpy_image", "total_variation",
]
