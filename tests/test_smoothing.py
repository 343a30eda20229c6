"""Smooth local affine: numpy references from the formulas, goldens, jit / vmap / grad."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import smoothing
from jaxstyle.errors import JaxstyleError

# Output = content @ M + b per pixel; chosen so that colours in [0, 1] stay in [0, 1].
M = np.array([[0.6, 0.2, 0.1], [0.1, 0.5, 0.2], [0.2, 0.1, 0.4]])
B = np.array([0.05, 0.1, 0.2])


def smooth_content(h, w):
    y, x = np.mgrid[0:h, 0:w] / 40.0
    return np.stack([0.5 + 0.4 * np.sin(3 * x + y), 0.5 + 0.4 * np.cos(2 * y - x),
                     0.3 + 0.5 * x * y], -1)


def random_content(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3))


def f32(x):
    return jnp.asarray(x, jnp.float32)


# One compiled filter per (shape, radius) for the whole-image tests; `edge` stays traced.
jitted_filter = jax.jit(smoothing.smooth_local_affine, static_argnames=("radius", "patch_radius"))


def reference_coefficients(output, content, patch_radius, eps):
    """The original's solve, per pixel in float64: (X^T X + diag(eps, eps, eps, 0)) A^T = X^T O
    over the in-image window, X = [I, 1] (uncentred, as in best_local_affine_kernel)."""
    h, w, _ = content.shape
    p = patch_radius
    out = np.zeros((h, w, 3, 4))
    for y in range(h):
        for x in range(w):
            win = (slice(max(0, y - p), y + p + 1), slice(max(0, x - p), x + p + 1))
            colours = content[win].reshape(-1, 3)
            design = np.concatenate([colours, np.ones((len(colours), 1))], 1)  # [n, 4]
            normal = design.T @ design + np.diag([eps, eps, eps, 0.0])
            out[y, x] = np.linalg.solve(normal, design.T @ output[win].reshape(-1, 3)).T
    return out


def reference_joint_bilateral(values, guide, radius, edge):
    """Brute force over every pixel and offset, float64, as bilateral_smooth_kernel."""
    h, w, _ = values.shape
    sigma_s = radius / 3.0
    out = np.zeros_like(values, dtype=np.float64)
    for y in range(h):
        for x in range(w):
            num, den = 0.0, 0.0
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        colour = np.mean((guide[yy, xx] - guide[y, x]) ** 2)
                        weight = (np.exp(-(dx * dx + dy * dy) / (2 * sigma_s ** 2))
                                  * np.exp(-colour / (2 * edge ** 2)))
                        num = num + weight * values[yy, xx]
                        den += weight
            out[y, x] = num / den
    return out


# ---- local affine coefficients -----------------------------------------------------------

COEFF_CASES = [
    ("random", lambda: random_content(7, 9, 1), 1, 1e-3),
    ("smooth", lambda: smooth_content(7, 9) + 1e-3 * random_content(7, 9, 2), 1, 1e-3),
    ("nearly_flat", lambda: 0.3 + 1e-4 * random_content(7, 9, 3), 1, 1e-3),
    ("patch2_eps1e-2", lambda: random_content(8, 6, 4), 2, 1e-2),
]


@pytest.mark.parametrize("name,make_content,patch_radius,eps", COEFF_CASES)
@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
def test_local_affine_coefficients_match_reference(name, make_content, patch_radius, eps, mode):
    content = make_content()
    output = random_content(*content.shape[:2], seed=10)
    expected = reference_coefficients(output, content, patch_radius, eps)
    fn = functools.partial(smoothing.local_affine_coefficients, patch_radius=patch_radius,
                           eps=eps)
    if mode == "jit":
        got = jax.jit(fn)(f32(output), f32(content))
    elif mode == "vmap":
        got = jax.vmap(fn)(f32(np.stack([output, output[::-1]])),
                           f32(np.stack([content, content[::-1]])))
        np.testing.assert_allclose(
            got[1], reference_coefficients(output[::-1], content[::-1], patch_radius, eps),
            rtol=1e-4, atol=1e-4 * np.abs(expected).max())
        got = got[0]
    else:
        got = fn(f32(output), f32(content))
    assert got.shape == (*content.shape[:2], 3, 4) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_local_affine_coefficients_are_linear_in_output():
    content = f32(smooth_content(10, 12))
    o1, o2 = f32(random_content(10, 12, 5)), f32(random_content(10, 12, 6))
    coef = functools.partial(smoothing.local_affine_coefficients, content=content)
    np.testing.assert_allclose(coef(2.0 * o1 - 0.5 * o2), 2.0 * coef(o1) - 0.5 * coef(o2),
                               atol=2e-3)


def test_local_affine_coefficients_of_a_constant_output_are_that_constant():
    content = f32(random_content(6, 7))
    coef = smoothing.local_affine_coefficients(jnp.full((6, 7, 3), 0.25), content)
    np.testing.assert_allclose(coef[..., :3], 0.0, atol=1e-5)
    np.testing.assert_allclose(coef[..., 3], 0.25, atol=1e-5)


# ---- joint bilateral ---------------------------------------------------------------------

@pytest.mark.parametrize("radius,edge", [(1, 0.1), (2, 0.05), (3, 0.3), (4, 100.0)])
@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
def test_joint_bilateral_matches_brute_force(radius, edge, mode):
    rng = np.random.default_rng(radius)
    values = rng.standard_normal((6, 7, 5))
    guide = rng.random((6, 7, 3))
    expected = reference_joint_bilateral(values, guide, radius, edge)
    fn = functools.partial(smoothing.joint_bilateral, radius=radius, edge=edge)
    if mode == "jit":
        got = jax.jit(fn)(f32(values), f32(guide))
    elif mode == "vmap":
        got = jax.vmap(fn)(f32(np.stack([values, 2 * values])), f32(np.stack([guide, guide])))
        np.testing.assert_allclose(got[1], 2 * expected, rtol=1e-5, atol=1e-5)
        got = got[0]
    else:
        got = fn(f32(values), f32(guide))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_joint_bilateral_radius_zero_is_identity_and_constants_are_fixed_points():
    rng = np.random.default_rng(0)
    values, guide = f32(rng.standard_normal((5, 6, 4))), f32(rng.random((5, 6, 3)))
    np.testing.assert_array_equal(smoothing.joint_bilateral(values, guide, radius=0), values)
    const = smoothing.joint_bilateral(jnp.full((5, 6, 4), 3.0), guide, radius=3, edge=0.05)
    np.testing.assert_allclose(const, 3.0, rtol=1e-6)


def test_joint_bilateral_edge_is_traceable():
    rng = np.random.default_rng(1)
    values, guide = f32(rng.standard_normal((5, 6, 2))), f32(rng.random((5, 6, 3)))
    fn = jax.jit(lambda v, g, e: smoothing.joint_bilateral(v, g, radius=2, edge=e))
    np.testing.assert_allclose(fn(values, guide, 0.2),
                               smoothing.joint_bilateral(values, guide, radius=2, edge=0.2),
                               rtol=1e-6, atol=1e-6)


# ---- the whole filter ----------------------------------------------------------------------

@pytest.mark.parametrize("make_content", [random_content, smooth_content])
@pytest.mark.parametrize("radius,edge", [(15, 0.01), (4, 0.1)])
def test_global_affine_output_is_returned_unchanged(make_content, radius, edge):
    content = make_content(40, 36)
    output = content @ M + B
    got = np.asarray(jitted_filter(f32(output), f32(content), radius=radius, edge=edge))
    # Only the ridge (eps = 1e-3, as the original) keeps this from being exact; it bites
    # in the 4-pixel corner windows and in windows with little colour variation.
    err = np.abs(got - output)
    assert err.max() < 1e-2 and err.mean() < 1e-3, (err.max(), err.mean())


def test_edges_of_the_content_are_kept_where_a_plain_blur_bleeds():
    h, w, step = 40, 36, 18  # the shape of the test above: reuses its compiled filter
    left = np.arange(w)[None, :, None] < step
    rng = np.random.default_rng(0)
    content = np.where(left, [0.2, 0.3, 0.4], [0.7, 0.6, 0.5]) + 0.01 * rng.standard_normal((h, w, 3))
    m1 = np.array([[0.9, 0.0, 0.1], [0.0, 0.8, 0.0], [0.1, 0.0, 0.5]])
    m2 = np.array([[0.3, 0.1, 0.0], [0.1, 0.2, 0.1], [0.0, 0.1, 0.9]])
    output = np.where(left, content @ m1 + [0.0, 0.1, 0.2], content @ m2 + [0.5, 0.0, -0.1])

    got = np.asarray(jitted_filter(f32(output), f32(content), radius=15, edge=0.01))
    err = np.abs(got - output).max(axis=(0, 2))  # [w], worst over rows and channels
    # The 0.01 texture is partly flattened by the ridge everywhere (about 0.015); the step
    # itself moves no more than that, up to the column next to it.
    assert err.max() < 0.03, err
    step_got = got[:, step].mean(0) - got[:, step - 1].mean(0)
    step_want = output[:, step].mean(0) - output[:, step - 1].mean(0)
    np.testing.assert_allclose(step_got, step_want, atol=0.02)

    # The same filter without edge awareness (range sigma 1e3) smears the step.
    blurred = np.asarray(smoothing.joint_bilateral(f32(output), f32(content), radius=15, edge=1e3))
    blur_err = np.abs(blurred - output).max(axis=(0, 2))
    assert blur_err[step - 2:step + 2].min() > 0.1, blur_err


def test_output_is_clipped_to_unit_range():
    content = random_content(12, 14)
    output = 1.8 * content - 0.4  # affine, so the filter reproduces it, then clips
    got = np.asarray(smoothing.smooth_local_affine(f32(output), f32(content), radius=3))
    assert got.min() >= 0.0 and got.max() <= 1.0
    assert (got == 0.0).any() and (got == 1.0).any()
    inside = (output > 0.05) & (output < 0.95)
    np.testing.assert_allclose(got[inside], output[inside], atol=2e-2)


def test_jit_vmap_and_grad():
    content = np.stack([smooth_content(16, 18), random_content(16, 18, 7)])
    output = 0.2 + 0.6 * np.stack([random_content(16, 18, 8), random_content(16, 18, 9)])
    fn = functools.partial(smoothing.smooth_local_affine, radius=4, edge=0.05)
    eager = np.stack([fn(f32(o), f32(c)) for o, c in zip(output, content)])
    np.testing.assert_allclose(jitted_filter(f32(output[0]), f32(content[0]), radius=4, edge=0.05),
                               eager[0], atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(fn))(f32(output), f32(content)), eager,
                               atol=1e-6)

    # Unclipped the filter is linear in `output`: the gradient's directional derivative
    # equals the finite difference exactly (up to float32 rounding).
    weights = f32(np.random.default_rng(1).standard_normal(output.shape[1:]))
    loss = jax.jit(lambda o: jnp.sum(fn(o, f32(content[0])) * weights))
    grad = jax.jit(jax.grad(loss))(f32(output[0]))
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    direction = f32(0.05 * np.random.default_rng(2).standard_normal(output.shape[1:]))
    shifted = jitted_filter(f32(output[0]) + direction, f32(content[0]), radius=4, edge=0.05)
    assert 0.0 < np.asarray(shifted).min() and np.asarray(shifted).max() < 1.0  # no clipping
    finite_diff = loss(f32(output[0]) + direction) - loss(f32(output[0]))
    np.testing.assert_allclose(jnp.vdot(grad, direction), finite_diff, rtol=1e-3, atol=1e-3)


def test_float64_inputs_stay_float64_and_match_the_reference_closely():
    content, output = random_content(7, 9, 1), random_content(7, 9, 10)
    with jax.enable_x64(True):
        coef = smoothing.local_affine_coefficients(jnp.asarray(output), jnp.asarray(content))
        mixed = smoothing.joint_bilateral(f32(output), jnp.asarray(content), radius=2, edge=0.1)
        assert coef.dtype == jnp.float64 and mixed.dtype == jnp.float64
    np.testing.assert_allclose(coef, reference_coefficients(output, content, 1, 1e-3),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mixed, reference_joint_bilateral(
        output.astype(np.float32).astype(np.float64), content, 2, 0.1), rtol=1e-9, atol=1e-9)


def test_bad_inputs_raise_with_advice():
    image = jnp.zeros((8, 9, 3))
    with pytest.raises(JaxstyleError, match="does not match"):
        smoothing.smooth_local_affine(image, jnp.zeros((8, 10, 3)))
    with pytest.raises(JaxstyleError, match="vmap"):
        smoothing.smooth_local_affine(image[None], image[None])
    with pytest.raises(JaxstyleError, match="static"):
        smoothing.smooth_local_affine(image, image, radius=2.5)
    with pytest.raises(JaxstyleError, match="> 0"):
        smoothing.joint_bilateral(image, image, radius=2, edge=0.0)
    with pytest.raises(JaxstyleError, match="> 0"):
        smoothing.local_affine_coefficients(image, image, eps=-1.0)


# ----------------------------------------------------------------------------- guided filter, refine

def reference_guided_filter(guide, source, radius, eps):
    """guidedfilter_color.m per pixel in float64: windows truncated at the border, a per-window
    ridge fit source ~ a^T guide + b, then each pixel averages its windows' (a, b)."""
    h, w, _ = guide.shape
    a = np.zeros((h, w, 3, source.shape[-1]))
    b = np.zeros((h, w, source.shape[-1]))
    for y in range(h):
        for x in range(w):
            win = (slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1))
            g, p = guide[win].reshape(-1, 3), source[win].reshape(-1, source.shape[-1])
            cov = np.cov(g.T, bias=True) + eps * np.eye(3)
            cross = (g - g.mean(0)).T @ (p - p.mean(0)) / len(g)
            a[y, x] = np.linalg.solve(cov, cross)
            b[y, x] = p.mean(0) - a[y, x].T @ g.mean(0)
    out = np.zeros_like(source, dtype=np.float64)
    for y in range(h):
        for x in range(w):
            win = (slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1))
            out[y, x] = a[win].mean((0, 1)).T @ guide[y, x] + b[win].mean((0, 1))
    return out


