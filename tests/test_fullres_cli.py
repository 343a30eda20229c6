"""`jaxstyle transfer` delivers the content photo at its own size (after EXIF rotation): solved at
--max-side, carried to full size by the upsampling stage, with the photo's ICC profile and EXIF
kept (orientation reset), 8- or 16-bit, and both sizes in the metadata."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from conftest import synthetic_photo
from jaxstyle import cli, reading, single, sizing, writing
from jaxstyle.errors import JaxstyleError

runner = CliRunner()
STORED_H, STORED_W = 96, 144  # as stored; EXIF orientation 6 (a quarter turn) shows it 144 x 96
TINY_TOML = """base = "fast"
[loss]
content_layers = ["relu2_1"]
style_layers = ["relu1_1", "relu2_1"]
[stage1]
iterations = 2
[stage2]
iterations = 2
[smooth]
radius = 2
"""
ORIENTATION, MAKE = 0x0112, 0x010F


@pytest.fixture(autouse=True)
def bundled_weights(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A JPEG shown upright as 144 x 96 (stored 96 x 144 with orientation 6), with an sRGB profile."""
    folder = tmp_path_factory.mktemp("photo")
    pixels = (synthetic_photo(STORED_H, STORED_W, 1) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION], exif[MAKE] = 6, "TestCam"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(folder / "content.jpg", quality=95, exif=exif.tobytes(), icc_profile=icc)
    writing.save_image(synthetic_photo(40, 48, 4)[..., ::-1], folder / "style.png")
    (folder / "tiny.toml").write_text(TINY_TOML)
    return {"content": folder / "content.jpg", "style": folder / "style.png", "config": folder / "tiny.toml",
            "icc": icc}


def transfer(photo, out, *extra):
    return runner.invoke(cli.app, ["transfer", str(photo["content"]), str(photo["style"]), "-o", str(out),
                                   "--config", str(photo["config"]), "--max-side", "32", "-q", *map(str, extra)])


