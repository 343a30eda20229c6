"""Semantic masks: parse a content/style mask pair into matching label stacks, and carry them
down the VGG so they line up with the activations.

Conventions. A parsed mask is a float32 stack `[H, W, K]`: channel k is label k's region,
one-hot at image resolution (the content stack sums to 1 at every pixel). Inputs may be
colour masks (uint8 `[H, W, 3]`, or float `[H, W, 3]` in [0, 1]) or integer label images
`[H, W]`. Parsing is host-side numpy; propagation is JAX (jit- and vmap-able, one mask per
call, batches via `jax.vmap`).

How labels are found (one rule for every kind of mask):
  - A pixel is *interior* when its whole 3x3 neighbourhood (edge-replicated at the image
    border) has its colour. Anti-aliased edge pixels and noise are almost never interior.
  - A colour (or integer value) is a label of a mask when at least `min_region_pixels`
    of its pixels are interior (fewer for tiny masks: at most 1% of the pixels).
  - Palette or arbitrary colours: the pair is read as a *palette* mask (the original's
    nine colours, `PALETTE`) unless some colour that is not within `tolerance` of a palette
    colour fills a region (has interior pixels as above) in either mask. In palette mode a
    pixel matches a palette colour when every channel is within `tolerance` (0.1 on a 0..1
    scale, as the original), and labels are palette colours with enough interior matching
    pixels (so the grey that appears along an anti-aliased black/white edge is no label).
    Otherwise labels are the region-filling colours themselves, colours within `tolerance`
    of a bigger one merged into it, and content and style labels matched by colour (within
    `tolerance`); a label is named by its palette colour when it is close to one, else
    '#rrggbb'. Integer labels are matched by value and named 'label 7'.
  - Every pixel that matches no label (edges, noise) gets the label whose colour is nearest
    (Euclidean distance in RGB; for integers, in value) among the labels present in that
    mask. Nothing is dropped: the content one-hot sums to 1 everywhere.

Labels across the pair: K is the number of content labels (plus empty padding channels
when `num_labels` is given; padding labels are named ''). A content label missing from the
style takes the style of the WHOLE style image (its style channel is all ones, so its Gram
target is the whole style image's), with a note; the original code leaves that target at
zero, which pushes the region's features toward zero. A label only in the style is dropped,
with a note. Masks that share no label at all are an error (nothing would be matched).

Propagation (`propagate_masks`) follows `jaxstyle.vgg.layer_specs`, as the original's
`neuralstyle_seg.lua`: at every convolution a 3x3 average (stride 1, padding 1; by default
the padding counts, as torch's `nn.SpatialAveragePooling(3,3,1,1,1,1)`, so a mask fades
toward the image border); nothing at a ReLU; at every pooling a 2x2 average with floor
sizes (h // 2, w // 2), exactly the shape of our VGG's floor max-pooling. The original
instead rescales bilinearly to ceil(h / 2) x ceil(w / 2) with `image.scale`, because its
Caffe VGG pools with ceil; the 2x2 average is the exact halving that matches our shapes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import vgg
from jaxstyle.errors import JaxstyleError

RGB = tuple[int, int, int]

# The original's colour codes (neuralstyle_seg.lua, ExtractMask), in its order.
PALETTE: tuple[tuple[str, RGB], ...] = (
    ("blue", (0, 0, 255)),
    ("green", (0, 255, 0)),
    ("black", (0, 0, 0)),
    ("white", (255, 255, 255)),
    ("red", (255, 0, 0)),
    ("yellow", (255, 255, 0)),
    ("grey", (128, 128, 128)),
    ("lightblue", (0, 255, 255)),
    ("purple", (255, 0, 255)),
)
COLOR_TOLERANCE = 0.1  # per channel, on a 0..1 scale (the original's threshold)
MIN_REGION_PIXELS = 16  # interior pixels a colour needs to count as a label
RESIZE_TOLERANCE = 0.02  # relative aspect-ratio difference still treated as resize rounding
EDGE_NOTE_FRACTION = 0.05  # note when more than this share of a mask matches no label
MAX_INTEGER_LABELS = 64
WHOLE_IMAGE_LABEL = "all"
PADDING_LABEL = ""

MaskInput = Union[np.ndarray, jax.Array, str, os.PathLike, None]
Palette = Union[Sequence[tuple[str, RGB]], Mapping[str, RGB]]


@dataclasses.dataclass(frozen=True, eq=False)
class MaskPair:
    """Matching label stacks for a content and a style image.

    content: float32 `[Hc, Wc, K]` one-hot (sums to 1 at every pixel; padding channels 0).
    style: float32 `[Hs, Ws, K]` one-hot, except that a label missing from the style mask
      has an all-ones channel (the whole style image) and padding channels are 0.
    labels: K names: palette names, '#rrggbb', 'label 7', 'all' (no masks) or '' (padding).
    notes: warnings to show the user.

    A pytree (`content`, `style` are leaves; `labels`, `notes` static).
    """

    content: np.ndarray
    style: np.ndarray
    labels: tuple[str, ...]
    notes: tuple[str, ...] = ()


jax.tree_util.register_dataclass(MaskPair, data_fields=["content", "style"],
                                 meta_fields=["labels", "notes"])


# ----------------------------------------------------------------------------- parsing


def parse_mask_pair(content_mask: MaskInput, style_mask: MaskInput, *,
                    content_shape: tuple[int, int] | None = None,
                    style_shape: tuple[int, int] | None = None,
                    num_labels: int | None = None,
                    palette: Palette = PALETTE,
                    tolerance: float = COLOR_TOLERANCE,
                    resize_tolerance: float = RESIZE_TOLERANCE,
                    min_region_pixels: int = MIN_REGION_PIXELS) -> MaskPair:
    """Parse a content and a style mask into `[H, W, K]` one-hot stacks with shared labels.

    Args:
      content_mask, style_mask: uint8 `[H, W, 3]` or float `[H, W, 3]` in [0, 1] colour
        masks, integer (or bool) `[H, W]` label images, paths to mask files, or both None
        (one region covering everything: plain neural style, K = 1).
      content_shape, style_shape: `(H, W)` of the images. A mask whose size differs only
        by resize rounding (same aspect ratio within `resize_tolerance`, or within a pixel
        of one scale) is resized with nearest neighbour, with a note; another aspect ratio
        is an error. None: take the mask's size (required when the mask is None).
      num_labels: fixed K: pad with empty channels (so pairs with different label sets
        can be batched); more labels than that is an error.
      palette: `(name, (r, g, b))` pairs (or a mapping), 0..255.
      tolerance: per-channel colour tolerance on a 0..1 scale.
      min_region_pixels: interior pixels a colour needs to be a label (module docstring).

    Returns:
      A `MaskPair`; see its docstring and the module docstring for the rules.
    """
    palette = _check_palette(palette)
    if num_labels is not None and num_labels < 1:
        raise JaxstyleError(f"num_labels must be at least 1, got {num_labels}")
    if content_mask is None and style_mask is None:
        return _whole_image_pair(content_shape, style_shape, num_labels)
    if content_mask is None or style_mask is None:
        given, missing = ("content", "style") if style_mask is None else ("style", "content")
        raise JaxstyleError(f"a {given} mask was given but no {missing} mask: give both masks "
                            "(each region of the content is styled by the same region of the style) "
                            "or neither (the whole style image styles the whole content)")
    notes: list[str] = []
    content = _fit(_as_array(content_mask), content_shape, "content", resize_tolerance, notes)
    style = _fit(_as_array(style_mask), style_shape, "style", resize_tolerance, notes)
    kinds = (_kind(content, "content"), _kind(style, "style"))
    if kinds[0] != kinds[1]:
        raise JaxstyleError(f"the content mask is a {kinds[0]} image but the style mask is a "
                            f"{kinds[1]} image: give both masks in the same form")
    if kinds[0] == "label":
        c_ids, s_ids, names = _integer_labels(content, style, min_region_pixels, notes)
    else:
        c_ids, s_ids, names = _colour_labels(_to_uint8_rgb(content), _to_uint8_rgb(style),
                                             palette, tolerance, min_region_pixels, notes)
    return _assemble(c_ids, s_ids, names, num_labels, notes)


def read_mask_file(path: str | os.PathLike) -> np.ndarray:
    """A mask file's raw pixels: uint8 `[H, W, 3]` RGB, or an integer `[H, W]` label image."""
    from jaxstyle import reading  # lazy: parsing arrays must not depend on image I/O

    return reading.load_label_image(path)