# Each radius once in the default suite, under a different transformation; every pairing with -m slow.
_GUIDED_DEFAULT = {("eager", 1), ("jit", 2), ("vmap", 8)}


@pytest.mark.parametrize("mode,radius,eps", [
    pytest.param(mode, radius, eps, marks=() if (mode, radius) in _GUIDED_DEFAULT else pytest.mark.slow)
    for mode in ("eager", "jit", "vmap") for radius, eps in ((1, 1e-3), (2, 0.01), (8, 0.01))])
def test_guided_filter_matches_reference(mode, radius, eps):
    guide, source = random_content(13, 11, seed=3), random_content(13, 11, seed=4)[..., :2]
    want = reference_guided_filter(guide, source, radius, eps)
    fn = functools.partial(smoothing.guided_filter, radius=radius, eps=eps)
    if mode == "jit":
        got = jax.jit(fn)(f32(guide), f32(source))
    elif mode == "vmap":
        got = jax.vmap(fn)(f32(np.stack([guide, guide])), f32(np.stack([source, source])))[1]
    else:
        got = fn(f32(guide), f32(source))
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.slow  # compile-heavy: keeps the default suite under 5 minutes; CI runs it via -m slow
def test_guided_filter_keeps_constants_and_global_affine_functions_of_the_guide():
    guide = random_content(17, 15, seed=5)
    np.testing.assert_allclose(smoothing.guided_filter(f32(guide), jnp.full((17, 15, 1), 0.3)), 0.3, atol=1e-6)
    affine = guide @ M + B  # every window fits it exactly; the ridge shrinks the slope a little
    got = smoothing.guided_filter(f32(guide), f32(affine), radius=3, eps=1e-6)
    np.testing.assert_allclose(got, affine, atol=1e-3)


def test_refine_detail_matches_its_formula_and_adds_nothing_to_a_flat_content():
    content, output = random_content(20, 18, seed=6), random_content(20, 18, seed=7) * 0.5 + 0.25
    detail = content - reference_guided_filter(content, content, 8, 0.01)
    want = np.clip(output + detail, 0, 1)
    np.testing.assert_allclose(smoothing.refine_detail(f32(output), f32(content)), want, atol=2e-5)
    flat = np.full((20, 18, 3), 0.4)
    np.testing.assert_allclose(smoothing.refine_detail(f32(output), f32(flat)), output, atol=1e-6)


@pytest.mark.slow  # compile-heavy: keeps the default suite under 5 minutes; CI runs it via -m slow
def test_refine_detail_restores_fine_texture_but_not_strong_edges():
    # A flat, posterised output over a content with low-contrast texture (variance below the
    # ridge) and one strong step (variance far above it): the texture comes back, the step,
    # which the guided filter keeps in its smooth layer, is not added twice.
    rng = np.random.default_rng(8)
    texture = 0.03 * rng.standard_normal((24, 64, 1)) * np.ones(3)
    content = np.full((24, 64, 3), 0.3) + texture
    content[:, 32:] += 0.4
    output = np.full((24, 64, 3), 0.5)
    added = np.asarray(smoothing.refine_detail(f32(output), f32(content))) - output
    away = np.r_[0:16, 48:64]  # columns whose windows and their neighbours' miss the step
    assert np.corrcoef(added[:, away].ravel(), texture[:, away].ravel())[0, 1] > 0.9
    assert abs(added[:, 32:40].mean() - added[:, 24:32].mean()) < 0.1 * 0.4  # under a tenth of the step


def test_refine_detail_jit_and_grad():
    content, output = f32(random_content(12, 10, seed=9)), f32(random_content(12, 10, seed=10) * 0.5 + 0.2)
    fn = jax.jit(functools.partial(smoothing.refine_detail, radius=2))
    np.testing.assert_allclose(fn(output, content), smoothing.refine_detail(output, content, radius=2), atol=1e-6)
    # Inside [0, 1] the refine only adds a term that does not depend on the output.
    g = jax.grad(lambda o: jnp.sum(fn(o, content) * jnp.arange(o.size).reshape(o.shape) / o.size))(output)
    assert np.all(np.isfinite(g))
    inside = np.asarray((fn(output, content) > 0) & (fn(output, content) < 1))
    np.testing.assert_allclose(np.asarray(g)[inside], (np.arange(output.size).reshape(output.shape) / output.size)[inside],
                               rtol=1e-6)
