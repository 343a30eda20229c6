"""Automatic masks: k-means against numpy references and goldens (eager, jit, vmap), the
region checks, the colour-guided refinement, and auto_masks on synthetic photos (the bundled
VGG-16): the same texture gets the same label in both images, one texture gives one label,
determinism, and the saved masks read back to the same regions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_toml
from jaxstyle import automask, masks
from jaxstyle.errors import JaxstyleError

H, W = 48, 64


# ----------------------------------------------------------------------------- synthetic photos


def scene(sky_mask: np.ndarray, seed: int) -> np.ndarray:
    """float32 [h, w, 3]: a smooth blue gradient 'sky' where `sky_mask`, noisy green 'grass' elsewhere."""
    h, w = sky_mask.shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    sky = np.stack([0.45 + 0.15 * y, 0.62 + 0.1 * y, 0.92 - 0.05 * x], -1)
    grass = (np.array([0.22, 0.5, 0.16]) + 0.08 * rng.standard_normal((h, w, 3))
             + 0.1 * rng.standard_normal((h, w, 1)))
    return np.clip(np.where(sky_mask[..., None], sky, grass), 0, 1).astype(np.float32)


def content_sky(h=H, w=W):
    """Sky above a wavy horizon, about 40% of the picture."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    return y < 0.4 + 0.1 * np.sin(5 * x)


def style_sky(h=56, w=48):
    """Sky in a band on the right, about 35% of a portrait picture of another size."""
    return np.broadcast_to(np.arange(w) >= 0.65 * w, (h, w))


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture(scope="module")
def pair():
    return scene(content_sky(), 0), scene(style_sky(), 100)


@pytest.fixture(scope="module")
def auto_pair(vgg16, pair):
    return automask.auto_masks(vgg16, *pair, seed=0)


# ----------------------------------------------------------------------------- auto_masks


def test_same_texture_gets_the_same_label_in_both_images(auto_pair):
    assert auto_pair.labels == ("blue", "green")  # palette names, largest region first
    assert auto_pair.content.shape == (H, W, 2) and auto_pair.style.shape == (56, 48, 2)
    for stack in (auto_pair.content, auto_pair.style):
        assert stack.dtype == np.float32
        np.testing.assert_array_equal(stack.sum(-1), 1.0)  # one-hot
    content_ids, style_ids = auto_pair.content.argmax(-1), auto_pair.style.argmax(-1)
    sky = np.bincount(content_ids[content_sky()]).argmax()  # whichever label the content's sky got
    assert iou(content_ids == sky, content_sky()) > 0.8
    assert iou(style_ids == sky, style_sky()) > 0.8  # the SAME label marks the style's sky
    assert iou(content_ids != sky, ~content_sky()) > 0.8
    assert iou(style_ids != sky, ~style_sky()) > 0.8
    assert "2 region(s)" in auto_pair.notes[0]


def test_deterministic_for_a_seed(vgg16, pair, auto_pair):
    again = automask.auto_masks(vgg16, *pair, seed=0)
    assert again.labels == auto_pair.labels
    np.testing.assert_array_equal(again.content, auto_pair.content)
    np.testing.assert_array_equal(again.style, auto_pair.style)


@pytest.mark.slow  # compile-heavy; keeps the default suite under 5 minutes on 2 cores: CI runs it via -m slow
def test_one_texture_gives_one_region(vgg16):
    grass = np.zeros((H, W), bool)
    pair = automask.auto_masks(vgg16, scene(grass, 1), scene(grass, 2))
    assert pair.labels == ("blue",)
    np.testing.assert_array_equal(pair.content, 1.0)
    np.testing.assert_array_equal(pair.style, 1.0)


def test_regions_asks_for_a_number(vgg16, pair):
    one = automask.auto_masks(vgg16, *pair, regions=1)
    assert one.labels == ("blue",)
    assert one.content.shape == (H, W, 1)


