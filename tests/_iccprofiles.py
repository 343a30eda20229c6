"""Test helpers: ICC profiles written byte by byte from the specification (ICC.1:2010), and
colour conversions to sRGB written from the formulas, to check `jaxstyle.icc` against.

A matrix/TRC RGB display profile: the 128-byte header (size, version 2.1, class 'mntr', data
colour space 'RGB ', connection space 'XYZ ', 'acsp', the D50 illuminant), the tag count and
table (signature, offset, size), then the tags, each at a 4-byte boundary: 'desc'
(textDescriptionType), 'wtpt', 'rXYZ' / 'gXYZ' / 'bXYZ' (XYZType, s15Fixed16) and
'rTRC' / 'gTRC' / 'bTRC' ('curv': a gamma in u8Fixed8 or a table of uint16; 'para': a
parametric curve of type 0-4 with s15Fixed16 parameters).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

D50 = (0.9642, 1.0, 0.8249)
# Primaries adapted to D50 (columns R, G, B), as the Adobe RGB (1998) and Display P3 profiles
# store them, and sRGB's as LittleCMS stores them.
ADOBE_RGB = ((0.6097, 0.2053, 0.1492), (0.3111, 0.6257, 0.0632), (0.0195, 0.0609, 0.7446))
DISPLAY_P3 = ((0.5151, 0.2920, 0.1571), (0.2412, 0.6922, 0.0666), (-0.0011, 0.0419, 0.7841))
SRGB = ((0.4361, 0.3851, 0.1431), (0.2225, 0.7169, 0.0606), (0.0139, 0.0971, 0.7139))
SRGB_PARAMETERS = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)  # parametric type 3


def s15(values: Sequence[float]) -> bytes:
    return struct.pack(f">{len(values)}i", *[round(v * 65536) for v in values])


def xyz_tag(xyz: Sequence[float]) -> bytes:
    return b"XYZ " + bytes(4) + s15(xyz)


def gamma_tag(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)


def table_tag(values: Sequence[float]) -> bytes:
    return (b"curv" + bytes(4) + struct.pack(">I", len(values))
            + np.round(np.asarray(values) * 65535).astype(">u2").tobytes())


def parametric_tag(kind: int, parameters: Sequence[float]) -> bytes:
    return b"para" + bytes(4) + struct.pack(">HH", kind, 0) + s15(parameters)


def desc_tag(name: str) -> bytes:
    text = name.encode("ascii") + b"\0"
    # ASCII count and text, then empty Unicode (language, count) and ScriptCode (code, count, 67 bytes)
    return b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8) + bytes(3) + bytes(67)


def profile(matrix: Sequence[Sequence[float]], curves: Sequence[bytes], name: str = "test",
            space: bytes = b"RGB ", pcs: bytes = b"XYZ ") -> bytes:
    """A matrix/TRC profile: `matrix` `[3, 3]` (rows X, Y, Z; columns R, G, B), three curve tags."""
    m = np.asarray(matrix)
    tags = [(b"desc", desc_tag(name)), (b"wtpt", xyz_tag(D50)),
            (b"rXYZ", xyz_tag(m[:, 0])), (b"gXYZ", xyz_tag(m[:, 1])), (b"bXYZ", xyz_tag(m[:, 2])),
            (b"rTRC", curves[0]), (b"gTRC", curves[1]), (b"bTRC", curves[2]),
            (b"cprt", b"text" + bytes(4) + b"none\0")]
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        data += bytes(-(start + len(data)) % 4)
        table += struct.pack(">4sII", signature, start + len(data), len(body))
        data += body
    data += bytes(-len(data) % 4)
    header = (struct.pack(">I4sI4s4s4s", start + len(data), b"none", 0x02100000, b"mntr", space, pcs)
              + bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0) + s15(D50) + bytes(48))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def adobe_rgb() -> bytes:
    return profile(ADOBE_RGB, [gamma_tag(563 / 256)] * 3, "Adobe RGB (1998) as written by the test")


def display_p3() -> bytes:
    return profile(DISPLAY_P3, [parametric_tag(3, SRGB_PARAMETERS)] * 3, "Display P3 as written by the test")


def quantised(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Values as an s15Fixed16 field stores them."""
    return np.round(np.asarray(values, np.float64) * 65536) / 65536


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1: linear light -> sRGB values, clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def srgb_decode(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1: sRGB values -> linear light."""
    x = np.asarray(x, np.float64)
    return np.where(x >= 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)


def bradford_to_d50(white_xy: tuple[float, float]) -> np.ndarray:
    """The Bradford chromatic adaptation from a white point given by its xy to the ICC's D50."""
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    x, y = white_xy
    source = np.array([x / y, 1.0, (1 - x - y) / y])
    gain = (bradford @ np.array(D50)) / (bradford @ source)
    return np.linalg.inv(bradford) @ np.diag(gain) @ bradford


def rgb_to_xyz(primaries_xy: Sequence[tuple[float, float]], white_xy: tuple[float, float]) -> np.ndarray:
    """Linear RGB -> XYZ from the primaries' and the white's chromaticities (columns R, G, B)."""
    columns = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries_xy]).T
    wx, wy = white_xy
    white = np.array([wx / wy, 1.0, (1 - wx - wy) / wy])
    return columns * np.linalg.solve(columns, white)


def srgb_to_xyz_d50() -> np.ndarray:
    """sRGB's primaries and D65 white, adapted to D50 by Bradford."""
    d65 = (0.3127, 0.3290)
    return bradford_to_d50(d65) @ rgb_to_xyz([(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)], d65)


def to_srgb_reference(pixels: np.ndarray, matrix: Sequence[Sequence[float]], curve) -> np.ndarray:
    """`pixels` encoded in a profile (`matrix` rows X, Y, Z as the profile stores it; `curve`:
    encoded -> linear) -> sRGB, from the formulas."""
    linear = curve(np.asarray(pixels, np.float64))
    return srgb_encode(linear @ np.linalg.solve(srgb_to_xyz_d50(), quantised(matrix)).T)


def p3_to_srgb(pixels: np.ndarray) -> np.ndarray:
    """`display_p3()`'s numbers -> sRGB, from the formulas (its curve is sRGB's)."""
    return to_srgb_reference(pixels, DISPLAY_P3, srgb_decode)
