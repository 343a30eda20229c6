"""Automatic semantic masks: matching regions of a content and a style photo, found from the
VGG's own features (no extra model).

Conventions: images as in `jaxstyle.images`; a feature grid is `[h, w, D]`;
points are `[N, D]` (the content's grid cells, then the style's); region maps are
`[h, w, K]` or `[H, W, K]` (one-hot or soft). The result is a `jaxstyle.masks.MaskPair`
(content `[H, W, K]`, style `[Hs, Ws, K]`, both one-hot) whose labels are palette colour
names, largest region first, so `masks.labels_to_color` writes it and
`masks.parse_mask_pair` reads it back to the same regions (`save_masks`).

Method. The pure JAX pieces are `feature_grid`, `stability`, `joint_kmeans`, `assign`,
`boundary_cells` and `refine_regions` (jit-able; K static); choosing K is host-side numpy
(`merge_regions`).

1. `feature_grid`: both images are scaled so their longer side is `analysis_side` (small
   images are scaled up: on a 48x64 image relu5_1 sees the whole picture from every cell)
   and extended by a mirrored margin, cut off again after the VGG, so the network's zero
   padding does not make the border a region of its own. relu3_1, relu4_1 and relu5_1 are
   L2-normalised per pixel, resized bilinearly to the relu3_1 grid (stride 4) and weighted
   1/sqrt(3): every descriptor has unit norm, every layer counts the same.
2. `joint_kmeans`: the cells of BOTH images are clustered together, each image weighing
   one half whatever its size, so a cluster is a kind of region that can occur in both.
   Each cell is further weighted by its `stability` (1 / (1 + (c / mean c)^2), c its
   descriptor's change to its 4 neighbours): cells whose receptive fields straddle a region
   boundary change fast and count little, so they do not pull the centroids or form
   clusters of their own. k-means++ seeds from `seed`, a fixed number of Lloyd iterations,
   a few restarts (lowest weighted inertia kept). K = 1..`max_regions` are run at once
   (vmapped over the number of active clusters, one compilation).
3. `merge_regions` checks a clustering and merges what fails, one cluster at a time (its
   cells join their nearest remaining centroid): a cluster must hold at least `min_share`
   of EACH image (a region present in only one image has nothing to pair with); at least
   `min_interior` of its grid cells must be interior (all 8 neighbours in the same
   cluster: a band along a boundary is the features' blur, not a region); every two
   centroids must be at least `min_separation` apart (squared distance: two halves of one
   texture are about 0.1 apart, sky and buildings 0.3 or more).
4. K: the largest K whose clustering passes step 3 without any merge and whose closest
   two centroids are at least `relative_separation` times as far apart as those of the
   previous K kept (a band of boundary cells halfway between two regions is about half as
   far from each; K = 1, the whole image, is the fallback). `regions=N` runs K = N only,
   without the separation tests.
5. `refine_regions`: grid cells within 2 cells of another label are unknown; the known
   cells' one-hot maps are upsampled to the image and spread by a normalised
   `smoothing.joint_bilateral` guided by the image's own colours (radius 3 grid strides),
   argmax: boundaries follow the colour edges of each photo.
6. Clean-up: a label covering less than half of `min_share` of either refined image is
   dropped (its pixels take their next-best label), so every label exists in both images.

Results on the paper's example pairs, and how the number of regions found depends on the
input's size: `docs/automask_sheet.md`. There are no per-image offsets in feature space (for a
global change of look, day vs night): an offset can equally absorb a difference in the
regions' proportions.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import masks as masks_lib
from jaxstyle import vgg
from jaxstyle.errors import JaxstyleError
from jaxstyle.images import check_image
from jaxstyle.smoothing import joint_bilateral
from jaxstyle.vgg import VGGWeights

DEFAULT_LAYERS: tuple[str, ...] = ("relu3_1", "relu4_1", "relu5_1")
ANALYSIS_SIDE = 256  # longer side (px) at which the features are clustered
BORDER_PAD = 32  # mirrored margin (px) around each image before the VGG
KMEANS_ITERATIONS = 20
KMEANS_RESTARTS = 2
MIN_SHARE = 0.1  # a region covers at least this share of EACH image
MIN_INTERIOR = 0.6  # share of a region's grid cells whose 8 neighbours share its label
MIN_SEPARATION = 0.2  # squared distance between region centroids (unit-norm descriptors)
RELATIVE_SEPARATION = 0.7  # a further split must be at least this fraction as distinct
REFINE_EDGE = 0.08  # range sigma of the boundary refinement (RGB units, 0..1)
REFINE_STRIDES = 3.0  # refinement radius, in grid strides at the image's resolution
MIN_REFINE_RADIUS = 4  # px
MAX_REFINE_RADIUS = 24  # px
UNCERTAIN_CELLS = 2  # grid cells this close to another label are re-decided by colour
KNOWN_FLOOR = 1e-3  # filtered weight of known cells below which a pixel keeps the plain maps
CONTENT_MASK_FILE = "content_mask.png"
STYLE_MASK_FILE = "style_mask.png"


# ----------------------------------------------------------------------------- features


def grid_stride(arch: str, layer: str) -> int:
    """Pixels per cell of `layer`'s activation grid (2 per pooling before it)."""
    return 2 ** vgg.downsampling_path(arch, layer).count("pool")


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def feature_grid(weights: VGGWeights, image: jax.Array, *,
                 layers: Sequence[str] = DEFAULT_LAYERS, pad: int = BORDER_PAD) -> jax.Array:
    """Per-pixel descriptors `[H // s, W // s, D]` of `image` `[H, W, 3]` (s: first layer's stride).

    The image is extended by `pad` pixels of mirror reflection on every side (a multiple
    of s; those cells are cut off again). Each layer's activations are L2-normalised per
    pixel, resized bilinearly to the first layer's grid, normalised again and scaled by
    1/sqrt(len(layers)), so every descriptor has unit norm. D = sum of the layers' channels.
    """
    layers = vgg.check_layers(weights.arch, tuple(layers))
    stride = grid_stride(weights.arch, layers[0])
    if pad < 0 or pad % stride:
        raise JaxstyleError(f"pad must be a non-negative multiple of {layers[0]}'s stride {stride}, "
                            f"got {pad}")
    image = jnp.asarray(check_image(image, "image"), jnp.float32)
    if pad:
        image = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    feats = vgg.features(weights, image, layers)
    h, w = feats[layers[0]].shape[:2]
    scale = 1.0 / np.sqrt(len(layers))
    parts = []
    for name in layers:
        x = _unit(feats[name])
        if x.shape[:2] != (h, w):
            x = _unit(jax.image.resize(x, (h, w, x.shape[-1]), method="linear"))
        parts.append(scale * x)
    cut = pad // stride
    return jnp.concatenate(parts, axis=-1)[cut:h - cut, cut:w - cut]  # [h, w, D]


