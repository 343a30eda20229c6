"""Region-wise linear colour transfer: the Monge-Kantorovich map against a numpy reference and its properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import synthetic_photo, two_region_mask
from jaxstyle.color import feather_masks, linear_color_transfer, monge_kantorovich_map
from jaxstyle.laplacian import laplacian_matvec


def sqrtm_spd(s):
    values, vectors = np.linalg.eigh(s)
    return (vectors * np.sqrt(values)) @ vectors.T


def reference(content, style, eps):
    """Pitie and Kokaram's linear map on the whole image, written from the paper's formula."""
    x, y = content.reshape(-1, 3).astype(np.float64), style.reshape(-1, 3).astype(np.float64)
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x = np.cov(x.T, bias=True) + eps * np.eye(3)
    s_y = np.cov(y.T, bias=True) + eps * np.eye(3)
    r = sqrtm_spd(s_x)
    r_inv = np.linalg.inv(r)
    t = r_inv @ sqrtm_spd(r @ s_y @ r) @ r_inv
    return np.clip((x - mu_x) @ t.T + mu_y, 0, 1).reshape(content.shape)


def moments(pixels, weights=None):
    pixels = pixels.reshape(-1, 3).astype(np.float64)
    w = np.ones(len(pixels)) if weights is None else weights.reshape(-1).astype(np.float64)
    mean = (w[:, None] * pixels).sum(0) / w.sum()
    centred = pixels - mean
    return mean, (w[:, None] * centred).T @ centred / w.sum()


@pytest.fixture(scope="module")
def photos():
    # Mid-range colours so that nothing is clipped and the moments match exactly.
    content = 0.3 + 0.4 * synthetic_photo(24, 32, 0)
    style = 0.25 + 0.5 * synthetic_photo(20, 28, 5)[..., ::-1]
    return content.astype(np.float32), style.astype(np.float32)


def test_matches_reference_and_moves_the_moments_onto_the_style(photos):
    content, style = photos
    out = np.asarray(jax.jit(linear_color_transfer)(jnp.asarray(content), jnp.asarray(style)))
    np.testing.assert_allclose(out, reference(content, style, 1e-4), atol=2e-5)
    assert 0 < out.min() and out.max() < 1
    # T (S_c + eps) T = S_s + eps: with a negligible eps the moments are the style's
    with jax.enable_x64(True):
        exact = np.asarray(linear_color_transfer(jnp.asarray(content, jnp.float64),
                                                 jnp.asarray(style, jnp.float64), eps=1e-12))
    mean_out, cov_out = moments(exact)
    mean_s, cov_s = moments(style)
    np.testing.assert_allclose(mean_out, mean_s, atol=1e-12)
    np.testing.assert_allclose(cov_out, cov_s, rtol=1e-8, atol=1e-14)


def test_map_is_symmetric_and_solves_the_moment_equation():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3, 3)), rng.standard_normal((4, 3, 3))
    s_from = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(3)
    s_to = b @ b.transpose(0, 2, 1) + 0.1 * np.eye(3)
    with jax.enable_x64(True):
        t = np.asarray(monge_kantorovich_map(jnp.asarray(s_from), jnp.asarray(s_to)))
    np.testing.assert_allclose(t, t.transpose(0, 2, 1), atol=1e-10)
    np.testing.assert_allclose(t @ s_from @ t, s_to, rtol=1e-8, atol=1e-10)
    assert np.all(np.linalg.eigvalsh(t) > 0)  # the map that moves colours least: positive definite
    same = np.asarray(monge_kantorovich_map(jnp.asarray(s_from, jnp.float32), jnp.asarray(s_from, jnp.float32)))
    np.testing.assert_allclose(same, np.broadcast_to(np.eye(3), same.shape), atol=1e-4)


def test_style_equal_to_content_is_the_identity(photos):
    content, _ = photos
    out = np.asarray(linear_color_transfer(jnp.asarray(content), jnp.asarray(content)))
    np.testing.assert_allclose(out, content, atol=2e-5)


def test_inside_one_region_the_result_is_affine_in_the_content(photos):
    """An affine map of the colours has (numerically) zero matting-Laplacian energy."""
    content, style = photos
    out = np.asarray(linear_color_transfer(jnp.asarray(content), jnp.asarray(style)), np.float64)
    x = np.concatenate([content.reshape(-1, 3), np.ones((content.size // 3, 1))], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(x, out.reshape(-1, 3), rcond=None)
    np.testing.assert_allclose(x @ coef, out.reshape(-1, 3), atol=2e-5)
    with jax.enable_x64(True):
        c64 = jnp.asarray(content, jnp.float64)
        energy = float(jnp.vdot(jnp.asarray(out), laplacian_matvec(c64, jnp.asarray(out))))
        random = jnp.asarray(np.random.default_rng(1).uniform(size=out.shape))
        reference_energy = float(jnp.vdot(random, laplacian_matvec(c64, random)))
    assert energy < 1e-5 * reference_energy  # what is left is Levin's eps |a|^2 per window


def test_each_region_takes_its_own_style_region(photos):
    content, style = photos
    cm, sm = two_region_mask(24, 32, 0), two_region_mask(20, 28, 5)
    with jax.enable_x64(True):
        out = np.asarray(linear_color_transfer(*(jnp.asarray(a, jnp.float64) for a in (content, style, cm, sm)),
                                               eps=1e-12))
    for k in range(2):
        mean_out, cov_out = moments(out, cm[..., k])
        mean_s, cov_s = moments(style, sm[..., k])
        np.testing.assert_allclose(mean_out, mean_s, atol=1e-12)
        # a region's covariance is near singular here (entries ~1e-6 beside 2e-4): eps * T^2 shows
        np.testing.assert_allclose(cov_out, cov_s, rtol=1e-6, atol=1e-10)
    # swapping the style's labels swaps which statistics each content region takes
    swapped = np.asarray(linear_color_transfer(*(jnp.asarray(a) for a in (content, style, cm, sm[..., ::-1]))))
    np.testing.assert_allclose(moments(swapped, cm[..., 0])[0], moments(style, sm[..., 1])[0], atol=1e-5)


def test_a_label_missing_from_the_style_takes_the_whole_style(photos):
    content, style = photos
    cm = two_region_mask(24, 32, 0)
    sm = np.stack([np.ones(style.shape[:2]), np.zeros(style.shape[:2])], -1).astype(np.float32)
    out = np.asarray(linear_color_transfer(*(jnp.asarray(a) for a in (content, style, cm, sm))))
    np.testing.assert_allclose(moments(out, cm[..., 1])[0], moments(style)[0], atol=1e-5)
    assert np.all(np.isfinite(out))


def test_unlabelled_pixels_keep_their_colour(photos):
    content, style = photos
    cm = two_region_mask(24, 32, 0)
    cm[:4] = 0  # no label at the top
    out = np.asarray(linear_color_transfer(*(jnp.asarray(a) for a in (content, style, cm,
                                                                      two_region_mask(20, 28, 5)))))
    np.testing.assert_array_equal(out[:4], content[:4])


def test_flat_regions_and_clipping_stay_finite_and_in_range():
    content = np.full((8, 8, 3), 0.5, np.float32)
    style = np.random.default_rng(2).uniform(size=(8, 8, 3)).astype(np.float32)
    out = np.asarray(linear_color_transfer(jnp.asarray(content), jnp.asarray(style)))
    np.testing.assert_allclose(out, np.broadcast_to(style.reshape(-1, 3).mean(0), out.shape), atol=1e-5)
    wild = np.asarray(linear_color_transfer(jnp.asarray(style), jnp.asarray(2 * style - 0.5)))
    assert np.all(np.isfinite(wild)) and wild.min() >= 0 and wild.max() <= 1


def test_vmap_and_grad(photos):
    content, style = photos
    cs = jnp.stack([jnp.asarray(content), jnp.asarray(content[::-1])])
    ss = jnp.stack([jnp.asarray(style), jnp.asarray(style[:, ::-1])])
    batched = jax.vmap(linear_color_transfer)(cs, ss)
    for i in range(2):
        np.testing.assert_allclose(batched[i], linear_color_transfer(cs[i], ss[i]), atol=1e-5)
    with jax.enable_x64(True):
        c, s = jnp.asarray(content, jnp.float64), jnp.asarray(style, jnp.float64)
        probe = jnp.asarray(np.random.default_rng(3).standard_normal(content.shape))

        def scalar(st):
            return jnp.vdot(probe, linear_color_transfer(c, st))

        g = jax.jit(jax.grad(scalar))(s)
        d = jnp.asarray(np.random.default_rng(4).standard_normal(style.shape))
        eps = 1e-6
        fd = (scalar(s + eps * d) - scalar(s - eps * d)) / (2 * eps)
        np.testing.assert_allclose(float(jnp.vdot(g, d)), float(fd), rtol=1e-6)


# ----------------------------------------------------------------------------- feathered blending

def shaded_with_a_step(h=32, w=40):
    """A smooth left-right ramp with a strong colour step at column 28 (a real edge)."""
    x = np.linspace(0.2, 0.6, w)[None, :, None] * np.ones((h, 1, 3))
    x = x * np.array([1.0, 0.8, 0.6])
    x[:, 28:] += np.array([0.3, -0.1, 0.25])
    return x.astype(np.float32)


def test_feathered_masks_keep_coverage_and_follow_colour_edges():
    content = shaded_with_a_step()
    mask = np.zeros((32, 40, 3), np.float32)
    mask[:, :14, 0], mask[:, 14:28, 1], mask[:, 28:, 2] = 1, 1, 1  # border 0|1 in the ramp, 1|2 on the edge
    mask[:3, :, :] = 0  # unlabelled rows stay unlabelled
    soft = np.asarray(feather_masks(jnp.asarray(content), jnp.asarray(mask), radius=4))
    assert soft.min() >= 0
    np.testing.assert_allclose(soft.sum(-1), mask.sum(-1), atol=1e-5)  # coverage kept
    rows = slice(8, 24)
    # Across the border in the smooth ramp the weights blend over several pixels ...
    assert 0.1 < soft[rows, 13, 1].mean() < 0.9 and 0.1 < soft[rows, 14, 0].mean() < 0.9
    # ... across the colour edge they switch as the mask does.
    np.testing.assert_allclose(soft[rows, 26, 1], 1, atol=0.05)
    np.testing.assert_allclose(soft[rows, 29, 2], 1, atol=0.05)


@pytest.mark.slow  # compile-heavy: keeps the default suite under 5 minutes; CI runs it via -m slow
@pytest.mark.parametrize("radius", [2, 4])
def test_feathered_start_has_no_seam_where_a_border_crosses_smooth_shading(radius):
    content = shaded_with_a_step()
    style = np.random.default_rng(3).uniform(0.2, 0.8, (20, 20, 3)).astype(np.float32)
    cm = np.zeros((32, 40, 2), np.float32)
    cm[:, :14, 0], cm[:, 14:, 1] = 1, 1  # the border runs through the ramp, not along an edge
    sm = np.zeros((20, 20, 2), np.float32)
    sm[:, :10, 0], sm[:, 10:, 1] = 1, 1
    style[:, 10:] = style[:, 10:] * 0.5  # the two style regions differ: different maps
    args = [jnp.asarray(a) for a in (content, style, cm, sm)]
    hard = linear_color_transfer(*args)
    soft = linear_color_transfer(*args, feather_radius=radius)

    def energy(image):
        return float(jnp.vdot(image, laplacian_matvec(jnp.asarray(content), image)))

    assert energy(soft) < 0.3 * energy(hard)
    # away from the border both are the same per-region maps
    np.testing.assert_allclose(soft[:, :14 - 3 * radius], hard[:, :14 - 3 * radius], atol=1e-5)
    # one region: feathering changes nothing
    one = [jnp.asarray(content), jnp.asarray(style)]
    np.testing.assert_array_equal(linear_color_transfer(*one, feather_radius=radius), linear_color_transfer(*one))


def test_feathered_transfer_under_jit_and_vmap(photos):
    content, style = photos
    cm, sm = two_region_mask(24, 32, 0), two_region_mask(20, 28, 5)
    fn = jax.jit(lambda *a: linear_color_transfer(*a, feather_radius=3))
    single = fn(*(jnp.asarray(a) for a in (content, style, cm, sm)))
    batched = jax.vmap(lambda *a: linear_color_transfer(*a, feather_radius=3))(
        *(jnp.stack([jnp.asarray(a)] * 2) for a in (content, style, cm, sm)))
    np.testing.assert_allclose(batched[1], single, atol=1e-5)  # float32 rounding of batched ops
