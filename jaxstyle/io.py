"""Reading and writing images (numpy and Pillow; field libraries for what Pillow cannot decode).

Images are float32 `[H, W, 3]` RGB in [0, 1] (numpy, on the host). Label images for
masks are returned raw: uint8 `[H, W, 3]` RGB, or integer `[H, W]` for single-channel
files. Sizes are `(H, W)`; Pillow's own sizes are `(W, H)` and stay inside this module.

Reading applies the EXIF orientation, composites (or refuses) transparency, expands
grayscale and palette images, and scales 16-bit images by 65535. Pillow decodes what it
keeps whole; deeper colour than its 8 bits comes from the field's libraries: 16-bit colour
TIFFs from `tifffile` (with `imagecodecs` for LZW, Deflate and the rest), 16-bit colour
PNGs from `imagecodecs` (libpng), 10- to 16-bit HEIC/HEIF from `pillow-heif` (which also
opens 8-bit ones for Pillow), and camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF...)
are developed by `rawpy` (LibRaw) at 16 bits with the camera's white balance into sRGB.
These libraries are imported when a file needs them. Pixels are sRGB: a photo with an RGB
matrix/TRC ICC profile (Display P3, Adobe RGB, ProPhoto...) is converted to sRGB
(`jaxstyle.icc`), and `save_image` converts back into the profile it embeds; other profiles
are ignored (their pixels taken as sRGB). Pillow's decompression-bomb guard stays on;
tripping it raises a `JaxstyleError`.

Writing is atomic (a temporary file in the target directory, then `os.replace`) and never
replaces one of the inputs unless forced. PNG and JPEG outputs carry the run's settings
as JSON (`read_metadata` reads them back); 16-bit PNGs are encoded by `imagecodecs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.resources
import json
import math
import os
import secrets
import struct
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, PngImagePlugin, UnidentifiedImageError

from jaxstyle import icc
from jaxstyle._version import __version__
from jaxstyle.errors import JaxstyleError, did_you_mean

PathLike = str | os.PathLike[str]

ALPHA_MODES = ("composite", "refuse")
WHITE = (1.0, 1.0, 1.0)
# Floats this far outside [0, 1] are rounding noise and get clipped; further out is an error.
FLOAT_RANGE_TOLERANCE = 1e-3
MAX_16BIT = 65535.0
# Output formats by suffix (lower case).
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
# Where the settings live in each output format.
PNG_METADATA_KEY = "jaxstyle"
EXIF_IMAGE_DESCRIPTION = 0x010E
EXIF_SOFTWARE = 0x0131
EXIF_ORIENTATION = 0x0112
BIT_DEPTHS = (8, 16)
JPEG_MAX_EXIF_BYTES = 65_533  # one JPEG APP1 segment, "Exif\0\0" header included
# Pillow modes that carry a straight (non-premultiplied) alpha channel, and what to convert
# them to before reading the pixels.
_ALPHA_CONVERSIONS = {"RGBA": "RGBA", "RGBa": "RGBA", "LA": "LA", "La": "LA", "PA": "RGBA"}
_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# What can go wrong while decoding a file that Pillow recognised (truncated data, bad chunks);
# the codec libraries' errors (imagecodecs', libheif's) are RuntimeErrors and ValueErrors.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, RuntimeError, struct.error, zlib.error)
_ROWS_PER_BLOCK = 256  # rows converted at a time when writing into an ICC profile
_NEW_SUBFILE_TYPE = 254  # TIFF field; bit 0: a reduced-resolution version of another image
# TIFF fields that tell a 16-bit colour TIFF (TIFF 6.0, section 8), and their values meant here
_TIFF_BITS, _TIFF_PHOTOMETRIC, _TIFF_SAMPLES, _TIFF_SAMPLE_FORMAT, _TIFF_ORIENTATION = 258, 262, 277, 339, 274
_TIFF_RGB, _TIFF_UNSIGNED = 2, 1
_ASSOCIATED_ALPHA, _UNASSOCIATED_ALPHA = 1, 2  # TIFF ExtraSamples
_PNG_HEAD = 8 + 25  # the signature and the IHDR chunk that every PNG begins with
# LibRaw's development of a camera RAW file: the camera's white balance, sRGB primaries with the
# sRGB curve (dcraw's -g 2.4 12.92), 16 bits a channel, LibRaw's own exposure.
_RAW_GAMMA = (2.4, 12.92)
_RAW_BITS = 16
# From a RAW file's EXIF, what a result keeps: Make, Model, DateTime, Artist, Copyright, and the
# Exif and GPS directories (not the fields that describe the RAW data's own layout).
_EXIF_CAMERA_FIELDS = (0x010F, 0x0110, 0x0132, 0x013B, 0x8298)
_EXIF_DIRECTORIES = (0x8769, 0x8825)
_RAW_SUFFIXES = frozenset({".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".iiq", ".k25", ".kdc",
                           ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl",
                           ".sr2", ".srf", ".srw", ".x3f"})
_LABEL_PADDING = 3  # white pixels above and below a label under a contact-sheet image


# --------------------------------------------------------------------------- reading


def load_image(path: PathLike, *, max_side: int | None = None, alpha: str = "composite",
               background: Sequence[float] = WHITE) -> np.ndarray:
    """Read an image file as float32 `[H, W, 3]` sRGB in [0, 1].

    Any format Pillow reads (PNG, JPEG, TIFF, BMP, WebP, GIF's first frame), HEIC/HEIF, and
    camera RAW files (developed, see `read_photo`). The EXIF orientation is applied; an RGB
    matrix/TRC ICC profile's colours are converted to sRGB. Transparency is composited over
    `background` (RGB in [0, 1]) with `alpha="composite"`, or raises with `alpha="refuse"` (a
    fully opaque alpha channel is accepted either way). If `max_side` is given and the longer
    side exceeds it, the image is downscaled (Lanczos, aspect kept) so that the longer side
    equals `max_side`.
    """
    if max_side is not None:
        _check_side(max_side, "max_side")
    image = read_photo(path, alpha=alpha, background=background).pixels
    if max_side is not None:
        size = fit_max_side(image.shape[0], image.shape[1], max_side)
        if size != image.shape[:2]:
            image = resize_image(image, size)
    return image


# the data colour space field of an ICC profile header (bytes 16-19) of a profile for RGB pixels
ICC_RGB = b"RGB "


@dataclasses.dataclass(frozen=True)
class Photo:
    """A photo decoded once, at its own size, with what a result made from it should keep.

    pixels: float32 `[H, W, 3]` sRGB in [0, 1], EXIF orientation applied (converted from the
      ICC profile's colours when `jaxstyle.icc` reads it).
    icc_profile: the embedded ICC profile (bytes) when it describes RGB data, else None (a CMYK or
      grey photo's profile cannot describe the RGB pixels made from it). `save_image` converts a
      result into it.
    exif: the EXIF block (bytes, orientation reset to 1) or None.
    bits: the file's depth as read, 16 (a 16-bit, 32-bit integer or float file, a 10- to 16-bit
      HEIF, a camera RAW file) or 8; a result written as PNG keeps it unless told otherwise.
    transparent: whether the file had transparent pixels, put on the background as it was read
      (the user should hear of it: `transparency_note`).
    """

    pixels: np.ndarray
    icc_profile: bytes | None = None
    exif: bytes | None = None
    bits: int = 8
    transparent: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.pixels.shape[0], self.pixels.shape[1]


def read_photo(path: PathLike, *, alpha: str = "composite", background: Sequence[float] = WHITE) -> Photo:
    """Read an image file at its own size (see `load_image`) with its ICC profile and EXIF.

    A camera RAW file (by its suffix: .dng, .cr2, .cr3, .nef, .arw, .raf, .orf...) is developed by
    LibRaw (`rawpy`): 16 bits, the camera's white balance, sRGB, the file's orientation applied, its
    camera EXIF kept. One LibRaw does not recognise is read as Pillow reads it, when it can.
    """
    _check_alpha_mode(alpha)
    bg = _check_background(background)
    p = _existing_file(path)
    if p.suffix.lower() in _RAW_SUFFIXES:
        developed = _develop_raw(p)
        if developed is not None:
            return developed
    with _open_image(p, deep_lazily=True) as im:
        try:
            deep = _deep_colour(im)  # asked first: Pillow decodes a PNG to find its EXIF
            profile = _rgb_profile(im)
            exif = im.getexif()
            decoded, bits, transparent = _decode(im, p, deep=deep, alpha=alpha, background=bg)
            pixels = _to_srgb(decoded, profile)
        except JaxstyleError:
            raise
        except _DECODE_ERRORS as e:
            raise _damaged(p, e) from e
    exif_bytes = None
    if len(exif):
        exif[EXIF_ORIENTATION] = 1  # the pixels are upright now
        exif_bytes = exif.tobytes()
    return Photo(pixels, profile, exif_bytes, bits, transparent)


def transparency_note(which: str, path: PathLike | None = None) -> str:
    """The note for the user when the `which` photo ("content", "style") had transparent
    pixels, put on white as it was read."""
    named = f" {path}" if path is not None else ""
    return (f"the {which} image{named} has transparent pixels: they were put on white "
            "(flatten it onto the background you want first to choose another)")


def _rgb_profile(im: Image.Image) -> bytes | None:
    """An opened image's embedded ICC profile when it describes RGB data, else None."""
    profile = im.info.get("icc_profile") or None
    return profile if profile is not None and profile[16:20] == ICC_RGB else None


def _to_srgb(pixels: np.ndarray, profile: bytes | None) -> np.ndarray:
    """`pixels` `[H, W, 3]` float32 converted from `profile`'s colours to sRGB (in place when
    writable)."""
    parsed = icc.to_convert(profile)
    if parsed is None:
        return pixels
    return icc.to_srgb(pixels, parsed, out=pixels if pixels.flags.writeable else None)


def photo_size(path: PathLike) -> tuple[int, int]:
    """(H, W) of an image file after its EXIF orientation, read from the header only (a camera
    RAW file's: LibRaw's image size, turned as the file says)."""
    p = _existing_file(path)
    if p.suffix.lower() in _RAW_SUFFIXES:
        size = _raw_size(p)
        if size is not None:
            return size
    try:
        _teach_pillow_heif(p)
        with _bomb_guard(p), Image.open(p) as im:
            _check_full_image(im, p)
            w, h = im.size
            # a quarter turn (Pillow reports a TIFF's size turned already)
            if im.format != "TIFF" and im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                w, h = h, w
    except JaxstyleError:
        raise
    except UnidentifiedImageError as e:
        raise _unreadable(p) from e
    except _DECODE_ERRORS as e:
        raise _damaged(p, e) from e
    return h, w


def image_size(image: Any) -> tuple[int, int] | None:
    """(H, W) of a file (from its header, see `photo_size`), a `Photo`, a PIL image or an array
    `[H, W, ...]`; None for anything without two sides."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return photo_size(image)
    if isinstance(image, Photo):
        return image.size
    if isinstance(image, Image.Image):
        return image.height, image.width
    shape = np.shape(image)
    return (int(shape[0]), int(shape[1])) if len(shape) >= 2 else None


def load_label_image(path: PathLike) -> np.ndarray:
    """Read a mask / label image's raw pixels: no resampling, no colour conversion.

    Returns uint8 `[H, W, 3]` RGB for colour files (palette entries expanded, an alpha
    channel dropped), or an integer `[H, W]` array for single-channel files: uint8 for
    "L" / "LA" / "1" (bilevel as 0 and 255), uint16 for 16-bit, int32 for "I".
    The EXIF orientation is applied.
    """
    with _open_image(path) as im:
        try:
            im = ImageOps.exif_transpose(im)
            if im.mode in _16BIT_MODES:
                return np.asarray(im).astype(np.uint16)
            if im.mode == "I":
                return np.asarray(im).astype(np.int32)
            if im.mode in ("L", "LA", "La", "1"):
                return np.asarray(im.convert("L"), dtype=np.uint8).copy()
            if im.mode == "F":
                raise JaxstyleError(f"{path}: a floating-point label image cannot be read as labels; "
                                    "save the mask as an 8-bit PNG (colours or gray levels)")
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
        except JaxstyleError:
            raise
        except _DECODE_ERRORS as e:
            raise _damaged(path, e) from e


def demo_paths() -> tuple[str, str]:
    """Paths of the bundled demo pair (content, style: daylight and sunset, 1280 px wide, CC0;
    see jaxstyle/data/README.md)."""
    root = importlib.resources.files("jaxstyle") / "data"
    return str(root / "demo_content.jpg"), str(root / "demo_style.jpg")


def sample_paths() -> tuple[str, str]:
    """Paths of the small bundled pair the tests and benchmarks use (content, style: 384x256,
    public domain and CC0; see jaxstyle/data/README.md)."""
    root = importlib.resources.files("jaxstyle") / "data"
    return str(root / "sample_content.jpg"), str(root / "sample_style.jpg")


def _open_image(path: PathLike, *, deep_lazily: bool = False) -> Image.Image:
    """Open and fully decode `path`, turning every failure into a `JaxstyleError`. With
    `deep_lazily`, an image of deeper colour than Pillow's 8 bits (`_deep_colour`) is left
    undecoded: `_decode` reads it at its full depth (Pillow's decode would be 8 bits, thrown away)."""
    p = _existing_file(path)
    try:
        _teach_pillow_heif(p)
        with _bomb_guard(p):
            im = Image.open(p)
            try:
                _check_full_image(im, p)
                if not (deep_lazily and _deep_colour(im)):
                    im.load()
            except BaseException:
                im.close()
                raise
    except JaxstyleError:
        raise
    except UnidentifiedImageError as e:
        raise _unreadable(p) from e
    except PermissionError as e:
        raise JaxstyleError(f"{p}: permission denied; check the file's permissions") from e
    except _DECODE_ERRORS as e:
        raise _damaged(p, e) from e
    return im


def _existing_file(path: PathLike) -> Path:
    """`path` as a `Path`, refused unless it names a file (saying what it names instead)."""
    p = Path(path)
    if p.is_dir():
        raise JaxstyleError(f"{p} is a directory, not an image file; pass an image file "
                            "(PNG, JPEG, TIFF, BMP, WebP, GIF, HEIC or camera RAW)")
    if not p.exists():
        raise JaxstyleError(f"{p}: no such file; check the path (relative paths are from {Path.cwd()})")
    if not p.is_file():
        raise JaxstyleError(f"{p} is not a regular file (a pipe or a device?); pass an image file")
    return p


@contextlib.contextmanager
def _bomb_guard(p: Path) -> Iterator[None]:
    """Pillow's decompression-bomb guard (its warning too) as a `JaxstyleError`, for opening
    `p`: a header that claims too many pixels is refused before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise JaxstyleError(
            f"{p}: too many pixels for a safe decode ({e}); downscale the image first "
            "(e.g. `magick in.jpg -resize 4000x4000 out.jpg`), or, if you trust the file, raise "
            "PIL.Image.MAX_IMAGE_PIXELS in Python before loading it") from e


def _teach_pillow_heif(p: Path) -> None:
    """Register pillow-heif's opener with Pillow when `p` is an ISO base media file (a box
    "ftyp" at byte 4), the container of HEIC/HEIF photos; other files leave it unimported."""
    with open(p, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp":
        _register_heif_opener()


@functools.cache
def _register_heif_opener() -> None:
    from pillow_heif import register_heif_opener

    register_heif_opener()


def _deep_colour(im: Image.Image) -> bool:
    """Whether an opened, undecoded image has deeper colour than Pillow's 8 bits: a 16-bit RGB(A)
    PNG (its raw mode says so) or TIFF (its fields say so), or a 10- to 16-bit HEIF."""
    if im.format == "PNG":
        return im.mode in ("RGB", "RGBA") and any(
            ";16" in str(tile.args[0] if isinstance(tile.args, tuple) else tile.args) for tile in im.tile)
    if im.format == "TIFF":
        fields = im.tag_v2
        return (fields.get(_TIFF_PHOTOMETRIC) == _TIFF_RGB and fields.get(_TIFF_SAMPLES, 1) in (3, 4)
                and set(np.atleast_1d(fields.get(_TIFF_BITS, 1)).tolist()) == {16}
                and set(np.atleast_1d(fields.get(_TIFF_SAMPLE_FORMAT, _TIFF_UNSIGNED)).tolist()) == {_TIFF_UNSIGNED})
    return im.format == "HEIF" and im.info.get("bit_depth", 8) > 8


def _check_full_image(im: Image.Image, path: PathLike) -> None:
    """Refuse a TIFF whose first image is marked as a reduced-resolution copy of another
    (NewSubFileType bit 0): camera RAW files (DNG, NEF, CR2, ARW...) open so, showing Pillow
    only their preview, and the run would quietly work on a thumbnail."""
    if im.format == "TIFF" and int(getattr(im, "tag_v2", {}).get(_NEW_SUBFILE_TYPE, 0)) & 1:
        w, h = im.size
        if Path(path).suffix.lower() in _RAW_SUFFIXES:  # LibRaw was asked first, and did not know it
            what = "that LibRaw does not recognise as a camera RAW image"
        else:
            what = ("(a camera RAW file such as DNG, NEF, CR2 or ARW? give it its camera's suffix, "
                    ".dng say, to have it developed)")
        raise JaxstyleError(f"{path}: its first image is a {w}x{h} preview of a larger one {what}; develop it "
                            "to a full-size TIFF, PNG or JPEG first (in Lightroom, darktable or RawTherapee, say)")


def _unreadable(path: Path) -> JaxstyleError:
    """The error for a file Pillow does not recognise, with what to do for common photo formats."""
    suffix = path.suffix.lower()
    if suffix in _RAW_SUFFIXES:
        hint = ("LibRaw does not recognise it as a camera RAW file: develop it to a full-size TIFF, PNG or "
                "JPEG first (in Lightroom, darktable or RawTherapee, say), or copy it again if it is damaged")
    elif suffix in (".heic", ".heif", ".hif"):
        hint = ("pillow-heif does not read it as HEIC/HEIF either: copy it again if it is damaged, or export "
                "it as JPEG or PNG first (on a Mac: sips -s format jpeg)")
    else:
        hint = "pass a PNG, JPEG, TIFF, BMP, WebP, GIF, HEIC or camera RAW file"
    return JaxstyleError(f"{path} is not an image file Pillow can read; {hint}")


def _damaged(path: PathLike, e: BaseException) -> JaxstyleError:
    return JaxstyleError(f"{path}: the image data is damaged or truncated ({type(e).__name__}: {_one_line(e)}); "
                         "re-export or re-download the file")


def _one_line(e: BaseException) -> str:
    """A decoder's message on one line (libheif's end in a newline, LibRaw's are bytes)."""
    message = e.args[0].decode("utf-8", "replace") if len(e.args) == 1 and isinstance(e.args[0], bytes) else str(e)
    return " ".join(message.split())


def _decode(im: Image.Image, path: PathLike, *, deep: bool, alpha: str,
            background: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """(An opened image file as float32 `[H, W, 3]` in [0, 1], upright (EXIF orientation applied),
    transparency handled; its bits per channel, 8 or 16; whether transparent pixels were put on
    `background`). `deep`: the image has deeper colour than Pillow's 8 bits (`_deep_colour`, asked
    before the image was touched), read at its full depth by `_read_deep`."""
    if not deep:
        bits = 16 if im.mode in (*_16BIT_MODES, "I", "F") else 8
        image, composited = _pil_to_float(ImageOps.exif_transpose(im), alpha=alpha, background=background,
                                          source=str(path))
        return image, bits, composited
    unit, premultiplied, orientation = _read_deep(im, path)
    unit = orient(unit, orientation)
    a = unit[..., 3] if unit.shape[-1] == 4 else None
    rgb = np.ascontiguousarray(unit[..., :3])
    if premultiplied:  # colour times alpha, as TIFF's associated alpha stores it
        rgb = np.where(a[..., None] > 0, rgb / np.maximum(a[..., None], 1e-12), 0.0).astype(np.float32)
    image, composited = _with_alpha(rgb, a, alpha=alpha, background=background, source=str(path))
    return image, 16, composited


def _read_deep(im: Image.Image, path: PathLike) -> tuple[np.ndarray, bool, int]:
    """(The pixels of a `_deep_colour` image as stored, float32 `[H, W, 3 or 4]` in [0, 1], a fourth
    channel only for alpha; whether that alpha is premultiplied; the EXIF orientation still to apply).

    16-bit PNG: libpng through `imagecodecs` (a tRNS colour key becomes alpha). 16-bit TIFF, first
    image: `tifffile`, any layout and compression `imagecodecs` decodes, and its Orientation field.
    HEIF: libheif through `pillow-heif`, which has applied the orientation and returns 10- and 12-bit
    samples in the top bits of 16."""
    orientation, premultiplied, top = im.getexif().get(EXIF_ORIENTATION, 1), False, MAX_16BIT
    if im.format == "PNG":
        import imagecodecs

        stored = imagecodecs.png_decode(Path(path).read_bytes())  # uint16 [H, W, 3 or 4]
    elif im.format == "TIFF":
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            stored = np.moveaxis(page.asarray(), page.axes.index("S"), -1)  # planar files store [S, H, W]
            extra = int(page.extrasamples[0]) if page.extrasamples else None
            orientation = int(page.tags.valueof(_TIFF_ORIENTATION, 1))
        if extra not in (_ASSOCIATED_ALPHA, _UNASSOCIATED_ALPHA):  # a fourth sample that is not alpha
            stored = stored[..., :3]
        premultiplied = extra == _ASSOCIATED_ALPHA
    else:
        from pillow_heif import open_heif

        depth = int(im.info["bit_depth"])
        stored = np.asarray(open_heif(path, convert_hdr_to_8bit=False)) >> (16 - depth)
        top = float(2**depth - 1)
    return np.divide(stored, top, dtype=np.float32), premultiplied, orientation


def _develop_raw(p: Path) -> Photo | None:
    """A camera RAW file developed by LibRaw (`rawpy`; see `read_photo`), or None when LibRaw does
    not recognise it (Pillow may read it: a JPEG named .raw, say)."""
    import rawpy

    try:
        with rawpy.imread(str(p)) as raw:
            stored = raw.postprocess(use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB,
                                     output_bps=_RAW_BITS, gamma=_RAW_GAMMA)  # uint16 [H, W, 3]
    except rawpy.LibRawFileUnsupportedError:
        return None
    except (rawpy.LibRawError, MemoryError) as e:
        raise _undevelopable(p, e) from e
    pixels = np.divide(stored, MAX_16BIT, dtype=np.float32)
    return Photo(pixels, icc_profile=None, exif=_raw_exif(p), bits=_RAW_BITS)


def _raw_size(p: Path) -> tuple[int, int] | None:
    """(H, W) of a camera RAW file as LibRaw develops it, turned as the file says; None when LibRaw
    does not recognise it."""
    import rawpy

    try:
        with rawpy.imread(str(p)) as raw:
            sizes = raw.sizes
    except rawpy.LibRawFileUnsupportedError:
        return None
    except rawpy.LibRawError as e:
        raise _undevelopable(p, e) from e
    quarter_turn = sizes.flip in (5, 6)  # LibRaw's flips 5 and 6 turn the image a quarter
    return (sizes.iwidth, sizes.iheight) if quarter_turn else (sizes.iheight, sizes.iwidth)


def _raw_exif(p: Path) -> bytes | None:
    """The camera's EXIF of a TIFF-based RAW file (DNG, NEF, CR2, ARW, PEF...) that a result keeps
    (`_EXIF_CAMERA_FIELDS`, `_EXIF_DIRECTORIES`), read by Pillow's EXIF parser from the file's first
    directory (such a file is itself a TIFF, as an EXIF block is); None for the others (RAF, CR3...)."""
    source = Image.Exif()
    try:
        source.load(b"Exif\0\0" + p.read_bytes())
        kept = Image.Exif()
        for field in _EXIF_CAMERA_FIELDS:
            if field in source:
                kept[field] = source[field]
        for field in _EXIF_DIRECTORIES:
            directory = source.get_ifd(field)
            if directory:
                kept[field] = dict(directory)
        return kept.tobytes() if len(kept) else None
    except (SyntaxError, ValueError, struct.error):  # not a TIFF, or a damaged one: no EXIF
        return None


def _undevelopable(p: Path, e: BaseException) -> JaxstyleError:
    return JaxstyleError(f"{p}: LibRaw cannot develop this camera RAW file ({type(e).__name__}: {_one_line(e)}); "
                         "copy it again if it is damaged or truncated, or develop it to a full-size TIFF, PNG "
                         "or JPEG first (in Lightroom, darktable or RawTherapee, say)")


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """`[H, W, ...]` as an EXIF `orientation` (1-8) says to show it, as `ImageOps.exif_transpose` does."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
           8: lambda a: np.rot90(a, 1)}
    return ops[orientation](image) if orientation in ops else image


def _pil_to_float(im: Image.Image, *, alpha: str, background: np.ndarray,
                  source: str) -> tuple[np.ndarray, bool]:
    """A decoded Pillow image as float32 `[H, W, 3]` in [0, 1], transparency handled (see
    `_with_alpha`)."""
    rgb, a = _float_rgb_and_alpha(im, source)
    return _with_alpha(rgb, a, alpha=alpha, background=background, source=source)


def _with_alpha(rgb: np.ndarray, a: np.ndarray | None, *, alpha: str, background: np.ndarray,
                source: str) -> tuple[np.ndarray, bool]:
    """(`rgb` `[H, W, 3]` with straight alpha `a` `[H, W]` (or None) composited or refused,
    whether any pixel was transparent)."""
    if a is None:
        return rgb, False
    transparent = int(np.count_nonzero(a < 1.0))
    if transparent == 0:
        return rgb, False
    if alpha == "refuse":
        raise JaxstyleError(f"{source} has transparent pixels ({transparent} of {a.size}); "
                            "flatten it onto a background first, or composite it "
                            "(alpha='composite', optionally with a background colour)")
    a = a[..., None]  # [H, W, 1]
    return (rgb * a + background * (1.0 - a)).astype(np.float32), True


def _float_rgb_and_alpha(im: Image.Image, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(float32 `[H, W, 3]` RGB, float32 `[H, W]` straight alpha or None), both in [0, 1]."""
    mode = im.mode
    if mode in _16BIT_MODES or mode == "I":
        gray = np.asarray(im).astype(np.float32)  # [H, W]
        if mode == "I" and (gray.min() < 0 or gray.max() > MAX_16BIT):
            raise JaxstyleError(f"{source}: 32-bit integer image with values in [{gray.min():.0f}, "
                                f"{gray.max():.0f}], outside the 16-bit range 0..65535; convert it "
                                "to an 8- or 16-bit image first")
        a = None
        key = im.info.get("transparency")
        if isinstance(key, int) and not isinstance(key, bool):
            a = (gray != key).astype(np.float32)
        return np.repeat((gray / MAX_16BIT)[..., None], 3, axis=-1), a
    if mode == "F":
        gray = np.asarray(im, dtype=np.float32)
        lo, hi = float(np.min(gray)), float(np.max(gray))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -FLOAT_RANGE_TOLERANCE \
                or hi > 1 + FLOAT_RANGE_TOLERANCE:
            raise JaxstyleError(f"{source}: floating-point image with values in [{lo}, {hi}], "
                                "expected [0, 1]; rescale it or save it as an 8/16-bit image")
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=-1), None
    if mode in _ALPHA_CONVERSIONS or "transparency" in im.info:
        target = _ALPHA_CONVERSIONS.get(mode, "RGBA")
        pixels = np.asarray(im.convert(target), dtype=np.float32) / 255.0  # [H, W, 2 or 4]
        color, a = pixels[..., :-1], pixels[..., -1]
        if color.shape[-1] == 1:
            color = np.repeat(color, 3, axis=-1)
        return np.ascontiguousarray(color), a
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0, None


# --------------------------------------------------------------------------- sizes


def fit_max_side(h: int, w: int, max_side: int) -> tuple[int, int]:
    """`(h, w)` scaled down (aspect kept, rounded, each >= 1) so that max(h, w) <= max_side."""
    _check_side(h, "h")
    _check_side(w, "w")
    _check_side(max_side, "max_side")
    longest = max(h, w)
    if longest <= max_side:
        return h, w
    scale = max_side / longest
    if h >= w:
        return max_side, max(1, round(w * scale))
    return max(1, round(h * scale)), max_side


BUCKET_RATIO = 0.75  # the bucket aspects: shorter / longer side = 0.75 ** k (1, 3:4, 9:16, ...)
BUCKET_STEP = 8  # px


def bucket_shape(h: int, w: int) -> tuple[int, int]:
    """The working size photos of nearby aspects share: the longer side kept, the shorter one
    snapped to the nearest (in log scale) of longer x `BUCKET_RATIO ** k`, a multiple of
    `BUCKET_STEP` px (a stretch of at most 16%: 4:3 and 3:2 share 4:3, 16:9 has its own)."""
    long, short = max(h, w), min(h, w)
    k = round(math.log(short / long) / math.log(BUCKET_RATIO))
    short = max(BUCKET_STEP, BUCKET_STEP * round(long * BUCKET_RATIO ** k / BUCKET_STEP))
    long = max(BUCKET_STEP, BUCKET_STEP * round(long / BUCKET_STEP))
    return (long, short) if h >= w else (short, long)


# float32 [H, W, 3] copies of a full-size photo that a run holds at once (decoded pixels, their
# device copy, the result on the device and on the host, the written 8/16-bit pixels), rounded up
FULL_SIZE_COPIES = 6
BYTES_PER_COPY_PIXEL = 12  # float32 RGB


def available_memory() -> int | None:
    """Bytes of memory available to this process now (Linux MemAvailable, else free pages), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(size: tuple[int, int], *, copies: float = FULL_SIZE_COPIES, what: str = "the output",
                 extra_pixels: int = 0, option: str = "max-output-side") -> None:
    """Refuse, before any work, a full size `(H, W)` whose float copies (and `copies` as many per
    one of `extra_pixels` more) would not fit in memory; the message names `--option`."""
    per_pixel = BYTES_PER_COPY_PIXEL * copies
    need = (size[0] * size[1] + extra_pixels) * per_pixel
    have = available_memory()
    if have is not None and need > have:
        fraction = max(have - extra_pixels * per_pixel, 0) / (size[0] * size[1] * per_pixel)
        side = max(1, int(max(size) * fraction ** 0.5))
        raise JaxstyleError(f"{what} at {size[1]}x{size[0]} needs about {need / 2**30:.1f} GiB of memory and "
                            f"{have / 2**30:.1f} GiB are available: pass --{option} {side} (or less; "
                            f"{option.replace('-', '_')}= in Python), or free memory")


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample float `[H, W, C]` (or `[H, W]`) to `size = (h, w)`; float32 clipped to [0, 1].

    Lanczos in 32-bit float per channel (Pillow's filter widens when downscaling, so it
    averages over the covered area rather than aliasing).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise JaxstyleError(f"resize_image expects [H, W] or [H, W, C], got shape {image.shape}")
    if len(size) != 2:
        raise JaxstyleError(f"size must be (height, width), got {size!r}")
    h, w = (int(s) for s in size)
    _check_side(h, "height")
    _check_side(w, "width")
    if image.shape[:2] == (h, w):
        return np.clip(image, 0.0, 1.0)
    channels = image[..., None] if image.ndim == 2 else image
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., c]))
                               .resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32)
                    for c in range(channels.shape[-1])], axis=-1)  # [h, w, C]
    out = np.clip(out, 0.0, 1.0)
    return out[..., 0] if image.ndim == 2 else out


# --------------------------------------------------------------------------- in-memory images


def to_numpy_image(x: Any, *, alpha: str = "composite",
                   background: Sequence[float] = WHITE) -> np.ndarray:
    """Any one image as float32 `[H, W, 3]` RGB in [0, 1] (a new array).

    Accepts numpy or JAX arrays shaped `[H, W]`, `[H, W, 1]`, `[H, W, 3]` or `[H, W, 4]`
    (alpha composited over `background`, or refused), of dtype uint8 (0..255), uint16
    (0..65535), bool, or float in [0, 1]; and PIL images (EXIF orientation applied, an ICC
    profile's colours converted to sRGB as `load_image` does).
    """
    _check_alpha_mode(alpha)
    bg = _check_background(background)
    if isinstance(x, Image.Image):
        try:
            return _to_srgb(_pil_to_float(ImageOps.exif_transpose(x), alpha=alpha, background=bg,
                                          source="PIL image")[0], _rgb_profile(x))
        except JaxstyleError:
            raise
        except _DECODE_ERRORS as e:
            raise _damaged("PIL image", e) from e
    if isinstance(x, (str, os.PathLike)):
        raise JaxstyleError(f"to_numpy_image got a path ({x!s}); read files with load_image")
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise JaxstyleError(f"expected a numpy/JAX array or a PIL image, got {type(x).__name__}")
    array = np.asarray(x)
    shape = array.shape
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        hint = "; pass one image at a time" if array.ndim == 4 else ""
        raise JaxstyleError(f"expected an image shaped [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], "
                            f"got {shape}{hint}")
    image = _to_unit_float(array)  # [H, W, C]
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    if image.shape[-1] == 3:
        return image
    rgb, a = image[..., :3], image[..., 3]
    transparent = int(np.count_nonzero(a < 1.0))
    if transparent and alpha == "refuse":
        raise JaxstyleError(f"image has transparent pixels ({transparent} of {a.size}); drop or "
                            "composite the alpha channel first, or use alpha='composite'")
    return (rgb * a[..., None] + bg * (1.0 - a[..., None])).astype(np.float32)


def _to_unit_float(array: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / bool / float array -> float32 in [0, 1] (a copy)."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / MAX_16BIT
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        image = array.astype(np.float32)
        if not np.all(np.isfinite(image)):
            raise JaxstyleError("image contains NaN or Inf values")
        lo, hi = float(image.min()), float(image.max())
        if lo < -FLOAT_RANGE_TOLERANCE or hi > 1.0 + FLOAT_RANGE_TOLERANCE:
            raise JaxstyleError(f"float image values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]; "
                                "divide 0..255 data by 255 (or pass it as uint8)")
        return np.clip(image, 0.0, 1.0)
    raise JaxstyleError(f"unsupported image dtype {array.dtype}; use uint8 (0..255), uint16 "
                        "(0..65535) or float in [0, 1] (e.g. .astype(np.uint8))")


def _check_alpha_mode(alpha: str) -> None:
    if alpha not in ALPHA_MODES:
        raise JaxstyleError(f"unknown alpha handling {alpha!r}{did_you_mean(str(alpha), ALPHA_MODES)}; "
                            f"choose one of {', '.join(ALPHA_MODES)}")


def _check_background(background: Sequence[float]) -> np.ndarray:
    message = f"background must be three RGB values in [0, 1], got {background!r}"
    try:
        bg = np.asarray(background, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as e:
        raise JaxstyleError(message) from e
    if bg.shape != (3,) or not np.all((bg >= 0) & (bg <= 1)):
        raise JaxstyleError(message)
    return bg


def _check_side(n: Any, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise JaxstyleError(f"{name} must be a positive integer, got {n!r}")


# --------------------------------------------------------------------------- writing


def check_write_options(bits: int | None, quality: int, suffix: str | None = None) -> None:
    """Refuse, before any work, a bit depth or JPEG quality that `save_image` cannot write (16 bits
    only as PNG, when the output's `suffix` is given), in the command line's words. `bits` None:
    the photo's own (see `output_bits`)."""
    if bits is not None and (bits not in BIT_DEPTHS or (bits == 16 and suffix is not None
                                                         and suffix.lower() != ".png")):
        raise JaxstyleError(f"--bits {bits}: write 8 bits (PNG or JPEG) or 16 bits (a .png output)")
    if isinstance(quality, bool) or not 1 <= quality <= 100:
        raise JaxstyleError(f"--jpeg-quality must be from 1 to 100, got {quality}")


def output_bits(bits: int | None, photo: Photo, path: PathLike) -> int:
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
    _check_target(path, overwrite=overwrite, force=force, protect=protect)
    # JPEG keeps the metadata in EXIF; PNG only carries an EXIF block when the source had one
    exif_block = _exif_block(exif, description if fmt == "JPEG" else None) if fmt == "JPEG" or exif else b""
    if fmt == "PNG" and bits == 16:
        encoded = _png16(pixels, description, icc_profile, exif_block)
        write_atomically(path, lambda f: f.write(encoded))
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
    write_atomically(path, lambda f: Image.fromarray(pixels).save(f, format=fmt, **options))
    return path


def _exif_block(source: bytes | None, description: str | None) -> bytes:
    """The EXIF to write: the source's (orientation 1), our software tag, and the description."""
    exif = Image.Exif()
    if source:
        exif.load(source)
        exif[EXIF_ORIENTATION] = 1
    exif[EXIF_SOFTWARE] = f"jaxstyle {__version__}"
    if description is not None:
        exif[EXIF_IMAGE_DESCRIPTION] = description
    return exif.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png16(pixels: np.ndarray, description: str | None, icc_profile: bytes | None, exif: bytes) -> bytes:
    """A 16-bit RGB PNG of uint16 `pixels` `[H, W, 3]`: libpng's encoding (`imagecodecs`) with the
    iCCP, eXIf and iTXt chunks put after its IHDR. Written here because no library does both: Pillow
    writes 16-bit grey but not 16-bit colour, and imagecodecs writes the pixels only."""
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
    with _open_image(path) as im:
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


def same_file(a: Path, b: Path) -> bool:
    """Whether paths `a` and `b` name one file (the same path, a symbolic or a hard link); for paths
    that do not both exist, whether they resolve to the same place."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_target(path: Path, *, overwrite: bool, force: bool, protect: Sequence[PathLike]) -> None:
    """Refuse to replace an input (without `force`) or an existing file (without `overwrite`)."""
    if path.is_dir():
        raise JaxstyleError(f"{path} is a directory; give a file name such as {path / 'out.png'}")
    if not path.parent.is_dir():
        raise JaxstyleError(f"{path}: the directory {path.parent} does not exist; create it first")
    for p in protect:
        if same_file(path, Path(p)):
            if force:
                return
            raise JaxstyleError(f"{path} is one of the inputs ({p}); choose another output (-o) "
                                "or pass --force (force=True) to replace it")
    if path.exists() and not (overwrite or force):
        raise JaxstyleError(f"{path} already exists; choose another output (-o) or pass "
                            "--overwrite (overwrite=True)")


def check_writable(path: PathLike, *, what: str = "output") -> None:
    """Raise `JaxstyleError` now, not after a long run, when `path` cannot be written as
    `save_image` writes it: a new file in its folder (created and removed here), renamed over it."""
    path = Path(path)
    probe = path.with_name(f".{path.name}.{secrets.token_hex(4)}.probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise JaxstyleError(f"cannot write {what} {path}: {e.strerror or e} in the folder {path.parent}; "
                            "choose another folder or fix its permissions") from None
    probe.unlink()


def write_atomically(path: Path, write: Any) -> None:
    """Call `write(file)` on a new temporary file next to `path`, then rename it over `path`.

    Errors name `path`, never the temporary file."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:  # O_EXCL: never reuse someone's file; mode 0o666 lets the umask decide permissions
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno is None:  # not a system call's error (an encoder's, say): keep its message
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- contact sheets


def side_by_side(images: Sequence[Any], *, height: int, gap: int = 4,
                 labels: Sequence[str] | None = None) -> np.ndarray:
    """One row of a contact sheet: each image resized to `height`, left to right on white.

    Returns float32 `[height (+ label band), W, 3]`; with `labels`, each is drawn in
    Pillow's default font, centred under its image (clipped to the image's width).
    """
    _check_side(height, "height")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise JaxstyleError(f"gap must be a non-negative integer, got {gap!r}")
    if len(images) == 0:
        raise JaxstyleError("side_by_side needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise JaxstyleError(f"got {len(labels)} labels for {len(images)} images; give one per image")
    tiles = []
    for x in images:
        image = to_numpy_image(x)
        h, w = image.shape[:2]
        tiles.append(resize_image(image, (height, max(1, round(w * height / h)))))
    band = _label_band_height() if labels is not None else 0
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    sheet = np.ones((height + band, width, 3), np.float32)
    x0 = 0
    for i, tile in enumerate(tiles):
        w = tile.shape[1]
        sheet[:height, x0:x0 + w] = tile
        if labels is not None:
            sheet[height:, x0:x0 + w] = _label_strip(str(labels[i]), w, band)
        x0 += w + gap
    return sheet


def stack_rows(rows: Sequence[np.ndarray], *, gap: int = 4) -> np.ndarray:
    """Stack `[h_i, w_i, 3]` rows top to bottom, `gap` white pixels apart; narrow rows padded
    on the right with white. Returns float32 `[sum h_i + gaps, max w_i, 3]`."""
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise JaxstyleError(f"gap must be a non-negative integer, got {gap!r}")
    if len(rows) == 0:
        raise JaxstyleError("stack_rows needs at least one row")
    images = [to_numpy_image(r) for r in rows]
    width = max(r.shape[1] for r in images)
    height = sum(r.shape[0] for r in images) + gap * (len(images) - 1)
    sheet = np.ones((height, width, 3), np.float32)
    y0 = 0
    for r in images:
        sheet[y0:y0 + r.shape[0], :r.shape[1]] = r
        y0 += r.shape[0] + gap
    return sheet


def _label_band_height() -> int:
    _, _, _, bottom = ImageFont.load_default().getbbox("Ag")
    return int(np.ceil(bottom)) + 2 * _LABEL_PADDING


def _label_strip(text: str, width: int, height: int) -> np.ndarray:
    """Black `text` centred (or left-aligned when too long) on a white `[height, width, 3]` strip."""
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    x = max(0, (width - (right - left)) // 2)
    draw.text((x, _LABEL_PADDING), text, fill="black", font=font)
    return np.asarray(strip, dtype=np.float32) / 255.0
