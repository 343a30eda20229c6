"""Full-resolution upsampling: numpy references from the formulas, exactness on global colour
maps, seamless tiles, no halo at a step edge, jit / vmap / grad."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import upsample
from jaxstyle.errors import JaxstyleError

# A global colour map that keeps colours in [0.2, 0.8] inside (0, 1): nothing is clipped.
M = np.array([[0.6, 0.2, 0.1], [0.1, 0.5, 0.2], [0.2, 0.1, 0.4]])
T = np.array([0.05, 0.1, 0.2])

jitted = jax.jit(upsample.upsample_affine, static_argnames=("radius", "support", "tile"))


def f32(x):
    return jnp.asarray(x, jnp.float32)


def textured(h, w, seed=0, period=24.0, amplitude=0.05, noise=0.02):
    """Mid-grey plus smooth random colour texture (four waves per channel of `amplitude`,
    periods of at least `period` / sqrt(2) px) plus pixel noise: float64 `[h, w, 3]`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / period
    out = np.full((h, w, 3), 0.5)
    for c in range(3):
        for _ in range(4):
            fy, fx = rng.uniform(-1, 1, size=2)
            out[..., c] += amplitude * np.sin(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 2 * np.pi))
    return out + noise * rng.standard_normal((h, w, 3))


def area_downsample(x, factor):
    """Mean over `factor x factor` blocks (sizes are multiples of factor)."""
    h, w, c = x.shape
    return x.reshape(h // factor, factor, w // factor, factor, c).mean((1, 3))


# ---- numpy references, written from the formulas in jaxstyle/upsample.py -----------------


def reference_global(content, result, ridge=upsample.PRIOR_RIDGE):
    c, o = content.reshape(-1, 3).astype(np.float64), result.reshape(-1, 3).astype(np.float64)
    dc, do = c - c.mean(0), o - o.mean(0)
    colour = np.linalg.solve(dc.T @ dc / len(c) + ridge * np.eye(3), dc.T @ do / len(c)).T
    return np.concatenate([colour, (o.mean(0) - colour @ c.mean(0))[:, None]], 1)


def reference_fit(content, result, radius, eps, sigma, prior=None, average=True):
    """Per pixel: the weighted, ridge-regularised normal equations on uncentred [c, 1]."""
    content, result = content.astype(np.float64), result.astype(np.float64)
    h, w, _ = content.shape
    prior = reference_global(content, result) if prior is None else np.asarray(prior, np.float64)
    prior = np.broadcast_to(prior, (h, w, 3, 4))
    ridge = np.diag([eps, eps, eps, 0.0])
    maps = np.zeros((h, w, 3, 4))
    windows = {}
    for y in range(h):
        for x in range(w):
            win = (slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1))
            colours = content[win].reshape(-1, 3)
            weights = np.exp(-np.sum((colours - content[y, x]) ** 2, -1) / (2 * sigma ** 2))
            weights = weights / weights.sum()
            design = np.concatenate([colours, np.ones((len(colours), 1))], 1)  # [n, 4]
            normal = design.T @ (weights[:, None] * design) + ridge
            rhs = design.T @ (weights[:, None] * result[win].reshape(-1, 3)) + ridge @ prior[y, x].T
            maps[y, x] = np.linalg.solve(normal, rhs).T
            windows[y, x] = (win, weights)
    if not average:
        return maps
    averaged = np.zeros_like(maps)
    for (y, x), (win, weights) in windows.items():
        averaged[y, x] = np.tensordot(weights, maps[win].reshape(-1, 3, 4), axes=1)
    return averaged


