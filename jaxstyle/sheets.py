"""Contact sheets: images side by side in a row, rows stacked, with labels under the images.

Images are float32 `[H, W, 3]` RGB in [0, 1] (numpy, on the host); any image
`jaxstyle.reading.to_numpy_image` accepts may be given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxstyle import reading, sizing
from jaxstyle.errors import JaxstyleError

__all__ = ["side_by_side", "stack_rows"]

_LABEL_PADDING = 3  # white pixels above and below a label under a contact-sheet image


def side_by_side(images: Sequence[Any], *, height: int, gap: int = 4,
                 labels: Sequence[str] | None = None) -> np.ndarray:
    """One row of a contact sheet: each image resized to `height`, left to right on white.

    Returns float32 `[height (+ label band), W, 3]`; with `labels`, each is drawn in
    Pillow's default font, centred under its image (clipped to the image's width).
    """
    sizing.check_side(height, "height")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise JaxstyleError(f"gap must be a non-negative integer, got {gap!r}")
    if len(images) == 0:
        raise JaxstyleError("side_by_side needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise JaxstyleError(f"got {len(labels)} labels for {len(images)} images; give one per image")
    tiles = []
    for x in images:
        image = reading.to_numpy_image(x)
        h, w = image.shape[:2]
        tiles.append(sizing.resize_image(image, (height, max(1, round(w * height / h)))))
    band = _label_band_height() if labels is not None else 0
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    sheet = np.ones((height + band, width, 3), np.float32)
    x0 = 0
    for i, tile in enumerate(tiles):
        w = tile.shape[1]
        sheet[:height, x0:x0 + w] = tile
        if labels is not None:
            sheet[height:, x0:x0 + w] = _label_strip(str(labels[i]), w, band)
        x0 += w + gap
    return sheet


def stack_rows(rows: Sequence[np.ndarray], *, gap: int = 4) -> np.ndarray:
    """Stack `[h_i, w_i, 3]` rows top to bottom, `gap` white pixels apart; narrow rows padded
    on the right with white. Returns float32 `[sum h_i + gaps, max w_i, 3]`."""
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise JaxstyleError(f"gap must be a non-negative integer, got {gap!r}")
    if len(rows) == 0:
        raise JaxstyleError("stack_rows needs at least one row")
    images = [reading.to_numpy_image(r) for r in rows]
    width = max(r.shape[1] for r in images)
    height = sum(r.shape[0] for r in images) + gap * (len(images) - 1)
    sheet = np.ones((height, width, 3), np.float32)
    y0 = 0
    for r in images:
        sheet[y0:y0 + r.shape[0], :r.shape[1]] = r
        y0 += r.shape[0] + gap
    return sheet


def _label_band_height() -> int:
    _, _, _, bottom = ImageFont.load_default().getbbox("Ag")
    return int(np.ceil(bottom)) + 2 * _LABEL_PADDING


def _label_strip(text: str, width: int, height: int) -> np.ndarray:
    """Black `text` centred (or left-aligned when too long) on a white `[height, width, 3]` strip."""
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    x = max(0, (width - (right - left)) // 2)
    draw.text((x, _LABEL_PADDING), text, fill="black", font=font)
    return np.asarray(strip, dtype=np.float32) / 255.0
