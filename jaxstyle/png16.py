"""16-bit colour PNGs at their full depth (Pillow decodes them at 8 bits per channel).

`read_png16(path)` returns the pixels of a non-interlaced 16-bit RGB or RGBA PNG as uint16
`[H, W, 3 or 4]` (with a tRNS colour key turned into a fourth channel), or None for any other
PNG, which Pillow reads without loss. Rows are unfiltered as the PNG specification (section 9)
says; the Average and Paeth filters depend on the pixel to the left and the row above, so all
rows are unfiltered together along anti-diagonals (x + y constant), each a contiguous slice of
a skewed copy of the image.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_CHANNELS = {2: 3, 6: 4}  # PNG colour type -> channels (RGB, RGBA)


def read_png16(path: str | Path) -> np.ndarray | None:
    """uint16 `[H, W, C]` of a 16-bit RGB (C = 3, or 4 with a tRNS key) or RGBA (C = 4) PNG, else None.

    Raises ValueError or zlib.error for damaged data (the caller words the message).
    """
    with open(path, "rb") as f:
        head = f.read(33)  # signature and IHDR
        if not head.startswith(SIGNATURE) or head[12:16] != b"IHDR" or len(head) < 33:
            return None
        _, _, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
        if depth != 16 or colour not in COLOUR_CHANNELS or interlace != 0:
            return None
        data = head + f.read()
    pos, header, idat, key = len(SIGNATURE), None, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"PNG chunk {kind!r} is truncated")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
            w, h = header[:2]
        elif kind == b"tRNS" and length == 6:
            key = np.frombuffer(body, ">u2").astype(np.uint16)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ValueError("PNG without an IHDR chunk")
    channels = COLOUR_CHANNELS[colour]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    if raw.size < h * (1 + w * channels * 2):
        raise ValueError(f"PNG image data holds {raw.size} bytes, {h * (1 + w * channels * 2)} expected")
    rows = raw[:h * (1 + w * channels * 2)].reshape(h, 1 + w * channels * 2)
    pixels = unfilter(rows[:, 0], rows[:, 1:].reshape(h, w, channels * 2)).view(">u2")
    pixels = pixels.reshape(h, w, channels).astype(np.uint16)
    if key is not None and channels == 3:
        opaque = np.any(pixels != key, axis=-1)
        pixels = np.concatenate([pixels, np.where(opaque, 65535, 0).astype(np.uint16)[..., None]], axis=-1)
    return pixels


def unfilter(types: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """PNG rows `[H, W, B]` (B bytes a pixel) filtered with `types` `[H]` (0-4), unfiltered (uint8)."""
    h, w, b = filtered.shape
    if types.size and int(types.max()) > 4:
        raise ValueError(f"unknown PNG filter type {int(types.max())}")
    if h == 0 or w == 0:
        return filtered.copy()
    # skewed[d, r + 1] holds pixel (r, x = d - r); row 0 and never-written cells stay 0, which is
    # what the filters read beyond the image's left and top edges.
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    given = np.zeros((h + w, h + 1, b), np.uint8)
    given[rows + cols, rows + 1] = filtered
    out = np.zeros((h + w + 1, h + 1, b), np.uint8)  # out[d + 1] is diagonal d
    t = types.astype(np.int16)[:, None]  # [H, 1]
    for d in range(h + w - 1):
        lo, hi = max(0, d - w + 1), min(h - 1, d)  # rows on this diagonal
        a = out[d, lo + 1:hi + 2].astype(np.int16)  # left (diagonal d - 1, same row)
        up = out[d, lo:hi + 1].astype(np.int16)  # above (diagonal d - 1, row - 1)
        c = out[d - 1, lo:hi + 1].astype(np.int16) if d else np.zeros_like(a)  # above-left (diagonal d - 2)
        kind = t[lo:hi + 1]
        pa, pb, pc = np.abs(up - c), np.abs(a - c), np.abs(a + up - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, up, c))
        pred = np.select([kind == 1, kind == 2, kind == 3, kind == 4], [a, up, (a + up) >> 1, paeth], 0)
        out[d + 1, lo + 1:hi + 2] = (given[d, lo + 1:hi + 2] + pred) & 255
    return out[rows + cols + 1, rows + 1]
