"""The bilateral grid of affine maps (`jaxstyle.grid`) against a numpy reference written from
its formula, under jit, vmap and grad, and its properties: a grid holding one map reproduces
that map, a fit of an affine target recovers it, and slicing on the host tile by tile equals
the traced slice."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import synthetic_photo
from jaxstyle import grid as G
from jaxstyle.config import load_config
from jaxstyle.errors import JaxstyleError


def reference_slice(grid: np.ndarray, image: np.ndarray) -> np.ndarray:
    """out_p = sum over the 8 surrounding nodes of tent weights times the node's map, applied
    to [c_p - 1/2; 1]; node coordinates (i + 1/2) / H * (gh - 1) per axis and luma * (gd - 1)."""
    h, w, _ = image.shape
    gh, gw, gd = grid.shape[:3]
    luma = np.clip(image @ np.array(G.LUMA), 0, 1)
    out = np.zeros((h, w, 3))
    for y, x in itertools.product(range(h), range(w)):
        pos = ((y + 0.5) / h * (gh - 1), (x + 0.5) / w * (gw - 1), luma[y, x] * (gd - 1))
        maps = np.zeros((3, 4))
        for i, j, k in itertools.product(range(gh), range(gw), range(gd)):
            weight = np.prod([max(0.0, 1 - abs(p - n)) for p, n in zip(pos, (i, j, k))])
            maps += weight * grid[i, j, k]
        out[y, x] = maps @ np.append(image[y, x] - G.CENTRE, 1.0)
    return out


def random_grid(shape, seed=0, scale=0.2):
    rng = np.random.default_rng(seed)
    return (np.asarray(G.identity_grid((1, 1, 1)))[0, 0, 0] + scale * rng.standard_normal((*shape, 3, 4))
            ).astype(np.float32)


CASES = [((2, 2, 2), (5, 7)), ((3, 4, 5), (9, 6)), ((4, 2, 3), (8, 11))]


@pytest.mark.parametrize("shape,hw", CASES)
def test_slice_matches_the_formula(shape, hw):
    grid = random_grid(shape)
    image = synthetic_photo(*hw, seed=1)
    expected = reference_slice(grid.astype(np.float64), image.astype(np.float64))
    np.testing.assert_allclose(G.slice_grid(jnp.asarray(grid), jnp.asarray(image)), expected, atol=2e-5)
    np.testing.assert_allclose(jax.jit(G.slice_grid)(grid, image), expected, atol=2e-5)


def test_slice_under_vmap_equals_each_item():
    grids = np.stack([random_grid((3, 4, 5), seed) for seed in range(2)])
    images = np.stack([synthetic_photo(9, 6, seed) for seed in range(2)])
    batched = jax.vmap(G.slice_grid)(grids, images)
    for i in range(2):
        np.testing.assert_allclose(batched[i], G.slice_grid(grids[i], images[i]), atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_a_grid_holding_one_map_reproduces_that_map_exactly(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(2, 6, size=3))
    hw = tuple(int(n) for n in rng.integers(3, 40, size=2))
    affine = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
    image = rng.uniform(0, 1, (*hw, 3)).astype(np.float32)
    grid = np.broadcast_to(affine, (*shape, 3, 4))
    expected = (image - G.CENTRE) @ affine[:, :3].T + affine[:, 3]
    np.testing.assert_allclose(G.slice_grid(grid, image), expected, atol=1e-5)
    np.testing.assert_allclose(G.slice_grid(G.identity_grid(shape), image), image, rtol=0, atol=1e-7)


def test_fit_of_an_affine_target_recovers_it():
    image = synthetic_photo(24, 32, seed=2)
    affine = np.array([[0.8, 0.1, 0.0, 0.05], [0.0, 0.6, 0.2, 0.1], [0.1, 0.0, 0.5, -0.02]], np.float32)
    target = image @ affine[:, :3].T + affine[:, 3]
    grid = G.fit_grid(jnp.asarray(image), jnp.asarray(target), (3, 4, 4))
    np.testing.assert_allclose(G.slice_grid(grid, image), target, atol=1e-4)


def test_fit_of_a_local_look_beats_the_global_map():
    """A target made by a grid is fitted closer than the best single affine map can."""
    image = jnp.asarray(synthetic_photo(32, 48, seed=3))
    target = G.slice_grid(random_grid((3, 4, 4), seed=4, scale=0.1), image)
    fitted = G.slice_grid(G.fit_grid(image, target, (3, 4, 4)), image)
    affine = G.global_affine(image, target)
    best_global = (image - G.CENTRE) @ affine[:, :3].T + affine[:, 3]
    rmse = lambda x: float(jnp.sqrt(jnp.mean((x - target) ** 2)))  # noqa: E731
    assert rmse(fitted) < 0.6 * rmse(best_global)


def test_gradient_matches_central_differences():
    with jax.enable_x64(True):
        grid = jnp.asarray(random_grid((3, 3, 4), seed=5), jnp.float64)
        image = jnp.asarray(synthetic_photo(7, 9, seed=5), jnp.float64)
        weights = jnp.asarray(np.random.default_rng(6).standard_normal((7, 9, 3)))

        def loss(g, im):
            return jnp.sum(weights * G.slice_grid(g, im) ** 2)

        dg, dim = jax.grad(loss, argnums=(0, 1))(grid, image)
        rng = np.random.default_rng(7)
        for _ in range(4):
            direction = jnp.asarray(rng.standard_normal(grid.shape))
            step = 1e-6
            numeric = (loss(grid + step * direction, image) - loss(grid - step * direction, image)) / (2 * step)
            np.testing.assert_allclose(jnp.vdot(dg, direction), numeric, rtol=1e-6)
        # the image is the guide too: away from a luma level, the slice is smooth in it
        direction = jnp.asarray(rng.standard_normal(image.shape))
        step = 1e-7
        numeric = (loss(grid, image + step * direction) - loss(grid, image - step * direction)) / (2 * step)
        np.testing.assert_allclose(jnp.vdot(dim, direction), numeric, rtol=1e-5)


@pytest.mark.parametrize("hw", [(300, 530), (40, 700), (256, 256)])
def test_host_tiles_equal_the_traced_slice(hw):
    grid = random_grid((5, 6, 8), seed=8)
    photo = synthetic_photo(*hw, seed=8)
    np.testing.assert_allclose(G.slice_grid_host(grid, photo), np.clip(G.slice_grid(grid, photo), 0, 1), atol=2e-6)


def test_one_grid_slices_the_same_look_at_any_size():
    """Node positions are normalised: a downscaled photo gets the downscaled result."""
    grid = random_grid((3, 5, 4), seed=9, scale=0.05)
    photo = synthetic_photo(64, 96, seed=9)
    small = photo.reshape(32, 2, 48, 2, 3).mean((1, 3))
    big = np.asarray(G.slice_grid(grid, photo)).reshape(32, 2, 48, 2, 3).mean((1, 3))
    assert np.abs(np.asarray(G.slice_grid(grid, small)) - big).mean() < 2e-3


def test_bad_shapes_are_refused_with_the_shapes():
    with pytest.raises(JaxstyleError, match=r"\[gh, gw, gd, 3, 4\], got shape \(2, 2, 2, 3, 3\)"):
        G.slice_grid(np.zeros((2, 2, 2, 3, 3)), np.zeros((4, 4, 3)))
    with pytest.raises(JaxstyleError, match=r"image must be a float image \[H, W, 3\].* got shape \(2, 4, 4, 3\)"):
        G.slice_grid(G.identity_grid((2, 2, 2)), np.zeros((2, 4, 4, 3)))
    with pytest.raises(JaxstyleError, match="grid.cell"):
        G.grid_shape((10, 10), cell=0, depth=8)


@pytest.mark.parametrize("key,value", [("grid.flat", -1.0), ("grid.flat_sigma", 0.0), ("grid.smooth", -1.0)])
def test_bad_grid_weights_are_refused_when_settings_are_read(key, value):
    with pytest.raises(JaxstyleError, match=key):
        load_config("default", {key: value})


@pytest.mark.parametrize("long", [48, 256, 384, 512])
def test_buckets_share_few_shapes_and_stretch_little(long):
    from jaxstyle.sizing import bucket_shape, fit_max_side

    shapes = set()
    for ratio in np.linspace(0.3, 1, 50):
        for h, w in ((round(long * ratio), long), (long, round(long * ratio))):
            bh, bw = bucket_shape(h, w)
            assert ((bh >= bw) == (h >= w) or bh == bw) and max(bh, bw) == 8 * round(long / 8)
            if long >= 256:  # at most ~16% (+ px rounding, which dominates at tiny sizes)
                assert abs(np.log((bh / bw) / (h / w))) <= np.log(1 / 0.75) / 2 + 0.04
            shapes.add((bh, bw))
    assert len(shapes) <= 10
    assert bucket_shape(*fit_max_side(3000, 4000, 384)) == bucket_shape(*fit_max_side(2000, 3000, 384)) == (288, 384)
    assert bucket_shape(*fit_max_side(2160, 3840, 384)) == (216, 384)


def test_a_second_photo_of_another_size_and_aspect_traces_nothing_new(vgg16):
    """With working-size buckets, a grid run on a 3:2 photo after a 4:3 one reuses every program
    (no new trace, so no compile), and each result has its photo's own size (photos of at least
    `grid.TILE` px a side share the full-size tile program)."""
    from jaxstyle.config import load_config
    from jaxstyle.single import stylize

    cfg = load_config("default", {"max_side": 48, "buckets": True, "loss.content_layers": ["relu1_2"],
                               "loss.style_layers": ["relu1_1", "relu1_2"], "stage1.iterations": 2,
                               "stage2.iterations": 2, "stage1.chunk_size": 2, "stage2.chunk_size": 2})
    style = synthetic_photo(40, 40, seed=1)
    first = stylize(synthetic_photo(264, 352, seed=2), style, config=cfg, weights=vgg16)
    traces = []

    def listener(name, secs, **kwargs):
        if name == "/jax/core/compile/jaxpr_trace_duration":
            traces.append(kwargs.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        second = stylize(synthetic_photo(260, 390, seed=3), style, config=cfg, weights=vgg16)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert first.image.shape == (264, 352, 3) and second.image.shape == (260, 390, 3)
    assert first.working_size == second.working_size == (32, 48)
    assert traces == []


@pytest.mark.slow  # compiles the fast pipeline twice (~30 s on 2 cores)
def test_projection_keeps_a_pixel_solve_on_the_affine_model(vgg16):
    """`grid.project` replaces a pixel solve's result by its fit on the grid: the result is that
    look's slice (what the full-size stage carries), and no more locally non-affine than before."""
    from jaxstyle import metrics
    from jaxstyle.config import load_config
    from jaxstyle.single import stylize_image

    tiny = {"max_side": 48, "loss.content_layers": ["relu1_2"], "loss.style_layers": ["relu1_1", "relu1_2"],
            "stage1.iterations": 4, "stage2.iterations": 4, "smooth.enabled": False}
    content, style = jnp.asarray(synthetic_photo(32, 48, seed=4)), jnp.asarray(synthetic_photo(36, 40, seed=5))
    plain = stylize_image(vgg16, content, style, config=load_config("fast", tiny))
    projected = stylize_image(vgg16, content, style, config=load_config("fast", {**tiny, "grid.project": True}))
    look = G.fit_grid(content, plain, G.grid_shape((32, 48), cell=16, depth=8))
    np.testing.assert_allclose(projected, np.clip(G.slice_grid(look, content), 0, 1), atol=1e-5)
    assert float(metrics.laplacian_residual(content, projected)) <= float(metrics.laplacian_residual(content, plain))


