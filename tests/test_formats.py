"""Photo formats read through the field's libraries: TIFF (`tifffile` + `imagecodecs`), 16-bit PNG
(`imagecodecs`), HEIC/HEIF (`pillow-heif`) and camera RAW (`rawpy`). Each file is made here with a
library's own writer and read back through `reading.read_photo` against the numpy array it was made
from; damaged files must give one `JaxstyleError` line that says what to do."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from jaxstyle import reading, writing
from jaxstyle.errors import JaxstyleError

tifffile = pytest.importorskip("tifffile")
imagecodecs = pytest.importorskip("imagecodecs")

MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112


def pattern(h, w, c=3, *, bits=16, seed=0):
    """Values whose low bits matter: ramps plus noise, uint8 or uint16 `[h, w, c]`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    ramp = (y * 997 + x * 613)[..., None] * np.arange(1, c + 1)
    values = (ramp + rng.integers(0, 4000, (h, w, c))) % 65536
    return values.astype(np.uint16) if bits == 16 else (values >> 8).astype(np.uint8)


def unit(stored):
    return stored / np.float64(np.iinfo(stored.dtype).max)


# ----------------------------------------------------------------------------- TIFF


def write_tiff(path, pixels, *, compression=None, planar=False, tile=None, extrasamples=None, **kwargs):
    data = np.moveaxis(pixels, -1, 0) if planar else pixels
    tifffile.imwrite(path, data, photometric="rgb", compression=compression, planarconfig="separate" if planar else
                     "contig", tile=tile, extrasamples=extrasamples, predictor=compression is not None, **kwargs)
    return path


TIFF_LAYOUTS = {
    "uncompressed": {},
    "LZW": {"compression": "lzw"},
    "Deflate": {"compression": "zlib"},
    "Adobe Deflate": {"compression": "adobe_deflate"},
    "LZW, planar": {"compression": "lzw", "planar": True},
    "Deflate, tiles": {"compression": "zlib", "tile": (16, 16)},
}


@pytest.mark.parametrize("layout", TIFF_LAYOUTS)
@pytest.mark.parametrize("bits", [8, 16])
def test_tiffs_read_back_exactly(tmp_path, layout, bits):
    pixels = pattern(23, 37, bits=bits)
    photo = reading.read_photo(write_tiff(tmp_path / "t.tif", pixels, **TIFF_LAYOUTS[layout]))
    assert photo.bits == bits and photo.pixels.dtype == np.float32
    np.testing.assert_allclose(photo.pixels, unit(pixels), atol=1e-7)


def test_a_sixteen_bit_tiff_is_read_by_tifffile_alone_and_agrees_with_pillows_eight_bits(tmp_path, monkeypatch):
    """Pillow's 8-bit decode of the same pixels would be thrown away: it is not asked for."""
    from PIL import TiffImagePlugin

    pixels = pattern(12, 16, seed=1)
    path = write_tiff(tmp_path / "t.tif", pixels, compression="zlib")
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), (pixels >> 8).astype(np.uint8))
    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "load", lambda self: pytest.fail("Pillow decoded it"))
    np.testing.assert_allclose(reading.load_image(path), unit(pixels), atol=1e-7)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_sixteen_bit_tiffs_orientation_is_applied(tmp_path, orientation):
    pixels = pattern(6, 10, seed=orientation)
    path = write_tiff(tmp_path / "t.tif", pixels, extratags=[(274, "H", 1, orientation, True)])
    assert reading.photo_size(path) == reading.orient(pixels, orientation).shape[:2]
    np.testing.assert_allclose(reading.load_image(path), unit(reading.orient(pixels, orientation)), atol=1e-7)


