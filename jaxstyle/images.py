"""The image convention, stated once, and the one check of it.

An image (`Image`) is an array `[H, W, 3]` of RGB values in [0, 1], sRGB-encoded unless a
function says otherwise, float32 (float64 stays float64 under `jax.enable_x64(True)`).
One image per call: batches come from `jax.vmap`. Other per-pixel arrays (masks
`[H, W, K]`, maps, filter inputs `[H, W, C]`) share the `[H, W, ...]` layout.

`check_image` is the one validator that the library's functions call on their image
arguments. It reads only what is known while tracing (rank, shape, dtype), never values, so
it works on numpy arrays and on traced arrays under `jax.jit`, `jax.vmap` and `jax.grad`.
A refusal is a `JaxstyleError` (exit code 2 on the command line) worded
"{name} must be {expected}, got shape {shape} and dtype {dtype}: {what to do}".
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.errors import JaxstyleError

Image = jax.Array  # [H, W, 3] float32 RGB in [0, 1]

__all__ = ["Image", "as_float", "check_image"]


def check_image(x: Any, name: str, *, channels: int | None = 3) -> Any:
    """`x` itself if it is a non-empty float `[H, W, channels]` array, else a `JaxstyleError`.

    `channels=None` accepts any channel count (`[H, W, C]`: a guided filter's source, maps).
    Nothing is converted: callers choose their dtype.
    """
    shape = tuple(np.shape(x))
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    if len(shape) == 4:
        advice = "pass one image per call (a batch: jax.vmap or a loop)"
    elif len(shape) == 2 and channels == 3:  # a grey image
        advice = "convert it to RGB"
    elif len(shape) != 3:
        advice = "give it three axes: height, width, channels"
    elif channels is not None and shape[-1] != channels:
        advice = "convert it to RGB" if channels == 3 else f"give it {channels} channels"
    elif 0 in shape:
        advice = "give it at least one pixel"
    elif not jnp.issubdtype(dtype, jnp.floating):
        advice = "convert it to float in [0, 1] (jaxstyle.load_image returns float32)"
    else:
        return x
    layout = f"[H, W, {'C' if channels is None else channels}]"
    expected = f"a float image {layout}, RGB in [0, 1]" if channels == 3 else f"a float array {layout}"
    raise JaxstyleError(f"{name} must be {expected}, got shape {shape} and dtype {dtype}: {advice}")


def as_float(x: Any) -> jax.Array:
    """`x` as a JAX array in float32, or in float64 if it is float64 (precise gradients and
    finite differences under `jax.enable_x64(True)`); float16 and bfloat16 become float32."""
    x = jnp.asarray(x)
    return x if x.dtype in (jnp.float32, jnp.float64) else x.astype(jnp.float32)
