"""The matting Laplacian of a content image (Levin, Lischinski & Weiss 2008), in two forms.

Conventions: `content` is an image (`jaxstyle.images`); vectors `v` (and outputs
`image`) are `[H, W, C]`. Everything is computed in the dtype of `content`
(float32 by default, genuinely float64 under `jax.enable_x64(True)` with float64 input).
Batches come from `jax.vmap`.

With windows w_k of radius r (|w| = (2r+1)^2 pixels) lying entirely inside the image
(centres at least r from every border, as in the original DPST code), window mean colour
mu_k `[3]`, covariance Sigma_k `[3, 3]` (divided by |w|) and
Delta_k = (Sigma_k + eps/|w| I3)^{-1}:

    L_ij = sum_{k: i, j in w_k} ( delta_ij - (1 + (I_i - mu_k)^T Delta_k (I_j - mu_k)) / |w| ).

The photorealism energy of an output O is sum_c v_c^T L v_c with v_c = O[..., c] flattened.

Two forms of the same L:

- explicit (`SparseLaplacian`, `matting_laplacian`): each pixel's row against its
  (4r+1) x (4r+1) neighbourhood, stored by diagonal (as scipy's DIA format): one `[H, W]`
  map per offset of `offsets(r)` (zero out of the image); `matvec` is (4r+1)^2 shifted
  multiply-adds.
- matrix-free (`MattingOperator`, `matting_operator`; He, Sun & Tang 2010): per-window
  mu_k and Delta_k only; `matvec` uses box sums (`jaxstyle.boxfilter`) whose cost does
  not grow with r (direct sums up to 7x7 windows, per-block prefix/suffix sums beyond).

Numerics. L is badly conditioned per window: Delta_k reaches |w|/eps ~ 1e8 where the
window is flat or its colours lie on a line (grey, sky gradients), and inverting Sigma_k
by cofactors in float32 then gives entries of L wrong by hundreds on real photos. Neither
form does that. With X the window's centred colours `[|w|, 3]` and
A = [X; sqrt(eps) I3] = Q R (Gram-Schmidt, twice), R^T R = |w| (Sigma_k + eps/|w| I3):

- the explicit form uses X Delta_k X^T = |w| Q1 Q1^T (Q1: the first |w| rows of Q), so
  each window block delta - 1/|w| - Q1 Q1^T is bounded and accurate to rounding;
- the matrix-free form keeps Delta_k factored, F_k = sqrt(|w|) R^{-1}, Delta_k = F_k F_k^T,
  and applies it as F_k (F_k^T c).

In float32 both forms stay within about 3e-5 (relative) of a float64 reference on
photos, where an explicit cofactor inverse does not (tests/test_laplacian.py). Box sums
are direct or per-block prefix and suffix sums
(van Herk / Gil-Werman), so their rounding grows with the window, not with the image as
with one long cumsum.
"""

from __future__ import annotations

import dataclasses
import functools
from numbers import Real

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.boxfilter import box_spread, box_sum, windows_per_pixel
from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.images import check_image

__all__ = [
    "DEFAULT_EPS", "DEFAULT_RADIUS", "MattingOperator", "SparseLaplacian", "build_laplacian", "laplacian_matvec",
    "laplacian_residual_map", "matting_laplacian", "matting_operator", "offsets", "photorealism_loss",
    "quadratic_energy", "resolve_form", "window_size",
]

DEFAULT_RADIUS = 1
DEFAULT_EPS = 1e-7
FORMS: tuple[str, ...] = ("auto", "sparse", "matrix_free")
# "auto" uses the matrix-free form from this many pixels up: the explicit form stores
# (4r+1)^2 values per pixel (25 x 4 bytes at r = 1: 420 MB at 2048 x 2048).
AUTO_MATRIX_FREE_PIXELS = 2048 * 2048


def window_size(radius: int) -> int:
    """|w| = (2r+1)^2, the number of pixels in one window."""
    return (2 * radius + 1) ** 2


