"""Writing results: PNG (8 or 16 bits) and JPEG, with the run's settings, ICC profile and EXIF.

Images to write are float32 `[H, W, 3]` sRGB in [0, 1] (or uint8), numpy on the host.
PNG and JPEG outputs carry the run's settings as JSON (`read_metadata` reads them back);
a kept ICC profile gets the pixels converted into its colours (`jaxstyle.icc`). 16-bit PNGs
are encoded by `imagecodecs`. Every write goes through `jaxstyle.filesafety` (never over an
input unless forced, atomic).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from jaxstyle import filesafety, icc, reading
from jaxstyle._version import __version__
from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.filesafety import PathLike

__all__ = ["JPEG_MAX_EXIF_BYTES", "SAVE_FORMATS", "check_write_options", "output_bits", "read_metadata", "save_image"]

# Output formats by suffix (lower case).
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
# Where the settings live in each output format.
PNG_METADATA_KEY = "jaxstyle"
EXIF_IMAGE_DESCRIPTION = 0x010E
EXIF_SOFTWARE = 0x0131
BIT_DEPTHS = (8, 16)
JPEG_MAX_EXIF_BYTES = 65_533  # one JPEG APP1 segment, "Exif\0\0" header included
_ROWS_PER_BLOCK = 256  # rows converted at a time when writing into an ICC profile
_PNG_HEAD = 8 + 25  # the signature and the IHDR chunk that every PNG begins with


def check_write_options(bits: int | None, quality: int, suffix: str | None = None) -> None:
    """Refuse, before any work, a bit depth or JPEG quality that `save_image` cannot write (16 bits
    only as PNG, when the output's `suffix` is given), in the command line's words. `bits` None:
    the photo's own (see `output_bits`)."""
    if bits is not None and (bits not in BIT_DEPTHS or (bits == 16 and suffix is not None
                                                         and suffix.lower() != ".png")):
        raise JaxstyleError(f"--bits {bits}: write 8 bits (PNG or JPEG) or 16 bits (a .png output)")
    if isinstance(quality, bool) or not 1 <= quality <= 100:
        raise JaxstyleError(f"--jpeg-quality must be from 1 to 100, got {quality}")


def output_bits(bits: int | None, photo: reading.Photo, path: PathLike) -> int:
    """The depth to write a result from `photo` at: `bits` when given, else the photo's own for a
    PNG output (a 16-bit photo gives a 16-bit PNG) and 8 for a JPEG."""
    if bits is not None:
        return bits
    return photo.bits if SAVE_FORMATS.get(Path(path).suffix.lower()) == "PNG" else 8


def save_image(image: Any, path: PathLike, *, metadata: Mapping[str, Any] | None = None,
               overwrite: bool = False, force: bool = False, protect: Sequence[PathLike] = (),
               quality: int = 95, bits: int = 8, icc_profile: bytes | None = None,
               exif: bytes | None = None) -> Path:
    """Write float `[H, W, 3]` sRGB in [0, 1] (clipped, rounded) as PNG or JPEG.

    The format comes from the suffix (.png, .jpg, .jpeg). The write is atomic: a temporary
    file in the same directory, then `os.replace`; nothing is left behind on failure.
    An existing file is replaced only with `overwrite=True`; a path in `protect` (the inputs)
    only with `force=True`. `metadata` (JSON-serialisable) is stored in the file:
    PNG text chunk "jaxstyle", or JPEG EXIF ImageDescription. `bits`: 8, or 16 (PNG only).
    `icc_profile` and `exif` (e.g. a `Photo`'s) are kept in the file, the EXIF orientation
    set to 1; the pixels are converted into `icc_profile`'s colours when `jaxstyle.icc` reads
    it. Returns the path written.
    """
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        suffix = path.suffix or "(none)"
        raise JaxstyleError(f"{path}: unknown output suffix {suffix}"
                            f"{did_you_mean(path.suffix.lower(), SAVE_FORMATS)}; "
                            f"supported: {', '.join(SAVE_FORMATS)}")
    if bits not in BIT_DEPTHS or (bits == 16 and fmt != "PNG"):
        raise JaxstyleError(f"{path}: {bits}-bit output is not possible; write 8-bit PNG or JPEG, or "
                            "16-bit PNG (.png)")
    pixels = _to_uint(image, bits, icc.to_convert(icc_profile))
    description = _metadata_json(metadata)
    filesafety.check_target(path, overwrite=overwrite, force=force, protect=protect)
    # JPEG keeps the metadata in EXIF; PNG only carries an EXIF block when the source had one
    exif_block = _exif_block(exif, description if fmt == "JPEG" else None) if fmt == "JPEG" or exif else b""
    if fmt == "PNG" and bits == 16:
        encoded = _png16(pixels, description, icc_profile, exif_block)
        filesafety.write_atomically(path, lambda f: f.write(encoded))
        return path
    options: dict[str, Any] = {"exif": exif_block} if exif_block else {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", f"jaxstyle {__version__}")
        if description is not None:
            info.add_text(PNG_METADATA_KEY, description)
        options["pnginfo"] = info
    else:
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise JaxstyleError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
        if len(exif_block) > JPEG_MAX_EXIF_BYTES:
            raise JaxstyleError(f"{path}: the metadata ({len(exif_block)} bytes) does not fit in a JPEG's "
                                f"EXIF block ({JPEG_MAX_EXIF_BYTES} bytes); save as .png instead")
        options.update(quality=quality, subsampling=0)  # 4:4:4 chroma
    filesafety.write_atomically(path, lambda f: Image.fromarray(pixels).save(f, format=fmt, **options))
    return path


def _exif_block(source: bytes | None, description: str | None) -> bytes:
    """The EXIF to write: the source's (orientation 1), our software tag, and the description."""
    exif = Image.Exif()
    if source:
        exif.load(source)
        exif[reading.EXIF_ORIENTATION] = 1
    exif[EXIF_SOFTWARE] = f"jaxstyle {__version__}"
    if description is not None:
        exif[EXIF_IMAGE_DESCRIPTION] = description
    return exif.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png16(pixels: np.ndarray, description: str | None, icc_profile: bytes | None, exif: bytes) -> bytes:
    """A 16-bit RGB PNG of uint16 `pixels` `[H, W, 3]`: libpng's encoding (`imagecodecs`) with the
    iCCP, eXIf and iTXt chunks put after its IHDR.

    The chunks are framed here because no library writes both: Pillow has no 16-bit colour mode, and
    imagecodecs' PNG encoders (`png_encode`, `spng_encode`, `apng_encode`) take the pixels only."""
    import imagecodecs

    # filter type 0 on every row, as the hand-written writer did (tests/test_fullres_cli.py reads so)
    encoded = imagecodecs.png_encode(np.ascontiguousarray(pixels), filter=imagecodecs.PNG.FILTER.NONE)
    chunks = []
    if icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    texts = [("Software", f"jaxstyle {__version__}")] + ([(PNG_METADATA_KEY, description)] if description else [])
    for key, text in texts:  # iTXt: UTF-8, uncompressed
        chunks.append(_png_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8")))
    return encoded[:_PNG_HEAD] + b"".join(chunks) + encoded[_PNG_HEAD:]


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The settings dict stored by `save_image` in a PNG or JPEG ({} when there is none)."""
    with reading.open_image(path) as im:
        if im.format == "PNG":
            text = getattr(im, "text", {}).get(PNG_METADATA_KEY)
        else:
            text = im.getexif().get(EXIF_IMAGE_DESCRIPTION)
    if text is None:
        return {}
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise JaxstyleError(f"{path}: the stored jaxstyle metadata is not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise JaxstyleError(f"{path}: the stored jaxstyle metadata is not a JSON object")
    return data


def _to_uint(image: Any, bits: int = 8, profile: icc.RgbProfile | None = None) -> np.ndarray:
    """Float `[H, W, 3]` sRGB in [0, 1] (or uint8) as uint8, or uint16 for `bits` 16, in
    `profile`'s colours when given."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or 0 in array.shape:
        raise JaxstyleError(f"save_image expects an image shaped [H, W, 3], got {array.shape}")
    if array.dtype == np.uint8 and profile is None:
        return np.ascontiguousarray(array) if bits == 8 else array.astype(np.uint16) * 257
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise JaxstyleError(f"save_image expects float RGB in [0, 1] or uint8, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise JaxstyleError("image to save contains NaN or Inf values (if it came from an optimisation, "
                            "that diverged: try a smaller learning rate)")
    top = (1 << bits) - 1
    if profile is None:
        return np.round(np.clip(array.astype(np.float32), 0.0, 1.0) * top).astype(np.uint8 if bits == 8 else np.uint16)
    out = np.empty(array.shape, np.uint8 if bits == 8 else np.uint16)
    for row in range(0, array.shape[0], _ROWS_PER_BLOCK):  # a block at a time: no full-size float copy
        block = icc.from_srgb(np.clip(array[row:row + _ROWS_PER_BLOCK].astype(np.float32), 0.0, 1.0), profile)
        out[row:row + _ROWS_PER_BLOCK] = np.round(block * top)
    return out


def _metadata_json(metadata: Mapping[str, Any] | None) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise JaxstyleError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(dict(metadata), sort_keys=True, ensure_ascii=True)
    except (TypeError, ValueError) as e:
        raise JaxstyleError(f"metadata must be JSON-serialisable (str, numbers, lists, dicts): {e}") from e
