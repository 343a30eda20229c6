"""16-bit colour TIFFs at their full depth (Pillow decodes them at 8 bits per channel).

`read_tiff16(path)` returns the first image of a 16-bit RGB or RGBA TIFF as stored, uint16
`[H, W, 3 or 4]` (a fourth channel only for an alpha channel), with whether that alpha is
premultiplied and the Orientation field (Pillow applies it while loading a TIFF and drops it
from the EXIF it reports), or None for any other TIFF, which Pillow reads without loss.

Written from the TIFF 6.0 specification: strips or tiles (sections 3 and 15), chunky or
planar samples, no compression, LZW (section 13) or Deflate (Adobe's ZIP, codes 8 and 32946),
and the horizontal-differencing predictor (section 14): what photo editors write for 16-bit
exports (Lightroom: none or ZIP; Photoshop: LZW or ZIP). An LZW block is decompressed by
Pillow's libtiff, handed the block as an 8-bit grey image of the same bytes (Pillow has no
plain LZW decompressor), or by `lzw_decode` here where Pillow lacks libtiff.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, features

# TIFF tags (section 8 and the extensions of sections 13-19)
WIDTH, HEIGHT, BITS, COMPRESSION, PHOTOMETRIC = 256, 257, 258, 259, 262
STRIP_OFFSETS, SAMPLES, ROWS_PER_STRIP, STRIP_COUNTS, PLANAR = 273, 277, 278, 279, 284
PREDICTOR, TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_COUNTS = 317, 322, 323, 324, 325
EXTRA_SAMPLES, SAMPLE_FORMAT, ORIENTATION = 338, 339, 274
RGB = 2  # PhotometricInterpretation
NONE, LZW, DEFLATE, ADOBE_DEFLATE = 1, 5, 8, 32946
HORIZONTAL = 2  # Predictor
ASSOCIATED_ALPHA, UNASSOCIATED_ALPHA = 1, 2  # ExtraSamples
_FIELD_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8: the integer types read here


class Tiff16(NamedTuple):
    pixels: np.ndarray  # uint16 [H, W, C] as stored: C = 3 (RGB) or 4 (RGBA)
    premultiplied: bool  # the alpha channel is associated (colour times alpha)
    orientation: int  # the Orientation field (1-8; 1 when absent)


def read_tiff16(path: str | Path) -> Tiff16 | None:
    """The first image of a 16-bit RGB or RGBA TIFF, else None.

    Raises ValueError, struct.error or zlib.error for damaged data (the caller words the message).
    """
    data = Path(path).read_bytes()
    tags = _first_ifd(data)
    if tags is None:
        return None
    samples = _one(tags, SAMPLES, 1)
    if (tags.get(BITS) != (16,) * samples or _one(tags, PHOTOMETRIC, -1) != RGB or samples not in (3, 4)
            or _one(tags, SAMPLE_FORMAT, 1) != 1):
        return None
    compression, predictor = _one(tags, COMPRESSION, NONE), _one(tags, PREDICTOR, 1)
    if compression not in (NONE, LZW, DEFLATE, ADOBE_DEFLATE) or predictor not in (1, HORIZONTAL):
        return None
    order = "<u2" if data[:2] == b"II" else ">u2"
    w, h = _one(tags, WIDTH), _one(tags, HEIGHT)
    planar = _one(tags, PLANAR, 1) == 2
    if TILE_OFFSETS in tags:
        block_w, block_h = _one(tags, TILE_WIDTH), _one(tags, TILE_LENGTH)
        offsets, counts = tags[TILE_OFFSETS], tags[TILE_COUNTS]
    else:
        block_w, block_h = w, min(_one(tags, ROWS_PER_STRIP, h), h)
        offsets, counts = tags[STRIP_OFFSETS], tags[STRIP_COUNTS]
    channels = 1 if planar else samples  # samples in one block
    across, down = -(-w // block_w), -(-h // block_h)
    if len(offsets) < across * down * (samples if planar else 1) or len(counts) < len(offsets):
        raise ValueError(f"TIFF holds {len(offsets)} blocks of data, {across * down} expected")
    pixels = np.empty((h, w, samples), np.uint16)
    for index, (offset, count) in enumerate(zip(offsets, counts)):
        plane, at = divmod(index, across * down)
        if plane >= (samples if planar else 1):
            break
        row, col = divmod(at, across) if TILE_OFFSETS in tags else (at, 0)
        top, left = row * block_h, col * block_w
        rows = block_h if TILE_OFFSETS in tags else min(block_h, h - top)  # a strip's last rows are absent
        need = rows * block_w * channels * 2
        raw = _decompress(data[offset:offset + count], compression, rows, need // rows)
        if len(raw) < need:
            raise ValueError(f"TIFF block {index} holds {len(raw)} bytes, {need} expected")
        block = np.frombuffer(raw, order, rows * block_w * channels).reshape(rows, block_w, channels)
        if predictor == HORIZONTAL:  # each sample was stored as its difference from the one to its left
            block = np.cumsum(block.astype(np.uint16), axis=1, dtype=np.uint16)
        rows_in, cols_in = min(rows, h - top), min(block_w, w - left)
        target = slice(plane, plane + 1) if planar else slice(None)
        pixels[top:top + rows_in, left:left + cols_in, target] = block[:rows_in, :cols_in]
    extra = _one(tags, EXTRA_SAMPLES, 0) if samples == 4 else None
    if extra not in (ASSOCIATED_ALPHA, UNASSOCIATED_ALPHA):  # a fourth sample that is not alpha
        pixels = pixels[..., :3]
    return Tiff16(pixels, extra == ASSOCIATED_ALPHA, _one(tags, ORIENTATION, 1))


def _first_ifd(data: bytes) -> dict[int, tuple[int, ...]] | None:
    """The integer fields of a classic TIFF's first image file directory, or None if not a TIFF."""
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return None
    e = "<" if data[:2] == b"II" else ">"
    (position,) = struct.unpack_from(e + "I", data, 4)
    (count,) = struct.unpack_from(e + "H", data, position)
    tags = {}
    for i in range(count):
        tag, kind, n, value = struct.unpack_from(e + "HHI4s", data, position + 2 + 12 * i)
        if kind not in _FIELD_TYPES:
            continue
        size = struct.calcsize(_FIELD_TYPES[kind]) * n
        where = value if size <= 4 else data[struct.unpack(e + "I", value)[0]:][:size]
        if len(where) < size:
            raise ValueError(f"TIFF field {tag} is truncated")
        tags[tag] = struct.unpack_from(f"{e}{n}{_FIELD_TYPES[kind]}", where)
    return tags