def offsets(radius: int) -> tuple[tuple[int, int], ...]:
    """The (dy, dx) of each of `SparseLaplacian.diagonals`, row-major over [-2r, 2r]^2."""
    span = range(-2 * radius, 2 * radius + 1)
    return tuple((dy, dx) for dy in span for dx in span)


# ----------------------------------------------------------------------------- checks


def _check_settings(radius: int, eps: float, form: str = "auto") -> None:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 1:
        raise JaxstyleError(f"radius must be an integer >= 1, got {radius!r}")
    if isinstance(eps, Real) and not eps > 0:
        raise JaxstyleError(f"eps must be > 0 (the matting regulariser, typically 1e-7), got {eps!r}")
    if form not in FORMS:
        raise JaxstyleError(f"unknown Laplacian form {form!r}{did_you_mean(form, FORMS)}; "
                            f"choose one of {', '.join(FORMS)}")


def _check_content(content: jax.Array, radius: int) -> jax.Array:
    content = jnp.asarray(check_image(content, "content"))
    size = 2 * radius + 1
    if content.shape[0] < size or content.shape[1] < size:
        raise JaxstyleError(f"content {content.shape[0]}x{content.shape[1]} is smaller than one "
                            f"{size}x{size} window (radius {radius}): use a larger image or a smaller radius")
    return content


def _check_vector(v: jax.Array, hw: tuple[int, int]) -> jax.Array:
    v = jnp.asarray(v)
    if v.ndim != 3 or tuple(v.shape[:2]) != tuple(hw):
        raise JaxstyleError(f"expected v of shape [{hw[0]}, {hw[1]}, C] to match the content image, "
                            f"got {tuple(v.shape)}")
    return v


# ----------------------------------------------------------------------------- windows

# Full float32 products: TF32/bf16 passes (the GPU default) would be amplified by Delta ~ 1e8.
_einsum = functools.partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)



def _window_stack(x: jax.Array, radius: int) -> jax.Array:
    """Each inside window's pixels, row-major: `[H, W, C] -> [H-2r, W-2r, |w|, C]`."""
    h, w = x.shape[0] - 2 * radius, x.shape[1] - 2 * radius
    size = 2 * radius + 1
    return jnp.stack([x[dy:dy + h, dx:dx + w] for dy in range(size) for dx in range(size)], axis=2)


