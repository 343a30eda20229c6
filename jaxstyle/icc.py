"""Colour conversion between an embedded RGB ICC profile and sRGB (numpy, float32).

A photo tagged with a wide-gamut profile (Display P3 from phones, Adobe RGB or ProPhoto from
cameras and editors) stores other numbers for the same colour than sRGB does. The VGG features,
the style's statistics and the final filter all read pixels as sRGB, so such a photo is
converted to sRGB on reading, and a result that keeps its profile is converted back on
writing. Only matrix/TRC profiles are read (three tone curves and a 3x3 matrix to the D50
profile connection space: ICC.1:2010 section 8.3.3), which is what RGB photo and display
profiles are; `parse` returns None for anything else, and the caller keeps the pixels as they
are. Images are float32 `[H, W, 3]` in [0, 1]; conversions clip to the target's gamut
(relative colorimetric, as LittleCMS does for these profiles).
"""

from __future__ import annotations

import dataclasses
import functools
import struct

import numpy as np

__all__ = ["RgbProfile", "SRGB_TO_XYZ_D50", "convert", "from_srgb", "is_srgb", "parse", "to_convert", "to_srgb"]

# Linear sRGB -> XYZ of the connection space: sRGB's primaries and D65 white (IEC 61966-2-1)
# adapted by Bradford to the ICC's D50 (0.9642, 1, 0.8249), as LittleCMS builds its sRGB
# profile; columns are R, G, B.
SRGB_TO_XYZ_D50 = np.array([[0.4360413, 0.3851129, 0.1430458],
                            [0.2224845, 0.7169051, 0.0606104],
                            [0.0139202, 0.0970672, 0.7139126]])
# Largest difference from sRGB on a grid of colours for a profile to be taken as sRGB itself and
# its pixels left untouched: one 8-bit step (the common sRGB profiles differ from the formulas by
# half of one, HP's, and an eighth, LittleCMS's, in their curves' sampling and matrices' rounding).
SAME_AS_SRGB = 1.0 / 255.0
# Samples of each tone curve and of its inverse: a 16-bit step apart.
_CURVE_SAMPLES = 65537
# The inverse is sampled uniformly in y ** (1 / _WARP), where a power curve's inverse is smooth.
_WARP = 4.0
_ROWS_PER_BLOCK = 256  # rows converted at a time, so the temporaries stay small


@dataclasses.dataclass(frozen=True, eq=False)
class RgbProfile:
    """A matrix/TRC RGB profile. `curves` `[3, _CURVE_SAMPLES]`: linear light at encoded values
    on a uniform grid of [0, 1]; `inverses` `[3, _CURVE_SAMPLES]`: encoded values at linear
    light t ** _WARP, t on a uniform grid; `to_xyz` `[3, 3]`: linear RGB -> D50 XYZ (columns
    R, G, B)."""

    curves: np.ndarray
    inverses: np.ndarray
    to_xyz: np.ndarray

    @classmethod
    def from_curves(cls, curves: np.ndarray, to_xyz: np.ndarray) -> RgbProfile:
        grid = np.linspace(0.0, 1.0, _CURVE_SAMPLES)
        inverses = np.stack([np.interp(grid ** _WARP, c, grid) for c in curves])
        return cls(curves.astype(np.float32), inverses.astype(np.float32), np.asarray(to_xyz, np.float64))


@functools.lru_cache(maxsize=16)
def to_convert(profile: bytes | None) -> RgbProfile | None:
    """The profile a photo's pixels are converted from on reading (and a result's into on
    writing): None for no profile, one that encodes as sRGB does, or one `parse` cannot read."""
    parsed = parse(profile) if profile else None
    return None if parsed is None or is_srgb(parsed) else parsed


