"""Reading photos and in-memory images (numpy and Pillow; field libraries for what Pillow cannot decode).

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
(`jaxstyle.icc`), and `jaxstyle.writing.save_image` converts back into the profile it embeds; other profiles
are ignored (their pixels taken as sRGB). Pillow's decompression-bomb guard stays on;
tripping it raises a `JaxstyleError`.

Results are written by `jaxstyle.writing`; working sizes and the memory check are in
`jaxstyle.sizing`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.resources
import os
import struct
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxstyle import icc, sizing
from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.filesafety import PathLike

__all__ = [
    "EXIF_ORIENTATION", "Photo", "demo_paths", "image_size", "load_image", "load_label_image", "open_image", "orient",
    "photo_size", "read_photo", "sample_paths", "to_numpy_image", "transparency_note",
]

ALPHA_MODES = ("composite", "refuse")
WHITE = (1.0, 1.0, 1.0)
# Floats this far outside [0, 1] are rounding noise and get clipped; further out is an error.
FLOAT_RANGE_TOLERANCE = 1e-3
MAX_16BIT = 65535.0
EXIF_ORIENTATION = 0x0112
# Pillow modes that carry a straight (non-premultiplied) alpha channel, and what to convert
# them to before reading the pixels.
_ALPHA_CONVERSIONS = {"RGBA": "RGBA", "RGBa": "RGBA", "LA": "LA", "La": "LA", "PA": "RGBA"}
_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# What can go wrong while decoding a file that Pillow recognised (truncated data, bad chunks);
# the codec libraries' errors (imagecodecs', libheif's) are RuntimeErrors and ValueErrors.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, RuntimeError, struct.error, zlib.error)
_NEW_SUBFILE_TYPE = 254  # TIFF field; bit 0: a reduced-resolution version of another image
# TIFF fields that tell a 16-bit colour TIFF (TIFF 6.0, section 8), and their values meant here
_TIFF_BITS, _TIFF_PHOTOMETRIC, _TIFF_SAMPLES, _TIFF_SAMPLE_FORMAT, _TIFF_ORIENTATION = 258, 262, 277, 339, 274
_TIFF_RGB, _TIFF_UNSIGNED = 2, 1
_ASSOCIATED_ALPHA, _UNASSOCIATED_ALPHA = 1, 2  # TIFF ExtraSamples
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
        sizing.check_side(max_side, "max_side")
    image = read_photo(path, alpha=alpha, background=background).pixels
    if max_side is not None:
        size = sizing.fit_max_side(image.shape[0], image.shape[1], max_side)
        if size != image.shape[:2]:
            image = sizing.resize_image(image, size)
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
    with open_image(p, deep_lazily=True) as im:
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
    with open_image(path) as im:
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


def open_image(path: PathLike, *, deep_lazily: bool = False) -> Image.Image:
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