def test_saved_masks_read_back_to_the_same_regions(auto_pair, tmp_path):
    content_path, style_path = automask.save_masks(auto_pair, tmp_path / "masks")
    assert (content_path.name, style_path.name) == ("content_mask.png", "style_mask.png")
    back = masks.parse_mask_pair(content_path, style_path)  # as --content-mask/--style-mask read them
    assert back.labels == auto_pair.labels
    np.testing.assert_array_equal(back.content, auto_pair.content)
    np.testing.assert_array_equal(back.style, auto_pair.style)
    with pytest.raises(JaxstyleError, match="exists"):
        automask.save_masks(auto_pair, tmp_path / "masks")
    automask.save_masks(auto_pair, tmp_path / "masks", overwrite=True)


def test_bad_inputs_say_what_to_do(vgg16, pair):
    content, style = pair
    with pytest.raises(JaxstyleError, match="regions must be an integer from 1 to 9"):
        automask.auto_masks(vgg16, content, style, regions=10)
    with pytest.raises(JaxstyleError, match="max_regions"):
        automask.auto_masks(vgg16, content, style, max_regions=0)
    with pytest.raises(JaxstyleError, match="float image"):
        automask.auto_masks(vgg16, (content * 255).astype(np.uint8), style)
    with pytest.raises(JaxstyleError, match=r"\[H, W, 3\]"):
        automask.auto_masks(vgg16, content[..., 0], style)
    with pytest.raises(JaxstyleError, match="has no layer"):
        automask.auto_masks(vgg16, content, style, layers=("relu9_1",))


# ----------------------------------------------------------------------------- features