@pytest.mark.parametrize("kind", ["unassalpha", "assocalpha"])
def test_a_sixteen_bit_tiffs_alpha_is_composited_as_its_kind_says(tmp_path, kind):
    rng = np.random.default_rng(2)
    colour, a = rng.random((10, 12, 3)), rng.random((10, 12, 1))
    stored = colour * a if kind == "assocalpha" else colour
    pixels = np.round(np.concatenate([stored, a], axis=-1) * 65535).astype(np.uint16)
    path = write_tiff(tmp_path / "t.tif", pixels, extrasamples=[kind])
    background = (0.2, 0.5, 0.9)
    np.testing.assert_allclose(reading.load_image(path, background=background),
                               colour * a + np.array(background) * (1 - a), atol=2e-4)
    with pytest.raises(JaxstyleError, match="transparent pixels"):
        reading.load_image(path, alpha="refuse")


def test_a_fourth_sample_that_is_not_alpha_is_dropped(tmp_path):
    pixels = pattern(9, 11, 4)
    path = write_tiff(tmp_path / "t.tif", pixels, extrasamples=["unspecified"])
    np.testing.assert_allclose(reading.load_image(path), unit(pixels[..., :3]), atol=1e-7)


def test_the_profile_of_a_sixteen_bit_tiff_is_kept(tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = write_tiff(tmp_path / "t.tif", pattern(8, 9), iccprofile=profile)
    photo = reading.read_photo(path)
    assert photo.icc_profile == profile and photo.bits == 16


@pytest.mark.parametrize("compression", ["lzw", "zlib", None])
def test_damaged_tiff_data_is_refused_in_one_line_with_the_file_named(tmp_path, compression):
    path = write_tiff(tmp_path / "t.tif", pattern(40, 50), compression=compression, rowsperstrip=8)
    with tifffile.TiffFile(path) as tiff:
        offsets = tiff.pages[0].dataoffsets
    data = bytearray(path.read_bytes())
    if compression is None:  # raw samples cannot be wrong, only missing
        data = data[:offsets[2]]
    else:
        data[offsets[1] + 2:offsets[1] + 52] = bytes(range(50, 100))
    path.write_bytes(bytes(data))
    with pytest.raises(JaxstyleError, match=r"t\.tif: the image data is damaged or truncated") as error:
        reading.load_image(path)
    assert "\n" not in str(error.value) and "re-export" in str(error.value)


# ----------------------------------------------------------------------------- 16-bit PNG


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_pngs_read_back_exactly_and_agree_with_pillows_eight_bits(tmp_path, channels):
    pixels = pattern(13, 17, channels, seed=channels)
    if channels == 4:
        pixels[..., 3] = 65535  # opaque: the colour reads back as stored
    path = tmp_path / "p.png"
    path.write_bytes(imagecodecs.png_encode(pixels))
    photo = reading.read_photo(path)
    assert photo.bits == 16
    np.testing.assert_allclose(photo.pixels, unit(pixels[..., :3]), atol=1e-7)
    with Image.open(path) as im:  # Pillow keeps the high byte
        np.testing.assert_array_equal(np.asarray(im)[..., :3], (pixels[..., :3] >> 8).astype(np.uint8))


def test_a_sixteen_bit_pngs_colour_key_becomes_transparency(tmp_path):
    pixels = np.full((3, 4, 3), 1000, np.uint16)
    pixels[1, 2] = (7, 8, 9)
    encoded = imagecodecs.png_encode(pixels)
    path = tmp_path / "k.png"
    path.write_bytes(encoded[:33] + png_chunk(b"tRNS", struct.pack(">3H", 7, 8, 9)) + encoded[33:])
    image = reading.load_image(path, background=(0.0, 0.0, 0.0))
    assert image[1, 2].tolist() == [0, 0, 0] and np.allclose(image[0, 0], 1000 / 65535)
    with pytest.raises(JaxstyleError, match="transparent pixels"):
        reading.load_image(path, alpha="refuse")


def test_a_sixteen_bit_result_keeps_its_pixels_profile_exif_and_settings(tmp_path):
    image = np.random.default_rng(3).random((20, 30, 3)).astype(np.float32)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[MAKE], exif[ORIENTATION] = "Jaxcam", 6
    path = writing.save_image(image, tmp_path / "r.png", bits=16, metadata={"seed": 3}, exif=exif.tobytes())
    np.testing.assert_array_equal(imagecodecs.png_decode(path.read_bytes()), np.round(image * 65535))
    assert np.abs(reading.load_image(path) - image).max() <= 0.5 / 65535 + 1e-7
    assert writing.read_metadata(path) == {"seed": 3}
    with Image.open(path) as im:
        assert im.getexif()[MAKE] == "Jaxcam" and im.getexif()[ORIENTATION] == 1
    kept = writing.save_image(image, tmp_path / "p.png", bits=16, icc_profile=profile)
    assert reading.read_photo(kept).icc_profile == profile


def test_a_cut_sixteen_bit_png_is_refused_with_the_file_named(tmp_path):
    encoded = imagecodecs.png_encode(pattern(8, 8))
    path = tmp_path / "cut.png"
    path.write_bytes(encoded[:encoded.index(b"IDAT") + 10])
    with pytest.raises(JaxstyleError, match=r"cut\.png: the image data is damaged or truncated"):
        reading.load_image(path)


# ----------------------------------------------------------------------------- HEIC / HEIF


@pytest.fixture
def heif():
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this pillow-heif has no HEVC encoder to make a HEIC file with")
    return pillow_heif


def smooth(h, w):
    """uint16 `[h, w, 3]` gradients: HEVC keeps them to within a step or two."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([y * 60000 // h, x * 60000 // w, (x + y) * 30000 // (h + w) + 20000], -1).astype(np.uint16)


def test_an_eight_bit_heic_is_read_upright_with_its_exif(tmp_path, heif):
    pixels = (smooth(16, 24) >> 8).astype(np.uint8)
    exif = Image.Exif()
    exif[MAKE], exif[ORIENTATION] = "Apple", 6
    path = tmp_path / "photo.heic"
    heif.from_bytes(mode="RGB", size=(24, 16), data=pixels.tobytes()).save(path, quality=-1, chroma=444,
                                                                          exif=exif.tobytes())
    photo = reading.read_photo(path)
    assert photo.bits == 8 and reading.photo_size(path) == (24, 16)
    np.testing.assert_allclose(photo.pixels, unit(reading.orient(pixels, 6)), atol=3 / 255)
    kept = Image.Exif()
    kept.load(photo.exif)
    assert kept[MAKE] == "Apple" and kept[ORIENTATION] == 1


def test_a_ten_bit_heic_is_read_at_its_depth(tmp_path, heif):
    pixels = smooth(16, 24)
    path = tmp_path / "photo.heif"
    heif.from_bytes(mode="RGB;16", size=(24, 16), data=pixels.tobytes()).save(path, quality=-1, chroma=444)
    assert heif.open_heif(path).info["bit_depth"] == 10
    photo = reading.read_photo(path)
    assert photo.bits == 16 and photo.pixels.shape == (16, 24, 3)
    np.testing.assert_allclose(photo.pixels, unit(pixels), atol=3 / 1023)
    assert writing.output_bits(None, photo, "out.png") == 16


@pytest.mark.parametrize("damage, message", [("cut", "damaged or truncated"),
                                             ("not HEIF", "export it as JPEG or PNG")])
def test_a_bad_heic_is_refused_in_one_line(tmp_path, heif, damage, message):
    path = tmp_path / "photo.heic"
    heif.from_bytes(mode="RGB", size=(24, 16), data=(smooth(16, 24) >> 8).astype(np.uint8).tobytes()).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:-20] if damage == "cut" else b"\0\0\0\x18ftypheic" + bytes(200))
    with pytest.raises(JaxstyleError, match=message) as error:
        reading.read_photo(path)
    assert "photo.heic" in str(error.value) and "\n" not in str(error.value)


# ----------------------------------------------------------------------------- camera RAW


def write_dng(path, cfa, *, neutral=(0.5, 1.0, 0.5), orientation=1):
    """A minimal DNG 1.4 of one RGGB mosaic `cfa` uint16 `[H, W]` (12-bit values), written by tifffile:
    DNG's own fields (version, camera, CFA pattern, an identity colour matrix, the as-shot neutral
    that LibRaw takes the camera's white balance from), plus Make, Model and Orientation."""
    rational = [v for x in neutral for v in (round(x * 1000), 1000)]
    tags = [(50706, "B", 4, (1, 4, 0, 0), True), (50708, "s", 0, "Jaxcam One", True),
            (33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),
            (50721, "2i", 9, [v for x in (1, 0, 0, 0, 1, 0, 0, 0, 1) for v in (x, 1)], True),
            (50728, "2I", 3, rational, True), (50717, "I", 1, 4095, True), (50778, "H", 1, 21, True),
            (MAKE, "s", 0, "Jaxcam", True), (MODEL, "s", 0, "One", True), (ORIENTATION, "H", 1, orientation, True)]
    tifffile.imwrite(path, cfa, photometric=32803, subfiletype=0, extratags=tags)
    return path


def grey_mosaic(h=32, w=48):
    """What a camera whose red and blue sites see half as much light as its green ones records of a
    grey ramp: R = B = G / 2."""
    grey = np.broadcast_to(np.linspace(400, 3000, w), (h, w))
    cfa = grey.copy()
    cfa[0::2, 0::2] /= 2  # R
    cfa[1::2, 1::2] /= 2  # B
    return np.round(cfa).astype(np.uint16)


@pytest.fixture
def rawpy():
    return pytest.importorskip("rawpy")


def test_a_dng_is_developed_at_sixteen_bits_with_the_cameras_white_balance(tmp_path, rawpy):
    balanced = reading.read_photo(write_dng(tmp_path / "photo.dng", grey_mosaic()))
    assert balanced.bits == 16 and balanced.pixels.shape == (32, 48, 3) and balanced.icc_profile is None
    assert reading.photo_size(tmp_path / "photo.dng") == (32, 48)
    inner = balanced.pixels[4:-4, 4:-4]  # away from the demosaic's edges
    assert np.ptp(inner, axis=-1).max() < 0.02 and inner.mean() > 0.2  # grey: R = G = B
    assert np.abs(inner * 255 - np.round(inner * 255)).max() > 0.1  # levels between 8 bits' steps
    untouched = reading.read_photo(write_dng(tmp_path / "plain.dng", grey_mosaic(), neutral=(1.0, 1.0, 1.0)))
    green = untouched.pixels[4:-4, 4:-4]
    assert (green[..., 1] - green[..., 0]).mean() > 0.1  # the white balance did the work above


def test_a_dngs_orientation_is_applied_and_its_camera_exif_kept(tmp_path, rawpy):
    path = write_dng(tmp_path / "photo.dng", grey_mosaic(), orientation=6)
    photo = reading.read_photo(path)
    assert photo.pixels.shape == (48, 32, 3) and reading.photo_size(path) == (48, 32)
    exif = Image.Exif()
    exif.load(photo.exif)
    assert exif[MAKE] == "Jaxcam" and exif[MODEL] == "One" and ORIENTATION not in exif
    bits = writing.output_bits(None, photo, "photo.png")
    result = writing.save_image(photo.pixels, tmp_path / "photo.png", bits=bits, exif=photo.exif)
    with Image.open(result) as im:
        assert im.getexif()[MAKE] == "Jaxcam" and reading.read_photo(result).bits == 16


def test_a_damaged_raw_file_is_refused_in_one_line(tmp_path, rawpy):
    path = write_dng(tmp_path / "photo.dng", grey_mosaic())
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(JaxstyleError, match=r"photo\.dng: LibRaw cannot develop this camera RAW file") as error:
        reading.read_photo(path)
    assert "\n" not in str(error.value) and "copy it again" in str(error.value)


def test_a_file_libraw_does_not_know_is_left_to_pillow(tmp_path, rawpy):
    pixels = pattern(6, 9, bits=8)
    Image.fromarray(pixels).save(tmp_path / "photo.raw", format="PNG")
    np.testing.assert_allclose(reading.load_image(tmp_path / "photo.raw"), unit(pixels), atol=1e-7)


# ----------------------------------------------------------------------------- imports


def test_the_format_libraries_are_imported_only_for_the_files_that_need_them(tmp_path):
    """`import jaxstyle` and reading a JPEG or 8-bit PNG import none of them."""
    code = ("import sys; from jaxstyle import reading; reading.load_image(reading.sample_paths()[0]); "
            "print(sorted(m for m in ('tifffile', 'imagecodecs', 'pillow_heif', 'rawpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- through `transfer`

TINY_TOML = """base = "default"
max_side = 32
[loss]
content_layers = ["relu2_1"]
style_layers = ["relu1_1", "relu2_1"]
[stage1]
iterations = 2
[stage2]
iterations = 2
"""


def make_photo(kind: str, folder: Path, icc: bytes) -> tuple[Path, tuple[int, int], int, bytes | None]:
    """A photo of `kind` made by its library's own writer, with EXIF Make (and the ICC profile where
    the format carries one): (path, upright (h, w), the result's expected depth, its profile)."""
    exif = Image.Exif()
    exif[MAKE] = "FormatCam"
    if kind == "tiff16":
        path = folder / "photo.tif"
        tifffile.imwrite(path, pattern(40, 56), photometric="rgb", compression="lzw", predictor=True,
                         iccprofile=icc, extratags=[(MAKE, "s", 0, "FormatCam", True)])
        return path, (40, 56), 16, icc
    if kind == "png16":
        path = writing.save_image(unit(pattern(40, 56)), folder / "photo.png", bits=16, icc_profile=icc,
                                  exif=exif.tobytes())
        return path, (40, 56), 16, icc
    if kind == "heic10":
        heif = pytest.importorskip("pillow_heif")
        if not heif.libheif_info().get("HEIF"):
            pytest.skip("this pillow-heif has no HEVC encoder to make a HEIC file with")
        path = folder / "photo.heic"
        heif.from_bytes(mode="RGB;16", size=(56, 40), data=smooth(40, 56).tobytes()).save(
            path, quality=-1, chroma=444, exif=exif.tobytes())
        return path, (40, 56), 16, None
    pytest.importorskip("rawpy")
    return write_dng(folder / "photo.dng", grey_mosaic(40, 56)), (40, 56), 16, None


@pytest.mark.slow  # four command-line transfers (one compile of the tiny solve); reading is tested above
@pytest.mark.parametrize("kind", ["tiff16", "png16", "heic10", "dng"])
def test_each_kind_of_photo_goes_through_transfer_at_full_size_and_depth(kind, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from jaxstyle import cli

    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    content, (h, w), bits, profile = make_photo(kind, tmp_path, icc)
    style = writing.save_image(unit(pattern(24, 32, bits=8, seed=1)), tmp_path / "style.png")
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    out = tmp_path / "result.png"
    result = CliRunner().invoke(cli.app, ["transfer", str(content), str(style), "-o", str(out),
                                          "--config", str(tmp_path / "tiny.toml"), "-q"])
    assert result.exit_code == 0, (result.output, result.exception)
    made = reading.read_photo(out)
    assert made.pixels.shape == (h, w, 3) and made.bits == bits
    assert made.icc_profile == profile
    with Image.open(out) as im:
        assert im.getexif()[MAKE] in ("FormatCam", "Jaxcam")
    assert writing.read_metadata(out)["size"] == [h, w]
