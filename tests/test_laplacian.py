"""Matting Laplacian: both forms against a scipy reference built from Levin's formula,
properties of L, jit / vmap / grad, float64, and errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from jaxstyle import boxfilter
from jaxstyle import laplacian as lap
from jaxstyle.errors import JaxstyleError

FORMS = ("sparse", "matrix_free")
EPS = 1e-7
RTOL = {np.float32: 1e-4, np.float64: 1e-5}


def reference_laplacian(image: np.ndarray, radius: int = 1, eps: float = EPS) -> sp.csr_matrix:
    """L of Levin et al. (2008) in float64, one window at a time, windows inside the image only.

    L = sum_k [delta_ij - (1 + (I_i - mu_k)^T (Sigma_k + eps/|w| I)^{-1} (I_j - mu_k)) / |w|].
    """
    image = np.asarray(image, np.float64)
    h, w, _ = image.shape
    n = (2 * radius + 1) ** 2
    index = np.arange(h * w).reshape(h, w)
    rows, cols, vals = [], [], []
    for y in range(radius, h - radius):
        for x in range(radius, w - radius):
            window = np.s_[y - radius:y + radius + 1, x - radius:x + radius + 1]
            colours = image[window].reshape(n, 3)
            mu = colours.mean(axis=0)
            sigma = (colours - mu).T @ (colours - mu) / n
            delta = np.linalg.inv(sigma + eps / n * np.eye(3))
            block = np.eye(n) - (1 + (colours - mu) @ delta @ (colours - mu).T) / n
            pixels = index[window].ravel()
            rows.append(np.repeat(pixels, n))
            cols.append(np.tile(pixels, n))
            vals.append(block.ravel())
    data = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
    return sp.csr_matrix(data, shape=(h * w, h * w))


def apply(matrix: sp.csr_matrix, v: np.ndarray) -> np.ndarray:
    """Reference L v for `v [H, W, C]`."""
    h, w, c = v.shape
    return (matrix @ np.asarray(v, np.float64).reshape(h * w, c)).reshape(h, w, c)


def relative_error(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def random_pair(shape, seed, channels=3):
    rng = np.random.default_rng(seed)
    return rng.random((*shape, 3)), rng.random((*shape, channels))


# Property tests reuse these shapes, so each jitted kernel compiles once per case.
CASES = [((7, 9), 1), ((12, 10), 2), ((16, 16), 1)]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape,radius", CASES)
def test_matvec_matches_reference_float32(form, shape, radius):
    content, v = random_pair(shape, seed=sum(shape) + radius)
    content = content.astype(np.float32)
    ref = apply(reference_laplacian(content, radius), v.astype(np.float32))
    out = lap.laplacian_matvec(jnp.asarray(content), jnp.asarray(v, jnp.float32), radius=radius, form=form)
    assert out.dtype == jnp.float32 and out.shape == v.shape
    assert relative_error(out, ref) < RTOL[np.float32]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape,radius", CASES)
def test_matvec_matches_reference_float64(form, shape, radius):
    content, v = random_pair(shape, seed=sum(shape) + radius, channels=2)
    ref = apply(reference_laplacian(content, radius), v)
    with jax.enable_x64(True):
        out = lap.laplacian_matvec(jnp.asarray(content), jnp.asarray(v), radius=radius, form=form)
        assert out.dtype == jnp.float64
        err = relative_error(out, ref)
    assert err < RTOL[np.float64]
    assert err < 1e-9  # genuinely float64: float32 arithmetic cannot get below ~1e-7


def test_explicit_values_are_the_reference_matrix():
    for shape, radius in CASES[:2]:
        content = np.random.default_rng(3).random((*shape, 3))
        with jax.enable_x64(True):
            op = lap.matting_laplacian(jnp.asarray(content), radius=radius)
            assert op.values.shape == (*shape, (4 * radius + 1) ** 2) and op.values.dtype == jnp.float64
            dense = op.to_dense()
        np.testing.assert_allclose(dense, reference_laplacian(content, radius).toarray(), atol=1e-9)


@pytest.mark.parametrize("shape,radius,image", [((7, 9), 1, "random"), ((16, 16), 1, "grey"),
                                                 ((12, 10), 2, "random"), ((12, 10), 2, "grey")])
def test_explicit_values_equal_the_reference_entries_in_both_dtypes(shape, radius, image):
    """The build sums per-pair maps shifted into place (offset by offset): every entry,
    borders included, must be Levin's L; grey content makes every window near-degenerate."""
    content = np.random.default_rng(sum(shape) + radius).random((*shape, 3))  # shapes of CASES: no recompiles
    if image == "grey":
        content = np.repeat(content[..., :1], 3, axis=-1)
    ref = reference_laplacian(content.astype(np.float32), radius).toarray()
    op = lap.matting_laplacian(jnp.asarray(content, jnp.float32), radius=radius)
    assert op.values.dtype == jnp.float32 and op.values.shape == (*shape, (4 * radius + 1) ** 2)
    np.testing.assert_allclose(op.to_dense(), ref, atol=2e-5 * np.abs(ref).max())
    ref = reference_laplacian(content, radius).toarray()
    with jax.enable_x64(True):
        dense = lap.matting_laplacian(jnp.asarray(content), radius=radius).to_dense()
    np.testing.assert_allclose(dense, ref, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["astronaut", "grey"])