def test_roughness_is_zero_along_luma_and_counts_spatial_changes():
    """`roughness`: a grid that changes only from luma level to level is smooth (0); one node
    changed by d in one coefficient adds d^2 over each of its spatial neighbours' edges."""
    shape = (3, 4, 5)
    tone = np.asarray(G.identity_grid(shape)).copy()
    tone[:, :, :, 0, 3] += np.linspace(0, 0.3, 5)  # a tone curve: offset by luma level only
    assert float(G.roughness(tone)) == pytest.approx(0.0, abs=1e-12)
    bumped = tone.copy()
    bumped[1, 1, 2, 0, 0] += 0.5  # an interior node: 2 row edges, 2 column edges
    rows, cols = 2 * 4 * 5 * 12, 3 * 3 * 5 * 12  # coefficients of each direction's edges
    expected = 2 * 0.25 / rows + 2 * 0.25 / cols
    assert float(G.roughness(bumped)) == pytest.approx(expected, rel=1e-5)


def reference_flat_variation(maps: np.ndarray, image: np.ndarray, sigma: float) -> float:
    """sum over 4-neighbour pairs p, q of exp(-|c_p - c_q|^2 / (2 sigma^2)) |M_p - M_q|^2, over H W."""
    h, w, _ = image.shape
    total = 0.0
    for y, x in itertools.product(range(h), range(w)):
        for dy, dx in ((1, 0), (0, 1)):
            if y + dy < h and x + dx < w:
                weight = np.exp(-np.sum((image[y, x] - image[y + dy, x + dx]) ** 2) / (2 * sigma ** 2))
                total += weight * np.sum((maps[y, x] - maps[y + dy, x + dx]) ** 2)
    return total / (h * w)