def reference_jbu(values, guide_small, guide_full, sigma, support):
    """Brute force over every output pixel and every working-size sample."""
    values = values.astype(np.float64)
    (hf, wf, _), (hs, ws, _) = guide_full.shape, guide_small.shape
    qy, qx = np.mgrid[0:hs, 0:ws]
    out = np.zeros((hf, wf, values.shape[-1]))
    for y in range(hf):
        for x in range(wf):
            uy, ux = (y + 0.5) * hs / hf - 0.5, (x + 0.5) * ws / wf - 0.5
            tent = (np.maximum(0, 1 - np.abs(uy - qy) / support)
                    * np.maximum(0, 1 - np.abs(ux - qx) / support))
            dist = np.sum((guide_full[y, x] - guide_small) ** 2, -1)
            weight = tent * (np.exp(-dist / (2 * sigma ** 2)) + upsample.RANGE_FLOOR)
            out[y, x] = np.tensordot(weight, values, axes=2) / weight.sum()
    return out


def reference_upsample(content_full, content_small, result_small, radius, eps, sigma, support, fit_sigma):
    maps = reference_fit(content_small, result_small, radius, eps, fit_sigma)
    h, w = content_small.shape[:2]
    maps_full = reference_jbu(maps.reshape(h, w, 12), content_small, content_full, sigma, support)
    maps_full = maps_full.reshape(*content_full.shape[:2], 3, 4)
    out = np.einsum("hwoi,hwi->hwo", maps_full[..., :3], content_full) + maps_full[..., 3]
    return np.clip(out, 0, 1)


# ---- the parts against their references ----------------------------------------------------

FIT_CASES = [
    # name, content, radius, eps, sigma, average
    ("random_r1", lambda: np.random.default_rng(1).random((7, 9, 3)), 1, 1e-3, 0.3, True),
    ("random_r1_no_average", lambda: np.random.default_rng(2).random((7, 9, 3)), 1, 1e-3, 0.3, False),
    ("textured_r2", lambda: textured(8, 6, seed=3, period=4.0), 2, 1e-2, 0.2, True),
]


@pytest.mark.parametrize("name,make_content,radius,eps,sigma,average", FIT_CASES,
                         ids=[case[0] for case in FIT_CASES])
@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
def test_fit_affine_matches_reference(name, make_content, radius, eps, sigma, average, mode):
    content = make_content()
    result = np.random.default_rng(10).random(content.shape)
    expected = reference_fit(content, result, radius, eps, sigma, average=average)
    fn = functools.partial(upsample.fit_affine, radius=radius, eps=eps, sigma_range=sigma,
                           average=average)
    if mode == "jit":
        got = jax.jit(fn)(f32(content), f32(result))
    elif mode == "vmap":
        got = jax.vmap(fn)(f32(np.stack([content, content[::-1]])), f32(np.stack([result, result[::-1]])))
        np.testing.assert_allclose(
            got[1], reference_fit(content[::-1], result[::-1], radius, eps, sigma, average=average),
            rtol=1e-4, atol=1e-4)
        got = got[0]
    else:
        got = fn(f32(content), f32(result))
    assert got.shape == (*content.shape[:2], 3, 4) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_fit_affine_takes_a_per_pixel_prior_and_a_flat_window_keeps_it():
    rng = np.random.default_rng(4)
    content, result = rng.random((6, 7, 3)), rng.random((6, 7, 3))
    prior = rng.normal(size=(6, 7, 3, 4))
    got = upsample.fit_affine(f32(content), f32(result), eps=1e-2, sigma_range=0.3, prior=f32(prior))
    np.testing.assert_allclose(got, reference_fit(content, result, 1, 1e-2, 0.3, prior), rtol=1e-4, atol=1e-4)
    # A flat content window says nothing about the colour gains: they are the prior's.
    flat = upsample.fit_affine(jnp.full((6, 7, 3), 0.4), f32(result), prior=f32(prior), average=False)
    np.testing.assert_allclose(flat[..., :3], prior[..., :3], atol=1e-5)