def _window_qr(content: jax.Array, radius: int, eps) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per window: mean colour `[h, w, 3]`, Q1 `[h, w, |w|, 3]` and R `[h, w, 3, 3]`.

    A = [X; sqrt(eps) I3] with X the window's centred colours, A = Q R by modified
    Gram-Schmidt applied twice (orthogonal to rounding, since cond(A) <= ~1/sqrt(eps)),
    so that R^T R = X^T X + eps I3 = |w| (Sigma + eps/|w| I3) and Q1 = X R^{-1}.
    """
    n = window_size(radius)
    colours = _window_stack(content, radius)                       # [h, w, n, 3]
    mean = jnp.mean(colours, axis=2)                               # [h, w, 3]
    centred = colours - mean[:, :, None, :]
    ridge = jnp.sqrt(jnp.asarray(eps, content.dtype)) * jnp.eye(3, dtype=content.dtype)
    a = jnp.concatenate([centred, jnp.broadcast_to(ridge, (*centred.shape[:2], 3, 3))], axis=2)
    columns: list[jax.Array] = []
    for j in range(3):
        col = a[..., j]                                            # [h, w, n + 3]
        for _ in range(2):
            for q in columns:
                col = col - jnp.sum(q * col, axis=-1, keepdims=True) * q
        columns.append(col / jnp.linalg.norm(col, axis=-1, keepdims=True))
    q = jnp.stack(columns, axis=-1)                                # [h, w, n + 3, 3]
    r = _einsum("hwmi,hwmj->hwij", q, a)                            # [h, w, 3, 3], upper triangular
    return mean, q[:, :, :n], jnp.triu(r)


# Windows up to this many pixels (r = 1) get Q1 from `_window_q1_maps`, one `[h, w]` map per
# entry; larger ones from `_window_qr`, whose graph (compile time) does not grow with |w|.
UNROLLED_QR_MAX_WINDOW = 9


def _window_q1_maps(content: jax.Array, radius: int, eps) -> list[list[jax.Array]]:
    """Q1 of `_window_qr` as maps: `q1[c][p]` is `[h, w]`, column c < 3, window position p < |w|.

    Small windows run the same Gram-Schmidt (twice) on Python lists of 2-D maps: every step
    is then an elementwise pass that XLA:CPU fuses and vectorises (faster than reducing over
    the short minor axis of `[h, w, |w| + 3]`), at a graph size that grows as |w|.
    """
    n = window_size(radius)
    if n > UNROLLED_QR_MAX_WINDOW:
        _, q1, _ = _window_qr(content, radius, eps)                # [h, w, n, 3]
        return [[q1[:, :, p, c] for p in range(n)] for c in range(3)]
    size = 2 * radius + 1
    h, w = content.shape[0] - 2 * radius, content.shape[1] - 2 * radius

    def dot(xs, ys):
        return functools.reduce(jnp.add, [x * y for x, y in zip(xs, ys)])

    colours = [[content[dy:dy + h, dx:dx + w, c] for dy in range(size) for dx in range(size)]
               for c in range(3)]                                  # [3][n] of [h, w]
    ridge = jnp.sqrt(jnp.asarray(eps, content.dtype))
    zero = jnp.zeros((), content.dtype)
    columns: list[list[jax.Array]] = []
    for j, colour in enumerate(colours):
        mean = functools.reduce(jnp.add, colour) / n
        col = [x - mean for x in colour] + [jnp.broadcast_to(ridge if i == j else zero, (h, w)) for i in range(3)]
        for _ in range(2):
            for q in columns:
                proj = dot(q, col)
                col = [x - proj * y for x, y in zip(col, q)]
        scale = 1 / jnp.sqrt(dot(col, col))
        columns.append([x * scale for x in col])
    return [col[:n] for col in columns]


def _upper_inverse(r: jax.Array) -> jax.Array:
    """Inverse of upper-triangular `[..., 3, 3]` matrices, in closed form."""
    a, b, c = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    d, e, f = r[..., 1, 1], r[..., 1, 2], r[..., 2, 2]
    zero = jnp.zeros_like(a)
    rows = [[1 / a, -b / (a * d), (b * e - c * d) / (a * d * f)],
            [zero, 1 / d, -e / (d * f)],
            [zero, zero, 1 / f]]
    return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


# ----------------------------------------------------------------------------- explicit form


@dataclasses.dataclass(frozen=True)
class SparseLaplacian:
    """L as each pixel's row against its (4r+1)^2 neighbourhood, stored by diagonal.

    `diagonals[j][y, x]` is L between pixel (y, x) and pixel (y + dy, x + dx), where
    (dy, dx) = `offsets(radius)[j]`; zero where that pixel is outside the image. Separate
    `[H, W]` maps rather than one `[H, W, (4r+1)^2]` array: interleaving them costs as much
    as computing them, and `matvec` reads them either way.
    A pytree: the maps are the leaves, `radius` is static.
    """

    diagonals: tuple[jax.Array, ...]  # (4r+1)^2 maps, each [H, W]
    radius: int = DEFAULT_RADIUS

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the content image."""
        return tuple(self.diagonals[0].shape[-2:])

    @property
    def values(self) -> jax.Array:
        """The diagonals stacked as `[H, W, (4r+1)^2]` (a copy; for inspection and tests)."""
        return jnp.stack(self.diagonals, axis=-1)

    def matvec(self, v: jax.Array) -> jax.Array:
        """L v for `v [H, W, C] -> [H, W, C]`, applied to each channel."""
        v = _check_vector(v, self.shape)
        return _sparse_matvec(tuple(self.diagonals), v, self.radius)

    def to_dense(self) -> np.ndarray:
        """L as a dense numpy `[H*W, H*W]` matrix (row-major pixels); for small images and tests."""
        h, w = self.shape
        dense = np.zeros((h * w, h * w), np.asarray(self.diagonals[0]).dtype)
        ys, xs = np.mgrid[:h, :w]
        for diagonal, (dy, dx) in zip(self.diagonals, offsets(self.radius)):
            diagonal = np.asarray(diagonal)
            inside = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
            dense[(ys * w + xs)[inside], ((ys + dy) * w + xs + dx)[inside]] = diagonal[inside]
        return dense


