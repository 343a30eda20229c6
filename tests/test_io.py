"""Image I/O: every kind of file is made here with Pillow (or by hand), then read back and
checked against values computed from the file's definition (EXIF orientation table,
straight-alpha compositing, 16-bit scaling)."""

import json
import os
import struct
import zlib

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle import filesafety, reading, sheets, sizing, writing
from jaxstyle.errors import JaxstyleError

EXIF_ORIENTATION = 0x0112


def position_pattern(h, w):
    """uint8 [h, w, 3] where every pixel is unique and the layout is asymmetric:
    R encodes the row, G the column, B a diagonal ramp."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([y * 255 // max(h - 1, 1), x * 255 // max(w - 1, 1), (7 * y + 3 * x) % 256],
                    axis=-1).astype(np.uint8)


def save_pil(array, path, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


def png16_rgb(path, array):
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot write one)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    big = np.asarray(array, ">u2")
    h, w, _ = big.shape
    raw = b"".join(b"\x00" + big[i].tobytes() for i in range(h))  # filter type 0 per row
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


# EXIF orientation -> what a viewer shows, written as index maps out[i, j] = a[...] (TIFF 6.0 / EXIF 2.3).
def oriented(a, orientation):
    h, w = a.shape[:2]
    i, j = np.mgrid[0:(h if orientation <= 4 else w), 0:(w if orientation <= 4 else h)]
    src = {
        1: (i, j),
        2: (i, w - 1 - j),               # mirrored left-right
        3: (h - 1 - i, w - 1 - j),       # rotated 180
        4: (h - 1 - i, j),               # mirrored top-bottom
        5: (j, i),                       # transposed
        6: (h - 1 - j, i),               # needs 90 degrees clockwise
        7: (h - 1 - j, w - 1 - i),       # transversed
        8: (j, w - 1 - i),               # needs 90 degrees counter-clockwise
    }[orientation]
    return a[src]


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = position_pattern(5, 8)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = save_pil(stored, tmp_path / "o.png", exif=exif)
    expected = oriented(stored, orientation)
    np.testing.assert_array_equal(reading.load_image(path), expected / np.float32(255))
    np.testing.assert_array_equal(reading.load_label_image(path), expected)


def test_exif_orientation_in_jpeg_then_max_side(tmp_path):
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :40] = (255, 0, 0)  # left half red, right half blue in the stored pixels
    stored[:, 40:] = (0, 0, 255)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # shown rotated 90 clockwise: red on top, blue at the bottom
    path = save_pil(stored, tmp_path / "o.jpg", exif=exif, quality=95)
    image = reading.load_image(path, max_side=20)
    assert image.shape == (20, 10, 3)
    np.testing.assert_allclose(image[2, 5], (1, 0, 0), atol=0.08)
    np.testing.assert_allclose(image[17, 5], (0, 0, 1), atol=0.08)


def test_rgba_partial_alpha_is_composited_over_background(tmp_path):
    rgba = np.array([[[200, 100, 0, 128], [10, 20, 30, 0], [10, 20, 30, 255]]], np.uint8)
    path = save_pil(rgba, tmp_path / "a.png")
    for bg in [(1.0, 1.0, 1.0), (0.0, 0.25, 1.0)]:
        got = reading.load_image(path, background=bg)
        a = rgba[..., 3:] / 255.0
        expected = rgba[..., :3] / 255.0 * a + np.asarray(bg) * (1 - a)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert got.dtype == np.float32 and got.shape == (1, 3, 3)
    np.testing.assert_allclose(reading.load_image(path)[0, 0], [200 / 255 * 128 / 255 + 127 / 255,
                                                          100 / 255 * 128 / 255 + 127 / 255,
                                                          127 / 255], atol=1e-6)


def test_alpha_refuse_explains_and_opaque_alpha_is_accepted(tmp_path):
    rgba = np.full((4, 4, 4), 255, np.uint8)
    opaque = save_pil(rgba, tmp_path / "opaque.png")
    np.testing.assert_array_equal(reading.load_image(opaque, alpha="refuse"), np.ones((4, 4, 3)))
    rgba[0, 0, 3] = 254
    path = save_pil(rgba, tmp_path / "t.png")
    with pytest.raises(JaxstyleError, match=r"t\.png has transparent pixels \(1 of 16\).*composite"):
        reading.load_image(path, alpha="refuse")
    with pytest.raises(JaxstyleError, match="did you mean 'refuse'"):
        reading.load_image(path, alpha="refuze")


def test_grayscale_modes_expand_to_three_channels(tmp_path):
    gray = np.array([[0, 64, 255], [1, 128, 200]], np.uint8)
    expected = np.repeat(gray[..., None] / np.float32(255), 3, axis=-1)
    np.testing.assert_array_equal(reading.load_image(save_pil(gray, tmp_path / "l.png")), expected)

    la = np.stack([gray, np.full_like(gray, 64)], axis=-1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    a = 64 / 255
    np.testing.assert_allclose(reading.load_image(tmp_path / "la.png"), expected * a + (1 - a), atol=1e-6)

    Image.fromarray(gray > 100).convert("1").save(tmp_path / "bw.png")
    assert Image.open(tmp_path / "bw.png").mode == "1"
    np.testing.assert_array_equal(reading.load_image(tmp_path / "bw.png"),
                                  np.repeat((gray > 100)[..., None], 3, axis=-1).astype(np.float32))


def test_palette_images_and_gif_first_frame(tmp_path):
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [12, 34, 56]], np.uint8)
    index = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.uint8)
    im = Image.fromarray(index, mode="P")
    im.putpalette(palette.reshape(-1).tolist())
    im.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(reading.load_image(tmp_path / "p.png"), palette[index] / np.float32(255))
    np.testing.assert_array_equal(reading.load_label_image(tmp_path / "p.png"), palette[index])

    second = im.copy()
    second.putpalette(palette[::-1].reshape(-1).tolist())
    im.save(tmp_path / "anim.gif", save_all=True, append_images=[second], duration=100)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    np.testing.assert_array_equal(reading.load_image(tmp_path / "anim.gif"), palette[index] / np.float32(255))

    im.save(tmp_path / "t.gif", transparency=3)  # palette entry 3 is transparent
    expected = palette[index] / 255.0
    expected[index == 3] = (0.0, 0.0, 0.0)
    np.testing.assert_allclose(reading.load_image(tmp_path / "t.gif", background=(0, 0, 0)), expected)


def test_16bit_grayscale_png_is_scaled_by_65535_not_clipped(tmp_path):
    values = np.array([[65535, 32768, 1000, 0]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    got = reading.load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(got[..., 0], values / 65535.0, rtol=1e-6)
    np.testing.assert_array_equal(got[..., 0], got[..., 2])
    labels = reading.load_label_image(tmp_path / "g16.png")
    assert labels.dtype == np.uint16 and labels.shape == (1, 4)
    np.testing.assert_array_equal(labels, values)


def test_32bit_integer_tiff_in_16bit_range_and_out_of_range(tmp_path):
    values = np.array([[65535, 32768, 0]], np.int32)
    Image.fromarray(values).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_allclose(reading.load_image(tmp_path / "i.tif")[..., 1], values / 65535.0, rtol=1e-6)
    assert reading.load_label_image(tmp_path / "i.tif").dtype == np.int32
    Image.fromarray(np.array([[70000, 0]], np.int32)).save(tmp_path / "big.tif")
    with pytest.raises(JaxstyleError, match=r"big\.tif.*outside the 16-bit range"):
        reading.load_image(tmp_path / "big.tif")


def test_float_tiff_in_unit_range_and_out_of_range(tmp_path):
    values = np.array([[0.0, 0.25, 1.0]], np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    np.testing.assert_array_equal(reading.load_image(tmp_path / "f.tif")[..., 2], values)
    Image.fromarray(values * 255).save(tmp_path / "f255.tif")
    with pytest.raises(JaxstyleError, match=r"f255\.tif: floating-point image with values in \[0.0, 255.0\]"):
        reading.load_image(tmp_path / "f255.tif")
    with pytest.raises(JaxstyleError, match="floating-point label image"):
        reading.load_label_image(tmp_path / "f.tif")


def test_16bit_rgb_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[[65535, 32768, 0], [257, 0, 65535]]], np.uint16)
    path = png16_rgb(tmp_path / "rgb16.png", values)
    got = reading.load_image(path)
    # Pillow reads 16-bit RGB at 8-bit precision: within one 8-bit step of the true value.
    np.testing.assert_allclose(got, values / 65535.0, atol=1 / 255 + 1e-6)
    assert got[0, 0, 0] == 1.0 and 0.49 < got[0, 0, 1] < 0.51


@pytest.mark.parametrize("suffix,kwargs,exact", [
    (".tif", {}, True), (".bmp", {}, True), (".webp", {"lossless": True}, True),
    (".jpg", {"quality": 95}, False), (".webp", {"quality": 90}, False),
])
def test_common_formats(tmp_path, suffix, kwargs, exact):
    y, x = np.mgrid[0:24, 0:32]
    smooth = np.stack([x * 8, y * 10, 128 + 0 * x], axis=-1).astype(np.uint8)  # JPEG-friendly
    path = save_pil(smooth, tmp_path / f"img{suffix}", **kwargs)
    got = reading.load_image(path)
    assert got.shape == (24, 32, 3) and got.dtype == np.float32
    if exact:
        np.testing.assert_array_equal(got, smooth / np.float32(255))
    else:
        assert np.abs(got - smooth / 255.0).mean() < 0.02


def test_cmyk_jpeg_is_converted(tmp_path):
    Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)  # red
    got = reading.load_image(tmp_path / "c.jpg")
    assert got.shape == (4, 6, 3)
    np.testing.assert_allclose(got.mean(axis=(0, 1)), (1, 0, 0), atol=0.05)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("h,w,max_side,expected", [
    (1000, 500, 100, (100, 50)), (500, 1000, 100, (50, 100)), (300, 200, 100, (100, 67)),
    (3, 1000, 100, (1, 100)), (100, 100, 100, (100, 100)), (10, 20, 100, (10, 20)),
    (101, 101, 100, (100, 100)),
])
def test_fit_max_side(h, w, max_side, expected):
    assert sizing.fit_max_side(h, w, max_side) == expected


def test_fit_max_side_properties_and_errors():
    rng = np.random.default_rng(0)
    for h, w, m in rng.integers(1, 3000, size=(200, 3)):
        fh, fw = sizing.fit_max_side(int(h), int(w), int(m))
        assert max(fh, fw) == min(max(h, w), m)
        assert min(fh, fw) >= 1
        if max(h, w) > m:  # aspect kept to within rounding of the shorter side
            short, long_ = (h, w) if h <= w else (w, h)
            assert abs(min(fh, fw) - max(1, short * m / long_)) <= 0.5 + 1e-9
    for bad in (0, -5, 2.5, True, None):
        with pytest.raises(JaxstyleError, match="max_side must be a positive integer"):
            sizing.fit_max_side(10, 10, bad)


def test_load_with_max_side_resizes_with_correct_content(tmp_path):
    h, w = 60, 90
    ramp = np.broadcast_to(np.linspace(0, 1, w, dtype=np.float32)[None, :, None], (h, w, 3))
    Image.fromarray(np.round(ramp[..., 0] * 65535).astype(np.uint16)).save(tmp_path / "ramp.png")
    got = reading.load_image(tmp_path / "ramp.png", max_side=40)
    assert got.shape == (27, 40, 3)  # 60 * 40 / 90 = 26.67
    # Output pixel j's centre lies at input x = (j + 0.5) * 90 / 40 - 0.5; a linear ramp stays linear.
    expected = ((np.arange(40) + 0.5) * w / 40 - 0.5) / (w - 1)
    np.testing.assert_allclose(got[13, 3:-3, 0], expected[3:-3], atol=2e-3)
    small = reading.load_image(tmp_path / "ramp.png", max_side=500)
    assert small.shape == (60, 90, 3)  # never upscaled


def test_downscaling_averages_instead_of_aliasing(tmp_path):
    checker = (np.indices((64, 96)).sum(0) % 2 * 255).astype(np.uint8)  # one-pixel checkerboard
    got = reading.load_image(save_pil(checker, tmp_path / "c.png"), max_side=30)
    assert got.shape == (20, 30, 3)
    np.testing.assert_allclose(got[2:-2, 2:-2], 0.5, atol=0.05)  # point sampling would give 0s and 1s


def test_resize_image_shapes_range_and_constants():
    rng = np.random.default_rng(1)
    checker = (np.indices((16, 16)).sum(0) % 2).astype(np.float32)[..., None].repeat(3, -1)
    for size in [(5, 7), (40, 33), (16, 16)]:
        out = sizing.resize_image(checker, size)
        assert out.shape == (*size, 3) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1  # Lanczos overshoot clipped
    constant = np.full((13, 17, 3), 0.3, np.float32)
    np.testing.assert_allclose(sizing.resize_image(constant, (5, 40)), 0.3, atol=1e-5)
    gray = rng.random((9, 9)).astype(np.float32)
    assert sizing.resize_image(gray, (3, 4)).shape == (3, 4)
    with pytest.raises(JaxstyleError, match="height must be a positive integer"):
        sizing.resize_image(constant, (0, 4))
    with pytest.raises(JaxstyleError, match=r"got shape \(2, 3, 4, 3\)"):
        sizing.resize_image(np.zeros((2, 3, 4, 3)), (2, 2))


# --------------------------------------------------------------------------- failures


def test_pillow_bomb_guard_is_kept():
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 0


@pytest.mark.parametrize("limit", [1500, 400])  # warning zone (pixels > limit) and error zone (> 2 * limit)
def test_decompression_bomb_becomes_jaxstyle_error(tmp_path, monkeypatch, limit):
    path = save_pil(np.zeros((40, 50, 3), np.uint8), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    for load in (reading.load_image, reading.load_label_image):
        with pytest.raises(JaxstyleError, match=r"big\.png: too many pixels.*downscale the image first"):
            load(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    assert reading.load_image(path).shape == (40, 50, 3)


def test_corrupt_files(tmp_path):
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(JaxstyleError, match=r"noise\.png is not an image file Pillow can read"):
        reading.load_image(tmp_path / "noise.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(JaxstyleError, match=r"notes\.txt is not an image file"):
        reading.load_label_image(tmp_path / "notes.txt")
    for suffix in (".png", ".jpg"):
        good = save_pil(position_pattern(32, 32), tmp_path / f"good{suffix}").read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(good[: len(good) // 2])
        with pytest.raises(JaxstyleError, match=rf"cut\{suffix}: the image data is damaged or truncated"):
            reading.load_image(tmp_path / f"cut{suffix}")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(JaxstyleError, match=r"nope\.png: no such file; check the path"):
        reading.load_image(tmp_path / "nope.png")
    with pytest.raises(JaxstyleError, match="is a directory, not an image file"):
        reading.load_image(tmp_path)
    with pytest.raises(JaxstyleError, match="no such file"):
        writing.read_metadata(tmp_path / "nope.png")


def test_bad_background_is_rejected(tmp_path):
    path = save_pil(np.zeros((2, 2, 3), np.uint8), tmp_path / "x.png")
    for bad in [(1, 1), (0, 0, 2), "white"]:
        with pytest.raises(JaxstyleError, match="background must be three RGB values"):
            reading.load_image(path, background=bad)


# --------------------------------------------------------------------------- labels


def test_load_label_image_is_raw(tmp_path):
    big = position_pattern(37, 53)
    np.testing.assert_array_equal(reading.load_label_image(save_pil(big, tmp_path / "m.png")), big)
    gray = np.array([[0, 7, 255]], np.uint8)
    got = reading.load_label_image(save_pil(gray, tmp_path / "g.png"))
    assert got.dtype == np.uint8 and got.shape == (1, 3)
    np.testing.assert_array_equal(got, gray)
    rgba = np.concatenate([big, np.zeros((37, 53, 1), np.uint8)], axis=-1)  # alpha dropped, colours kept
    np.testing.assert_array_equal(reading.load_label_image(save_pil(rgba, tmp_path / "a.png")), big)
    Image.fromarray(gray > 0).convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(reading.load_label_image(tmp_path / "b.png"), [[0, 255, 255]])


# --------------------------------------------------------------------------- writing


def test_save_png_round_trip_rounds_and_clips(tmp_path):
    image = np.array([[[0.0, 0.5, 1.0], [-0.3, 1.7, 0.2]]], np.float32)
    out = writing.save_image(image, tmp_path / "o.png")
    assert out == tmp_path / "o.png"
    expected = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    assert sorted(os.listdir(tmp_path)) == ["o.png"]


def test_save_accepts_jax_arrays_and_writes_jpeg(tmp_path):
    y, x = np.mgrid[0:16, 0:24]
    image = jnp.asarray(np.stack([x / 23, y / 15, 0.5 + 0 * x], -1), jnp.float32)
    out = writing.save_image(image, tmp_path / "o.JPG", quality=97)
    with Image.open(out) as im:
        assert im.format == "JPEG"
    assert np.abs(reading.load_image(out) - np.asarray(image)).max() < 0.03


def test_saved_file_gets_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    out = writing.save_image(np.zeros((2, 2, 3)), tmp_path / "o.png")
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_metadata_round_trip_png_and_jpeg(tmp_path):
    metadata = {"content": "photos/é.jpg", "style_weight": 100.0, "iterations": 1000,
                "laplacian": {"eps": 1e-7, "radius": 1}, "seed": 0}
    for name in ("o.png", "o.jpg", "o.jpeg"):
        out = writing.save_image(np.full((8, 8, 3), 0.5), tmp_path / name, metadata=metadata)
        assert writing.read_metadata(out) == metadata
    with Image.open(tmp_path / "o.png") as im:
        assert im.text["Software"].startswith("jaxstyle ")
        assert json.loads(im.text["jaxstyle"]) == metadata
    save_pil(np.zeros((2, 2, 3), np.uint8), tmp_path / "plain.png")
    assert writing.read_metadata(tmp_path / "plain.png") == {}
    with pytest.raises(JaxstyleError, match="JSON-serialisable"):
        writing.save_image(np.zeros((2, 2, 3)), tmp_path / "bad.png", metadata={"x": object()})
    assert not (tmp_path / "bad.png").exists()
    # One JPEG EXIF segment holds < 64 KiB: the largest value that fits is written, the next refused.
    tiff_overhead = len(Image.Exif().tobytes()) + 100  # header, two tags, "jaxstyle 0.1.0", JSON quoting
    fits = writing.save_image(np.zeros((2, 2, 3)), tmp_path / "fits.jpg",
                         metadata={"x": "a" * (writing.JPEG_MAX_EXIF_BYTES - tiff_overhead)})
    assert len(writing.read_metadata(fits)["x"]) == writing.JPEG_MAX_EXIF_BYTES - tiff_overhead
    with pytest.raises(JaxstyleError, match=r"does not fit in a JPEG's EXIF block.*save as \.png"):
        writing.save_image(np.zeros((2, 2, 3)), tmp_path / "big.jpg", metadata={"x": "a" * 65_533})
    assert not (tmp_path / "big.jpg").exists()


def test_unknown_suffix_lists_supported(tmp_path):
    for name, hint in [("o.gif", ""), ("o", ""), ("o.pgn", "did you mean '.png'")]:
        with pytest.raises(JaxstyleError, match=rf"unknown output suffix.*{hint}.*supported: \.png, \.jpg, \.jpeg"):
            writing.save_image(np.zeros((2, 2, 3)), tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_save_refuses_bad_images_and_missing_directory(tmp_path):
    for bad, match in [(np.zeros((2, 2)), r"\[H, W, 3\], got \(2, 2\)"),
                       (np.full((2, 2, 3), np.nan), "NaN or Inf"),
                       (np.zeros((2, 2, 3), np.int64), "dtype int64")]:
        with pytest.raises(JaxstyleError, match=match):
            writing.save_image(bad, tmp_path / "o.png")
    with pytest.raises(JaxstyleError, match="does not exist; create it first"):
        writing.save_image(np.zeros((2, 2, 3)), tmp_path / "missing" / "o.png")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(JaxstyleError, match="is a directory"):
        writing.save_image(np.zeros((2, 2, 3)), tmp_path / "d.png", overwrite=True)
    assert os.listdir(tmp_path) == ["d.png"]


def test_existing_output_needs_overwrite(tmp_path):
    out = writing.save_image(np.zeros((2, 2, 3)), tmp_path / "o.png")
    before = out.read_bytes()
    with pytest.raises(JaxstyleError, match="already exists; choose another output .* --overwrite"):
        writing.save_image(np.ones((2, 2, 3)), out)
    assert out.read_bytes() == before
    writing.save_image(np.ones((2, 2, 3)), out, overwrite=True)
    np.testing.assert_array_equal(reading.load_image(out), np.ones((2, 2, 3)))


def test_inputs_are_protected_even_with_overwrite(tmp_path):
    content = save_pil(position_pattern(4, 4), tmp_path / "content.png")
    before = content.read_bytes()
    (tmp_path / "sub").mkdir()
    os.symlink(content, tmp_path / "link.png")
    os.link(content, tmp_path / "hard.png")
    spellings = [content, tmp_path / "sub" / ".." / "content.png", tmp_path / "link.png",
                 tmp_path / "hard.png", os.path.relpath(content)]
    for target in spellings:
        with pytest.raises(JaxstyleError, match="is one of the inputs .* pass --force"):
            writing.save_image(np.zeros((4, 4, 3)), target, overwrite=True, protect=[str(content)])
    for target in spellings[:2]:  # protect given in another spelling than the output
        with pytest.raises(JaxstyleError, match="one of the inputs"):
            writing.save_image(np.zeros((4, 4, 3)), content, overwrite=True, protect=[target])
    assert content.read_bytes() == before
    writing.save_image(np.zeros((4, 4, 3)), content, protect=[content], force=True)
    np.testing.assert_array_equal(reading.load_image(content), np.zeros((4, 4, 3)))


def test_protect_before_the_output_exists(tmp_path):
    target = tmp_path / "new.png"
    with pytest.raises(JaxstyleError, match="one of the inputs"):
        writing.save_image(np.zeros((2, 2, 3)), target, protect=[tmp_path / "." / "new.png"])
    assert not target.exists()
    writing.save_image(np.zeros((2, 2, 3)), target, protect=[tmp_path / "other.png"])
    assert target.exists()


def test_failed_replace_leaves_original_and_no_temporary(tmp_path, monkeypatch):
    out = writing.save_image(np.zeros((3, 3, 3)), tmp_path / "o.png")
    before = out.read_bytes()

    def broken_replace(src, dst):
        assert os.path.dirname(src) == os.path.dirname(dst)  # same directory: a rename, not a copy
        assert os.path.exists(src)  # the whole image was written before the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(filesafety.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        writing.save_image(np.ones((3, 3, 3)), out, overwrite=True)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["o.png"]


def test_failed_encode_leaves_no_temporary(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("encoder exploded")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    for name in ("o.png", "o.jpg"):
        with pytest.raises(OSError, match="encoder exploded"):
            writing.save_image(np.zeros((3, 3, 3)), tmp_path / name)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- in-memory images


def _u8(*shape):
    return (np.arange(np.prod(shape)) * 37 % 256).astype(np.uint8).reshape(shape)


@pytest.mark.parametrize("make,expected", [
    (lambda: _u8(2, 3, 3), lambda: _u8(2, 3, 3) / 255.0),
    (lambda: _u8(2, 3), lambda: np.repeat(_u8(2, 3)[..., None], 3, -1) / 255.0),
    (lambda: _u8(2, 3, 1), lambda: np.repeat(_u8(2, 3, 1), 3, -1) / 255.0),
    (lambda: np.full((2, 2, 4), [255, 0, 0, 51], np.uint8), lambda: np.full((2, 2, 3), [1, 0.8, 0.8])),
    (lambda: np.full((2, 2), 0.25, np.float64), lambda: np.full((2, 2, 3), 0.25)),
    (lambda: np.full((2, 2, 3), 1 + 5e-4, np.float32), lambda: np.ones((2, 2, 3))),  # within tolerance
    (lambda: np.full((2, 2, 3), 0.75, np.float16), lambda: np.full((2, 2, 3), 0.75)),
    (lambda: np.array([[0, 32768, 65535]], np.uint16), lambda: np.repeat(np.array([[0, 32768 / 65535, 1]])[..., None], 3, -1)),
    (lambda: np.array([[True, False]]), lambda: np.repeat(np.array([[1.0, 0.0]])[..., None], 3, -1)),
    (lambda: jnp.full((2, 3, 3), 0.5), lambda: np.full((2, 3, 3), 0.5)),
    (lambda: Image.fromarray(_u8(2, 3, 3)), lambda: _u8(2, 3, 3) / 255.0),
    (lambda: Image.fromarray(_u8(2, 3)), lambda: np.repeat(_u8(2, 3)[..., None], 3, -1) / 255.0),
    (lambda: Image.new("RGBA", (2, 1), (0, 0, 0, 0)), lambda: np.ones((1, 2, 3))),
], ids=["u8-rgb", "u8-hw", "u8-hw1", "u8-rgba", "f64-hw", "f32-tolerance", "f16", "u16", "bool",
        "jax", "pil-rgb", "pil-l", "pil-rgba"])
def test_to_numpy_image_accepts(make, expected):
    got = reading.to_numpy_image(make())
    assert got.dtype == np.float32 and got.ndim == 3 and got.shape[-1] == 3
    np.testing.assert_allclose(got, expected(), atol=1e-6)


def test_to_numpy_image_applies_pil_exif_orientation(tmp_path):
    stored = position_pattern(3, 5)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 8
    save_pil(stored, tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        np.testing.assert_array_equal(reading.to_numpy_image(im), oriented(stored, 8) / np.float32(255))


def test_to_numpy_image_returns_a_copy():
    x = np.full((2, 2, 3), 0.5, np.float32)
    reading.to_numpy_image(x)[:] = 0
    assert x.min() == 0.5


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 2, 2)), r"got \(2, 2, 2\)"),
    (np.zeros((1, 2, 2, 3)), "pass one image at a time"),
    (np.zeros(5), r"got \(5,\)"),
    (np.zeros((0, 2, 3)), r"got \(0, 2, 3\)"),
    (np.zeros((2, 2, 3), np.int32), "unsupported image dtype int32"),
    (np.full((2, 2, 3), 1.5), r"must lie in \[0, 1\], got \[1.5, 1.5\]; divide 0..255 data by 255"),
    (np.full((2, 2, 3), -0.01), r"must lie in \[0, 1\]"),
    (np.full((2, 2, 3), np.nan), "NaN or Inf"),
    ([[0.5]], "got list"),
    ("photo.png", "got a path.*load_image"),
])
def test_to_numpy_image_rejects(bad, match):
    with pytest.raises(JaxstyleError, match=match):
        reading.to_numpy_image(bad)


def test_to_numpy_image_alpha_refuse():
    rgba = np.ones((2, 2, 4), np.float32)
    np.testing.assert_array_equal(reading.to_numpy_image(rgba, alpha="refuse"), np.ones((2, 2, 3)))
    rgba[1, 1, 3] = 0.5
    with pytest.raises(JaxstyleError, match=r"transparent pixels \(1 of 4\)"):
        reading.to_numpy_image(rgba, alpha="refuse")


# --------------------------------------------------------------------------- contact sheets


def test_side_by_side_layout():
    red = np.zeros((10, 20, 3), np.float32)
    red[..., 0] = 1
    blue = np.zeros((30, 30, 3), np.float32)
    blue[..., 2] = 1
    row = sheets.side_by_side([red, blue], height=20, gap=4)
    assert row.shape == (20, 40 + 4 + 20, 3) and row.dtype == np.float32
    np.testing.assert_allclose(row[:, :40], np.broadcast_to([1, 0, 0], (20, 40, 3)), atol=1e-6)
    np.testing.assert_array_equal(row[:, 40:44], 1.0)  # the gap is white
    np.testing.assert_allclose(row[:, 44:], np.broadcast_to([0, 0, 1], (20, 20, 3)), atol=1e-6)


def test_side_by_side_labels_add_a_band_with_text_under_each_image():
    images = [np.zeros((16, 16, 3)), np.zeros((16, 32, 3)), np.zeros((16, 8, 3))]
    plain = sheets.side_by_side(images, height=16, gap=2)
    labelled = sheets.side_by_side(images, height=16, gap=2, labels=["content", "", "out"])
    assert labelled.shape[1] == plain.shape[1] and labelled.shape[0] > plain.shape[0]
    np.testing.assert_array_equal(labelled[:16], plain)
    band = labelled[16:]
    assert band[:, 0:16].min() < 0.5  # dark text under the first image
    np.testing.assert_array_equal(band[:, 18:50], 1.0)  # empty label: blank
    assert band[:, 52:60].min() < 0.5  # long label clipped to its 8-pixel-wide image
    with pytest.raises(JaxstyleError, match="got 2 labels for 3 images"):
        sheets.side_by_side(images, height=16, labels=["a", "b"])


def test_stack_rows_pads_right_with_white():
    a = np.zeros((5, 10, 3), np.float32)
    b = np.full((3, 4, 3), 0.5, np.float32)
    sheet = sheets.stack_rows([a, b], gap=2)
    assert sheet.shape == (5 + 2 + 3, 10, 3)
    np.testing.assert_array_equal(sheet[:5], 0)
    np.testing.assert_array_equal(sheet[5:7], 1)
    np.testing.assert_array_equal(sheet[7:, :4], 0.5)
    np.testing.assert_array_equal(sheet[7:, 4:], 1)
    with pytest.raises(JaxstyleError, match="at least one row"):
        sheets.stack_rows([])


@pytest.mark.parametrize("mode, space, kept", [("RGB", b"RGB ", True), ("CMYK", b"CMYK", False),
                                              ("L", b"GRAY", False)])
def test_a_photo_keeps_its_icc_profile_only_when_it_describes_rgb(tmp_path, mode, space, kept):
    """The result is RGB: a CMYK or grey profile carried onto it would misdescribe its pixels."""
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[16:20] = space  # the header's data colour space
    pixels = (np.random.default_rng(0).random((12, 16, 3)) * 255).astype(np.uint8)
    path = tmp_path / ("photo.jpg" if mode == "CMYK" else "photo.png")
    Image.fromarray(pixels).convert(mode).save(path, icc_profile=bytes(profile))
    photo = reading.read_photo(path)
    assert photo.pixels.shape == (12, 16, 3)
    assert photo.icc_profile == (bytes(profile) if kept else None)
    out = tmp_path / "out.png"
    writing.save_image(photo.pixels, out, icc_profile=photo.icc_profile)
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == (bytes(profile) if kept else None)


# --------------------------------------------------------------------------- ICC profiles

def _p3():
    import _iccprofiles

    return _iccprofiles.display_p3()


def test_a_wide_gamut_photo_is_read_in_srgb_and_a_result_written_back_in_its_profile(tmp_path):
    """A Display P3 file's numbers are converted to sRGB on reading (by every reader), kept as its
    profile, and a result saved with that profile is converted back into it: the file's own
    numbers come back within rounding (colours inside sRGB's gamut, so nothing is clipped)."""
    from jaxstyle import icc

    stored = np.round(icc.from_srgb(position_pattern(24, 32) / np.float32(255), icc.parse(_p3())) * 255)
    stored = stored.astype(np.uint8)
    path = save_pil(stored, tmp_path / "p3.png", icc_profile=_p3())
    expected = icc.to_srgb(stored / np.float32(255), icc.parse(_p3()))
    assert np.abs(expected - stored / 255).max() > 0.05  # the conversion matters for these colours
    photo = reading.read_photo(path)
    np.testing.assert_allclose(photo.pixels, expected, atol=1e-6)
    np.testing.assert_allclose(reading.load_image(path), expected, atol=1e-6)
    with Image.open(path) as im:
        np.testing.assert_allclose(reading.to_numpy_image(im), expected, atol=1e-6)
    assert photo.icc_profile == _p3()
    for bits in (8, 16):
        out = writing.save_image(photo.pixels, tmp_path / f"out{bits}.png", bits=bits, icc_profile=photo.icc_profile)
        with Image.open(out) as im:
            assert im.info["icc_profile"] == _p3()
        if bits == 8:  # the file's own numbers, within rounding
            with Image.open(out) as im:
                np.testing.assert_allclose(np.asarray(im, np.float64), stored, atol=1.0)
        else:  # the result's sRGB colours, through 16 bits in P3
            np.testing.assert_allclose(reading.load_image(out), photo.pixels, atol=1e-4)


def test_srgb_tagged_and_untagged_files_read_and_write_the_same_numbers(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    stored = position_pattern(24, 32)
    tagged = reading.read_photo(save_pil(stored, tmp_path / "tagged.png", icc_profile=srgb))
    np.testing.assert_array_equal(tagged.pixels, reading.load_image(save_pil(stored, tmp_path / "plain.png")))
    out = writing.save_image(tagged.pixels, tmp_path / "out.png", icc_profile=tagged.icc_profile)
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), stored)


