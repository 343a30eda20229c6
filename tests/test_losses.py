"""Losses against numpy references written from the formulas, directly, under jit, vmap and grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import losses


def ref_masked_grams(f, m):
    h, w, c = f.shape
    out, shares = [], []
    for k in range(m.shape[-1]):
        mk = m[..., k]
        share = mk.mean()
        g = (mk[..., None] * f).reshape(-1, c)
        g = g.T @ g
        out.append(g / (h * w * c * share) if share > 0 else np.zeros_like(g))
        shares.append(share)
    return np.stack(out), np.array(shares)


def ref_style(f, m, t):
    g, s = ref_masked_grams(f, m)
    return float(sum(s[k] * np.mean((g[k] - t[k]) ** 2) for k in range(len(s))))


def ref_tv(x):
    dx = x[:-1, :-1] - x[:-1, 1:]
    dy = x[:-1, :-1] - x[1:, :-1]
    return 0.5 * float((dx ** 2).sum() + (dy ** 2).sum())


def soft_masks(rng, h, w, k):
    logits = rng.standard_normal((h, w, k)) * 3
    m = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return m.astype(np.float32)


CASES = [(5, 7, 4, 1), (6, 6, 8, 3), (9, 4, 3, 2)]


@pytest.mark.parametrize("h,w,c,k", CASES)
def test_masked_style_loss_against_reference_direct_jit_vmap(h, w, c, k):
    rng = np.random.default_rng(h * 100 + w)
    f = rng.random((2, h, w, c)).astype(np.float32)
    m = soft_masks(rng, h, w, k)
    m[..., 0] = 0 if k > 1 else m[..., 0]  # an empty label contributes nothing
    t = rng.random((k, c, c)).astype(np.float32)
    expected = [ref_style(f[i], m, t) for i in range(2)]
    direct = losses.style_loss(jnp.asarray(f[0]), jnp.asarray(m), jnp.asarray(t))
    jitted = jax.jit(losses.style_loss)(f[0], m, t)
    mapped = jax.vmap(losses.style_loss, in_axes=(0, None, None))(f, m, t)
    np.testing.assert_allclose(direct, expected[0], rtol=1e-5)
    np.testing.assert_allclose(jitted, expected[0], rtol=1e-5)
    np.testing.assert_allclose(mapped, expected, rtol=1e-5)
    grams, shares = losses.masked_grams(jnp.asarray(f[0]), jnp.asarray(m))
    rg, rs = ref_masked_grams(f[0], m)
    np.testing.assert_allclose(grams, rg, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(shares, rs, rtol=1e-6)


@pytest.mark.parametrize("h,w,c", [(4, 5, 3), (8, 8, 16)])
def test_gram_of_ones_is_ones_over_channels(h, w, c):
    np.testing.assert_allclose(losses.gram(jnp.ones((h, w, c))), np.ones((c, c)) / c, rtol=1e-6)


def test_gram_is_symmetric_psd_and_scales_quadratically():
    f = jnp.asarray(np.random.default_rng(0).standard_normal((6, 5, 7)), jnp.float32)
    g = losses.gram(f)
    np.testing.assert_allclose(g, g.T, atol=1e-6)
    assert float(jnp.linalg.eigvalsh(g).min()) > -1e-5
    np.testing.assert_allclose(losses.gram(3 * f), 9 * g, rtol=1e-5)


def test_one_all_covering_mask_equals_unmasked_style_loss():
    rng = np.random.default_rng(1)
    f = jnp.asarray(rng.random((6, 7, 5)), jnp.float32)
    target = losses.gram(jnp.asarray(rng.random((9, 4, 5)), jnp.float32))
    masked = losses.style_loss(f, jnp.ones((6, 7, 1)), target[None])
    plain = jnp.mean((losses.gram(f) - target) ** 2)
    np.testing.assert_allclose(masked, plain, rtol=1e-6)


def test_partition_into_labels_with_identical_statistics_gives_zero_loss():
    """Style target = content's own per-region Grams -> zero loss, for any partition."""
    rng = np.random.default_rng(2)
    f = jnp.asarray(rng.random((6, 6, 4)), jnp.float32)
    labels = rng.integers(0, 3, (6, 6))
    m = jnp.asarray(np.eye(3)[labels], jnp.float32)
    target, _ = losses.masked_grams(f, m)
    np.testing.assert_allclose(losses.style_loss(f, m, target), 0.0, atol=1e-10)
    assert float(losses.style_loss(f * 1.1, m, target)) > 0