def png16(path: Path) -> np.ndarray:
    """The pixels of a 16-bit RGB PNG, decoded from the chunks (PNG spec; filter type 0 rows)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    w, h, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, colour) == (16, 2)
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 6 * w)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].copy().view(">u2").reshape(h, w, 3).astype(np.uint16)


def test_the_result_has_the_photos_own_size_profile_and_exif(photo, tmp_path):
    out = tmp_path / "out.jpg"
    result = transfer(photo, out, "--jpeg-quality", 90)
    assert result.exit_code == 0, (result.output, result.exception)
    with Image.open(out) as im:
        assert im.size == (STORED_H, STORED_W)  # (W, H): upright, the photo's own size
        assert im.info["icc_profile"] == photo["icc"]
        exif = im.getexif()
        assert exif[ORIENTATION] == 1 and exif[MAKE] == "TestCam"
    meta = writing.read_metadata(out)
    assert meta["size"] == [STORED_W, STORED_H] and meta["working_size"] == [32, 21]
    # the full-size result follows the content's structure: it is no blurred upscale of the working size
    content = reading.load_image(photo["content"])
    image = reading.load_image(out)
    detail = lambda a: np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    small = sizing.resize_image(image, (32, 21))
    assert detail(image) > 0.7 * detail(content) > detail(sizing.resize_image(small, image.shape[:2]))


def test_sixteen_bits_and_a_capped_output_size(photo, tmp_path):
    out = tmp_path / "out.png"
    result = transfer(photo, out, "--bits", 16, "--max-output-side", 72)
    assert result.exit_code == 0, (result.output, result.exception)
    pixels = png16(out)
    assert pixels.shape == (72, 48, 3)
    assert len(np.unique(pixels)) > 256 and not np.all(pixels % 257 == 0)  # more than 8 bits' worth
    with Image.open(out) as im:
        assert im.info["icc_profile"] == photo["icc"] and im.getexif()[ORIENTATION] == 1
    assert writing.read_metadata(out)["size"] == [72, 48]


@pytest.mark.slow  # end to end (2-3 CLI runs); test_io's tests cover the rule in the default suite
def test_a_wide_gamut_photo_gives_the_result_of_its_srgb_colours_in_its_own_profile(photo, tmp_path):
    """The same colours as Display P3 numbers (tagged) or as sRGB numbers (untagged, converted in
    the test from the formulas) give the same result: the run sees sRGB, and the tagged photo's
    result is written back in P3."""
    import _iccprofiles

    p3 = _iccprofiles.display_p3()
    stored = (synthetic_photo(STORED_H, STORED_W, 1) * 255).astype(np.uint8)
    Image.fromarray(stored).save(tmp_path / "p3.png", icc_profile=p3)
    writing.save_image(_iccprofiles.p3_to_srgb(stored / 255.0), tmp_path / "srgb.png", bits=16)
    results = {}
    for name in ("p3", "srgb"):
        out = tmp_path / f"out_{name}.png"
        result = runner.invoke(cli.app, ["transfer", str(tmp_path / f"{name}.png"), str(photo["style"]), "-o",
                                         str(out), "--config", str(photo["config"]), "--max-side", "32", "-q",
                                         "--bits", "16"])
        assert result.exit_code == 0, (result.output, result.exception)
        results[name] = png16(out) / np.float64(65535)  # the file's own numbers
    with Image.open(tmp_path / "out_p3.png") as im:
        assert im.info["icc_profile"] == p3
    seen = _iccprofiles.p3_to_srgb(results["p3"])  # the tagged result's colours, as sRGB
    difference = np.abs(seen - results["srgb"])  # the inputs differ by the rounding to 16 bits
    assert difference.mean() < 5e-4 and difference.max() < 0.02, (difference.mean(), difference.max())
    assert np.abs(results["p3"] - results["srgb"]).max() > 0.02  # and the P3 numbers are not sRGB's


@pytest.mark.slow  # end to end (2-3 CLI runs); test_io's tests cover the rule in the default suite
def test_a_sixteen_bit_photo_gives_a_sixteen_bit_png_unless_told_otherwise(photo, tmp_path):
    """Nothing the photo had is lost by default: a 16-bit photo's PNG result has 16 bits; a JPEG
    result, or --bits 8, has 8."""
    writing.save_image(synthetic_photo(STORED_H, STORED_W, 1), tmp_path / "deep.png", bits=16)
    depths = {}
    for name, extra in [("out.png", ()), ("out8.png", ("--bits", "8")), ("out.jpg", ())]:
        result = runner.invoke(cli.app, ["transfer", str(tmp_path / "deep.png"), str(photo["style"]), "-o",
                                         str(tmp_path / name), "--config", str(photo["config"]), "--max-side", "32",
                                         "-q", *extra])
        assert result.exit_code == 0, (result.output, result.exception)
        with Image.open(tmp_path / name) as im:
            depths[name] = (im.format, im.mode, im.size)
    assert depths["out8.png"] == ("PNG", "RGB", (STORED_W, STORED_H)) and depths["out.jpg"][0] == "JPEG"
    deep = png16(tmp_path / "out.png")  # asserts a 16-bit RGB PNG
    assert deep.shape == (STORED_H, STORED_W, 3) and not np.all(deep % 257 == 0)


@pytest.mark.parametrize("extra, message", [
    (("--bits", 16), "16 bits (a .png output)"),
    (("--bits", 12), "--bits 12"),
    (("--jpeg-quality", 0), "--jpeg-quality must be from 1 to 100"),
    (("--max-output-side", -1), "max_output_side must be >= 0"),
])
def test_bad_output_options_are_refused_before_any_work(photo, tmp_path, extra, message, monkeypatch):
    monkeypatch.setattr(single, "run_host",
                        lambda *a, **k: pytest.fail("the pipeline ran"))
    result = transfer(photo, tmp_path / "out.jpg", *extra)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []


def test_a_photo_too_large_for_the_memory_is_refused_before_any_work(photo, tmp_path, monkeypatch):
    monkeypatch.setattr(single, "run_host",
                        lambda *a, **k: pytest.fail("the pipeline ran"))
    monkeypatch.setattr(sizing, "available_memory", lambda: 100_000)
    result = transfer(photo, tmp_path / "out.jpg")
    assert result.exit_code == 2, result.output
    assert "pass --max-output-side" in result.stderr and "GiB" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["uint8 array", "float array", "PIL image", "Photo"])
def test_an_image_in_memory_too_large_for_the_memory_is_refused_before_any_work(kind, monkeypatch):
    """The library's check covers images passed in memory, not only files: it counts the copies
    still to be made (the caller's image is one) and names the cap that would fit."""
    monkeypatch.setattr(single, "run_host", lambda *a, **k: pytest.fail("the pipeline ran"))
    pixels = (synthetic_photo(96, 144, 1) * 255).astype(np.uint8)
    content = {"uint8 array": pixels, "float array": pixels / np.float32(255), "PIL image": Image.fromarray(pixels),
               "Photo": reading.Photo(pixels=pixels.astype(np.float32) / 255)}[kind]
    copies = sizing.FULL_SIZE_COPIES - 1
    need = 96 * 144 * sizing.BYTES_PER_COPY_PIXEL * copies
    monkeypatch.setattr(sizing, "available_memory", lambda: need - 1)
    with pytest.raises(JaxstyleError, match=r"the result at 144x96 needs about .* GiB.*--max-output-side 143 "):
        single.stylize(content, pixels, config="fast")
    monkeypatch.setattr(sizing, "available_memory", lambda: need)  # exactly enough: the check passes
    assert single.full_size_content(content).shape == (96, 144, 3)
    # a cap that fits is taken into account before the check
    monkeypatch.setattr(sizing, "available_memory", lambda: need // 4)
    assert single.full_size_content(content, max_output_side=72).shape == (48, 72, 3)


def test_a_jpeg_quality_for_a_png_output_is_refused_before_any_work(photo, tmp_path, monkeypatch):
    monkeypatch.setattr(single, "run_host",
                        lambda *a, **k: pytest.fail("the pipeline ran"))
    result = transfer(photo, tmp_path / "out.png", "--jpeg-quality", 80)
    assert result.exit_code == 2 and "--jpeg-quality sets the quality of a JPEG" in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []
