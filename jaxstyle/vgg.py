"""VGG-16 and VGG-19 convolutional trunks (Flax), with Caffe-style layer names.

Images are float32 `[H, W, 3]` RGB in [0, 1]. Parameters are one canonical tree,
`{"conv1_1": {"kernel": [3, 3, C_in, C_out], "bias": [C_out]}, ...}` (HWIO kernels),
whatever file they came from (see `jaxstyle.weights`). Preprocessing belongs to the
weights: torchvision weights take RGB normalised by ImageNet mean/std, Caffe weights
take BGR scaled to [0, 255] minus the mean pixel.

`features(weights, image, layers)` runs one forward pass that stops at the deepest
requested layer and returns a dict of the named activations, each `[h, w, C]`.
Batches come from `jax.vmap`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.images import check_image

__all__ = [
    "ARCHS", "CAFFE_MEAN_BGR", "CONTENT_LAYERS", "CONVENTIONS", "IMAGENET_MEAN_RGB", "IMAGENET_STD_RGB", "LayerSpec",
    "STYLE_LAYERS", "VGGTrunk", "VGGWeights", "check_layers", "conv_shapes", "downsampling_path", "features",
    "init_params", "layer_names", "layer_specs", "pool2", "preprocess",
]

Params = Mapping[str, Mapping[str, jax.Array]]

# Channels per convolution in each block; a pooling layer closes every block.
_BLOCKS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
ARCHS: tuple[str, ...] = tuple(_BLOCKS)
CONVENTIONS: tuple[str, ...] = ("torchvision", "caffe")
POOLINGS: tuple[str, ...] = ("max", "avg")

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer of a trunk: its name, kind ('conv', 'relu', 'pool') and channels."""

    name: str
    kind: str
    in_channels: int
    out_channels: int


def layer_specs(arch: str) -> tuple[LayerSpec, ...]:
    """The trunk's layers in order: conv1_1, relu1_1, conv1_2, ..., pool5."""
    if arch not in _BLOCKS:
        raise JaxstyleError(f"unknown VGG architecture {arch!r}{did_you_mean(arch, ARCHS)}; "
                            f"choose one of {', '.join(ARCHS)}")
    specs: list[LayerSpec] = []
    channels = 3
    for block, widths in enumerate(_BLOCKS[arch], start=1):
        for i, width in enumerate(widths, start=1):
            specs.append(LayerSpec(f"conv{block}_{i}", "conv", channels, width))
            specs.append(LayerSpec(f"relu{block}_{i}", "relu", width, width))
            channels = width
        specs.append(LayerSpec(f"pool{block}", "pool", channels, channels))
    return tuple(specs)


def layer_names(arch: str) -> tuple[str, ...]:
    """All layer names of `arch`, in forward order."""
    return tuple(spec.name for spec in layer_specs(arch))


