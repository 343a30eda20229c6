"""16-bit colour TIFFs are read at their full depth: the decoder against files written here from the
TIFF 6.0 specification (byte orders, strips and tiles, chunky and planar samples, no compression,
LZW, Deflate, the horizontal predictor, alpha), Pillow's 8-bit reading of the same files, EXIF
orientation, and through `io.load_image` and the CLI's reader."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from jaxstyle import io, tiff16
from jaxstyle.errors import JaxstyleError
from jaxstyle.tiff16 import lzw_decode, read_tiff16


@pytest.fixture(params=["libtiff", "python"])
def lzw(request, monkeypatch):
    """Each test runs with LZW blocks decompressed by Pillow's libtiff and by `lzw_decode`; the
    calls are counted, so that a test can tell which decoder ran."""
    if request.param == "libtiff" and not tiff16._LIBTIFF:
        pytest.skip("Pillow without libtiff")
    monkeypatch.setattr(tiff16, "_LIBTIFF", request.param == "libtiff")
    calls = []
    for name in ("lzw_libtiff", "lzw_decode"):
        original = getattr(tiff16, name)
        monkeypatch.setattr(tiff16, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    return request.param, calls


def lzw_encode(data: bytes) -> bytes:
    """TIFF LZW (section 13): a clear code first, codes of 9-12 bits most significant bit first,
    the width growing when the next code needs it (the decoder, one entry behind, grows one early),
    a clear code before the table passes 4093 entries, the end code last, at the width the decoder
    reads it with."""
    out, bits, held = bytearray(), 0, 0

    def emit(code, width):
        nonlocal bits, held
        bits, held = (bits << width) | code, held + width
        while held >= 8:
            held -= 8
            out.append((bits >> held) & 0xFF)
            bits &= (1 << held) - 1

    table = {bytes([i]): i for i in range(256)}
    width, next_code, current = 9, 258, b""
    emit(256, width)
    for byte in data:
        extended = current + bytes([byte])
        if extended in table:
            current = extended
            continue
        emit(table[current], width)
        table[extended] = next_code
        next_code += 1
        if next_code >= 4094:
            emit(256, width)
            table = {bytes([i]): i for i in range(256)}
            width, next_code = 9, 258
        elif next_code >= 1 << width:
            width += 1
        current = bytes([byte])
    if current:
        emit(table[current], width)
        if next_code + 1 >= 1 << width and width < 12:  # the decoder adds an entry for this code too
            width += 1
    emit(257, width)
    if held:
        out.append((bits << (8 - held)) & 0xFF)
    return bytes(out)


def write_tiff(path, pixels, *, order="<", compression=1, predictor=1, rows_per_strip=None, tile=None,
               planar=False, extra=None, orientation=None, icc=None):
    """A baseline TIFF of uint16 `pixels` `[H, W, C]`: header, the image data blocks, one IFD."""
    h, w, c = pixels.shape
    planes = [pixels[..., i:i + 1] for i in range(c)] if planar else [pixels]
    if tile:
        bw, bh = tile
        regions = [(y, x) for y in range(0, h, bh) for x in range(0, w, bw)]
    else:
        bw, bh = w, rows_per_strip or h
        regions = [(y, 0) for y in range(0, h, bh)]
    blocks = []
    for plane in planes:
        for y, x in regions:
            block = plane[y:y + bh, x:x + bw]
            if tile:  # tiles are padded to their full size
                block = np.pad(block, ((0, bh - block.shape[0]), (0, bw - block.shape[1]), (0, 0)))
            block = block.astype(np.uint16)
            if predictor == 2:
                block = np.diff(block, axis=1, prepend=np.zeros_like(block[:, :1]))
            raw = block.astype(order + "u2").tobytes()
            blocks.append(raw if compression == 1 else lzw_encode(raw) if compression == 5 else zlib.compress(raw))
    data = b"".join(blocks)
    offsets = np.cumsum([8] + [len(b) for b in blocks[:-1]]).tolist()
    fields = {256: (4, [w]), 257: (4, [h]), 258: (3, [16] * c), 259: (3, [compression]), 262: (3, [2]),
              277: (3, [c]), 284: (3, [2 if planar else 1]), 317: (3, [predictor])}
    if tile:
        fields.update({322: (3, [tile[0]]), 323: (3, [tile[1]]), 324: (4, offsets), 325: (4, [len(b) for b in blocks])})
    else:
        fields.update({273: (4, offsets), 278: (4, [bh]), 279: (4, [len(b) for b in blocks])})
    if extra is not None:
        fields[338] = (3, [extra])
    if orientation is not None:
        fields[274] = (3, [orientation])
    if icc is not None:
        fields[34675] = (7, list(icc))
    ifd_at = 8 + len(data) + len(data) % 2
    entries, spill = [], b""
    spill_at = ifd_at + 2 + 12 * len(fields) + 4
    for tag in sorted(fields):
        kind, values = fields[tag]
        fmt = {3: "H", 4: "I", 7: "B"}[kind]
        body = struct.pack(f"{order}{len(values)}{fmt}", *values)
        if len(body) <= 4:
            entries.append(struct.pack(f"{order}HHI", tag, kind, len(values)) + body.ljust(4, b"\0"))
        else:
            entries.append(struct.pack(f"{order}HHII", tag, kind, len(values), spill_at + len(spill)))
            spill += body + b"\0" * (len(body) % 2)
    head = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "I", ifd_at)
    path.write_bytes(head + data + b"\0" * (len(data) % 2) + struct.pack(order + "H", len(fields))
                     + b"".join(entries) + struct.pack(order + "I", 0) + spill)
    return path


def pattern(h, w, c=3, seed=0):
    """uint16 values whose low bytes matter: smooth ramps plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    ramp = (y * 997 + x * 613)[..., None] * np.arange(1, c + 1)
    return ((ramp + rng.integers(0, 4000, (h, w, c))) % 65536).astype(np.uint16)


