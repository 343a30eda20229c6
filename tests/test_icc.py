"""`jaxstyle.icc`: matrix/TRC ICC profiles read from their bytes and colours converted to and from
sRGB, against the formulas (ICC.1:2010 sections 10.6 and 10.16; IEC 61966-2-1's sRGB) and against
LittleCMS (Pillow's ImageCms) on profiles the tests write byte by byte (`_iccprofiles`)."""

import io as bytesio
import struct

import _iccprofiles as P
import numpy as np
import pytest
from PIL import Image, ImageCms

from jaxstyle import icc

SRGB_LCMS = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def parametric(kind, p, x):
    """ICC.1:2010 table 68, written out case by case."""
    g, a, b, c, d, e, f = list(p) + [0.0] * (7 - len(p))
    if kind == 0:
        return x ** g
    if kind == 1:
        return np.where(x >= -b / a, np.maximum(a * x + b, 0) ** g, 0.0)
    if kind == 2:
        return np.where(x >= -b / a, np.maximum(a * x + b, 0) ** g + c, c)
    if kind == 3:
        return np.where(x >= d, (a * x + b) ** g, c * x)
    return np.where(x >= d, (a * x + b) ** g + e, c * x + f)


# (curve tag, the curve it describes as a function of the encoded value in [0, 1])
CURVES = {
    "gamma 2.2": (P.gamma_tag(563 / 256), lambda x: x ** (563 / 256)),
    "gamma 1.8": (P.gamma_tag(1.8), lambda x: x ** (round(1.8 * 256) / 256)),  # u8Fixed8
    "identity": (b"curv" + bytes(8), lambda x: x),
    "para 0": (P.parametric_tag(0, [2.0]), lambda x: parametric(0, P.quantised([2.0]), x)),
    "para 1": (P.parametric_tag(1, [2.2, 1.1, -0.1]), lambda x: parametric(1, P.quantised([2.2, 1.1, -0.1]), x)),
    "para 2": (P.parametric_tag(2, [2.2, 0.98, 0.0, 0.02]),
               lambda x: parametric(2, P.quantised([2.2, 0.98, 0.0, 0.02]), x)),
    "para 3 (sRGB)": (P.parametric_tag(3, P.SRGB_PARAMETERS),
                      lambda x: parametric(3, P.quantised(P.SRGB_PARAMETERS), x)),
    "para 4": (P.parametric_tag(4, [2.4, 0.9, 0.05, 0.08, 0.05, 0.01, 0.002]),
               lambda x: parametric(4, P.quantised([2.4, 0.9, 0.05, 0.08, 0.05, 0.01, 0.002]), x)),
    "table of 1024": (P.table_tag(np.linspace(0, 1, 1024) ** 2.4),
                      lambda x: np.interp(x, np.linspace(0, 1, 1024),
                                          np.round(np.linspace(0, 1, 1024) ** 2.4 * 65535) / 65535)),
}


def random_pixels(seed, shape=(40, 30, 3)):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_the_srgb_matrix_is_srgbs_primaries_adapted_to_d50():
    np.testing.assert_allclose(icc.SRGB_TO_XYZ_D50, P.srgb_to_xyz_d50(), atol=1e-7)
    np.testing.assert_allclose(icc.SRGB_TO_XYZ_D50.sum(axis=1), P.D50, atol=1e-6)  # white to D50


@pytest.mark.parametrize("name", CURVES)
def test_a_profile_reads_back_its_matrix_and_curves(name):
    tag, curve = CURVES[name]
    parsed = icc.parse(P.profile(P.ADOBE_RGB, [tag] * 3))
    assert parsed is not None
    np.testing.assert_allclose(parsed.to_xyz, P.quantised(P.ADOBE_RGB), atol=1e-9)
    x = np.linspace(0, 1, parsed.curves.shape[1])
    np.testing.assert_allclose(parsed.curves, np.broadcast_to(np.clip(curve(x), 0, 1), parsed.curves.shape),
                               atol=2e-6)