def _one(tags: dict[int, tuple[int, ...]], tag: int, default: int | None = None) -> int:
    if tag not in tags:
        if default is None:
            raise ValueError(f"TIFF without the required field {tag}")
        return default
    return tags[tag][0]


def _decompress(block: bytes, compression: int, rows: int, row_bytes: int) -> bytes:
    """A block's bytes (`rows` x `row_bytes` of them when whole) decompressed."""
    if compression == NONE:
        return block
    if compression in (DEFLATE, ADOBE_DEFLATE):
        return zlib.decompress(block)
    return lzw_libtiff(block, rows, row_bytes) if _LIBTIFF else lzw_decode(block)


def lzw_libtiff(block: bytes, rows: int, row_bytes: int) -> bytes:
    """An LZW block decompressed by libtiff: a TIFF written around it that declares it as one
    strip of an 8-bit grey image `row_bytes` wide and `rows` high, read by Pillow."""
    fields = [(WIDTH, row_bytes), (HEIGHT, rows), (BITS, 8), (COMPRESSION, LZW), (PHOTOMETRIC, 1),
              (STRIP_OFFSETS, 0), (SAMPLES, 1), (ROWS_PER_STRIP, rows), (STRIP_COUNTS, len(block))]
    start = 8 + 2 + 12 * len(fields) + 4  # the block follows the header and the directory
    directory = b"".join(struct.pack("<HHII", tag, 4, 1, start if tag == STRIP_OFFSETS else value)
                         for tag, value in fields)
    tiff = b"II*\0" + struct.pack("<IH", 8, len(fields)) + directory + bytes(4) + block
    with Image.open(io.BytesIO(tiff)) as im:
        if im.mode != "L" or im.size != (row_bytes, rows):
            raise ValueError(f"libtiff read an LZW block as {im.mode} {im.size}")
        try:
            im.load()
        except OSError as e:  # libtiff's word for undecodable data
            raise ValueError(f"LZW data libtiff cannot decode ({e})") from e
        return im.tobytes()


_LIBTIFF = features.check("libtiff")


def lzw_decode(data: bytes) -> bytes:
    """TIFF's LZW (section 13): codes of 9 to 12 bits, most significant bit first, 256 clears the
    table, 257 ends; the code width grows one code early, as every TIFF writer does."""
    out = bytearray()
    table = [bytes([i]) for i in range(256)] + [b"", b""]
    bits = held = position = 0
    width, previous = 9, None
    while True:
        while held < width:
            if position >= len(data):
                return bytes(out)  # no end code: what was decoded stands
            bits = (bits << 8) | data[position]
            position, held = position + 1, held + 8
        held -= width
        code = (bits >> held) & ((1 << width) - 1)
        bits &= (1 << held) - 1
        if code == 256:
            del table[258:]
            width, previous = 9, None
            continue
        if code == 257:
            return bytes(out)
        if previous is None:
            if code >= len(table):
                raise ValueError(f"LZW code {code} beyond the table ({len(table)} entries)")
            entry = table[code]
        else:
            if code < len(table):
                entry = table[code]
                table.append(previous + entry[:1])
            elif code == len(table):
                entry = previous + previous[:1]
                table.append(entry)
            else:
                raise ValueError(f"LZW code {code} beyond the table ({len(table)} entries)")
            if len(table) + 1 >= 1 << width and width < 12:
                width += 1
        out += entry
        previous = entry