def test_lzw_round_trips_and_clears_its_table():
    rng = np.random.default_rng(0)
    for data in [b"", b"a", b"abababababab" * 50, rng.integers(0, 256, 20000, dtype=np.uint8).tobytes(),
                 rng.integers(0, 4, 50000, dtype=np.uint8).tobytes()]:  # the last two pass 4093 entries
        assert lzw_decode(lzw_encode(data)) == data
    noise = rng.integers(0, 256, 6000, dtype=np.uint8).tobytes()
    for n in list(range(240, 300)) + list(range(760, 800)):  # ending on each side of a width change
        assert lzw_decode(lzw_encode(noise[:n])) == noise[:n]


CASES = {
    "plain": {},
    "big-endian": {"order": ">"},
    "LZW": {"compression": 5},
    "LZW, predictor": {"compression": 5, "predictor": 2},
    "Deflate": {"compression": 8},
    "Adobe Deflate, predictor, big-endian": {"compression": 32946, "predictor": 2, "order": ">"},
    "strips of 7 rows": {"rows_per_strip": 7, "compression": 8},
    "tiles of 16": {"tile": (16, 16), "compression": 5, "predictor": 2},
    "planar strips": {"planar": True, "rows_per_strip": 5, "compression": 5},  # Pillow misreads them raw
    "planar tiles": {"planar": True, "tile": (16, 32), "compression": 8},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", [(23, 37, 3), (1, 1, 3), (20, 33, 4)])
def test_every_layout_decodes_exactly_and_agrees_with_pillows_eight_bits(tmp_path, case, shape, lzw):
    pixels = pattern(*shape)
    path = write_tiff(tmp_path / "t.tif", pixels, extra=2 if shape[2] == 4 else None, **CASES[case])
    decoded, premultiplied, orientation = read_tiff16(path)
    decoder, calls = lzw
    assert set(calls) == ({f"lzw_{decoder}" if decoder == "libtiff" else "lzw_decode"}
                          if CASES[case].get("compression") == 5 else set())
    np.testing.assert_array_equal(decoded, pixels)
    assert not premultiplied and orientation == 1
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGBA" if shape[2] == 4 else "RGB")),
                                      (pixels >> 8).astype(np.uint8))


def test_other_tiffs_are_left_to_pillow(tmp_path):
    Image.fromarray(pattern(8, 9).astype(np.uint8)).save(tmp_path / "rgb8.tif")
    Image.fromarray(pattern(8, 9)[..., 0]).save(tmp_path / "grey16.tif")
    assert read_tiff16(tmp_path / "rgb8.tif") is None and read_tiff16(tmp_path / "grey16.tif") is None
    np.testing.assert_array_equal(io.load_image(tmp_path / "rgb8.tif"), pattern(8, 9).astype(np.uint8) / np.float32(255))