def test_feature_grid_is_unit_norm_on_the_first_layers_grid(vgg16):
    image = scene(content_sky(), 0)
    grid = jax.jit(automask.feature_grid, static_argnames=("layers", "pad"))(vgg16, image)
    assert grid.shape == (H // 4, W // 4, 256 + 512 + 512)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(grid), axis=-1), 1.0, rtol=1e-4)
    assert automask.grid_stride("vgg16", "relu3_1") == 4
    assert automask.grid_stride("vgg19", "relu5_1") == 16
    with pytest.raises(JaxstyleError, match="multiple"):
        automask.feature_grid(vgg16, image, pad=6)


def test_stability_golden():
    # Left half e1, right half e2: only the two columns at the step change (by |e1-e2|^2 = 2
    # to one of four neighbours), so c = 0.5 there and 0 elsewhere.
    h, w = 6, 8
    grid = np.zeros((h, w, 2), np.float32)
    grid[:, :4, 0] = 1.0
    grid[:, 4:, 1] = 1.0
    change = np.zeros((h, w))
    change[:, 3:5] = 0.5
    expected = 1.0 / (1.0 + (change / change.mean()) ** 2)
    np.testing.assert_allclose(jax.jit(automask.stability)(grid), expected, rtol=1e-6)
    np.testing.assert_array_equal(automask.stability(np.ones((h, w, 3), np.float32)), 1.0)


# ----------------------------------------------------------------------------- k-means


def blobs(counts, centres, seed=0, spread=0.05):
    """Points around `centres` [K, D], `counts` [G, K] per image; returns points, group, truth."""
    rng = np.random.default_rng(seed)
    points, group, truth = [], [], []
    for g, row in enumerate(counts):
        for k, n in enumerate(row):
            points.append(centres[k] + spread * rng.standard_normal((n, len(centres[k]))))
            group += [g] * n
            truth += [k] * n
    return np.concatenate(points).astype(np.float32), np.array(group), np.array(truth)


def weighted_means(points, group, labels, k):
    """Reference: centroids with each image weighing one half (numpy, float64)."""
    counts = np.bincount(group)
    weight = 0.5 / counts[group]
    return np.stack([(weight[labels == j, None] * points[labels == j]).sum(0) / weight[labels == j].sum()
                     for j in range(k)])


CENTRES = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
COUNTS = [[300, 40, 0], [20, 60, 200]]  # different proportions; blob 2 in one image only


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
def test_kmeans_finds_the_blobs_with_images_weighing_the_same(mode):
    points, group, truth = blobs(COUNTS, CENTRES)
    fn = functools.partial(automask.joint_kmeans, num_clusters=3, key=jax.random.PRNGKey(0))
    if mode == "jit":
        fit = jax.jit(fn)(points, group)
    elif mode == "vmap":  # the same points twice
        both = jax.vmap(fn)(jnp.stack([points, points]), jnp.stack([group, group]))
        np.testing.assert_array_equal(both.labels[0], both.labels[1])
        fit = jax.tree_util.tree_map(lambda a: a[0], both)
    else:
        fit = fn(points, group)
    labels = np.asarray(fit.labels)
    for k in range(3):  # a permutation of the truth
        assert len(np.unique(labels[truth == k])) == 1
    assert len(np.unique(labels)) == 3
    np.testing.assert_allclose(fit.centroids, weighted_means(points, group, labels, 3), atol=1e-5)
    distances = ((points[:, None] - np.asarray(fit.centroids)[None]) ** 2).sum(-1)
    weight = 0.5 / np.bincount(group)[group]
    np.testing.assert_allclose(fit.inertia, (weight * distances.min(1)).sum(), rtol=1e-4)


def test_kmeans_one_cluster_is_the_mean_of_the_two_image_means():
    # 1000 points at A in one image, 10 at B in the other: each image weighs one half.
    points = np.concatenate([np.zeros((1000, 2)), np.ones((10, 2))]).astype(np.float32)
    group = np.repeat([0, 1], [1000, 10])
    fit = automask.joint_kmeans(points, group, num_clusters=1, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(fit.centroids, [[0.5, 0.5]], atol=1e-6)
    # Points of zero weight do not count.
    trust = np.concatenate([np.ones(1000), np.zeros(5), np.ones(5)])
    shifted = points.copy()
    shifted[1000:1005] = 100.0
    fit = automask.joint_kmeans(shifted, group, num_clusters=1, key=jax.random.PRNGKey(0),
                                point_weights=trust)
    np.testing.assert_allclose(fit.centroids, [[0.5, 0.5]], atol=1e-6)


def test_kmeans_with_fewer_active_clusters_equals_a_smaller_k():
    points, group, _ = blobs(COUNTS, CENTRES, seed=3, spread=0.3)
    key = jax.random.PRNGKey(7)
    small = automask.joint_kmeans(points, group, num_clusters=2, key=key)
    masked_fn = jax.jit(functools.partial(automask.joint_kmeans, num_clusters=4, key=key))
    masked = masked_fn(points, group, active=2)
    np.testing.assert_array_equal(masked.labels, small.labels)
    np.testing.assert_allclose(masked.centroids[:2], small.centroids, atol=1e-6)
    np.testing.assert_allclose(masked.inertia, small.inertia, rtol=1e-6)


def test_assign_is_the_nearest_centroid():
    rng = np.random.default_rng(0)
    points, centroids = rng.standard_normal((50, 4)), rng.standard_normal((3, 4))
    expected = ((points[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(jax.jit(automask.assign)(points, centroids), expected)


# ----------------------------------------------------------------------------- merging


def grid_points(label_grids, centres, spread=0.02, seed=0):
    """Points for two label grids (content, style): centre of each cell's label plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([g.ravel() for g in label_grids])
    points = centres[labels] + spread * rng.standard_normal((len(labels), centres.shape[1]))
    group = np.repeat([0, 1], [g.size for g in label_grids])
    return points.astype(np.float32), group, [g.shape for g in label_grids]


def halves(h=8, w=8, split=4, axis=1):
    grid = np.zeros((h, w), int)
    if axis == 1:
        grid[:, split:] = 1
    else:
        grid[split:] = 1
    return grid


def test_merge_keeps_separate_regions_present_in_both_images():
    centres = np.eye(2)  # squared distance 2
    points, group, shapes = grid_points([halves(axis=1), halves(split=3, axis=0)], centres)
    kept = automask.merge_regions(points, group, centres, shapes)
    assert len(kept) == 2


def test_merge_drops_a_region_only_one_image_has():
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6]])  # 2 is nearest to 0
    content = halves()
    style = halves(split=3, axis=0)
    style[:, :3] = 2  # label 2 only in the style
    points, group, shapes = grid_points([content, style], centres)
    kept = automask.merge_regions(points, group, centres, shapes)
    assert len(kept) == 2
    # Its cells joined region 0: the merged centre is the weighted mean of 0's and 2's points.
    labels = np.where(np.concatenate([content.ravel(), style.ravel()]) == 1, 1, 0)
    expected = weighted_means(points, group, labels, 2)
    order = np.argsort([-np.mean(labels == k) for k in range(2)])
    np.testing.assert_allclose(np.sort(kept, axis=0), np.sort(expected[order], axis=0), atol=1e-5)


def test_merge_joins_close_centres_and_thin_bands():
    close = np.array([[0.0, 0.0], [0.3, 0.0]])  # squared distance 0.09 < 0.2
    points, group, shapes = grid_points([halves(), halves(split=2)], close)
    assert len(automask.merge_regions(points, group, close, shapes)) == 1
    assert len(automask.merge_regions(points, group, close, shapes, min_separation=0.05)) == 2
    # A one-cell band along the boundary (6% of each image, no interior cells), nearest to 0;
    # its share passes min_share=0.05, so only the interior check removes it.
    band = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.7, 0.0, 0.7]])
    grids = [halves(w=16, split=8), halves(w=16, split=6)]
    for g, x in zip(grids, (8, 6)):
        g[:, x] = 2
    points, group, shapes = grid_points(grids, band)
    assert len(automask.merge_regions(points, group, band, shapes, min_share=0.05)) == 2
    assert len(automask.merge_regions(points, group, band, shapes, min_share=0.05, min_interior=0.0)) == 3


# ----------------------------------------------------------------------------- refinement


def test_boundary_cells_golden():
    onehot = np.eye(2, dtype=np.float32)[halves(h=4, w=10, split=5)]
    expected = np.zeros((4, 10), bool)
    expected[:, 3:7] = True  # two cells on each side of the step
    np.testing.assert_array_equal(automask.boundary_cells(onehot, width=2), expected)
    np.testing.assert_array_equal(automask.boundary_cells(onehot[:, :5]), False)


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
def test_refinement_moves_a_boundary_to_the_colour_edge(mode):
    # Colour edge at x = 37; the grid (stride 4) puts the label boundary at x = 32.
    h, w, edge_x = 24, 64, 37
    image = np.zeros((h, w, 3), np.float32)
    image[:, edge_x:] = [0.9, 0.8, 0.1]
    image[:, :edge_x] = [0.1, 0.2, 0.7]
    grid = np.eye(2, dtype=np.float32)[halves(h=h // 4, w=w // 4, split=8)]
    fn = functools.partial(automask.refine_regions, radius=16, uncertain=1)
    if mode == "jit":
        soft = jax.jit(fn)(grid, image)
    elif mode == "vmap":
        soft = jax.vmap(fn)(np.stack([grid, grid]), np.stack([image, image]))[1]
    else:
        soft = fn(grid, image)
    soft = np.asarray(soft)
    assert soft.shape == (h, w, 2)
    np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-5)  # soft maps stay a partition
    np.testing.assert_array_equal(soft.argmax(-1), np.broadcast_to(np.arange(w) >= edge_x, (h, w)))


# ----------------------------------------------------------------------------- the CLI

TINY_TOML = tiny_toml(side=64, depth=3, steps=2, zero_tol=True, pixels=True)


@pytest.fixture
def cli_inputs(pair, tmp_path, monkeypatch):
    from jaxstyle import writing

    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))  # the bundled VGG-16
    paths = {"content": tmp_path / "content.png", "style": tmp_path / "style.png",
             "config": tmp_path / "tiny.toml"}
    writing.save_image(pair[0], paths["content"])
    writing.save_image(pair[1], paths["style"])
    paths["config"].write_text(TINY_TOML)
    return paths


def run_cli(*args):
    from typer.testing import CliRunner

    from jaxstyle import cli

    return CliRunner().invoke(cli.app, ["transfer", *map(str, args)])


def test_cli_passes_the_automatic_masks_to_stylize(cli_inputs, tmp_path, monkeypatch):
    """The wiring, with stylize replaced by a stand-in that records what it was given."""
    from jaxstyle import single, writing

    seen = {}

    def fake_stylize(content, style, *, content_mask, style_mask, config, weights, **_):
        seen.update(content=content, style=style, pair=masks.parse_mask_pair(content_mask, style_mask),
                    weights=weights)
        return single.Result(image=content, stages={}, history={}, terms={}, status={},
                             seconds={"total": 0.0}, notes=(), config=config)

    monkeypatch.setattr(single, "stylize", fake_stylize)
    out, folder = tmp_path / "out.png", tmp_path / "masks"
    result = run_cli(cli_inputs["content"], cli_inputs["style"], "-o", out, "-c", cli_inputs["config"],
                     "--masks", "auto", "--save-masks", folder, "--regions", 2)
    assert result.exit_code == 0, (result.output, result.exception)
    # the content photo at its own size (here also the working size); the masks as label maps
    assert seen["content"].shape == (H, W, 3) and seen["weights"] is not None
    assert len(seen["pair"].labels) == 2 and seen["pair"].style.shape[:2] == (56, 48)
    saved = masks.parse_mask_pair(folder / "content_mask.png", folder / "style_mask.png")
    assert saved.labels == ("blue", "green")
    # the same regions, the same label in both photos (whatever the labels are called)
    order = [int(np.argmax(seen["pair"].content[saved.content[..., k] > 0].sum(0))) for k in range(2)]
    np.testing.assert_array_equal(saved.content, seen["pair"].content[..., order])
    np.testing.assert_array_equal(saved.style, seen["pair"].style[..., order])
    assert writing.read_metadata(out)["masks"] == "auto"


@pytest.mark.slow
def test_cli_transfer_with_automatic_masks_saves_them(cli_inputs, tmp_path):
    from jaxstyle import reading, writing

    out, folder = tmp_path / "out.png", tmp_path / "masks"
    result = run_cli(cli_inputs["content"], cli_inputs["style"], "-o", out, "-c", cli_inputs["config"],
                     "--masks", "auto", "--save-masks", folder, "-q")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "note: automatic masks: 2 region(s)" in result.stderr
    meta = writing.read_metadata(out)
    assert meta["masks"] == "auto" and meta["auto_labels"] == ["blue", "green"]
    back = masks.parse_mask_pair(folder / "content_mask.png", folder / "style_mask.png")
    assert back.labels == ("blue", "green")
    assert back.content.shape == (H, W, 2) and back.style.shape == (56, 48, 2)
    assert reading.load_image(out).shape == (H, W, 3)
    # The masks are not replaced without --force.
    again = run_cli(cli_inputs["content"], cli_inputs["style"], "-o", tmp_path / "b.png", "-c",
                    cli_inputs["config"], "--masks", "auto", "--save-masks", folder, "-q")
    assert again.exit_code == 2 and "exists: pass --force" in again.stderr


@pytest.mark.parametrize("extra, message", [
    (["--masks", "automatic"], "--masks must be one of given, auto, none"),
    (["--regions", "2"], "add --masks auto"),
    (["--save-masks", "m"], "add --masks auto"),
    (["--masks", "auto", "--regions", "12"], "--regions must be from 1 to 9"),
    (["--masks", "none", "--content-mask", "c.png", "--style-mask", "s.png"], "drop them"),
])
def test_cli_mask_options_are_checked_before_any_work(cli_inputs, tmp_path, extra, message):
    out = tmp_path / "out.png"
    result = run_cli(cli_inputs["content"], cli_inputs["style"], "-o", out, *extra)
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()
