"""The image convention's one validator: every public function of the numerical modules
refuses a bad image argument with the same wording, and the check works under jit, vmap, grad."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import automask, cube, grid, laplacian, metrics, smoothing, upsample, vgg
from jaxstyle.errors import JaxstyleError
from jaxstyle.images import as_float, check_image

H, W = 12, 12
GOOD = jnp.full((H, W, 3), 0.5, jnp.float32)
SMALL = jnp.full((6, 6, 3), 0.5, jnp.float32)
MAPS = jnp.zeros((H, W, 5), jnp.float32)
REGIONS = jnp.zeros((6, 6, 2), jnp.float32).at[..., 0].set(1.0)
GRID = grid.identity_grid(grid.grid_shape((H, W), cell=4, depth=2))

# Each public function of metrics, smoothing, upsample, automask, laplacian, grid, cube and vgg that
# takes an image:
# (id, call(args, vgg16), default args, argument name, channels of that argument).
CASES = [
    ("luminance", lambda a, _: metrics.luminance(a["image"]), {"image": GOOD}, "image", 3),
    ("structure_ssim", lambda a, _: metrics.structure_ssim(a["output"], a["content"]),
     {"output": GOOD, "content": GOOD}, "content", 3),
    ("edge_ssim", lambda a, _: metrics.edge_ssim(a["output"], a["content"]),
     {"output": GOOD, "content": GOOD}, "output", 3),
    ("metrics.laplacian_residual", lambda a, _: metrics.laplacian_residual(a["content"], a["output"]),
     {"content": GOOD, "output": GOOD}, "output", 3),
    ("metrics.laplacian_residual_map", lambda a, _: metrics.laplacian_residual_map(a["content"], a["output"]),
     {"content": GOOD, "output": GOOD}, "content", 3),
    ("gram_distance", lambda a, vgg: metrics.gram_distance(vgg, a["output"], a["style"]),
     {"output": GOOD, "style": GOOD}, "style", 3),
    ("gram_distance_by_layer", lambda a, vgg: metrics.gram_distance_by_layer(vgg, a["output"], a["style"]),
     {"output": GOOD, "style": GOOD}, "output", 3),
    ("lab_w2", lambda a, _: metrics.lab_w2(a["output"], a["style"]), {"output": GOOD, "style": GOOD}, "style", 3),
    ("lpips", lambda a, vgg: metrics.lpips(a["a"], a["b"], weights=vgg), {"a": GOOD, "b": GOOD}, "b", 3),
    ("triple_metrics", lambda a, vgg: metrics.triple_metrics(vgg, a["content"], a["style"], a["output"],
                                                              reference=a["reference"]),
     {"content": GOOD, "style": GOOD, "output": GOOD, "reference": GOOD}, "reference", 3),
    ("evaluate_triple (jitted)", lambda a, vgg: metrics.evaluate_triple(vgg, a["content"], a["style"], a["output"]),
     {"content": GOOD, "style": GOOD, "output": GOOD}, "output", 3),
    ("local_affine_coefficients", lambda a, _: smoothing.local_affine_coefficients(a["output"], a["content"]),
     {"output": GOOD, "content": GOOD}, "content", 3),
    ("joint_bilateral values", lambda a, _: smoothing.joint_bilateral(a["values"], a["guide"], radius=1),
     {"values": MAPS, "guide": GOOD}, "values", None),
    ("joint_bilateral guide", lambda a, _: smoothing.joint_bilateral(a["values"], a["guide"], radius=1),
     {"values": MAPS, "guide": GOOD}, "guide", 3),
    ("apply_affine", lambda a, _: smoothing.apply_affine(jnp.zeros((H, W, 3, 4)), a["content"]),
     {"content": GOOD}, "content", 3),
    ("smooth_local_affine", lambda a, _: smoothing.smooth_local_affine(a["output"], a["content"], radius=1),
     {"output": GOOD, "content": GOOD}, "output", 3),
    ("guided_filter guide", lambda a, _: smoothing.guided_filter(a["guide"], a["source"], radius=1),
     {"guide": GOOD, "source": MAPS}, "guide", 3),
    ("guided_filter source", lambda a, _: smoothing.guided_filter(a["guide"], a["source"], radius=1),
     {"guide": GOOD, "source": MAPS}, "source", None),
    ("refine_detail", lambda a, _: smoothing.refine_detail(a["output"], a["content"], radius=1),
     {"output": GOOD, "content": GOOD}, "content", 3),
    ("global_affine", lambda a, _: upsample.global_affine(a["content"], a["result"]),
     {"content": GOOD, "result": GOOD}, "result", 3),
    ("fit_affine", lambda a, _: upsample.fit_affine(a["content_small"], a["result_small"]),
     {"content_small": SMALL, "result_small": SMALL}, "content_small", 3),
    ("joint_bilateral_upsample values",
     lambda a, _: upsample.joint_bilateral_upsample(a["values"], a["guide_small"], a["guide_full"]),
     {"values": MAPS[:6, :6], "guide_small": SMALL, "guide_full": GOOD}, "values", None),
    ("joint_bilateral_upsample guide_full",
     lambda a, _: upsample.joint_bilateral_upsample(a["values"], a["guide_small"], a["guide_full"]),
     {"values": MAPS[:6, :6], "guide_small": SMALL, "guide_full": GOOD}, "guide_full", 3),
    ("upsample_affine", lambda a, _: upsample.upsample_affine(a["content_full"], a["content_small"],
                                                              a["result_small"]),
     {"content_full": GOOD, "content_small": SMALL, "result_small": SMALL}, "result_small", 3),
    ("upsample_affine_host (numpy)",
     lambda a, _: upsample.upsample_affine_host(np.asarray(a["content_full"]), a["content_small"],
                                                a["result_small"]),
     {"content_full": GOOD, "content_small": SMALL, "result_small": SMALL}, "content_full", 3),
    ("matting_laplacian", lambda a, _: laplacian.matting_laplacian(a["content"]), {"content": GOOD}, "content", 3),
    ("matting_operator", lambda a, _: laplacian.matting_operator(a["content"]), {"content": GOOD}, "content", 3),
    ("build_laplacian", lambda a, _: laplacian.build_laplacian(a["content"], form="sparse"),
     {"content": GOOD}, "content", 3),
    ("laplacian_matvec", lambda a, _: laplacian.laplacian_matvec(a["content"], GOOD), {"content": GOOD}, "content", 3),
    ("photorealism_loss", lambda a, _: laplacian.photorealism_loss(a["content"], GOOD), {"content": GOOD}, "content", 3),
    ("laplacian.laplacian_residual_map", lambda a, _: laplacian.laplacian_residual_map(a["content"], GOOD),
     {"content": GOOD}, "content", 3),
    ("feature_grid", lambda a, vgg: automask.feature_grid(vgg, a["image"]), {"image": GOOD}, "image", 3),
    ("refine_regions", lambda a, _: automask.refine_regions(REGIONS, a["image"], radius=2),
     {"image": GOOD}, "image", 3),
    ("auto_masks (numpy)", lambda a, vgg: automask.auto_masks(vgg, np.asarray(a["content"]), np.asarray(a["style"])),
     {"content": GOOD, "style": GOOD}, "style", 3),
    ("slice_grid", lambda a, _: grid.slice_grid(GRID, a["image"]), {"image": GOOD}, "image", 3),
    ("slice_maps", lambda a, _: grid.slice_maps(GRID, a["image"]), {"image": GOOD}, "image", 3),
    ("slice_grid_host (numpy)", lambda a, _: grid.slice_grid_host(GRID, np.asarray(a["image"])),
     {"image": GOOD}, "image", 3),
    ("apply_cube_host (numpy)", lambda a, _: cube.apply_cube_host(cube.identity_cube(2), np.asarray(a["photo"])),
     {"photo": GOOD}, "photo", 3),
    ("vgg.features", lambda a, weights: vgg.features(weights, a["image"], ["relu1_1"]), {"image": GOOD}, "image", 3),
]


def bad_versions(good: jax.Array, channels: int | None) -> list[tuple[str, jax.Array]]:
    """A wrong shape (a batch), a wrong channel count (where the channels are fixed), a non-float dtype."""
    out = [("batch", jnp.stack([good, good]))]
    if channels is not None:
        out.append(("channels", jnp.concatenate([good, good[..., :1]], axis=-1)))
    out.append(("uint8", (good * 255).astype(jnp.uint8)))
    return out


def expected_message(name: str, bad, channels: int | None) -> str:
    """The one wording, up to the advice after the colon."""
    what = "a float image [H, W, 3], RGB in [0, 1]" if channels == 3 else "a float array [H, W, C]"
    return f"{name} must be {what}, got shape {tuple(bad.shape)} and dtype {bad.dtype}: "


ALL_BAD = [pytest.param(case, kind, id=f"{case[0]}-{kind}")
           for case in CASES for kind in ("batch", "channels", "uint8")
           if not (kind == "channels" and case[4] is None)]


@pytest.mark.parametrize("case,kind", ALL_BAD)
def test_every_public_function_refuses_a_bad_image_with_one_wording(case, kind, vgg16):
    _, call, args, name, channels = case
    bad = dict(bad_versions(args[name], channels))[kind]
    with pytest.raises(JaxstyleError, match="^" + re.escape(expected_message(name, bad, channels))):
        call({**args, name: bad}, vgg16)


@pytest.mark.parametrize("shape,dtype,advice", [
    ((12, 12), np.float32, "convert it to RGB"),
    ((12,), np.float32, "give it three axes"),
    ((2, 12, 12, 3), np.float32, "jax.vmap"),
    ((12, 12, 4), np.float32, "convert it to RGB"),
    ((0, 12, 3), np.float32, "at least one pixel"),
    ((12, 12, 3), np.uint8, "convert it to float in [0, 1]"),
    ((12, 12, 3), np.bool_, "convert it to float in [0, 1]"),
])
def test_the_message_names_the_argument_what_was_expected_and_what_came(shape, dtype, advice):
    bad = np.zeros(shape, dtype)
    message = expected_message("content", bad, 3)
    for x in (bad, jnp.asarray(bad)):  # numpy and JAX arrays read alike
        with pytest.raises(JaxstyleError, match="^" + re.escape(message) + ".*" + re.escape(advice)):
            check_image(x, "content")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, jnp.bfloat16])
def test_good_images_pass_unchanged(dtype):
    x = jnp.full((4, 5, 3), 0.25, dtype)
    assert check_image(x, "image") is x
    values = np.zeros((4, 5, 7), np.float32)
    assert check_image(values, "values", channels=None) is values
    assert as_float(x).dtype == jnp.float32


def test_as_float_keeps_float64():
    with jax.enable_x64(True):
        assert as_float(np.zeros((2, 2, 3), np.float64)).dtype == jnp.float64


def test_the_check_works_while_tracing_under_jit_vmap_and_grad():
    def total(x):
        return jnp.sum(check_image(x, "image"))

    np.testing.assert_allclose(jax.jit(total)(GOOD), float(jnp.sum(GOOD)))
    np.testing.assert_allclose(jax.vmap(total)(jnp.stack([GOOD, 2 * GOOD])), [H * W * 1.5, H * W * 3.0])
    np.testing.assert_array_equal(jax.grad(total)(GOOD), jnp.ones_like(GOOD))
    bad = GOOD[..., :2]
    message = "^" + re.escape(expected_message("image", bad, 3))
    with pytest.raises(JaxstyleError, match=message):
        jax.jit(total)(bad)
    with pytest.raises(JaxstyleError, match=message):
        jax.vmap(total)(jnp.stack([bad, bad]))  # each traced item is [H, W, 2]
    with pytest.raises(JaxstyleError, match=message):
        jax.grad(total)(bad)


def test_a_public_function_under_jit_and_vmap_checks_each_item():
    fn = jax.jit(jax.vmap(lambda o, c: smoothing.smooth_local_affine(o, c, radius=1)))
    batch = jnp.stack([GOOD, GOOD])
    assert fn(batch, batch).shape == (2, H, W, 3)
    bad = batch.astype(jnp.int32)
    with pytest.raises(JaxstyleError, match="^" + re.escape(expected_message("content", bad[0], 3))):
        fn(batch, bad)