def _whole_image_pair(content_shape: tuple[int, int] | None, style_shape: tuple[int, int] | None,
                      num_labels: int | None) -> MaskPair:
    if content_shape is None or style_shape is None:
        raise JaxstyleError("without masks, pass content_shape and style_shape (H, W) so the "
                            "single all-ones region can be built")
    content = np.ones((*_check_shape(content_shape, "content_shape"), 1), np.float32)
    style = np.ones((*_check_shape(style_shape, "style_shape"), 1), np.float32)
    return _pad(MaskPair(content, style, (WHOLE_IMAGE_LABEL,)), num_labels)


def _check_shape(shape: Sequence[int], name: str) -> tuple[int, int]:
    if len(shape) != 2 or any(int(n) < 1 for n in shape):
        raise JaxstyleError(f"{name} must be (H, W) with positive sides, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def _check_palette(palette: Palette) -> tuple[tuple[str, RGB], ...]:
    items = tuple(palette.items()) if isinstance(palette, Mapping) else tuple(palette)
    if not items:
        raise JaxstyleError("the palette is empty: give at least one (name, (r, g, b)) pair")
    out = []
    for name, rgb in items:
        rgb = tuple(int(v) for v in rgb)
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise JaxstyleError(f"palette colour {name!r} must be three values in 0..255, got {rgb}")
        out.append((str(name), rgb))
    return tuple(out)


def _as_array(mask: Any) -> np.ndarray:
    if isinstance(mask, (str, os.PathLike)):
        return read_mask_file(mask)
    return np.asarray(mask)


def _kind(mask: np.ndarray, which: str) -> str:
    """'colour' for `[H, W, 3]`, 'label' for integer `[H, W]`; anything else is an error."""
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim == 2:
        if mask.dtype == bool or np.issubdtype(mask.dtype, np.integer):
            return "label"
        raise JaxstyleError(f"the {which} mask is a {mask.dtype} [H, W] array: a single-channel "
                            "mask must hold integer labels; give colours as [H, W, 3]")
    if mask.ndim == 3 and mask.shape[-1] == 3:
        return "colour"
    raise JaxstyleError(f"the {which} mask has shape {mask.shape}: expected a colour mask "
                        "[H, W, 3] or an integer label image [H, W] (drop any alpha channel; "
                        "use jax.vmap or a loop for batches)")


def _fit(mask: np.ndarray, shape: tuple[int, int] | None, which: str, tol: float,
         notes: list[str]) -> np.ndarray:
    """`mask` at `shape` (nearest neighbour when only resize rounding differs), or an error."""
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim < 2 or min(mask.shape[:2]) < 1:
        raise JaxstyleError(f"the {which} mask has shape {mask.shape}: expected [H, W, 3] or [H, W]")
    if shape is None:
        return mask
    h, w = _check_shape(shape, f"{which}_shape")
    mh, mw = mask.shape[:2]
    if (mh, mw) == (h, w):
        return mask
    if not _same_framing((mh, mw), (h, w), tol):
        raise JaxstyleError(
            f"{which} mask {mw}x{mh} does not match image {w}x{h}: their aspect ratios differ "
            f"({mw / mh:.3f} vs {w / h:.3f}), so the mask does not cover the same view; "
            f"make the mask from this image at {w}x{h} (or crop both the same way)")
    rows = np.minimum(((np.arange(h) + 0.5) * mh / h).astype(int), mh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * mw / w).astype(int), mw - 1)
    notes.append(f"{which} mask {mw}x{mh} resized to its image's {w}x{h} (nearest neighbour)")
    return mask[rows][:, cols]