jax.tree_util.register_dataclass(SparseLaplacian, data_fields=["diagonals"], meta_fields=["radius"])


@functools.partial(jax.jit, static_argnames="radius")
def _sparse_diagonals(content: jax.Array, eps, radius: int) -> tuple[jax.Array, ...]:
    """`SparseLaplacian.diagonals`: one `[H, W]` map per offset (see the module docstring).

    Window k (top-left corner) holds pixel i = k + p at its position p; its block entry
    G_k(p, q) = delta_pq - 1/|w| - Q1[k, p] . Q1[k, q] lands in i's row at offset
    d = q - p. So each offset's `[H, W]` map is the sum, over position pairs (p, q) with
    q - p = d, of the `[h, w]` map G(p, q) shifted by p: |w|^2 shifted 2-D adds (G is
    symmetric in p, q, so |w| (|w| + 1) / 2 three-term products), all elementwise.

    Only the offsets d in the "forward" half (d > 0 row-major, and d = 0) are summed; L is
    symmetric, so the map of -d is the map of d shifted by d (L_{i, i-d} = L_{i-d, i}). That
    halves the work and makes the stored L exactly symmetric.
    """
    n = window_size(radius)
    size = 2 * radius + 1
    q = _window_q1_maps(content, radius, eps)                      # [3][n] of [h, w]
    zero = jnp.zeros((), content.dtype)
    terms: dict[tuple[int, int], list[jax.Array]] = {}
    for p in range(n):
        for p2 in range(p, n):                                      # p2 >= p: d = pos(p2) - pos(p) >= 0
            block = (float(p == p2) - 1.0 / n) - (q[0][p] * q[0][p2] + q[1][p] * q[1][p2] + q[2][p] * q[2][p2])
            # entry of pixel k + p against k + p2: the map shifted by p into [H, W]
            (ay, ax), (by, bx) = divmod(p, size), divmod(p2, size)
            shifted = jax.lax.pad(block, zero, [(ay, 2 * radius - ay, 0), (ax, 2 * radius - ax, 0)])
            terms.setdefault((by - ay, bx - ax), []).append(shifted)
    forward = {d: functools.reduce(jnp.add, maps) for d, maps in terms.items()}

    def value_map(d: tuple[int, int]) -> jax.Array:
        if d in forward:
            return forward[d]
        dy, dx = -d[0], -d[1]                                       # values[i, d] = values[i + d, -d]
        return jax.lax.pad(forward[(dy, dx)], zero, [(dy, -dy, 0), (dx, -dx, 0)])

    return tuple(value_map(d) for d in offsets(radius))


@functools.partial(jax.jit, static_argnames="radius")
def _sparse_matvec(diagonals: tuple[jax.Array, ...], v: jax.Array, radius: int) -> jax.Array:
    height, width = v.shape[:2]
    reach = 2 * radius
    padded = jnp.pad(v, ((reach, reach), (reach, reach), (0, 0)))
    out = jnp.zeros(v.shape, jnp.result_type(diagonals[0], v))
    for diagonal, (dy, dx) in zip(diagonals, offsets(radius)):
        shifted = padded[reach + dy:reach + dy + height, reach + dx:reach + dx + width]  # v at i + d
        out = out + diagonal[:, :, None] * shifted
    return out