def test_tv_of_checkerboard_and_constant():
    h, w = 5, 6
    board = (np.indices((h, w)).sum(0) % 2).astype(np.float32)
    img = np.repeat(board[..., None], 3, -1)
    # Every dx and dy over the [H-1, W-1] block is +-1: 0.5 * 2 * (H-1)(W-1) * 3 channels.
    np.testing.assert_allclose(losses.total_variation(jnp.asarray(img)), 3 * (h - 1) * (w - 1))
    np.testing.assert_allclose(losses.total_variation(jnp.full((4, 4, 3), 0.7)), 0.0)
    x = np.random.default_rng(3).random((7, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.total_variation(jnp.asarray(x)), ref_tv(x), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(losses.total_variation)(x), ref_tv(x), rtol=1e-5)
    y = np.random.default_rng(4).random((7, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(jax.vmap(losses.total_variation)(np.stack([x, y])),
                               [ref_tv(x), ref_tv(y)], rtol=1e-5)


def test_content_loss_reference_and_vmap():
    rng = np.random.default_rng(4)
    a, b = rng.random((2, 3, 4, 5)).astype(np.float32), rng.random((3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(losses.content_loss(a[0], b), np.mean((a[0] - b) ** 2), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(losses.content_loss, (0, None))(a, b),
                               [np.mean((x - b) ** 2) for x in a], rtol=1e-6)


@pytest.mark.parametrize("name", ["style", "tv", "content"])
def test_gradients_match_central_differences(name):
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        f = jnp.asarray(rng.random((4, 5, 3)))
        m = jnp.asarray(soft_masks(rng, 4, 5, 2), jnp.float64)
        t = jnp.asarray(rng.random((2, 3, 3)))
        fns = {
            "style": lambda x: losses.style_loss(x, m, t),
            "tv": losses.total_variation,
            "content": lambda x: losses.content_loss(x, t[0, :1, :1]),
        }
        fn = fns[name]
        d = jnp.asarray(rng.standard_normal(f.shape))
        eps = 1e-6
        fd = (fn(f + eps * d) - fn(f - eps * d)) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(jax.grad(fn)(f), d), fd, rtol=1e-6)


def test_feature_unit_conventions():
    assert losses.feature_unit("caffe") == 1.0
    assert 57 < losses.feature_unit("torchvision") < 58


def test_mismatched_mask_is_an_error_not_a_silent_skip():
    with pytest.raises(ValueError, match="does not match features"):
        losses.masked_grams(jnp.ones((4, 4, 3)), jnp.ones((5, 4, 1)))


def ref_style_relative(f, m, t):
    """sum_k m_k |G_k - T_k|_F^2 / |T_k|_F^2, written out (labels with a zero target skipped)."""
    g, s = ref_masked_grams(f, m)
    return float(sum(s[k] * np.sum((g[k] - t[k]) ** 2) / np.sum(t[k] ** 2)
                     for k in range(len(s)) if np.sum(t[k] ** 2) > 0))


@pytest.mark.parametrize("h,w,c,k", CASES)
def test_target_normalised_style_loss_against_reference_direct_jit_vmap(h, w, c, k):
    rng = np.random.default_rng(h * 10 + w + k)
    f = rng.random((2, h, w, c)).astype(np.float32)
    m = soft_masks(rng, h, w, k)
    t = rng.random((k, c, c)).astype(np.float32)
    if k > 1:
        t[-1] = 0  # a label without a target contributes nothing (no division by zero)
    fn = lambda x: losses.style_loss(x, jnp.asarray(m), jnp.asarray(t), normalization="target")
    expected = [ref_style_relative(f[i], m, t) for i in range(2)]
    np.testing.assert_allclose(fn(jnp.asarray(f[0])), expected[0], rtol=1e-5)
    np.testing.assert_allclose(jax.jit(fn)(f[0]), expected[0], rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(fn)(f), expected, rtol=1e-5)
    assert bool(jnp.all(jnp.isfinite(jax.grad(fn)(jnp.asarray(f[0])))))


def test_target_normalised_style_loss_ignores_the_feature_scale():
    """Features and targets scaled alike (another backbone's units): the same loss, the same
    minimiser; the unnormalised loss grows with the fourth power of the scale."""
    rng = np.random.default_rng(7)
    f = jnp.asarray(rng.random((6, 5, 4)), jnp.float32)
    s = jnp.asarray(rng.random((7, 6, 4)), jnp.float32)
    m = jnp.ones((6, 5, 1))
    for scale in (0.1, 57.7):
        t = losses.gram(scale * s)[None]
        rel = losses.style_loss(scale * f, m, t, normalization="target")
        np.testing.assert_allclose(rel, losses.style_loss(f, m, losses.gram(s)[None], normalization="target"),
                                   rtol=1e-4)
        np.testing.assert_allclose(losses.style_loss(scale * f, m, t),
                                   scale ** 4 * losses.style_loss(f, m, losses.gram(s)[None]), rtol=1e-4)
    target, _ = losses.masked_grams(f, m)
    np.testing.assert_allclose(losses.style_loss(f, m, target, normalization="target"), 0.0, atol=1e-12)


def test_target_normalised_gradient_matches_central_differences():
    rng = np.random.default_rng(8)
    with jax.enable_x64(True):
        f = jnp.asarray(rng.random((4, 5, 3)))
        m = jnp.asarray(soft_masks(rng, 4, 5, 2), jnp.float64)
        t = jnp.asarray(rng.random((2, 3, 3)))
        fn = lambda x: losses.style_loss(x, m, t, normalization="target")
        d = jnp.asarray(rng.standard_normal(f.shape))
        eps = 1e-6
        fd = (fn(f + eps * d) - fn(f - eps * d)) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(jax.grad(fn)(f), d), fd, rtol=1e-6)


def test_unknown_style_normalization_is_refused():
    with pytest.raises(ValueError, match="unknown style normalization"):
        losses.style_loss(jnp.ones((4, 4, 3)), jnp.ones((4, 4, 1)), jnp.ones((1, 3, 3)), normalization="layer")