def _same_framing(mask_hw: tuple[int, int], image_hw: tuple[int, int], tol: float) -> bool:
    """Same aspect ratio within `tol`, or one scale maps both sides to within a pixel."""
    (mh, mw), (h, w) = mask_hw, image_hw
    if abs((mw / mh) / (w / h) - 1.0) <= tol:
        return True
    lo = max((h - 1) / mh, (w - 1) / mw)
    hi = min((h + 1) / mh, (w + 1) / mw)
    return lo <= hi


def _to_uint8_rgb(mask: np.ndarray) -> np.ndarray:
    if mask.dtype == np.uint8:
        return mask
    if np.issubdtype(mask.dtype, np.floating):
        lo, hi = float(np.min(mask)), float(np.max(mask))
        if lo < -1e-3 or hi > 1 + 1e-3 or not np.isfinite(lo + hi):
            raise JaxstyleError(f"a float colour mask must be in [0, 1], got values in [{lo:g}, {hi:g}]; "
                                "give uint8 colours or divide by 255")
        return np.round(np.clip(mask, 0, 1) * 255).astype(np.uint8)
    hi = int(np.max(mask))
    if int(np.min(mask)) < 0 or hi > 255:
        raise JaxstyleError(f"an integer colour mask must be in 0..255, got values up to {hi}")
    return mask.astype(np.uint8)