def stability(grid: jax.Array) -> jax.Array:
    """Per-cell weights `[h, w]` in (0, 1] of a feature grid `[h, w, D]`: 1 / (1 + (c / mean c)^2).

    c is the mean squared change of the descriptor to its 4 neighbours (edge-replicated):
    large where a cell's receptive field straddles a region boundary.
    """
    padded = jnp.pad(grid, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = grid.shape[:2]
    change = sum(jnp.sum(jnp.square(padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] - grid), -1)
                 for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))) / 4.0
    return 1.0 / (1.0 + jnp.square(change / jnp.maximum(jnp.mean(change), 1e-12)))


# ----------------------------------------------------------------------------- clustering


def _sqdist(x: jax.Array, c: jax.Array) -> jax.Array:
    """Squared Euclidean distances `[N, K]` between the rows of `x` `[N, D]` and `c` `[K, D]`."""
    cross = jnp.matmul(x, c.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(jnp.sum(x * x, -1)[:, None] - 2.0 * cross + jnp.sum(c * c, -1)[None, :], 0.0)


def _kmeans_pp(x: jax.Array, weight: jax.Array, num_clusters: int, key: jax.Array) -> jax.Array:
    """k-means++ seeds `[K, D]`: each next seed drawn with probability weight * distance^2.

    The first j seeds do not depend on `num_clusters`, so a run with fewer active clusters
    is a prefix of this one."""
    n = x.shape[0]
    first = jax.random.choice(jax.random.fold_in(key, 0), n, p=weight / jnp.sum(weight))
    centroids = jnp.zeros((num_clusters, x.shape[1]), x.dtype).at[0].set(x[first])
    nearest = jnp.sum(jnp.square(x - x[first]), -1)  # [N]
    for k in range(1, num_clusters):
        p = weight * nearest
        total = jnp.sum(p)
        p = jnp.where(total > 0, p / jnp.where(total > 0, total, 1.0), weight / jnp.sum(weight))
        pick = jax.random.choice(jax.random.fold_in(key, k), n, p=p)
        centroids = centroids.at[k].set(x[pick])
        nearest = jnp.minimum(nearest, jnp.sum(jnp.square(x - x[pick]), -1))
    return centroids


@dataclasses.dataclass(frozen=True)
class Clustering:
    """What `joint_kmeans` returns (a pytree of arrays).

    centroids `[K, D]`; labels `[N]` int32 (nearest centroid); inertia: weighted mean
    squared distance to the assigned centroid (a scalar).
    """

    centroids: jax.Array
    labels: jax.Array
    inertia: jax.Array


jax.tree_util.register_dataclass(Clustering, data_fields=["centroids", "labels", "inertia"],
                                 meta_fields=[])


def joint_kmeans(points: jax.Array, group: jax.Array, *, num_clusters: int, key: jax.Array,
                 point_weights: jax.Array | None = None,
                 active: jax.Array | int | None = None, num_groups: int = 2,
                 iterations: int = KMEANS_ITERATIONS, restarts: int = KMEANS_RESTARTS) -> Clustering:
    """k-means over the points of several images at once, each image weighing the same.

    Args:
      points: `[N, D]` descriptors of all images, concatenated.
      group: `[N]` int, which image each point comes from (0..num_groups-1).
      num_clusters: K (static).
      key: PRNG key for the k-means++ seeds of every restart.
      point_weights: `[N]` non-negative trust per point (None: all 1); within each image
        the weights are normalised, so each image still weighs 1 / num_groups.
      active: use only the first `active` of the K clusters (may be traced, e.g. vmapped
        over 1..K to try every K with one compilation); the others get no points and stay
        where they were seeded. None: all K.
      num_groups: number of images (static).
      iterations: Lloyd iterations (static; no early stop, so the cost is fixed).
      restarts: independent runs (static); the lowest weighted inertia wins.

    Returns:
      A `Clustering`.
    """
    if num_clusters < 1 or restarts < 1:
        raise JaxstyleError(f"num_clusters and restarts must be at least 1, got {num_clusters} "
                            f"and {restarts}")
    points = jnp.asarray(points, jnp.float32)
    group = jnp.asarray(group, jnp.int32)
    if points.ndim != 2 or group.shape != points.shape[:1]:
        raise JaxstyleError(f"points must be [N, D] and group [N], got shapes {tuple(points.shape)} "
                            f"and {tuple(group.shape)}")
    trust = (jnp.ones(group.shape, jnp.float32) if point_weights is None
             else jnp.asarray(point_weights, jnp.float32))  # [N]
    mass = jax.ops.segment_sum(trust, group, num_groups)  # [G]
    weight = trust / (num_groups * jnp.maximum(mass, 1e-12))[group]  # [N]; each image sums to 1/G

    used = jnp.arange(num_clusters) < (num_clusters if active is None else active)  # [K]

    def distances(x: jax.Array, centroids: jax.Array) -> jax.Array:
        return jnp.where(used, _sqdist(x, centroids), jnp.inf)  # [N, K]

    def one_run(run_key: jax.Array) -> Clustering:
        def step(_, centroids):
            labels = jnp.argmin(distances(points, centroids), axis=1)
            member = jax.nn.one_hot(labels, num_clusters, dtype=points.dtype) * weight[:, None]  # [N, K]
            mass_k = jnp.sum(member, 0)  # [K]
            means = jnp.matmul(member.T, points, precision=jax.lax.Precision.HIGHEST)
            centroids = jnp.where(mass_k[:, None] > 0, means / jnp.maximum(mass_k, 1e-12)[:, None],
                                  centroids)  # an empty cluster stays where it was
            return centroids

        centroids = jax.lax.fori_loop(0, iterations, step, _kmeans_pp(points, weight, num_clusters, run_key))
        d = distances(points, centroids)  # [N, K]
        return Clustering(centroids, jnp.argmin(d, axis=1).astype(jnp.int32),
                          jnp.sum(weight * jnp.min(d, axis=1)))

    runs = jax.vmap(one_run)(jax.random.split(key, restarts))
    best = jnp.argmin(runs.inertia)
    return jax.tree_util.tree_map(lambda a: a[best], runs)


def assign(points: jax.Array, centroids: jax.Array) -> jax.Array:
    """Index `[N]` (int32) of the nearest of `centroids` `[K, D]` for each row of `points` `[N, D]`."""
    return jnp.argmin(_sqdist(jnp.asarray(points), jnp.asarray(centroids)), axis=1).astype(jnp.int32)


# ----------------------------------------------------------------------------- refinement


def boundary_cells(regions: jax.Array, *, width: int = 1) -> jax.Array:
    """`[h, w]` bool: cells of the one-hot `regions` `[h, w, K]` with another label within `width` cells."""
    window = (2 * width + 1, 2 * width + 1, 1)
    pads = ((width, width), (width, width), (0, 0))
    seen = jax.lax.reduce_window(regions, jnp.zeros((), regions.dtype), jax.lax.max, window,
                                 (1, 1, 1), pads)  # [h, w, K]: label present nearby
    return jnp.sum(seen > 0.5, axis=-1) > 1


def refine_regions(regions: jax.Array, image: jax.Array, *, radius: int,
                   edge: float = REFINE_EDGE, uncertain: int = UNCERTAIN_CELLS) -> jax.Array:
    """One-hot grid maps `[h, w, K]` -> soft maps `[H, W, K]` that follow `image`'s colour edges.

    Cells within `uncertain` cells of another label are unknown (deep features blur across
    region boundaries). The maps are upsampled bilinearly to the image `[H, W, 3]`; the
    pixels that interpolate known cells only keep theirs, which are spread by a normalised
    `smoothing.joint_bilateral` guided by the image
    (`radius` px, static under jit; range sigma `edge`): each pixel takes the labels of
    nearby known pixels of similar colour. Pixels with no known pixel in reach keep the
    plainly filtered maps. Argmax the result for labels.
    """
    h, w = check_image(image, "image").shape[:2]
    regions = jnp.asarray(regions, jnp.float32)
    k = regions.shape[-1]
    known = 1.0 - boundary_cells(regions, width=uncertain).astype(jnp.float32)[..., None]  # [h, w, 1]
    up = jax.image.resize(jnp.concatenate([regions, known], axis=-1), (h, w, k + 1), method="linear")
    up_known = (up[..., k:] > 1.0 - KNOWN_FLOOR).astype(up.dtype)  # [H, W, 1]: only fully known pixels
    stack = jnp.concatenate([up[..., :k] * up_known, up_known, up[..., :k]], axis=-1)  # [H, W, 2K + 1]
    out = joint_bilateral(stack, image, radius=radius, edge=edge)
    num, den, plain = out[..., :k], out[..., k:k + 1], out[..., k + 1:]
    return jnp.where(den > KNOWN_FLOOR, num / jnp.maximum(den, KNOWN_FLOOR), plain)


# ----------------------------------------------------------------------------- choosing regions


def merge_regions(points: np.ndarray, group: np.ndarray, centroids: np.ndarray,
                  shapes: Sequence[tuple[int, int]], *, min_share: float = MIN_SHARE,
                  min_interior: float = MIN_INTERIOR,
                  min_separation: float = MIN_SEPARATION) -> np.ndarray:
    """Merge clusters until every one passes the checks of the module docstring; host-side.

    Args:
      points: `[N, D]` descriptors, content cells then style
        cells (row-major grids of `shapes`); group: `[N]` 0 (content) or 1 (style).
      centroids: `[K, D]` from `joint_kmeans`.
      shapes: `(h, w)` of the content's and the style's grid.

    Each round recomputes the centroids as weighted means (each image weighing one half),
    then removes one cluster, whose cells join their nearest remaining centroid: the one
    with the smallest share of either image while that is below `min_share`; else the one
    with the fewest interior cells while below `min_interior`; else the smaller of the two
    closest centroids while their squared distance is below `min_separation`.

    Returns the surviving centroids `[K', D]`, largest total share first.
    """
    points = np.asarray(points, np.float64)
    group = np.asarray(group)
    centroids = np.array(centroids, np.float64)
    counts = np.array([np.sum(group == g) for g in (0, 1)], np.float64)
    if np.any(counts == 0) or len(shapes) != 2 or sum(h * w for h, w in shapes) != len(points):
        raise JaxstyleError(f"merge_regions needs the points of both grids {list(shapes)} "
                            f"(got {len(points)} points, {counts.astype(int).tolist()} per image)")
    weight = 0.5 / counts[group]  # [N]
    while True:
        labels = np.argmin(_np_sqdist(points, centroids), axis=1)
        k = len(centroids)
        member = np.eye(k)[labels] * weight[:, None]  # [N, K]
        totals = member.sum(0)  # [K]
        centroids = np.where(totals[:, None] > 0, member.T @ points / np.maximum(totals, 1e-12)[:, None],
                             centroids)
        if k == 1:
            break
        shares = np.stack([np.bincount(labels[group == g], minlength=k) / counts[g] for g in (0, 1)]).min(0)
        interior = _interior_share(labels, group, shapes, k)
        gaps = _np_sqdist(centroids, centroids) + np.diag(np.full(k, np.inf))
        i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
        if shares.min() < min_share:
            drop = int(np.argmin(shares))
        elif interior.min() < min_interior:
            drop = int(np.argmin(interior))
        elif gaps[i, j] < min_separation:
            drop = int(i if totals[i] < totals[j] else j)
        else:
            break
        centroids = np.delete(centroids, drop, axis=0)
    return centroids[np.argsort(-totals, kind="stable")].astype(np.float32)


def _interior_share(labels: np.ndarray, group: np.ndarray, shapes: Sequence[tuple[int, int]],
                    k: int) -> np.ndarray:
    """Per cluster `[K]`: share of its cells (both grids) whose 8 neighbours share its label.

    Neighbours outside a grid repeat its edge cells."""
    inside = np.zeros(k)
    total = np.zeros(k)
    for g, (h, w) in enumerate(shapes):
        grid = labels[group == g].reshape(h, w)
        padded = np.pad(grid, 1, mode="edge")
        same = np.ones((h, w), bool)
        for dy in range(3):
            for dx in range(3):
                same &= padded[dy:dy + h, dx:dx + w] == grid
        inside += np.bincount(grid[same], minlength=k)
        total += np.bincount(grid.ravel(), minlength=k)
    return inside / np.maximum(total, 1)


def _min_gap(centroids: np.ndarray, single: float = np.inf) -> float:
    """Smallest squared distance between two of `centroids` `[K, D]` (`single` when K = 1)."""
    if len(centroids) < 2:
        return single
    return float(np.min(_np_sqdist(centroids, centroids) + np.diag(np.full(len(centroids), np.inf))))


def _np_sqdist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.sum(x * x, -1)[:, None] - 2.0 * x @ c.T + np.sum(c * c, -1)[None, :], 0.0)