@pytest.mark.parametrize("sigma", [0.05, 0.3])
def test_flat_variation_matches_the_formula_under_jit_and_vmap(sigma):
    rng = np.random.default_rng(3)
    maps = rng.standard_normal((2, 6, 7, 3, 4)).astype(np.float32)
    images = np.stack([synthetic_photo(6, 7, seed) for seed in range(2)])
    fn = jax.jit(jax.vmap(lambda m, im: G.flat_variation(m, im, sigma=sigma)))
    batched = fn(maps, images)
    for i in range(2):
        expected = reference_flat_variation(maps[i].astype(np.float64), images[i].astype(np.float64), sigma)
        assert float(G.flat_variation(jnp.asarray(maps[i]), jnp.asarray(images[i]), sigma=sigma)) == pytest.approx(
            expected, rel=1e-5)
        assert float(batched[i]) == pytest.approx(expected, rel=1e-5)


def test_flat_variation_lets_maps_change_across_edges_only():
    """Maps that switch where the content's colour switches cost (almost) nothing; the same
    switch inside a flat area costs one unit per row per squared step; maps that are the same
    everywhere cost nothing wherever the content varies."""
    h, w = 8, 10
    two_halves = np.zeros((h, w, 3), np.float32)
    two_halves[:, w // 2:] = 0.8  # a hard edge between columns 4 and 5
    flat = np.full((h, w, 3), 0.4, np.float32)
    maps = np.zeros((h, w, 3, 4), np.float32)
    maps[:, w // 2:, 0, 3] = 0.5  # one offset switches between columns 4 and 5
    assert float(G.flat_variation(maps, two_halves, sigma=0.05)) < 1e-12
    assert float(G.flat_variation(maps, flat, sigma=0.05)) == pytest.approx(h * 0.25 / (h * w), rel=1e-6)
    same = np.broadcast_to(random_grid((1, 1, 1), seed=2)[0, 0, 0], (h, w, 3, 4))
    assert float(G.flat_variation(same, synthetic_photo(h, w, 4), sigma=0.05)) == 0.0


def test_slice_maps_applied_are_the_slice_and_flat_variation_has_the_right_gradient():
    with jax.enable_x64(True):
        grid = jnp.asarray(random_grid((3, 3, 4), seed=8), jnp.float64)
        image = jnp.asarray(synthetic_photo(7, 9, seed=8), jnp.float64)
        np.testing.assert_allclose(G.apply_maps(G.slice_maps(grid, image), image), G.slice_grid(grid, image),
                                   atol=1e-12)

        def loss(g):
            return G.flat_variation(G.slice_maps(g, image), image, sigma=0.1)

        dg = jax.grad(loss)(grid)
        rng = np.random.default_rng(9)
        for _ in range(3):
            direction = jnp.asarray(rng.standard_normal(grid.shape))
            step = 1e-6
            numeric = (loss(grid + step * direction) - loss(grid - step * direction)) / (2 * step)
            np.testing.assert_allclose(jnp.vdot(dg, direction), numeric, rtol=1e-6)


def test_grid_objective_adds_its_weighted_smoothness_terms(vgg16):
    """`GridObjective` scores the slice as `Objective` scores an image, and adds `smooth` times
    the grid's roughness plus `flat` times the sliced maps' flat variation (term "grid")."""
    from jaxstyle.objective import GridObjective, LossConfig, Objective, prepare_targets

    cfg = LossConfig(content_layers=("relu1_2",), style_layers=("relu1_1", "relu1_2"))
    content, style = synthetic_photo(16, 20, seed=1), synthetic_photo(16, 16, seed=2)
    targets = {**prepare_targets(vgg16, content, style, cfg=cfg), "guide": jnp.asarray(content)}
    look = jnp.asarray(random_grid((3, 4, 4), seed=3, scale=0.05))
    plain, plain_terms = Objective(cfg)(G.slice_grid(look, content), (vgg16, targets))
    smooth, flat = 2.0, 3.0
    loss, terms = jax.jit(GridObjective(cfg, smooth=smooth, flat=flat, flat_sigma=0.1))(look, (vgg16, targets))
    expected = smooth * G.roughness(look) + flat * G.flat_variation(G.slice_maps(look, content), content, sigma=0.1)
    assert float(expected) > 0  # the terms are there to be missed (jit and eager differ in float32)
    np.testing.assert_allclose(terms["grid"], expected, rtol=1e-4)
    np.testing.assert_allclose(loss, plain + expected, rtol=1e-4)
    for name, value in plain_terms.items():
        np.testing.assert_allclose(terms[name], value, rtol=1e-4)


def test_an_anchor_adds_the_slices_squared_distance_from_the_start_with_its_gradient(vgg16):
    """With targets holding an "anchor" (`Start`), `GridObjective(anchor=a)` adds `a` times the
    squared distance (Caffe pixel units) of the slice from the anchor look's slice, each node's
    difference weighted by its hold (the formula's reference slice here), to the term "grid", and
    its gradient matches central differences; without the target, or at weight 0, nothing is added."""
    from jaxstyle.objective import GridObjective, LossConfig, prepare_targets
    from jaxstyle.pipeline import Start

    cfg = LossConfig(content_layers=("relu1_2",), style_layers=("relu1_1",))
    content, style = synthetic_photo(16, 20, seed=1), synthetic_photo(16, 16, seed=2)
    targets = {**prepare_targets(vgg16, content, style, cfg=cfg), "guide": jnp.asarray(content)}
    look = jnp.asarray(random_grid((3, 4, 4), seed=3, scale=0.05))
    anchor = jnp.asarray(random_grid((3, 4, 4), seed=4, scale=0.05))
    hold = np.random.default_rng(6).random((3, 4)).astype(np.float32)
    weight = 1e-3
    base = GridObjective(cfg)(look, (vgg16, targets))[1]["grid"]
    anchored = {**targets, "anchor": Start(anchor, jnp.asarray(hold))}
    term = jax.jit(GridObjective(cfg, anchor=weight))(look, (vgg16, anchored))[1]["grid"] - base
    held = (np.asarray(look) - np.asarray(anchor)) * hold[:, :, None, None, None]  # the anchor's node differences, held
    distance = reference_slice(held, content)  # the slices' difference: slicing is linear in the grid
    np.testing.assert_allclose(term, weight * np.sum(np.square(255 * distance)), rtol=1e-4)
    assert float(GridObjective(cfg)(look, (vgg16, anchored))[1]["grid"]) == float(base)
    assert float(GridObjective(cfg, anchor=weight)(look, (vgg16, targets))[1]["grid"]) == float(base)

    def anchor_term(x):
        return GridObjective(cfg, anchor=weight)(x, (vgg16, anchored))[1]["grid"]

    direction = jnp.asarray(random_grid((3, 4, 4), seed=5, scale=1.0))
    h = 1e-2
    numeric = (anchor_term(look + h * direction) - anchor_term(look - h * direction)) / (2 * h)
    analytic = jnp.vdot(jax.grad(anchor_term)(look), direction)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-2)