def _interior(codes: np.ndarray) -> np.ndarray:
    """`[H, W]` bool: the 3x3 neighbourhood (edge-replicated) all equals the pixel's code."""
    h, w = codes.shape
    padded = np.pad(codes, 1, mode="edge")
    out = np.ones((h, w), bool)
    for dy in range(3):
        for dx in range(3):
            out &= padded[dy:dy + h, dx:dx + w] == codes
    return out


def _region_threshold(n_pixels: int, min_region_pixels: int) -> int:
    return max(1, min(min_region_pixels, n_pixels // 100))


def _region_codes(codes: np.ndarray, min_region_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes that fill a region (enough interior pixels), biggest first, and their counts."""
    values, counts = np.unique(codes[_interior(codes)], return_counts=True)
    keep = counts >= _region_threshold(codes.size, min_region_pixels)
    order = np.argsort(-counts[keep], kind="stable")
    return values[keep][order], counts[keep][order]


def _nearest(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) for each row of `values` `[N, D]`."""
    d = np.sum(np.square(values[:, None, :] - centres[None, :, :]), axis=-1)  # [N, L]
    return np.argmin(d, axis=1)


def _rgb_code(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _code_rgb(code: int) -> RGB:
    return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _within(a: np.ndarray, b: np.ndarray, tolerance: float) -> np.ndarray:
    """Every channel of uint8-scale colours within `tolerance` (0..1 scale), strictly, as the original."""
    return np.max(np.abs(np.subtract(a, b, dtype=np.int16)), axis=-1) < tolerance * 255


def _assign(values: np.ndarray, exact: np.ndarray, centres: np.ndarray, which: str,
            notes: list[str]) -> np.ndarray:
    """Label index per pixel: `exact` where >= 0, else the nearest of `centres`.

    values: `[H, W, D]` colours or values; exact: `[H, W]` label index or -1; centres `[L, D]`.
    """
    ids = exact.copy()
    loose = ids < 0
    if loose.any():
        ids[loose] = _nearest(values[loose].astype(np.float64), centres.astype(np.float64))
        share = float(loose.mean())
        if share > EDGE_NOTE_FRACTION:
            notes.append(f"{share:.0%} of the {which} mask's pixels match no label colour "
                         "(anti-aliasing or noise); each was given the label with the nearest colour")
    return ids


def _colour_labels(content: np.ndarray, style: np.ndarray, palette: tuple[tuple[str, RGB], ...],
                   tolerance: float, min_region_pixels: int, notes: list[str]):
    """Label index maps `[H, W]` for both masks (indices into `names`) and the label names."""
    pal_rgb = np.array([rgb for _, rgb in palette], np.int64)  # [P, 3]
    pal_names = [name for name, _ in palette]
    masks = {"content": content, "style": style}
    codes = {k: _rgb_code(m) for k, m in masks.items()}
    regions = {k: _region_codes(c, min_region_pixels) for k, c in codes.items()}

    def is_palette(code: int) -> bool:
        return bool(_within(np.array(_code_rgb(code)), pal_rgb, tolerance).any())

    if all(is_palette(c) for values, _ in regions.values() for c in values):
        # Palette mode: match each pixel to a palette colour, labels = matched regions.
        matched, present = {}, {}
        for k, m in masks.items():
            hits = _within(m[:, :, None, :], pal_rgb[None, None], tolerance)  # [H, W, P]
            idx = np.where(hits.any(-1), np.argmax(hits, axis=-1), -1)
            labels, _ = _region_codes(idx, min_region_pixels)
            matched[k], present[k] = idx, sorted(int(i) for i in labels if i >= 0)
        names = [pal_names[i] for i in range(len(palette)) if i in present["content"] or i in present["style"]]
        ids = {}
        for k, m in masks.items():
            if not present[k]:
                raise JaxstyleError(f"no region found in the {k} mask: no colour fills an area of "
                                    f"{min_region_pixels} pixels or more")
            lookup = np.full(len(palette) + 1, -1)  # palette index -> local label; slot -1 stays -1
            lookup[present[k]] = np.arange(len(present[k]))
            local = _assign(m, lookup[matched[k]], pal_rgb[present[k]], k, notes)
            ids[k] = np.array([names.index(pal_names[i]) for i in present[k]])[local]
        return ids["content"], ids["style"], names

    # Arbitrary colours: labels are the region-filling colours, near-duplicates merged.
    reps: dict[str, list[int]] = {}
    for k, (values, _) in regions.items():
        reps[k] = []
        for code in values:  # biggest first; a colour close to a bigger one joins it
            if not any(_within(np.array(_code_rgb(code)), np.array(_code_rgb(r)), tolerance) for r in reps[k]):
                reps[k].append(int(code))
        if not reps[k]:
            raise JaxstyleError(f"no region found in the {k} mask: no colour fills an area of "
                                f"{min_region_pixels} pixels or more")
    union: list[int] = list(reps["content"])  # label colours, content first (by area)
    for code in reps["style"]:
        if not any(_within(np.array(_code_rgb(code)), np.array(_code_rgb(u)), tolerance) for u in union):
            union.append(code)
    names: list[str] = []
    for code in union:
        rgb = np.array(_code_rgb(code))
        close = [n for n, p in zip(pal_names, pal_rgb) if _within(rgb, p, tolerance)]
        names.append(close[0] if close and close[0] not in names else _hex(rgb))
    ids = {}
    for k, m in masks.items():
        label_of = [next(i for i, u in enumerate(union)
                         if _within(np.array(_code_rgb(r)), np.array(_code_rgb(u)), tolerance))
                    for r in reps[k]]  # each of this mask's colours -> union index
        rep_rgb = np.array([_code_rgb(r) for r in reps[k]], np.int64)
        exact = np.full(codes[k].shape, -1)
        for j, r in enumerate(reps[k]):
            exact[_within(m, np.array(_code_rgb(r)), tolerance) & (exact < 0)] = j
        ids[k] = np.array(label_of)[_assign(m, exact, rep_rgb, k, notes)]
    return ids["content"], ids["style"], names


def _integer_labels(content: np.ndarray, style: np.ndarray, min_region_pixels: int,
                    notes: list[str]):
    """Label index maps for integer label images: labels are region-filling values."""
    masks = {"content": content.astype(np.int64), "style": style.astype(np.int64)}
    present = {}
    for k, m in masks.items():
        values, _ = _region_codes(m, min_region_pixels)
        present[k] = np.sort(values)
        if present[k].size == 0:
            raise JaxstyleError(f"no region found in the {k} label image: no value fills an area "
                                f"of {min_region_pixels} pixels or more")
        if present[k].size > MAX_INTEGER_LABELS:
            raise JaxstyleError(f"the {k} label image has {present[k].size} labels (more than "
                                f"{MAX_INTEGER_LABELS}): is it a grayscale photo rather than a mask?")
    values = sorted(set(present["content"].tolist()) | set(present["style"].tolist()))
    names = [f"label {v}" for v in values]
    ids = {}
    for k, m in masks.items():
        exact = np.where(np.isin(m, present[k]), np.searchsorted(present[k], m), -1)
        local = _assign(m[..., None], exact, present[k][:, None], k, notes)
        ids[k] = np.searchsorted(values, present[k])[local]
    return ids["content"], ids["style"], names


def _assemble(c_ids: np.ndarray, s_ids: np.ndarray, names: Sequence[str],
              num_labels: int | None, notes: list[str]) -> MaskPair:
    """One-hot stacks over the content's labels; whole-style fallback; style-only dropped."""
    in_content = [i for i in range(len(names)) if np.any(c_ids == i)]
    in_style = {i for i in range(len(names)) if np.any(s_ids == i)}
    dropped = [names[i] for i in range(len(names)) if i in in_style and i not in in_content]
    missing = [names[i] for i in in_content if i not in in_style]
    if not in_style.intersection(in_content):
        raise JaxstyleError(f"the content mask's labels ({', '.join(map(repr, missing))}) and the style mask's "
                            f"({', '.join(map(repr, dropped))}) have none in common, so no region of the style "
                            "would style its region of the content: paint matching regions with the same colour "
                            "(or label value) in both masks, or give no masks to use the whole style image")
    if dropped:
        notes.append(f"label(s) {', '.join(map(repr, dropped))} appear only in the style mask and are "
                     "not used (no content region to style)")
    if missing:
        notes.append(f"label(s) {', '.join(map(repr, missing))} appear in the content mask but not in "
                     "the style mask: those regions take the style of the whole style image "
                     "(the original implementation pushes them toward zero)")
    content = (c_ids[..., None] == np.array(in_content)).astype(np.float32)  # [Hc, Wc, K]
    style = np.stack([(s_ids == i) if i in in_style else np.ones(s_ids.shape, bool)
                      for i in in_content], axis=-1).astype(np.float32)  # [Hs, Ws, K]
    labels = tuple(names[i] for i in in_content)
    return _pad(MaskPair(content, style, labels, tuple(notes)), num_labels)


def _pad(pair: MaskPair, num_labels: int | None) -> MaskPair:
    k = len(pair.labels)
    if num_labels is None or num_labels == k:
        return pair
    if k > num_labels:
        raise JaxstyleError(f"found {k} labels ({', '.join(pair.labels)}) but num_labels is "
                            f"{num_labels}: raise num_labels to at least {k}, or merge regions in the masks")
    extra = num_labels - k

    def pad(m: np.ndarray) -> np.ndarray:
        return np.concatenate([m, np.zeros((*m.shape[:2], extra), m.dtype)], axis=-1)

    return MaskPair(pad(pair.content), pad(pair.style), pair.labels + (PADDING_LABEL,) * extra, pair.notes)


# ----------------------------------------------------------------------------- propagation


def _box3(mask: jax.Array, count_include_pad: bool) -> jax.Array:
    """3x3 average, stride 1, padding 1, of `[h, w, K]`."""
    zero = jnp.zeros((), mask.dtype)
    window, strides, pads = (3, 3, 1), (1, 1, 1), ((1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(mask, zero, jax.lax.add, window, strides, pads)
    if count_include_pad:
        return total / 9.0
    ones = jnp.ones((*mask.shape[:2], 1), mask.dtype)
    return total / jax.lax.reduce_window(ones, zero, jax.lax.add, window, strides, pads)


def _halve(mask: jax.Array) -> jax.Array:
    """2x2 average, stride 2, floor sizes: `[h, w, K]` -> `[h // 2, w // 2, K]`."""
    zero = jnp.zeros((), mask.dtype)
    return jax.lax.reduce_window(mask, zero, jax.lax.add, (2, 2, 1), (2, 2, 1), "VALID") / 4.0


def propagate_masks(mask: jax.Array, *, arch: str = "vgg16",
                    layers: Sequence[str] = vgg.STYLE_LAYERS,
                    count_include_pad: bool = True) -> dict[str, jax.Array]:
    """Masks `[H, W, K]` carried to each of `layers`: `{layer: [h, w, K]}`, one pass.

    [h, w] equals the spatial size of `jaxstyle.vgg.features(..., layer)` for an
    `[H, W, 3]` image. `count_include_pad=False` averages over the in-image part of each
    3x3 window only, which keeps a one-hot stack summing to 1 everywhere (the default,
    like the original, lets the zero padding in, so masks fade at the border).
    """
    layers = vgg.check_layers(arch, tuple(layers))
    mask = jnp.asarray(mask)
    if mask.ndim != 3:
        raise JaxstyleError(f"expected a mask stack [H, W, K], got shape {tuple(mask.shape)}; "
                            "use jax.vmap for batches")
    if not jnp.issubdtype(mask.dtype, jnp.floating):
        mask = mask.astype(jnp.float32)
    wanted = set(layers)
    out: dict[str, jax.Array] = {}
    for spec in vgg.layer_specs(arch):
        if spec.kind == "conv":
            mask = _box3(mask, count_include_pad)
        elif spec.kind == "pool":
            mask = _halve(mask)
        if spec.name in wanted:
            out[spec.name] = mask
            wanted.discard(spec.name)
            if not wanted:  # stop at the deepest requested layer
                break
    return {name: out[name] for name in layers}


def propagate_mask(mask: jax.Array, *, arch: str = "vgg16", layer: str = "relu4_2",
                   count_include_pad: bool = True) -> jax.Array:
    """Mask `[H, W, K]` carried to one `layer`: `[h, w, K]` (see `propagate_masks`)."""
    return propagate_masks(mask, arch=arch, layers=(layer,), count_include_pad=count_include_pad)[layer]


# ----------------------------------------------------------------------------- checks


def check_regions(masks_by_layer: Mapping[str, Any], labels: Sequence[str], *,
                  min_pixels: float = 1.0, which: str = "content") -> tuple[str, ...]:
    """Notes for regions that vanish after downsampling; host-side, never raises for them.

    A label vanishes at a layer when its mask's total weight there (`sum over [h, w]`,
    in pixels of that layer) is below `min_pixels`. This is a note, not an error (small
    objects routinely vanish at relu5_1). What happens then: in the content, the region's
    style loss at that layer is weighted by its (tiny) share, so it barely counts; in the
    style, `with_style_fallback` gives that label the whole style image at that layer.
    Padding labels ('') are skipped.

    Args:
      masks_by_layer: `{layer: [h, w, K]}` from `propagate_masks`.
      labels: the K label names (`MaskPair.labels`).
      which: "content" or "style", for the message.
    """
    if which not in ("content", "style"):
        raise JaxstyleError(f"which must be 'content' or 'style', got {which!r}")
    consequence = ("its style loss there is weighted by its tiny share, so it barely counts"
                   if which == "content" else "that layer uses the whole style image for it")
    notes = []
    for layer, mask in masks_by_layer.items():
        mask = np.asarray(mask)
        if mask.ndim != 3 or mask.shape[-1] != len(labels):
            raise JaxstyleError(f"mask at {layer} has shape {mask.shape} but there are {len(labels)} "
                                "labels: pass the labels of the same MaskPair")
        totals = mask.sum(axis=(0, 1))
        for label, total in zip(labels, totals):
            if label != PADDING_LABEL and total < min_pixels:
                notes.append(f"region {label!r} of the {which} mask vanishes at {layer} "
                             f"({mask.shape[1]}x{mask.shape[0]}): total weight {total:.3g} < "
                             f"{min_pixels:g} pixel(s); {consequence}")
    return tuple(notes)


def with_style_fallback(masks_by_layer: Mapping[str, jax.Array], labels: Sequence[str] | None = None, *,
                        min_pixels: float = 1.0) -> dict[str, jax.Array]:
    """Style masks with every vanished channel replaced by all ones (the whole style image).

    A label whose total weight at a layer is below `min_pixels` gets ones at that layer,
    so its Gram target is the whole style image's rather than noise from a few pixels.
    Padding channels (label '') stay empty. Pure JAX: jit/vmap-able (labels are static).
    Without `labels` no channel is treated as padding (harmless for the loss: a padding
    channel's content mask is empty, so its share of the style loss is zero).
    """
    if labels is None:
        labels = tuple(f"label {k}" for k in range(next(iter(masks_by_layer.values())).shape[-1]))
    padding = jnp.asarray([label == PADDING_LABEL for label in labels])  # [K]
    out = {}
    for layer, mask in masks_by_layer.items():
        if mask.shape[-1] != len(labels):
            raise JaxstyleError(f"mask at {layer} has {mask.shape[-1]} channels but there are "
                                f"{len(labels)} labels: pass the labels of the same MaskPair")
        vanished = (jnp.sum(mask, axis=(-3, -2)) < min_pixels) & ~padding  # [K]
        out[layer] = jnp.where(vanished[..., None, None, :], jnp.ones_like(mask), mask)
    return out


# ----------------------------------------------------------------------------- writing


def label_colors(labels: Sequence[str], palette: Palette = PALETTE) -> list[RGB]:
    """A distinct uint8 RGB colour per label: palette names and '#rrggbb' keep their colour;
    other names get unused palette colours, then other well-separated colours."""
    named = dict(_check_palette(palette))
    fixed: list[RGB | None] = []
    for label in labels:
        if label in named:
            fixed.append(named[label])
        elif len(label) == 7 and label.startswith("#"):
            try:
                fixed.append(_code_rgb(int(label[1:], 16)))
            except ValueError:
                fixed.append(None)
        else:
            fixed.append(None)
    used = {c for c in fixed if c is not None}
    grid = [(r, g, b) for r in (0, 64, 128, 192, 255) for g in (0, 64, 128, 192, 255)
            for b in (0, 64, 128, 192, 255)]
    spare = iter([rgb for _, rgb in named.items()] + grid)
    out = []
    for colour in fixed:
        if colour is None:
            colour = next((c for c in spare
                           if not any(_within(np.array(c), np.array(u), 2 * COLOR_TOLERANCE) for u in used)),
                          None)
            if colour is None:
                raise JaxstyleError(f"too many labels ({len(labels)}) to give each a distinct colour")
            used.add(colour)
        out.append(colour)
    return out


def labels_to_color(mask: Any, labels: Sequence[str], *, palette: Palette = PALETTE) -> np.ndarray:
    """Colour-coded uint8 `[H, W, 3]` image of a one-hot stack `[H, W, K]` (argmax per pixel).

    Palette-named and '#rrggbb' labels get their own colour, so `parse_mask_pair` reads the
    image back to the same labels; other names (e.g. 'label 7') get distinct palette colours
    (the regions read back the same, named by colour).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.shape[-1] != len(labels):
        raise JaxstyleError(f"mask has shape {mask.shape} but there are {len(labels)} labels: "
                            "expected [H, W, K] with one name per channel")
    colours = np.array(label_colors(labels, palette), np.uint8)  # [K, 3]
    return colours[np.argmax(mask, axis=-1)]


__all__ = [
    "COLOR_TOLERANCE", "MIN_REGION_PIXELS", "PALETTE", "MaskPair", "check_regions", "label_colors",
    "labels_to_color", "parse_mask_pair", "propagate_mask", "propagate_masks", "read_mask_file",
    "with_style_fallback",
]
