"""The objective factory: targets once, then a pure image -> (loss, terms)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import synthetic_photo, two_region_mask
from jaxstyle import laplacian, losses
from jaxstyle.errors import JaxstyleError
from jaxstyle.objective import LossConfig, Objective, make_objective, prepare_targets
from jaxstyle.vgg import features

CFG = LossConfig(style_layers=("relu1_1", "relu2_1", "relu3_1"), content_layers=("relu2_2",))


@pytest.fixture(scope="module")
def images():
    return (jnp.asarray(synthetic_photo(24, 32, 0)), jnp.asarray(synthetic_photo(28, 30, 1)),
            jnp.asarray(two_region_mask(24, 32, 0)), jnp.asarray(two_region_mask(28, 30, 1)))


def test_terms_match_direct_computation(vgg16, images):
    c, s, cm, sm = images
    targets = prepare_targets(vgg16, c, s, cm, sm, cfg=CFG)
    x = jnp.clip(c + 0.1 * jax.random.normal(jax.random.PRNGKey(0), c.shape), 0, 1)
    loss, terms = make_objective(CFG, vgg16, targets)(x)
    unit = losses.feature_unit(vgg16.convention)
    fx, fc = features(vgg16, x, ("relu2_2",)), features(vgg16, c, ("relu2_2",))
    np.testing.assert_allclose(terms["content"], 5 * np.mean((unit * (fx["relu2_2"] - fc["relu2_2"])) ** 2),
                               rtol=1e-4)
    np.testing.assert_allclose(terms["tv"], 1e-3 * losses.total_variation(255 * x), rtol=1e-5)
    np.testing.assert_allclose(terms["photo"], 1e4 * laplacian.photorealism_loss(c, x), rtol=1e-4)
    np.testing.assert_allclose(loss, sum(terms.values()), rtol=1e-6)


def test_content_image_has_zero_content_and_photo_terms(vgg16, images):
    c, s, cm, sm = images
    targets = prepare_targets(vgg16, c, s, cm, sm, cfg=CFG)
    _, terms = make_objective(CFG, vgg16, targets)(c)
    assert float(terms["content"]) == 0.0
    # The content is exactly affine in itself, so its Laplacian energy vanishes up to rounding.
    assert abs(float(terms["photo"])) < 1e-3 * float(terms["style"])
    assert float(terms["style"]) > 0


def test_style_image_as_content_with_same_masks_has_zero_style_term(vgg16, images):
    _, s, _, sm = images
    targets = prepare_targets(vgg16, s, s, sm, sm, cfg=CFG)
    _, terms = make_objective(CFG, vgg16, targets)(s)
    assert float(terms["style"]) < 1e-6 * max(1.0, float(targets["grams"]["relu1_1"].max()))


def test_no_masks_equals_one_all_covering_mask(vgg16, images):
    c, s, _, _ = images
    x = jnp.flip(c, 1)
    a = make_objective(CFG, vgg16, prepare_targets(vgg16, c, s, cfg=CFG))(x)[1]["style"]
    ones_c, ones_s = jnp.ones((*c.shape[:2], 1)), jnp.ones((*s.shape[:2], 1))
    b = make_objective(CFG, vgg16, prepare_targets(vgg16, c, s, ones_c, ones_s, cfg=CFG))(x)[1]["style"]
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.slow  # compiles the whole VGG objective several ways: CI runs it via -m slow
def test_jit_vmap_grad(vgg16, images):
    c, s, cm, sm = images
    obj = Objective(CFG)
    targets = prepare_targets(vgg16, c, s, cm, sm, cfg=CFG)
    xs = jnp.stack([c, jnp.flip(c, 0)])
    single = [obj(x, (vgg16, targets))[0] for x in xs]
    np.testing.assert_allclose(jax.jit(obj)(xs[1], (vgg16, targets))[0], single[1], rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(lambda x: obj(x, (vgg16, targets))[0])(xs), single, rtol=1e-5)
    # vmapped over (content, style) pairs: targets built per pair inside vmap.
    batched = jax.vmap(lambda cc, ss: obj(jnp.flip(cc, 0), (vgg16, prepare_targets(vgg16, cc, ss, cfg=CFG)))[0])
    pair = batched(jnp.stack([c, c]), jnp.stack([s, s]))
    np.testing.assert_allclose(pair[0], pair[1], rtol=1e-6)
    g = jax.grad(lambda x: obj(x, (vgg16, targets))[0])(xs[1])
    assert g.shape == c.shape and bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.slow  # float64 VGG objective, eager: CI runs it via -m slow
def test_gradient_matches_central_differences_in_float64(vgg16, images):
    c, s, cm, sm = (np.asarray(a, np.float64) for a in images)
    rng = np.random.default_rng(0)
    # Noise breaks the exact ties that smooth ramps create in max pooling (non-differentiable).
    x = np.flip(c, 0) * 0.9 + 0.05 + 0.02 * rng.standard_normal(c.shape)
    d = rng.standard_normal(c.shape)
    with jax.enable_x64(True):
        w64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), vgg16)
        targets = prepare_targets(w64, jnp.asarray(c), jnp.asarray(s), jnp.asarray(cm), jnp.asarray(sm), cfg=CFG)
        f = lambda im: make_objective(CFG, w64, targets)(im)[0]
        g = jax.grad(f)(jnp.asarray(x))
        eps = 1e-7  # small: ReLU and max-pool kinks lie within 1e-6 of this point
        fd = (f(jnp.asarray(x + eps * d)) - f(jnp.asarray(x - eps * d))) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(g, jnp.asarray(d)), fd, rtol=1e-5)


@pytest.mark.slow  # compile-heavy; keeps the default suite under 5 minutes on 2 cores: CI runs it via -m slow
def test_gradient_flows_to_the_style_image(vgg16, images):
    c, s, cm, sm = images

    rng = np.random.default_rng(1)
    # float64, and noise that breaks the max-pooling ties of smooth ramps (as above)
    s64 = np.asarray(s, np.float64) * 0.9 + 0.05 + 0.02 * rng.standard_normal(np.shape(s))
    d = rng.standard_normal(np.shape(s))
    with jax.enable_x64(True):
        w64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), vgg16)
        c64, cm64, sm64 = (jnp.asarray(a, jnp.float64) for a in (c, cm, sm))

        def loss_of_style(style):
            t = prepare_targets(w64, c64, style, cm64, sm64, cfg=CFG)
            return make_objective(CFG, w64, t)(jnp.flip(c64, 1))[0]

        g = jax.jit(jax.grad(loss_of_style))(jnp.asarray(s64))
        eps = 1e-7
        fd = (loss_of_style(jnp.asarray(s64 + eps * d)) - loss_of_style(jnp.asarray(s64 - eps * d))) / (2 * eps)
        assert abs(float(fd)) > 0  # the style image does move the loss along d
        np.testing.assert_allclose(jnp.vdot(g, jnp.asarray(d)), fd, rtol=1e-5)


def test_bad_masks_are_reported(vgg16, images):
    c, s, cm, sm = images
    with pytest.raises(JaxstyleError, match="both"):
        prepare_targets(vgg16, c, s, cm, None, cfg=CFG)
    with pytest.raises(JaxstyleError, match="labels"):
        prepare_targets(vgg16, c, s, cm, jnp.ones((*s.shape[:2], 3)), cfg=CFG)
    with pytest.raises(JaxstyleError, match="do not match"):
        prepare_targets(vgg16, c, s, cm[:-2], sm, cfg=CFG)
    with pytest.raises(JaxstyleError, match="did you mean 'style_weight'"):
        CFG.with_updates(stlye_weight=3.0)


def test_target_normalised_style_term_is_the_sum_of_relative_gram_errors(vgg16, images):
    """style_normalization="target": the style term is w * sum over layers and labels of
    m_k |G_k - T_k|^2 / |T_k|^2, computed here from the features directly."""
    c, s, cm, sm = images
    cfg = CFG.with_updates(style_normalization="target", style_weight=7.0)
    targets = prepare_targets(vgg16, c, s, cm, sm, cfg=cfg)
    x = jnp.flip(c, 1)
    _, terms = jax.jit(make_objective(cfg, vgg16, targets))(x)
    fx = features(vgg16, x, cfg.style_layers)
    expected = 0.0
    for layer in cfg.style_layers:
        g, shares = losses.masked_grams(fx[layer], targets["masks"][layer])
        t = np.asarray(targets["grams"][layer]) / losses.feature_unit(vgg16.convention) ** 2  # same units as g
        rel = np.sum((np.asarray(g) - t) ** 2, axis=(1, 2)) / np.sum(t ** 2, axis=(1, 2))
        expected += float(np.sum(np.asarray(shares) * rel))
    np.testing.assert_allclose(terms["style"], 7.0 * expected, rtol=1e-4)


def test_unknown_style_normalization_has_a_did_you_mean():
    with pytest.raises(JaxstyleError, match="did you mean 'target'"):
        LossConfig(style_normalization="targte")


@pytest.mark.slow  # compile-heavy: keeps the default suite under 5 minutes; CI runs it via -m slow
def test_feathered_masks_are_those_of_feather_masks_and_one_region_is_untouched(vgg16, images):
    from jaxstyle.color import feather_masks
    from jaxstyle.masks import propagate_masks

    c, s, cm, sm = images
    cfg = CFG.with_updates(mask_feather=3, photo_weight=0.0)
    targets = jax.jit(prepare_targets, static_argnames="cfg")(vgg16, c, s, cm, sm, cfg=cfg)
    expected = propagate_masks(feather_masks(c, cm, radius=3), layers=cfg.style_layers)
    hard = propagate_masks(cm, layers=cfg.style_layers)
    for layer in cfg.style_layers:
        np.testing.assert_allclose(targets["masks"][layer], expected[layer], atol=1e-6)
    assert not np.allclose(targets["masks"]["relu1_1"], hard["relu1_1"])  # the test images have a smooth border
    # Under jit the objective is finite and decreases from a noisy start along its gradient.
    x = jnp.clip(c + 0.1 * jax.random.normal(jax.random.PRNGKey(1), c.shape), 0, 1)
    fun = jax.jit(jax.value_and_grad(lambda y: make_objective(cfg, vgg16, targets)(y)[0]))
    value, grad = fun(x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert fun(x - 1e-4 * grad / jnp.max(jnp.abs(grad)))[0] < value
    # One region: feathering is the identity, so the targets are those without it.
    one = prepare_targets(vgg16, c, s, cfg=cfg)
    plain = prepare_targets(vgg16, c, s, cfg=cfg.with_updates(mask_feather=0))
    for layer in cfg.style_layers:
        np.testing.assert_array_equal(one["grams"][layer], plain["grams"][layer])


def test_negative_mask_feather_is_refused():
    with pytest.raises(JaxstyleError, match="mask_feather"):
        LossConfig(mask_feather=-1)


@pytest.mark.slow  # compile-heavy: keeps the default suite under 5 minutes; CI runs it via -m slow
def test_region_photo_scale_multiplies_lambda_only_with_several_regions(vgg16, images):
    c, s, cm, sm = images
    cfg = CFG.with_updates(region_photo_scale=3.0)
    x = jnp.clip(c + 0.1 * jax.random.normal(jax.random.PRNGKey(2), c.shape), 0, 1)
    expected = 1e4 * laplacian.photorealism_loss(c, x)

    def photo(targets):
        return make_objective(cfg, vgg16, targets)(x)[1]["photo"]

    # Two regions: lambda is photo_weight * region_photo_scale, under jit as well.
    two = jax.jit(prepare_targets, static_argnames="cfg")(vgg16, c, s, cm, sm, cfg=cfg)
    np.testing.assert_allclose(two["weights"]["photo"], 3e4)
    np.testing.assert_allclose(photo(two), 3 * expected, rtol=1e-4)
    # No masks, or masks with one label: the scale does not apply.
    ones_c, ones_s = jnp.ones((*c.shape[:2], 1)), jnp.ones((*s.shape[:2], 1))
    for targets in (prepare_targets(vgg16, c, s, cfg=cfg), prepare_targets(vgg16, c, s, ones_c, ones_s, cfg=cfg)):
        np.testing.assert_allclose(targets["weights"]["photo"], 1e4)
        np.testing.assert_allclose(photo(targets), expected, rtol=1e-4)
    # A batch of two-region pairs under vmap gets the scaled weight for every item.
    batched = jax.vmap(lambda a, b, m, n: prepare_targets(vgg16, a, b, m, n, cfg=cfg)["weights"]["photo"])(
        c[None], s[None], cm[None], sm[None])
    np.testing.assert_allclose(batched, [3e4])
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(JaxstyleError, match="region_photo_scale"):
            LossConfig(region_photo_scale=bad)