def parse(profile: bytes) -> RgbProfile | None:
    """The matrix/TRC model of an ICC profile's bytes; None when it is not one (a LUT-based,
    grey, CMYK or damaged profile)."""
    try:
        if len(profile) < 132 or profile[16:20] != b"RGB " or profile[20:24] != b"XYZ ":
            return None
        (count,) = struct.unpack_from(">I", profile, 128)
        tags = {}
        for i in range(min(count, 1000)):
            sig, offset, size = struct.unpack_from(">4sII", profile, 132 + 12 * i)
            tags[sig] = profile[offset:offset + size]
        names = (b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC")
        if not all(len(tags.get(n, b"")) >= 12 for n in names):
            return None
        to_xyz = np.array([_xyz(tags[n]) for n in names[:3]]).T  # [3, 3]
        with np.errstate(all="ignore"):  # a degenerate curve turns non-finite, refused below
            curves = np.stack([_curve(tags[n]) for n in names[3:]])
    except (struct.error, ValueError):
        return None
    # a tone curve rises from black to white; a flat one (a damaged tag) would erase the image
    if not np.all(np.isfinite(curves)) or np.any(curves[:, -1] - curves[:, 0] < 0.5) \
            or abs(np.linalg.det(to_xyz)) < 1e-6:
        return None
    return RgbProfile.from_curves(curves, to_xyz)


def _xyz(tag: bytes) -> np.ndarray:
    if tag[:4] != b"XYZ ":
        raise ValueError("not an XYZ tag")
    return np.array(struct.unpack_from(">3i", tag, 8)) / 65536.0


def _curve(tag: bytes) -> np.ndarray:
    """A tone curve tag ('curv' or 'para') sampled on `_CURVE_SAMPLES` points of [0, 1],
    made non-decreasing."""
    x = np.linspace(0.0, 1.0, _CURVE_SAMPLES)
    kind = tag[:4]
    if kind == b"curv":
        (n,) = struct.unpack_from(">I", tag, 8)
        if n == 0:
            y = x
        elif n == 1:
            y = x ** (struct.unpack_from(">H", tag, 12)[0] / 256.0)
        else:
            table = np.frombuffer(tag, ">u2", n, 12) / 65535.0
            y = np.interp(x, np.linspace(0.0, 1.0, n), table)
    elif kind == b"para":
        (fn,) = struct.unpack_from(">H", tag, 8)
        n_params = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(fn)
        if n_params is None:
            raise ValueError(f"unknown parametric curve type {fn}")
        p = np.array(struct.unpack_from(f">{n_params}i", tag, 12)) / 65536.0
        y = _parametric(fn, p, x)
    else:
        raise ValueError("not a tone curve")
    return np.maximum.accumulate(np.clip(y, 0.0, 1.0))


def _parametric(fn: int, p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ICC.1:2010 table 68: the five parametric curve types."""
    g, a, b, c, d, e, f = np.concatenate([p, np.zeros(7 - len(p))])
    if fn == 0:
        return x ** g
    power = np.maximum(a * x + b, 0.0) ** g
    if fn == 1:
        return np.where(x >= -b / a, power, 0.0)
    if fn == 2:
        return np.where(x >= -b / a, power + c, c)
    if fn == 3:
        return np.where(x >= d, power, c * x)
    return np.where(x >= d, power + e, c * x + f)


def _lookup(table: np.ndarray, t: np.ndarray) -> np.ndarray:
    """`table` `[_CURVE_SAMPLES]`, sampled on a uniform grid of [0, 1], linearly interpolated at
    `t` (clipped to [0, 1])."""
    t = np.clip(t, 0.0, 1.0) * np.float32(_CURVE_SAMPLES - 1)
    i = np.minimum(t.astype(np.int32), _CURVE_SAMPLES - 2)
    w = t - i
    return table[i] * (1.0 - w) + table[i + 1] * w


def _srgb_curve() -> np.ndarray:
    return _parametric(3, np.array([2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045]),
                       np.linspace(0.0, 1.0, _CURVE_SAMPLES))


_SRGB = RgbProfile.from_curves(np.stack([_srgb_curve()] * 3), SRGB_TO_XYZ_D50)


def convert(pixels: np.ndarray, source: RgbProfile, target: RgbProfile, *, out: np.ndarray | None = None) -> np.ndarray:
    """`pixels` `[H, W, 3]` encoded in `source` as `target` encodes the same colours, clipped to
    [0, 1]; in blocks of rows, into `out` (which may be `pixels` itself) or a new float32 array."""
    if out is None:
        out = np.empty(pixels.shape, np.float32)
    # linear source RGB -> linear target RGB
    matrix = np.linalg.solve(target.to_xyz, source.to_xyz).astype(np.float32)
    for top in range(0, pixels.shape[0], _ROWS_PER_BLOCK):
        block = pixels[top:top + _ROWS_PER_BLOCK]
        linear = np.stack([_lookup(source.curves[c], block[..., c]) for c in range(3)], axis=-1)
        linear = np.maximum(linear @ matrix.T, 0.0)
        warped = np.sqrt(np.sqrt(linear))  # linear ** (1 / _WARP)
        out[top:top + _ROWS_PER_BLOCK] = np.stack(
            [_lookup(target.inverses[c], warped[..., c]) for c in range(3)], axis=-1)
    return out


def to_srgb(pixels: np.ndarray, profile: RgbProfile, *, out: np.ndarray | None = None) -> np.ndarray:
    """`[H, W, 3]` encoded in `profile` -> sRGB (see `convert`)."""
    return convert(pixels, profile, _SRGB, out=out)


def from_srgb(pixels: np.ndarray, profile: RgbProfile, *, out: np.ndarray | None = None) -> np.ndarray:
    """`[H, W, 3]` sRGB -> encoded in `profile` (see `convert`)."""
    return convert(pixels, _SRGB, profile, out=out)


def is_srgb(profile: RgbProfile) -> bool:
    """Whether `profile` encodes colours as sRGB does, to within `SAME_AS_SRGB` on a grid of
    colours (profiles named sRGB differ in their curves' sampling and matrices' rounding)."""
    grid = np.stack(np.meshgrid(*[np.linspace(0.0, 1.0, 9)] * 3, indexing="ij"), axis=-1).reshape(81, 9, 3)
    return float(np.max(np.abs(to_srgb(grid, profile) - grid))) <= SAME_AS_SRGB