# ----------------------------------------------------------------------------- the masks


_feature_grid_jit = jax.jit(feature_grid, static_argnames=("layers", "pad"))


@functools.partial(jax.jit, static_argnames=("num_clusters", "iterations", "restarts"))
def _try_every_k(points: jax.Array, group: jax.Array, key: jax.Array, trust: jax.Array, *, num_clusters: int,
                 active: jax.Array, iterations: int, restarts: int) -> Clustering:
    """`joint_kmeans` for each K in `active` `[C]`, stacked (centroids `[C, num_clusters, D]`)."""
    def one_k(a: jax.Array) -> Clustering:
        return joint_kmeans(points, group, num_clusters=num_clusters, key=key, point_weights=trust,
                            active=a, iterations=iterations, restarts=restarts)

    return jax.vmap(one_k)(active)

_refine_jit = jax.jit(refine_regions, static_argnames=("radius", "uncertain"))
_stability_jit = jax.jit(stability)
_resize_jit = jax.jit(jax.image.resize, static_argnames=("shape", "method", "antialias"))


def _analysis_image(image: np.ndarray, side: int) -> jax.Array:
    """`image` scaled (antialiased when shrinking) so its longer side is `side`."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return jnp.asarray(image)
    return _resize_jit(jnp.asarray(image), shape=(*size, 3), method="linear", antialias=True)


def auto_masks(weights: VGGWeights, content, style, *, regions: int | None = None,
               max_regions: int = 6, layers: Sequence[str] = DEFAULT_LAYERS, seed: int = 0,
               refine: bool = True, min_share: float = MIN_SHARE,
               min_interior: float = MIN_INTERIOR, min_separation: float = MIN_SEPARATION,
               relative_separation: float = RELATIVE_SEPARATION,
               analysis_side: int = ANALYSIS_SIDE) -> masks_lib.MaskPair:
    """Matching semantic masks for `content` `[H, W, 3]` and `style` `[Hs, Ws, 3]` (module docstring).

    Args:
      weights: the VGG whose features describe the regions.
      content, style: images (numpy or JAX).
      regions: ask for exactly this many regions (fewer when not enough regions are shared
        by both images: a note says so); None: choose up to `max_regions` automatically.
      max_regions: upper bound of the automatic choice.
      layers: VGG layers describing a pixel; the first one's grid is the clustering grid.
      seed: k-means++ seed; the same seed and inputs give the same masks.
      refine: snap region boundaries to each image's colour edges (else the grid's cells,
        upsampled by nearest neighbour).
      min_share, min_interior, min_separation, relative_separation: the checks of the module
        docstring (steps 3 and 4).
      analysis_side: the longer side (px) at which the features are clustered.

    Returns:
      A `MaskPair`: content `[H, W, K]`, style `[Hs, Ws, K]`, one-hot, 1 <= K <= 9, labels
      the first K palette colour names (largest region first); a note lists the regions.
    """
    content = check_image(np.asarray(content), "content").astype(np.float32)
    style = check_image(np.asarray(style), "style").astype(np.float32)
    palette = masks_lib.PALETTE
    limit = regions if regions is not None else max_regions
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= len(palette):
        what = "regions" if regions is not None else "max_regions"
        raise JaxstyleError(f"{what} must be an integer from 1 to {len(palette)} (one palette colour "
                            f"per region), got {limit!r}")
    if not isinstance(analysis_side, (int, np.integer)) or analysis_side < 16:
        raise JaxstyleError(f"analysis_side must be an integer of at least 16 px, got {analysis_side!r}")
    layers = vgg.check_layers(weights.arch, tuple(layers))
    stride = grid_stride(weights.arch, layers[0])
    pad = -(-BORDER_PAD // stride) * stride
    small = [_analysis_image(image, analysis_side) for image in (content, style)]
    grids = []
    for image, name in zip(small, ("content", "style")):
        if min(image.shape[:2]) < stride:
            raise JaxstyleError(f"the {name} image ({image.shape[1]}x{image.shape[0]}) is too small for "
                                f"automatic masks: give at least {stride}x{stride} pixels")
        grids.append(np.asarray(_feature_grid_jit(weights, image, layers=layers, pad=pad)))  # [h, w, D]
    shapes = [g.shape[:2] for g in grids]
    points = np.concatenate([g.reshape(-1, g.shape[-1]) for g in grids])  # [N, D]
    group = np.repeat([0, 1], [h * w for h, w in shapes])  # [N]
    key = jax.random.PRNGKey(seed)

    candidates = [regions] if regions is not None else list(range(1, max_regions + 1))
    trust = np.concatenate([np.asarray(_stability_jit(g)).ravel() for g in grids])  # [N]
    fits = _try_every_k(points, group, key, trust, num_clusters=max(candidates),
                        active=np.array(candidates), iterations=KMEANS_ITERATIONS,
                        restarts=KMEANS_RESTARTS)  # every K in one compilation
    centroids = None
    for i, k in enumerate(candidates):
        candidate = merge_regions(points, group, np.asarray(fits.centroids[i, :k]), shapes,
                                  min_share=min_share, min_interior=min_interior,
                                  min_separation=min_separation if regions is None else 0.0)
        if centroids is None:  # K = 1, or the K asked for
            centroids = candidate
        elif len(candidate) == k and _min_gap(candidate) >= relative_separation * _min_gap(centroids, 0.0):
            centroids = candidate  # every check passed without a merge, and no weaker split

    maps = []
    for g, (image, grid_shape) in enumerate(zip((content, style), shapes)):
        labels = np.asarray(assign(points[group == g], centroids)).reshape(grid_shape)
        onehot = np.eye(len(centroids), dtype=np.float32)[labels]  # [h, w, K]
        scale = image.shape[0] / small[g].shape[0]  # analysis px -> image px
        maps.append(_to_image(onehot, image, refine=refine, stride=stride * scale))
    ids = _drop_vanished(maps, min_share / 2)  # [H, W], [Hs, Ws]
    k = int(max(i.max() for i in ids)) + 1
    names = tuple(name for name, _ in palette[:k])
    stacks = [(i[..., None] == np.arange(k)).astype(np.float32) for i in ids]
    found = ", ".join(f"{name} ({stacks[0][..., j].mean():.0%} of the content, "
                      f"{stacks[1][..., j].mean():.0%} of the style)" for j, name in enumerate(names))
    note = f"automatic masks: {k} region(s) shared by both images: {found}"
    if regions is not None and k != regions:
        note += f"; asked for {regions}, but only {k} are shared by both images"
    return masks_lib.MaskPair(stacks[0], stacks[1], names, (note,))


def _to_image(onehot: np.ndarray, image: np.ndarray, *, refine: bool, stride: float) -> np.ndarray:
    """Grid maps `[h, w, K]` at the image's resolution: scores `[H, W, K]` (argmax = labels)."""
    h, w = image.shape[:2]
    if not refine:
        rows = np.minimum((np.arange(h) * onehot.shape[0]) // h, onehot.shape[0] - 1)
        cols = np.minimum((np.arange(w) * onehot.shape[1]) // w, onehot.shape[1] - 1)
        return onehot[rows][:, cols]
    radius = int(min(MAX_REFINE_RADIUS, max(MIN_REFINE_RADIUS, round(REFINE_STRIDES * stride))))
    return np.asarray(_refine_jit(jnp.asarray(onehot), jnp.asarray(image), radius=radius,
                                  uncertain=UNCERTAIN_CELLS))


def _drop_vanished(maps: Sequence[np.ndarray], min_share: float) -> tuple[np.ndarray, ...]:
    """Label maps `[H, W]` (int) per image, without regions that are too small in either image.

    A region must cover `min_share` of each image and have as many interior pixels as
    `masks.parse_mask_pair` needs to read it back as a label (its whole 3x3 neighbourhood
    in the region: `masks.MIN_REGION_PIXELS`, or 1% of the pixels when fewer). The weakest
    failing region is dropped (its pixels take their next-best label) until all pass; the
    rest are renumbered 0..K'-1 in their original order.
    """
    alive = np.ones(maps[0].shape[-1], bool)
    while True:
        ids = [np.argmax(np.where(alive, m, -np.inf), axis=-1) for m in maps]
        k = len(alive)
        shares = np.stack([np.bincount(i.ravel(), minlength=k) / i.size for i in ids]).min(0)  # [K]
        readable = np.stack([_interior_pixels(i, k) >= max(1, min(masks_lib.MIN_REGION_PIXELS, i.size // 100))
                             for i in ids]).all(0)  # [K]
        failing = alive & ((shares < min_share) | ~readable)
        if alive.sum() == 1 or not failing.any():
            break
        alive[np.argmin(np.where(failing, shares, np.inf))] = False
    renumber = np.cumsum(alive) - 1
    return tuple(renumber[i] for i in ids)


def _interior_pixels(ids: np.ndarray, k: int) -> np.ndarray:
    """Per label `[K]`: pixels of `ids` `[H, W]` whose 3x3 neighbourhood (edge-replicated) has their label."""
    h, w = ids.shape
    padded = np.pad(ids, 1, mode="edge")
    same = np.ones((h, w), bool)
    for dy in range(3):
        for dx in range(3):
            same &= padded[dy:dy + h, dx:dx + w] == ids
    return np.bincount(ids[same], minlength=k)


# ----------------------------------------------------------------------------- files


def save_masks(pair: masks_lib.MaskPair, folder: str | os.PathLike, *,
               overwrite: bool = False) -> tuple[Path, Path]:
    """Write `folder/content_mask.png` and `folder/style_mask.png` as colour-coded masks.

    The colours are `masks.labels_to_color`'s (palette names keep their colour), so
    `masks.parse_mask_pair` (or `--content-mask/--style-mask`) reads them back to the same
    regions. Creates `folder` when needed; existing files are replaced only with
    `overwrite=True`. Returns (content path, style path).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise JaxstyleError(f"{folder} exists and is not a folder: choose a folder for the masks")
    paths = (folder / CONTENT_MASK_FILE, folder / STYLE_MASK_FILE)
    if not overwrite:
        for path in paths:
            if path.exists():
                raise JaxstyleError(f"{path} exists: remove it, choose another folder, or overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    from jaxstyle import writing  # lazy, as masks.read_mask_file: computing masks needs no image I/O

    meta = {"labels": list(pair.labels), "notes": list(pair.notes)}
    for path, stack in zip(paths, (pair.content, pair.style)):
        writing.save_image(masks_lib.labels_to_color(stack, pair.labels), path, metadata=meta, overwrite=True)
    return paths


__all__ = [
    "CONTENT_MASK_FILE", "DEFAULT_LAYERS", "STYLE_MASK_FILE", "Clustering", "assign", "auto_masks",
    "boundary_cells", "feature_grid", "grid_stride", "joint_kmeans", "merge_regions", "refine_regions",
    "save_masks",
]
