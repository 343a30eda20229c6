"""jaxstyle: Deep Photo Style Transfer (Luan et al., CVPR 2017) in JAX.

Arrays are float32 `[H, W, 3]` RGB in [0, 1]; batches come from `jax.vmap`.

The public names below are imported on first use (PEP 562), so `import jaxstyle` and the
command line's `--help` and `--version` do not import JAX.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jaxstyle._version import __version__

# Public name -> the module that defines it: what a user calls (run, losses and filters to
# compose, files, settings, weights, errors); the stage plan's and the solver's pieces stay in
# their modules. tests/test_api.py pins these names and their signatures.
_EXPORTS = {
    "jaxstyle.batch": ("BatchResult", "stylize_batch"),
    "jaxstyle.color": ("linear_color_transfer",),
    "jaxstyle.config": ("Config", "load_config"),
    "jaxstyle.cube": ("apply_cube", "fit_cube", "read_cube", "write_cube"),
    "jaxstyle.errors": ("DivergenceError", "Interrupted", "JaxstyleError", "WeightsError"),
    "jaxstyle.evaluate": ("evaluate_files",),
    "jaxstyle.laplacian": ("laplacian_matvec", "laplacian_residual_map", "matting_laplacian", "photorealism_loss"),
    "jaxstyle.look": ("apply_look", "load_look", "save_look"),
    "jaxstyle.losses": ("content_loss", "gram", "masked_grams", "style_loss", "total_variation"),
    "jaxstyle.masks": ("MaskPair", "parse_mask_pair", "propagate_masks"),
    "jaxstyle.metrics": ("evaluate_triple",),
    "jaxstyle.objective": ("LossConfig", "make_objective", "prepare_targets"),
    "jaxstyle.optimize": ("OptimConfig",),
    "jaxstyle.reading": ("Photo", "load_image", "read_photo"),
    "jaxstyle.single": ("Result", "stylize", "stylize_image"),
    "jaxstyle.smoothing": ("guided_filter", "refine_detail", "smooth_local_affine"),
    "jaxstyle.upsample": ("joint_bilateral_upsample", "upsample_affine"),
    "jaxstyle.vgg": ("CONTENT_LAYERS", "STYLE_LAYERS", "VGGWeights", "features"),
    "jaxstyle.weights": ("embedded_vgg16", "fetch_weights", "import_weights", "resolve_weights"),
    "jaxstyle.writing": ("read_metadata", "save_image"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:  # what type checkers and IDEs see: the eager imports
    from jaxstyle.batch import BatchResult, stylize_batch
    from jaxstyle.color import linear_color_transfer
    from jaxstyle.config import Config, load_config
    from jaxstyle.cube import apply_cube, fit_cube, read_cube, write_cube
    from jaxstyle.errors import DivergenceError, Interrupted, JaxstyleError, WeightsError
    from jaxstyle.evaluate import evaluate_files
    from jaxstyle.laplacian import laplacian_matvec, laplacian_residual_map, matting_laplacian, photorealism_loss
    from jaxstyle.look import apply_look, load_look, save_look
    from jaxstyle.losses import content_loss, gram, masked_grams, style_loss, total_variation
    from jaxstyle.masks import MaskPair, parse_mask_pair, propagate_masks
    from jaxstyle.metrics import evaluate_triple
    from jaxstyle.objective import LossConfig, make_objective, prepare_targets
    from jaxstyle.optimize import OptimConfig
    from jaxstyle.reading import Photo, load_image, read_photo
    from jaxstyle.single import Result, stylize, stylize_image
    from jaxstyle.smoothing import guided_filter, refine_detail, smooth_local_affine
    from jaxstyle.upsample import joint_bilateral_upsample, upsample_affine
    from jaxstyle.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGWeights, features
    from jaxstyle.weights import embedded_vgg16, fetch_weights, import_weights, resolve_weights
    from jaxstyle.writing import read_metadata, save_image


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and keep the name (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxstyle' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def extract_features(image: Any, layers: Sequence[str] | None = None, *,
                     backbone: str = "vgg16") -> dict[str, Any]:
    """VGG activations of `image` (`[H, W, 3]` or `[B, H, W, 3]`, RGB in [0, 1]).

    Loads (once, then cached) the weights that `backbone` resolves to: 'vgg16' (bundled),
    'vgg19' (from the cache) or a path to a canonical `.npz`. `layers` defaults to
    `STYLE_LAYERS`. Returns `{layer: [(B,) h, w, C]}`.
    """
    import jax
    import jax.numpy as jnp

    from jaxstyle.vgg import STYLE_LAYERS, features
    from jaxstyle.weights import resolve_weights

    weights = resolve_weights(backbone)
    image = jnp.asarray(image, jnp.float32)
    layers = tuple(STYLE_LAYERS if layers is None else layers)
    if image.ndim == 4:
        return jax.vmap(lambda im: features(weights, im, layers))(image)
    return features(weights, image, layers)


__all__ = sorted(["__version__", "extract_features", *_MODULE_OF])