def test_global_affine_is_least_squares():
    rng = np.random.default_rng(5)
    content, result = rng.random((9, 11, 3)), rng.random((9, 11, 3))
    design = np.concatenate([content.reshape(-1, 3), np.ones((99, 1))], 1)
    lstsq = np.linalg.lstsq(design, result.reshape(-1, 3), rcond=None)[0].T  # [3, 4]
    got = upsample.global_affine(f32(content), f32(result))
    np.testing.assert_allclose(got, lstsq, atol=1e-4)
    np.testing.assert_allclose(got, reference_global(content, result), atol=2e-6)


@pytest.mark.parametrize("support,sigma", [(1, 0.1), (2, 0.3), (3, 0.05)])
@pytest.mark.parametrize("mode", ["untiled", "tiled", "vmap"])
def test_joint_bilateral_upsample_matches_brute_force(support, sigma, mode):
    rng = np.random.default_rng(support)
    small, full = rng.random((5, 6, 3)), rng.random((17, 23, 3))
    values = rng.normal(size=(5, 6, 4))
    expected = reference_jbu(values, small, full, sigma, support)
    fn = jax.jit(upsample.joint_bilateral_upsample, static_argnames=("support", "tile"))
    if mode == "vmap":
        got = jax.vmap(lambda v, s, f: fn(v, s, f, sigma_range=sigma, support=support, tile=8))(
            f32(np.stack([values, 2 * values])), f32(np.stack([small] * 2)), f32(np.stack([full] * 2)))
        np.testing.assert_allclose(got[1], 2 * expected, rtol=1e-5, atol=1e-5)
        got = got[0]
    else:
        got = fn(f32(values), f32(small), f32(full), sigma_range=sigma, support=support,
                 tile=8 if mode == "tiled" else None)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_upsample_affine_matches_the_reference_pipeline():
    rng = np.random.default_rng(6)
    small = 0.2 + 0.6 * rng.random((6, 7, 3))
    result = np.clip(small @ M.T + T + 0.1 * rng.standard_normal((6, 7, 3)), 0, 1)
    full = 0.2 + 0.6 * rng.random((15, 20, 3))
    for sigma, fit_sigma in ((0.3, 0.3), (0.15, 0.6)):  # one colour sigma, then the two apart
        expected = reference_upsample(full, small, result, radius=1, eps=1e-3, sigma=sigma, support=2,
                                      fit_sigma=fit_sigma)
        got = jitted(f32(full), f32(small), f32(result), radius=1, eps=1e-3, sigma_range=sigma,
                     fit_sigma_range=fit_sigma, support=2, tile=8)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        host = upsample.upsample_affine_host(f32(full), f32(small), f32(result), radius=1, eps=1e-3,
                                             sigma_range=sigma, fit_sigma_range=fit_sigma, support=2, tile=8)
        np.testing.assert_allclose(host, expected, atol=1e-4)


# ---- properties of the whole upsampling -------------------------------------------------------


@pytest.mark.parametrize("factor", [4, 8])
def test_a_global_colour_map_is_reproduced_exactly(factor):
    full = np.clip(textured(96, 128, seed=factor), 0.2, 0.8)  # texture plus pixel noise
    small = area_downsample(full, factor)
    # A 1 px line in a colour the working size never shows: its colour weights all but vanish
    # and RANGE_FLOOR leaves it the spatial mean of the maps around it, here M and t again.
    full[50, 10:100] = [0.95, 0.05, 0.05]
    got = np.asarray(jitted(f32(full), f32(small), f32(small @ M.T + T), tile=40))
    # float32: measured 2.4e-6 worst over 12k pixels (the ridge toward the global map, 1e-6,
    # and rounding); every window, flat or not, fits M and t.
    np.testing.assert_allclose(got, full @ M.T + T, atol=1e-5)