def test_float32_is_accurate_on_near_degenerate_photo_windows(name):
    """Real photos have flat and one-colour-line windows where Delta ~ 1e8: a cofactor
    inverse in float32 is off by 10-70% on such windows, and Gram-Schmidt without its second
    pass by ~2e-4 in the matrix-free form; both forms must stay near float64."""
    from skimage import data
    from skimage.transform import resize

    photo = data.astronaut() if name == "astronaut" else np.repeat(data.camera()[..., None], 3, axis=-1)
    content = resize(photo, (16, 16), anti_aliasing=True).astype(np.float32)
    v = np.random.default_rng(4).random((16, 16, 3)).astype(np.float32)
    ref = apply(reference_laplacian(content), v)
    for form in FORMS:
        out = lap.laplacian_matvec(jnp.asarray(content), jnp.asarray(v), form=form)
        assert relative_error(out, ref) < RTOL[np.float32], form


# ----------------------------------------------------------------------------- properties

PROPERTY_CASES = [("sparse", (16, 16), 1), ("matrix_free", (16, 16), 1), ("matrix_free", (12, 10), 2)]


@pytest.mark.parametrize("form,shape,radius", PROPERTY_CASES)
def test_symmetric_annihilates_constants_and_positive(form, shape, radius):
    rng = np.random.default_rng(5)
    content = jnp.asarray(rng.random((*shape, 3)), jnp.float32)
    op = lap.build_laplacian(content, radius=radius, form=form)
    u, v = (jnp.asarray(rng.random((*shape, 3)), jnp.float32) for _ in range(2))
    ulv, vlu = jnp.sum(u * op.matvec(v)), jnp.sum(v * op.matvec(u))
    np.testing.assert_allclose(ulv, vlu, rtol=1e-4)
    constant = jnp.full((*shape, 3), 0.7, jnp.float32)
    scale = float(jnp.max(jnp.abs(op.matvec(v))))
    assert float(jnp.max(jnp.abs(op.matvec(constant)))) < 1e-5 * scale
    for seed in range(3):
        w = jnp.asarray(np.random.default_rng(seed).normal(size=(*shape, 3)), jnp.float32)
        assert float(lap.quadratic_energy(op, w)) > 0


@pytest.mark.parametrize("form", FORMS)
def test_affine_function_of_content_has_near_zero_energy(form):
    """Levin et al.: colour channels (and constants) span L's near-null space, so an output
    that is a global affine map of the content colours costs ~eps per window."""
    rng = np.random.default_rng(6)
    content = rng.random((16, 16, 3)).astype(np.float32)
    matrix, offset = rng.normal(size=(3, 3)), rng.normal(size=3)
    affine = jnp.asarray(content @ matrix + offset, jnp.float32)
    noise = jnp.asarray(rng.random((16, 16, 3)), jnp.float32)
    op = lap.build_laplacian(jnp.asarray(content), form=form)
    e_affine, e_noise = float(lap.quadratic_energy(op, affine)), float(lap.quadratic_energy(op, noise))
    assert e_noise > 1.0
    assert abs(e_affine) < 1e-5 * e_noise
    # and an affine map of a *different* image is not in the null space
    other = jnp.asarray(rng.random((16, 16, 3)) @ matrix + offset, jnp.float32)
    assert float(lap.quadratic_energy(op, other)) > 0.1 * e_noise


@pytest.mark.parametrize("form", FORMS)
def test_grad_of_energy_is_twice_lv_and_the_step_compiles_once(form):
    content, v = random_pair((16, 16), seed=7)
    content, v = content.astype(np.float32), v.astype(np.float32)
    ref = apply(reference_laplacian(content), v)
    op = lap.build_laplacian(jnp.asarray(content), form=form)
    assert isinstance(op, lap.SparseLaplacian if form == "sparse" else lap.MattingOperator)
    traces = []

    @jax.jit
    def gradient(op, image):  # the operator is a pytree argument: arrays traced, radius static
        traces.append(1)
        return jax.grad(lambda x: lap.quadratic_energy(op, x))(image)

    for scale in (1.0, 2.0, 3.0):
        grad = gradient(op, jnp.asarray(scale * v))
        assert relative_error(grad, 2 * scale * ref) < 1e-4
    assert len(traces) == 1
    if form == "sparse":  # the form photorealism_loss picks at this size
        grad = jax.grad(lambda x: lap.photorealism_loss(jnp.asarray(content), x))(jnp.asarray(v))
        assert relative_error(grad, 2 * ref) < 1e-4


