"""16-bit colour PNGs are read at their full depth: the decoder against files written here from
the PNG specification (every filter type, chunked image data, a colour key), Pillow's 8-bit
reading of the same files, EXIF orientations, and a round trip through `io.save_image`."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from jaxstyle import io
from jaxstyle.errors import JaxstyleError
from jaxstyle.png16 import read_png16


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def filter_rows(rows: np.ndarray, types: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filtering (specification, section 9) of bytes `[H, N]`, row i with filter `types[i]`."""
    x = rows.astype(np.int32)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]  # left
    b = np.zeros_like(x)
    b[1:] = x[:-1]  # above
    c = np.zeros_like(x)
    c[1:, bpp:] = x[:-1, :-bpp]  # above-left
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    predictions = np.stack([np.zeros_like(x), a, b, (a + b) // 2, paeth])
    pred = np.take_along_axis(predictions, types[None, :, None].repeat(x.shape[1], 2), 0)[0]
    return ((x - pred) & 255).astype(np.uint8)


def png16(pixels: np.ndarray, types: np.ndarray, *, key=None, extra: bytes = b"") -> bytes:
    """A 16-bit RGB or RGBA PNG of uint16 `pixels` `[H, W, 3|4]`, its image data in two IDAT chunks."""
    h, w, ch = pixels.shape
    rows = pixels.astype(">u2").view(np.uint8).reshape(h, w * ch * 2)
    body = np.concatenate([types.astype(np.uint8)[:, None], filter_rows(rows, types, ch * 2)], 1).tobytes()
    data = zlib.compress(body)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[ch], 0, 0, 0))
    if key is not None:
        out += chunk(b"tRNS", np.asarray(key, ">u2").tobytes())
    return out + extra + chunk(b"IDAT", data[:len(data) // 2]) + chunk(b"IDAT", data[len(data) // 2:]) \
        + chunk(b"IEND", b"")


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 9, 4), (11, 1, 3), (13, 17, 3), (31, 20, 4), (24, 70, 3)])
def test_every_filter_decodes_exactly_and_agrees_with_pillows_eight_bits(tmp_path, shape):
    rng = np.random.default_rng(sum(shape))
    smooth = np.linspace(0, 60000, shape[1])[None, :, None] + rng.integers(0, 3000, shape)
    for pixels in (rng.integers(0, 65536, shape), smooth):
        pixels = pixels.astype(np.uint16)
        types = rng.integers(0, 5, shape[0])
        path = tmp_path / "p.png"
        path.write_bytes(png16(pixels, types))
        np.testing.assert_array_equal(read_png16(path), pixels)
        with Image.open(path) as im:  # Pillow keeps the high byte
            np.testing.assert_array_equal(np.asarray(im), (pixels >> 8).astype(np.uint8))


def test_other_pngs_are_left_to_pillow(tmp_path):
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "rgb8.png")
    Image.fromarray(np.zeros((4, 5), np.uint16)).save(tmp_path / "grey16.png")
    (tmp_path / "not.png").write_bytes(b"GIF89a")
    assert all(read_png16(tmp_path / n) is None for n in ("rgb8.png", "grey16.png", "not.png"))


def test_a_colour_key_becomes_transparency(tmp_path):
    pixels = np.full((3, 4, 3), 1000, np.uint16)
    pixels[1, 2] = (7, 8, 9)
    path = tmp_path / "k.png"
    path.write_bytes(png16(pixels, np.zeros(3, int), key=(7, 8, 9)))
    alpha = read_png16(path)[..., 3]
    assert alpha[1, 2] == 0 and (alpha == 65535).sum() == 11
    with pytest.raises(JaxstyleError, match="transparent pixels"):
        io.load_image(path, alpha="refuse")


def test_load_image_keeps_sixteen_bits_and_composites_alpha(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 65536, (6, 8, 4)).astype(np.uint16)
    pixels[..., 3] = 65535
    pixels[0, 0, 3] = 32768
    path = tmp_path / "a.png"
    path.write_bytes(png16(pixels, rng.integers(0, 5, 6)))
    unit = pixels / 65535.0
    expected = unit[..., :3] * unit[..., 3:] + (1 - unit[..., 3:])  # on white
    np.testing.assert_allclose(io.load_image(path), expected, atol=1e-6)
    np.testing.assert_allclose(io.read_photo(path).pixels, expected, atol=1e-6)


def test_a_sixteen_bit_result_reads_back_without_loss(tmp_path):
    """What `--bits 16` writes is read back to within half a 16-bit step (8 bits: 1/510)."""
    image = np.random.default_rng(2).random((20, 30, 3)).astype(np.float32)
    io.save_image(image, tmp_path / "r.png", bits=16)
    assert np.abs(io.load_image(tmp_path / "r.png") - image).max() <= 0.5 / 65535 + 1e-7


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[io.EXIF_ORIENTATION] = orientation
    im.info["exif"] = exif.tobytes()
    np.testing.assert_array_equal(io.orient(pixels, orientation), np.asarray(ImageOps.exif_transpose(im)))

    deep = pixels.astype(np.uint16) * 257
    path = tmp_path / "o.png"
    path.write_bytes(png16(deep, np.full(5, 4), extra=chunk(b"eXIf", exif.tobytes())))
    np.testing.assert_allclose(io.load_image(path), io.orient(deep, orientation) / 65535.0, atol=1e-7)


def test_damaged_image_data_is_refused_with_the_file_named(tmp_path):
    data = png16(np.zeros((8, 8, 3), np.uint16), np.zeros(8, int))
    cut = data.index(b"IDAT") + 10
    path = tmp_path / "cut.png"
    path.write_bytes(data[:cut])
    with pytest.raises((ValueError, zlib.error)):
        read_png16(path)
    with pytest.raises(JaxstyleError, match="cut.png"):
        io.load_image(path)