def test_a_profile_that_is_not_matrix_trc_is_kept_and_its_numbers_taken_as_they_are(tmp_path):
    import _iccprofiles as P

    lut_only = P.profile(P.ADOBE_RGB, [P.xyz_tag(P.D50)] * 3)  # RGB, but no tone curves to read
    stored = position_pattern(24, 32)
    photo = reading.read_photo(save_pil(stored, tmp_path / "lut.png", icc_profile=lut_only))
    np.testing.assert_array_equal(photo.pixels, stored / np.float32(255))
    assert photo.icc_profile == lut_only
    out = writing.save_image(photo.pixels, tmp_path / "out.png", icc_profile=photo.icc_profile)
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im), stored)


def test_a_photo_knows_its_depth_and_a_png_result_keeps_it_by_default(tmp_path):
    stored = position_pattern(6, 8).astype(np.uint16) * 257 + 3
    deep = png16_rgb(tmp_path / "deep.png", stored)
    grey = tmp_path / "grey16.png"
    Image.fromarray(stored[..., 0]).save(grey)
    plain = save_pil(position_pattern(6, 8), tmp_path / "plain.png")
    assert [reading.read_photo(p).bits for p in (deep, grey, plain)] == [16, 16, 8]
    photo = reading.read_photo(deep)
    assert writing.output_bits(None, photo, "out.png") == 16 and writing.output_bits(None, photo, "OUT.PNG") == 16
    assert writing.output_bits(None, photo, "out.jpg") == 8 and writing.output_bits(8, photo, "out.png") == 8
    assert writing.output_bits(None, reading.read_photo(plain), "out.png") == 8