def matting_laplacian(content: jax.Array, *, radius: int = DEFAULT_RADIUS,
                      eps: float = DEFAULT_EPS) -> SparseLaplacian:
    """The explicit matting Laplacian of `content [H, W, 3]` (see the module docstring)."""
    _check_settings(radius, eps)
    content = _check_content(content, radius)
    return SparseLaplacian(diagonals=_sparse_diagonals(content, eps, radius=int(radius)), radius=int(radius))


# ----------------------------------------------------------------------------- matrix-free form


@dataclasses.dataclass(frozen=True)
class MattingOperator:
    """L applied with box sums (He, Sun & Tang 2010) from per-window statistics.

    Delta_k is kept factored, Delta_k = F_k F_k^T with F_k = sqrt(|w|) R_k^{-1} upper
    triangular, and applied as F_k (F_k^T c): in float32 this is 10-1000x more accurate
    than multiplying by Delta_k itself on near-degenerate windows. Colours are stored minus
    their image mean (L does not change when all colours shift). A pytree: the arrays are
    leaves, `radius` is static.
    """

    content: jax.Array  # [H, W, 3], centred colours
    mean: jax.Array  # [H-2r, W-2r, 3], window means mu_k of `content`
    inv_cov_factor: jax.Array  # [H-2r, W-2r, 3, 3], F_k, upper triangular
    radius: int = DEFAULT_RADIUS

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the content image."""
        return tuple(self.content.shape[-3:-1])

    @property
    def inv_cov(self) -> jax.Array:
        """Delta_k = (Sigma_k + eps/|w| I3)^{-1}: `[H-2r, W-2r, 3, 3]`."""
        return _einsum("...ik,...jk->...ij", self.inv_cov_factor, self.inv_cov_factor)

    def matvec(self, v: jax.Array) -> jax.Array:
        """L v for `v [H, W, C] -> [H, W, C]`, applied to each channel."""
        v = _check_vector(v, self.shape)
        return _matrix_free_matvec(self.content, self.mean, self.inv_cov_factor, v, self.radius)


jax.tree_util.register_dataclass(MattingOperator, data_fields=["content", "mean", "inv_cov_factor"],
                                 meta_fields=["radius"])


@functools.partial(jax.jit, static_argnames="radius")
def _operator_arrays(content: jax.Array, eps, radius: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    centred = content - jnp.mean(content, axis=(0, 1))
    mean, _, r = _window_qr(centred, radius, eps)
    factor = np.sqrt(window_size(radius)) * _upper_inverse(r)
    return centred, mean, factor


@functools.partial(jax.jit, static_argnames="radius")
def _matrix_free_matvec(content: jax.Array, mean: jax.Array, factor: jax.Array, v: jax.Array,
                        radius: int) -> jax.Array:
    """(L v)_i = n_i v_i - (A_i^T I_i + B_i), with A, B the sums of a_k, b_k over windows k containing i.

    Per window: a_k = Delta_k (mean(I v) - mu_k mean(v)), b_k = mean(v) - a_k^T mu_k.
    Derivation: sum_{j in w_k} (1 + (I_i - mu_k)^T Delta_k (I_j - mu_k)) v_j / |w|
    = mean(v) + (I_i - mu_k)^T a_k = a_k^T I_i + b_k, since sum_j (I_j - mu_k) v_j / |w|
    = mean(I v) - mu_k mean(v); the delta_ij term summed over k gives n_i v_i, n_i the
    number of inside windows holding i. There is no overall |w| factor: He et al.'s
    "|w| p_i" is n_i p_i with windows everywhere.
    """
    height, width = v.shape[:2]
    n = window_size(radius)
    v = v - jnp.mean(v, axis=(0, 1))                                # L 1 = 0: improves rounding
    v_mean = box_sum(v, radius) / n                                 # [h, w, C]
    iv_mean = box_sum(content[:, :, :, None] * v[:, :, None, :], radius) / n  # [h, w, 3, C]
    cov = iv_mean - mean[:, :, :, None] * v_mean[:, :, None, :]
    a = _einsum("hwij,hwjc->hwic", factor, _einsum("hwji,hwjc->hwic", factor, cov))  # F F^T c: [h, w, 3, C]
    b = v_mean - _einsum("hwi,hwic->hwc", mean, a)                  # [h, w, C]
    a_sum, b_sum = box_spread(a, radius), box_spread(b, radius)
    count = windows_per_pixel(height, width, radius, v.dtype)
    return count[:, :, None] * v - (_einsum("hwi,hwic->hwc", content, a_sum) + b_sum)


def matting_operator(content: jax.Array, *, radius: int = DEFAULT_RADIUS,
                     eps: float = DEFAULT_EPS) -> MattingOperator:
    """The matrix-free matting Laplacian of `content [H, W, 3]` (see the module docstring)."""
    _check_settings(radius, eps)
    content = _check_content(content, radius)
    centred, mean, factor = _operator_arrays(content, eps, radius=int(radius))
    return MattingOperator(content=centred, mean=mean, inv_cov_factor=factor, radius=int(radius))


# ----------------------------------------------------------------------------- entry points

Laplacian = SparseLaplacian | MattingOperator


def resolve_form(shape: tuple[int, ...], radius: int, form: str = "auto") -> str:
    """The form that `form` stands for on a `shape` image ("sparse" or "matrix_free").

    "auto" is "matrix_free" when radius > 1 (its matvec cost does not grow with r, the
    explicit form's grows as (4r+1)^2) or when H*W >= `AUTO_MATRIX_FREE_PIXELS` (the
    explicit form's memory); "sparse" otherwise (one fused pass of 25 multiply-adds).
    """
    _check_settings(radius, DEFAULT_EPS, form)
    if form != "auto":
        return form
    if radius > 1 or shape[0] * shape[1] >= AUTO_MATRIX_FREE_PIXELS:
        return "matrix_free"
    return "sparse"


def build_laplacian(content: jax.Array, *, radius: int = DEFAULT_RADIUS, eps: float = DEFAULT_EPS,
                    form: str = "auto") -> Laplacian:
    """An operator with `.matvec(v)` for L of `content [H, W, 3]`: build once, apply many times."""
    content = jnp.asarray(check_image(content, "content"))
    if resolve_form(content.shape, radius, form) == "sparse":
        return matting_laplacian(content, radius=radius, eps=eps)
    return matting_operator(content, radius=radius, eps=eps)


def quadratic_energy(op: Laplacian, image: jax.Array) -> jax.Array:
    """sum_c v_c^T L v_c for `image [H, W, C]`: a scalar whose gradient is 2 L v."""
    image = jnp.asarray(image)
    return jnp.sum(image * op.matvec(image))


def laplacian_matvec(content: jax.Array, v: jax.Array, *, radius: int = DEFAULT_RADIUS,
                     eps: float = DEFAULT_EPS, form: str = "auto") -> jax.Array:
    """L v for `v [H, W, C]`, L the matting Laplacian of `content [H, W, 3]`."""
    op = build_laplacian(content, radius=radius, eps=eps, form=form)
    return op.matvec(v)


def photorealism_loss(content: jax.Array, image: jax.Array, *, radius: int = DEFAULT_RADIUS,
                      eps: float = DEFAULT_EPS) -> jax.Array:
    """The photorealism regulariser of Luan et al.: sum_c v_c^T L v_c for `image [H, W, C]`."""
    return quadratic_energy(build_laplacian(content, radius=radius, eps=eps), image)


def laplacian_residual_map(content: jax.Array, image: jax.Array, *, radius: int = DEFAULT_RADIUS,
                           eps: float = DEFAULT_EPS) -> jax.Array:
    """Per-pixel energy density sum_c v_c (L v_c): `[H, W]`, summing to `photorealism_loss`."""
    op = build_laplacian(content, radius=radius, eps=eps)
    image = jnp.asarray(image)
    return jnp.sum(image * op.matvec(image), axis=-1)