@pytest.mark.parametrize("name", CURVES)
@pytest.mark.parametrize("matrix", [P.ADOBE_RGB, P.DISPLAY_P3], ids=["Adobe RGB", "Display P3"])
def test_conversion_to_srgb_matches_the_formulas(name, matrix):
    tag, curve = CURVES[name]
    parsed = icc.parse(P.profile(matrix, [tag] * 3))
    pixels = random_pixels(1)
    np.testing.assert_allclose(icc.to_srgb(pixels, parsed), P.to_srgb_reference(pixels, matrix, curve), atol=5e-5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("make", [P.adobe_rgb, P.display_p3], ids=["Adobe RGB", "Display P3"])
def test_srgb_colours_survive_a_round_trip_through_a_wider_gamut(seed, make):
    """sRGB lies inside both gamuts, so nothing is clipped: back to within 16-bit precision."""
    parsed = icc.parse(make())
    pixels = random_pixels(seed)
    there = icc.from_srgb(pixels, parsed)
    assert there.dtype == np.float32 and there.min() >= 0 and there.max() <= 1
    np.testing.assert_allclose(icc.to_srgb(there, parsed), pixels, atol=3e-5)


@pytest.mark.parametrize("make", [P.adobe_rgb, P.display_p3], ids=["Adobe RGB", "Display P3"])
def test_white_stays_white_and_greys_stay_grey(make):
    greys = np.repeat(np.linspace(0, 1, 11, dtype=np.float32)[:, None, None], 3, axis=-1)  # [11, 1, 3]
    out = icc.to_srgb(greys, icc.parse(make()))
    np.testing.assert_allclose(out[-1], 1.0, atol=1e-3)
    np.testing.assert_allclose(out - out.mean(axis=-1, keepdims=True), 0.0, atol=1e-3)


@pytest.mark.parametrize("make", [P.adobe_rgb, P.display_p3], ids=["Adobe RGB", "Display P3"])
def test_8_bit_conversions_agree_with_littlecms(make):
    """LittleCMS rounds through 16-bit tables of its own: within two 8-bit steps, a third of one on
    average, both ways."""
    theirs = ImageCms.ImageCmsProfile(bytesio.BytesIO(make()))
    parsed = icc.parse(make())
    pixels = (random_pixels(2, (64, 64, 3)) * 255).round().astype(np.uint8)
    for ours, source, target in [(icc.to_srgb, theirs, SRGB_LCMS), (icc.from_srgb, SRGB_LCMS, theirs)]:
        expected = np.asarray(ImageCms.profileToProfile(Image.fromarray(pixels), source, target), np.float64)
        difference = np.abs(ours(pixels / np.float32(255), parsed) * 255 - expected)
        assert difference.max() <= 2.0 and difference.mean() <= 0.35, (difference.max(), difference.mean())


def test_a_conversion_in_place_over_many_row_blocks_equals_a_new_array():
    parsed = icc.parse(P.display_p3())
    pixels = random_pixels(3, (600, 7, 3))
    expected = icc.to_srgb(pixels, parsed)
    assert icc.to_srgb(pixels, parsed, out=pixels) is pixels
    np.testing.assert_array_equal(pixels, expected)


@pytest.mark.parametrize("profile", [
    SRGB_LCMS.tobytes(),
    P.profile(P.SRGB, [P.parametric_tag(3, P.SRGB_PARAMETERS)] * 3),
    P.profile(P.SRGB, [P.table_tag(CURVES["para 3 (sRGB)"][1](np.linspace(0, 1, 1024)))] * 3),
], ids=["LittleCMS", "parametric", "table of 1024"])
def test_srgb_profiles_leave_the_pixels_alone(profile):
    assert icc.parse(profile) is not None and icc.to_convert(profile) is None


@pytest.mark.parametrize("make", [P.adobe_rgb, P.display_p3], ids=["Adobe RGB", "Display P3"])
def test_wide_gamut_profiles_are_converted(make):
    assert icc.to_convert(make()) is not None and icc.to_convert(None) is None


def _without(profile: bytes, signature: bytes) -> bytes:
    """`profile` with one tag's signature renamed, so readers no longer find it."""
    count = struct.unpack_from(">I", profile, 128)[0]
    data = bytearray(profile)
    for i in range(count):
        if data[132 + 12 * i:136 + 12 * i] == signature:
            data[132 + 12 * i:136 + 12 * i] = b"zzzz"
    return bytes(data)


@pytest.mark.parametrize("profile", [
    b"",
    b"\0" * 200,
    P.profile(P.ADOBE_RGB, [P.gamma_tag(2.2)] * 3, space=b"CMYK"),
    P.profile(P.ADOBE_RGB, [P.gamma_tag(2.2)] * 3, pcs=b"Lab "),
    _without(P.adobe_rgb(), b"bTRC"),
    _without(P.adobe_rgb(), b"gXYZ"),
    P.profile(P.ADOBE_RGB, [P.parametric_tag(7, [2.2])] * 3),
    P.profile(P.ADOBE_RGB, [P.xyz_tag(P.D50)] * 3),
    P.profile([[0, 0, 0]] * 3, [P.gamma_tag(2.2)] * 3),
    P.adobe_rgb()[:300],
    P.profile(P.ADOBE_RGB, [P.parametric_tag(1, [2.2, 0.0, 0.5])] * 3),
    P.profile(P.ADOBE_RGB, [P.parametric_tag(0, [-1.0])] * 3),
], ids=["empty", "zeros", "CMYK", "Lab connection space", "no blue curve", "no green column",
        "unknown curve type", "a curve of the wrong type", "singular matrix", "truncated", "a flat curve",
        "a negative gamma"])
def test_what_is_not_a_matrix_trc_rgb_profile_is_not_read(profile):
    assert icc.parse(profile) is None and icc.to_convert(profile) is None


def test_no_truncation_or_corruption_of_a_profile_raises():
    profile = P.display_p3()
    rng = np.random.default_rng(0)
    for n in range(0, len(profile), 5):
        icc.parse(profile[:n])
    for _ in range(200):
        corrupt = bytearray(profile)
        corrupt[rng.integers(128, len(profile))] = rng.integers(256)
        parsed = icc.parse(bytes(corrupt))
        assert parsed is None or np.all(np.isfinite(parsed.curves))
