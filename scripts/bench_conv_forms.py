"""Three ways to write VGG-16's 3x3 convolutions on XLA:CPU, timed as one value-and-grad.

Asks whether the per-iteration gap to torch (oneDNN) at small sizes (README, Benchmarks) can be
closed by writing the convolutions differently: (a) `lax.conv_general_dilated` (what Flax emits),
(b) im2col: the nine shifted copies concatenated to `[H W, 9 C]` and one matmul, (c) nine shifted
`[H W, C] @ [C, C']` matmuls summed. Each forms the same function (relu1_1 .. relu5_1 of the
bundled VGG-16 with 2x2 max pooling, a sum of mean squares of the five relu*_1 maps) and its
gradient with respect to the image; the gradient's max difference from (a) relative to its
max magnitude is printed beside the median time.

    python scripts/bench_conv_forms.py --sizes 128 256 --repeats 7
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import vgg
from jaxstyle.weights import embedded_vgg16


def conv_lax(x, k, b):
    y = jax.lax.conv_general_dilated(x[None], k, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
    return y + b


def conv_im2col(x, k, b):
    h, w, c = x.shape
    xp = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([xp[i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=-1)
    return (cols.reshape(h * w, 9 * c) @ k.reshape(9 * c, -1)).reshape(h, w, -1) + b


def conv_shifted(x, k, b):
    h, w, c = x.shape
    xp = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
    y = sum(xp[i:i + h, j:j + w].reshape(h * w, c) @ k[i, j] for i in range(3) for j in range(3))
    return y.reshape(h, w, -1) + b


FORMS = {"lax.conv": conv_lax, "im2col": conv_im2col, "shifted matmuls": conv_shifted}


def scalar(conv, params, image):
    x = vgg.preprocess(image, "torchvision")
    total = 0.0
    for spec in vgg.layer_specs("vgg16"):
        if spec.kind == "conv":
            x = conv(x, params[spec.name]["kernel"], params[spec.name]["bias"])
        elif spec.kind == "relu":
            x = jax.nn.relu(x)
            if spec.name.endswith("_1"):
                total = total + jnp.mean(x ** 2)
        else:
            h, w, c = x.shape
            x = x[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
        if spec.name == "relu5_1":
            return total
    raise AssertionError("relu5_1 not reached")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="image widths (height 2/3)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    params = jax.device_put(embedded_vgg16()).params
    print(f"jax {jax.__version__} on {jax.default_backend()}; median of {args.repeats}")
    for size in args.sizes:
        image = jnp.asarray(np.random.default_rng(0).random((size * 2 // 3, size, 3)), jnp.float32)
        reference = None
        for name, conv in FORMS.items():
            fn = jax.jit(jax.value_and_grad(functools.partial(scalar, conv, params)))
            _, grad = fn(image)
            grad.block_until_ready()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(fn(image))
                times.append(time.perf_counter() - start)
            reference = grad if reference is None else reference
            err = float(jnp.max(jnp.abs(grad - reference)) / jnp.max(jnp.abs(reference)))
            print(f"{image.shape[0]}x{size} {name:>16}: {np.median(times) * 1e3:8.1f} ms  grad diff {err:.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