def conv_shapes(arch: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """`{conv name: (kernel shape HWIO, bias shape)}` of the canonical parameter tree."""
    return {s.name: ((3, 3, s.in_channels, s.out_channels), (s.out_channels,))
            for s in layer_specs(arch) if s.kind == "conv"}


def check_layers(arch: str, layers: Sequence[str]) -> tuple[str, ...]:
    """Validate requested layer names; returns them as a tuple."""
    known = layer_names(arch)
    for name in layers:
        if name not in known:
            raise JaxstyleError(f"{arch} has no layer {name!r}{did_you_mean(name, known)}")
    if not layers:
        raise JaxstyleError("ask for at least one layer")
    return tuple(layers)


def downsampling_path(arch: str, layer: str) -> tuple[str, ...]:
    """Kinds of the layers from the input up to and including `layer` ('conv'/'relu'/'pool').

    Mask propagation (`jaxstyle.masks`) follows this path so that a mask at layer l
    lines up with the activations at layer l.
    """
    check_layers(arch, (layer,))
    path = []
    for spec in layer_specs(arch):
        path.append(spec.kind)
        if spec.name == layer:
            return tuple(path)
    raise AssertionError("unreachable")


class VGGTrunk(nn.Module):
    """The convolutional part of VGG, returning the requested activations.

    Input `[N, H, W, 3]`, already preprocessed for the weights' convention.
    """

    arch: str = "vgg16"
    layers: tuple[str, ...] = STYLE_LAYERS
    pooling: str = "max"

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        wanted = set(self.layers)
        out: dict[str, jax.Array] = {}
        for spec in layer_specs(self.arch):
            if spec.kind == "conv":
                x = nn.Conv(spec.out_channels, (3, 3), padding=((1, 1), (1, 1)), name=spec.name)(x)
            elif spec.kind == "relu":
                x = nn.relu(x)
            else:
                x = pool2(x, self.pooling)
            if spec.name in wanted:
                out[spec.name] = x
                wanted.discard(spec.name)
                if not wanted:  # stop at the deepest requested layer
                    break
        return out


def pool2(x: jax.Array, pooling: str) -> jax.Array:
    """2 x 2 pooling with stride 2 of `[N, H, W, C]` (an odd last row or column dropped, as
    VALID pooling does) -> `[N, H // 2, W // 2, C]`.

    Written as a reshape and a reduction rather than `reduce_window`: on the CPU the gradient of
    `reduce_window` max (XLA's select-and-scatter) took 2.5-7x as long as this one's (an equality
    mask), several tenths of a second per optimisation step at 512 px."""
    n, h, w, c = x.shape
    blocks = x[:, :h - h % 2, :w - w % 2].reshape(n, h // 2, 2, w // 2, 2, c)
    return jnp.max(blocks, axis=(2, 4)) if pooling == "max" else jnp.mean(blocks, axis=(2, 4))


def preprocess(image: jax.Array, convention: str) -> jax.Array:
    """Map `[..., 3]` RGB in [0, 1] to the input the weights were trained on."""
    if convention == "torchvision":
        mean = jnp.asarray(IMAGENET_MEAN_RGB, image.dtype)
        std = jnp.asarray(IMAGENET_STD_RGB, image.dtype)
        return (image - mean) / std
    if convention == "caffe":
        return image[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR, image.dtype)
    raise JaxstyleError(f"unknown preprocessing convention {convention!r}"
                        f"{did_you_mean(convention, CONVENTIONS)}; choose one of {', '.join(CONVENTIONS)}")


@dataclasses.dataclass(frozen=True)
class VGGWeights:
    """A parameter tree plus the facts needed to use it.

    A pytree: `params` are the leaves; `arch`, `convention` and `source` are static,
    so a `VGGWeights` can be passed straight into `jax.jit`-ed functions.
    """

    params: Params
    arch: str = "vgg16"
    convention: str = "torchvision"
    source: str = ""


jax.tree_util.register_dataclass(
    VGGWeights, data_fields=["params"], meta_fields=["arch", "convention", "source"])


def features(weights: VGGWeights, image: jax.Array, layers: Sequence[str] = STYLE_LAYERS, *,
             pooling: str = "max") -> dict[str, jax.Array]:
    """Activations of `image` at `layers`.

    Args:
      weights: the network (`arch`, `convention` and the parameter tree).
      image: `[H, W, 3]` float RGB in [0, 1]. Use `jax.vmap` for batches.
      layers: Caffe-style names, e.g. ("relu1_1", "relu4_2").
      pooling: "max" (as trained) or "avg" (as Gatys et al. suggest for synthesis).

    Returns:
      `{name: [h, w, C]}` for each requested layer; h, w halve at every pooling.
    """
    layers = check_layers(weights.arch, layers)
    if pooling not in POOLINGS:
        raise JaxstyleError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    check_image(image, "image")
    x = preprocess(image, weights.convention)[None]
    trunk = VGGTrunk(arch=weights.arch, layers=layers, pooling=pooling)
    out = trunk.apply({"params": weights.params}, x)
    return {name: out[name][0] for name in layers}


def init_params(key: jax.Array, arch: str = "vgg16") -> dict[str, Any]:
    """Random parameters (He-normal kernels, zero biases) in the canonical tree.

    For tests and timing only: style transfer needs pretrained weights.
    """
    params = {}
    for name, (kshape, bshape) in conv_shapes(arch).items():
        key, sub = jax.random.split(key)
        fan_in = kshape[0] * kshape[1] * kshape[2]
        params[name] = {"kernel": jax.random.normal(sub, kshape, jnp.float32) * jnp.sqrt(2.0 / fan_in),
                        "bias": jnp.zeros(bshape, jnp.float32)}
    return params