def test_tiles_join_without_seams():
    # 75 x 101 from 19 x 26: not multiples of the tile, a non-integer scale per axis.
    full = textured(75, 101, seed=7)
    small = np.asarray(jax.image.resize(f32(full), (19, 26, 3), "linear"))
    result = np.clip(small @ M.T + T + 0.05 * np.random.default_rng(7).standard_normal(small.shape), 0, 1)
    args = (f32(full), f32(small), f32(result))
    whole = np.asarray(jitted(*args, tile=None))
    # Bitwise equal on CPU (same arithmetic per pixel); 1e-6 allows other backends' fusion.
    np.testing.assert_allclose(jitted(*args, tile=16), whole, rtol=0, atol=1e-6)
    host = upsample.upsample_affine_host(full.astype(np.float32), small, result, tile=32)
    assert isinstance(host, np.ndarray) and host.shape == (75, 101, 3) and host.dtype == np.float32
    np.testing.assert_allclose(host, whole, rtol=0, atol=1e-6)


ML = np.array([[0.9, 0.0, 0.1], [0.0, 0.8, 0.0], [0.1, 0.0, 0.5]])
TL = np.array([0.0, 0.1, 0.2])
MR = np.array([[0.3, 0.1, 0.0], [0.1, 0.2, 0.1], [0.0, 0.1, 0.9]])
TR = np.array([0.5, 0.0, -0.1])
HALO_PX = 2
# Measured with this texture (seed 8) over the eight edge offsets 80..87: beyond 2 px at most
# 0.015, beyond 8 px (one working-size pixel) at most 0.0069. Over seeds 8-10 the worst beyond
# 2 px is 0.024: a working-size pixel that straddles the step (1/8 of it on the far side) holds
# a blend of the two results that no affine map of its colour explains, and tilts the fits
# around it along the step's colour direction.
NEAR_TOLERANCE = 0.02  # beyond HALO_PX px
FAR_TOLERANCE = 0.008  # beyond one working-size pixel (8 px): the error away from any edge


@pytest.mark.parametrize("edge", [80, 83, 87])
def test_no_halo_at_a_step_edge(edge):
    """Two textured regions, a vertical step at column `edge` of the full-size photo (8x the
    working size; 80 is on the working-size grid, 83 and 87 split a working-size pixel), a
    different colour map on each side. Beyond HALO_PX px of the step the output is its side's
    map applied to the full-size content."""
    h, w, factor = 128, 192, 8
    left = np.arange(w)[None, :, None] < edge
    # Texture that the working size still shows (periods >= 34 px), std 0.025 per channel.
    texture = textured(h, w, seed=8, period=48.0, amplitude=0.018, noise=0.0) - 0.5
    full = np.where(left, [0.3, 0.5, 0.4], [0.7, 0.4, 0.6]) + texture
    want = np.where(left, full @ ML.T + TL, full @ MR.T + TR)
    small, result = area_downsample(full, factor), area_downsample(want, factor)

    def worst_beyond(out, px):
        err = np.abs(np.asarray(out) - want).max(axis=(0, 2))  # [w]
        return err[(np.arange(w) < edge - px) | (np.arange(w) >= edge + px)].max()

    out = jitted(f32(full), f32(small), f32(result))
    assert worst_beyond(out, HALO_PX) < NEAR_TOLERANCE
    assert worst_beyond(out, factor) < FAR_TOLERANCE
    # The test bites: bilinear upsampling of the result bleeds across the step, and the same
    # maps carried without colour weights leave a wider, stronger halo.
    assert worst_beyond(jax.image.resize(f32(result), (h, w, 3), "linear"), HALO_PX) > 0.08
    colour_blind = jitted(f32(full), f32(small), f32(result), sigma_range=1e3)
    assert worst_beyond(colour_blind, HALO_PX) > 1.5 * worst_beyond(out, HALO_PX)


def test_identity_at_the_working_size():
    content = np.clip(textured(40, 52, seed=9), 0, 1)
    got = jitted(f32(content), f32(content), f32(content))
    np.testing.assert_allclose(got, content, atol=1e-5)


