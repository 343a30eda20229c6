"""jaxstyle: Deep Photo Style Transfer (Luan et al., CVPR 2017) in JAX.

Arrays are float32 `[H, W, 3]` RGB in [0, 1]; batches come from `jax.vmap`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxstyle._version import __version__
from jaxstyle.errors import DivergenceError, JaxstyleError, WeightsError
from jaxstyle.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGWeights, features
from jaxstyle.weights import embedded_vgg16, resolve_weights


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
    "CONTENT_LAYERS", "STYLE_LAYERS", "DivergenceError", "JaxstyleError", "VGGWeights",
    "WeightsError", "__version__", "embedded_vgg16", "extract_features", "features",
    "resolve_weights",
]