def test_a_fourth_sample_that_is_not_alpha_is_dropped(tmp_path):
    pixels = pattern(9, 11, 4)
    decoded = read_tiff16(write_tiff(tmp_path / "t.tif", pixels, extra=0))
    np.testing.assert_array_equal(decoded.pixels, pixels[..., :3])
    np.testing.assert_allclose(io.load_image(tmp_path / "t.tif"), pixels[..., :3] / np.float32(65535), atol=1e-7)


def test_load_image_keeps_sixteen_bits(tmp_path):
    pixels = pattern(30, 40, seed=1)
    path = write_tiff(tmp_path / "t.tif", pixels, compression=5, predictor=2)
    np.testing.assert_allclose(io.load_image(path), pixels / np.float32(65535), atol=1e-7)
    np.testing.assert_allclose(io.read_photo(path).pixels, pixels / np.float32(65535), atol=1e-7)


@pytest.mark.parametrize("extra, expected", [(2, "straight"), (1, "premultiplied")])
def test_alpha_is_composited_as_its_kind_says(tmp_path, extra, expected):
    rng = np.random.default_rng(2)
    colour = rng.random((10, 12, 3))
    a = rng.random((10, 12, 1))
    stored = colour * a if expected == "premultiplied" else colour
    pixels = np.round(np.concatenate([stored, a], axis=-1) * 65535).astype(np.uint16)
    path = write_tiff(tmp_path / "t.tif", pixels, extra=extra)
    background = (0.2, 0.5, 0.9)
    expected_pixels = colour * a + np.array(background) * (1 - a)
    np.testing.assert_allclose(io.load_image(path, background=background), expected_pixels, atol=2e-4)
    with pytest.raises(JaxstyleError, match="transparent pixels"):
        io.load_image(path, alpha="refuse")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    pixels = pattern(6, 10, seed=orientation)
    path = write_tiff(tmp_path / "t.tif", pixels, orientation=orientation)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = io.load_image(path)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.floor(got * 65535 / 256 + 1e-3).astype(np.uint8), expected)


def test_the_profile_of_a_sixteen_bit_tiff_is_kept(tmp_path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = write_tiff(tmp_path / "t.tif", pattern(8, 9), icc=profile)
    photo = io.read_photo(path)
    assert photo.icc_profile == profile
    np.testing.assert_allclose(photo.pixels, pattern(8, 9) / np.float32(65535), atol=1e-7)


@pytest.mark.parametrize("damage", ["truncated data", "bad LZW", "bad Deflate"])
def test_damaged_image_data_is_refused_with_the_file_named(tmp_path, damage, lzw):
    compression = {"truncated data": 1, "bad LZW": 5, "bad Deflate": 8}[damage]
    path = write_tiff(tmp_path / "t.tif", pattern(40, 50), compression=compression)
    data = bytearray(path.read_bytes())
    if damage == "truncated data":
        (ifd,) = struct.unpack_from("<I", data, 4)
        data[8:ifd] = b"\0" * 0  # the image data cut away; the fields now point past it
    else:
        data[10:60] = bytes(range(50, 100))
    path.write_bytes(bytes(data))
    with pytest.raises(JaxstyleError, match="t.tif"):
        io.load_image(path)
    if damage != "truncated data":  # the decoder's own refusal, whatever Pillow made of the file
        with pytest.raises((ValueError, zlib.error)):
            read_tiff16(path)


def test_a_sixteen_bit_tiff_is_decoded_once_by_our_reader(tmp_path, monkeypatch):
    """Pillow's 8-bit decode of the same pixels would be thrown away: it is not asked for."""
    from PIL import TiffImagePlugin

    path = write_tiff(tmp_path / "t.tif", pattern(12, 16), compression=8, orientation=6)
    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "load", lambda self: pytest.fail("Pillow decoded it"))
    photo = io.read_photo(path)
    assert photo.bits == 16 and photo.pixels.shape == (16, 12, 3)
    np.testing.assert_allclose(io.load_image(path), photo.pixels)