# ---- transformations -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_problem():
    rng = np.random.default_rng(11)
    full = np.clip(textured(70, 90, seed=11, amplitude=0.08), 0.1, 0.9)
    small = np.asarray(jax.image.resize(f32(full), (18, 23, 3), "linear"))
    result = small @ M.T + T + 0.02 * rng.standard_normal(small.shape)  # in (0, 1): no clipping
    return f32(full), f32(small), f32(result)


def test_vmap_agrees_with_single_calls(small_problem):
    full, small, result = small_problem
    fn = jax.jit(functools.partial(upsample.upsample_affine, tile=32))
    single = [np.asarray(fn(full, small, result)), np.asarray(fn(full[::-1], small[::-1], result[::-1]))]
    batch = jax.vmap(fn)(jnp.stack([full, full[::-1]]), jnp.stack([small, small[::-1]]),
                         jnp.stack([result, result[::-1]]))
    np.testing.assert_allclose(batch, np.stack(single), rtol=0, atol=1e-6)


def test_gradient_wrt_result_small_matches_finite_differences(small_problem):
    full, small, result = small_problem
    weights = f32(np.random.default_rng(12).standard_normal(full.shape))

    @jax.jit
    def loss(r):
        return jnp.sum(upsample.upsample_affine(full, small, r, tile=32) * weights)

    out = jitted(full, small, result, tile=32)
    assert 0 < float(out.min()) and float(out.max()) < 1  # unclipped, so the loss is linear in r
    grad = jax.jit(jax.grad(loss))(result)
    assert grad.shape == result.shape
    step = 1e-2  # exact for a linear loss; large against float32 rounding of the sum
    for index in [(0, 0, 0), (5, 7, 1), (17, 22, 2), (9, 12, 0)]:
        bump = jnp.zeros_like(result).at[index].set(step)
        fd = (loss(result + bump) - loss(result - bump)) / (2 * step)
        np.testing.assert_allclose(grad[index], fd, rtol=2e-3, atol=2e-3)


def test_host_loop_compiles_one_tile_program_for_every_photo_size():
    rng = np.random.default_rng(13)
    small = rng.random((10, 13, 3)).astype(np.float32)
    result = (0.8 * small + 0.1).astype(np.float32)
    before = upsample._host_tile._cache_size()
    for size in [(40, 52), (57, 66), (33, 80)]:
        full = rng.random((*size, 3)).astype(np.float32)
        out = upsample.upsample_affine_host(full, small, result, tile=32)
        assert out.shape == (*size, 3)
        if size == (57, 66):  # the jitted pure function, same arithmetic in another program: its
            # float32 sums may run in another order (3e-5 seen with the default suite's compile flags)
            np.testing.assert_allclose(out, jitted(full, small, result, tile=32), rtol=0, atol=1e-4)
    assert upsample._host_tile._cache_size() == before + 1


def test_errors_name_the_shapes():
    good = jnp.zeros((8, 8, 3))
    with pytest.raises(JaxstyleError, match=r"result_small 9x8 does not match content_small 8x8"):
        upsample.upsample_affine(jnp.zeros((16, 16, 3)), good, jnp.zeros((8, 9, 3)))
    with pytest.raises(JaxstyleError, match=r"content_full must be a float image \[H, W, 3\].*\(16, 16\)"):
        upsample.upsample_affine(jnp.zeros((16, 16)), good, good)
    with pytest.raises(JaxstyleError, match="support must be >= 1"):
        upsample.upsample_affine(jnp.zeros((16, 16, 3)), good, good, support=0)
    with pytest.raises(JaxstyleError, match="sigma_range must be > 0"):
        upsample.upsample_affine(jnp.zeros((16, 16, 3)), good, good, sigma_range=0.0)
    with pytest.raises(JaxstyleError, match="smaller than the working size"):
        upsample.upsample_affine_host(np.zeros((4, 4, 3), np.float32), good, good)