def test_energy_and_residual_map_match_reference():
    content, v = random_pair((12, 10), seed=8)
    content, v = content.astype(np.float32), v.astype(np.float32)
    lv = apply(reference_laplacian(content, 2), v)
    density = lap.laplacian_residual_map(jnp.asarray(content), jnp.asarray(v), radius=2)
    assert density.shape == (12, 10)
    np.testing.assert_allclose(density, np.sum(v * lv, axis=-1), rtol=1e-3, atol=1e-3)
    loss = lap.photorealism_loss(jnp.asarray(content), jnp.asarray(v), radius=2)
    np.testing.assert_allclose(loss, np.sum(v * lv), rtol=1e-4)
    np.testing.assert_allclose(jnp.sum(density), loss, rtol=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_jit_and_vmap_agree_with_single_calls(form):
    rng = np.random.default_rng(9)
    contents = jnp.asarray(rng.random((3, 7, 9, 3)), jnp.float32)
    vs = jnp.asarray(rng.random((3, 7, 9, 3)), jnp.float32)
    matvec = functools.partial(lap.laplacian_matvec, radius=1, form=form)
    singles = np.stack([np.asarray(matvec(c, v)) for c, v in zip(contents, vs)])
    np.testing.assert_allclose(jax.jit(matvec)(contents[0], vs[0]), singles[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(matvec)(contents, vs), singles, rtol=1e-5, atol=1e-5)
    # a batch of operators built under vmap, applied inside jit
    ops = jax.vmap(lambda c: lap.build_laplacian(c, form=form))(contents)
    energies = jax.jit(jax.vmap(lap.quadratic_energy))(ops, vs)
    np.testing.assert_allclose(energies, np.sum(singles * np.asarray(vs), axis=(1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("width", [3, 5, 9, 15])
def test_box_sums_match_convolution_and_keep_precision_on_long_axes(width):
    """Direct (narrow) and per-block prefix/suffix (wide) sums: rounding does not grow with
    the axis as it does with one long float32 cumsum (off by ~1e-2 here)."""
    x = np.random.default_rng(11).random((4096, 2)) + 100.0
    ref = np.stack([np.convolve(x[:, j], np.ones(width), mode="valid") for j in range(2)], axis=-1)
    for box in (boxfilter.box_sum_axis, boxfilter._box_sum_axis_blocked):
        out = np.asarray(box(jnp.asarray(x, jnp.float32), width, axis=0))
        assert out.shape == ref.shape
        assert np.max(np.abs(out - ref)) < 2e-4 * width
    np.testing.assert_allclose(boxfilter.box_sum_axis(jnp.asarray(x.T), width, axis=1), ref.T, rtol=1e-6)


def test_wide_windows_use_blocked_box_sums_and_match_reference():
    assert 2 * 4 + 1 > boxfilter.DIRECT_BOX_MAX_WIDTH
    content, v = random_pair((12, 10), seed=12)
    ref = apply(reference_laplacian(content, 4), v)
    with jax.enable_x64(True):
        out = lap.laplacian_matvec(jnp.asarray(content), jnp.asarray(v), radius=4)
        assert relative_error(out, ref) < 1e-9


def test_windows_per_pixel_counts_inside_windows():
    counts = np.asarray(boxfilter.windows_per_pixel(6, 7, 1, jnp.float32))
    ref = np.zeros((6, 7))
    for y in range(1, 5):
        for x in range(1, 6):
            ref[y - 1:y + 2, x - 1:x + 2] += 1
    np.testing.assert_array_equal(counts, ref)


def test_auto_form_rule():
    assert lap.resolve_form((64, 64, 3), 1) == "sparse"
    assert lap.resolve_form((64, 64, 3), 2) == "matrix_free"
    assert lap.resolve_form((2048, 2048, 3), 1) == "matrix_free"
    assert lap.resolve_form((2048, 2048, 3), 1, "sparse") == "sparse"


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 4), (2, 8, 8, 3)])
def test_rejects_content_that_is_not_hw3(shape):
    with pytest.raises(JaxstyleError, match=r"\[H, W, 3\].*" + r",\s*".join(map(str, shape))):
        lap.matting_laplacian(jnp.zeros(shape, jnp.float32))


def test_rejects_bad_vectors_sizes_and_settings():
    content = jnp.zeros((7, 9, 3), jnp.float32)
    for form in FORMS:
        op = lap.build_laplacian(content, form=form)
        with pytest.raises(JaxstyleError, match=r"\[7, 9, C\].*\(9, 7, 3\)"):
            op.matvec(jnp.zeros((9, 7, 3), jnp.float32))
        with pytest.raises(JaxstyleError, match=r"\(7, 9\)"):
            op.matvec(jnp.zeros((7, 9), jnp.float32))
    with pytest.raises(JaxstyleError, match="4x9 is smaller than one 5x5 window"):
        lap.laplacian_matvec(jnp.zeros((4, 9, 3)), jnp.zeros((4, 9, 3)), radius=2)
    with pytest.raises(JaxstyleError, match="did you mean 'sparse'"):
        lap.build_laplacian(content, form="sparce")
    with pytest.raises(JaxstyleError, match="radius"):
        lap.matting_laplacian(content, radius=0)
    with pytest.raises(JaxstyleError, match="eps"):
        lap.matting_operator(content, eps=0.0)
    with pytest.raises(JaxstyleError, match="float"):
        lap.matting_laplacian(jnp.zeros((7, 9, 3), jnp.uint8))
