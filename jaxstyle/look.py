"""The look as a file, and the job that applies one to many photos.

Images are float32 `[H, W, 3]` RGB in [0, 1]. A look is either a bilateral grid of affine
colour maps `[gh, gw, gd, 3, 4]` (`jaxstyle.grid`: what a grid run solves, `Result.look`) or its
global part, a 3D LUT `[N, N, N, 3]` (`jaxstyle.cube`). A grid is kept as an `.npz` with two
entries: `look` (float32) and `metadata` (a JSON string: the format, the settings that made it
and where it came from); a LUT as a `.cube` file.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle import cube, filesafety, grid, reading, writing
from jaxstyle._version import __version__
from jaxstyle.errors import JaxstyleError

__all__ = [
    "FORMAT", "apply_files", "apply_look", "fit_result_cube", "load_look", "look_metadata", "output_suffix", "read_any",
    "save_look",
]

FORMAT = "jaxstyle look"
FORMAT_VERSION = 1
LOOK_SUFFIX = ".npz"
CUBE_SUFFIX = ".cube"
MAKE_ONE = "make one with: jaxstyle transfer CONTENT STYLE -o OUT --save-look LOOK.npz"

# Called after each photo `apply_files` writes: (index, total, photo, output, seconds).
PhotoFn = Callable[[int, int, Path, Path, float], None]


def save_look(path, look, *, metadata: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Write the grid `look [gh, gw, gd, 3, 4]` and `metadata` (JSON-friendly: settings and
    provenance) to the `.npz` file `path`, atomically. An existing file is replaced only with
    `overwrite`. Returns the path."""
    path = Path(path)
    look = np.asarray(look, np.float32)
    _check_grid(look, str(path))
    if path.exists() and not overwrite:
        raise JaxstyleError(f"{path} exists: pass --force (overwrite=True) to replace it, or choose another name")
    record = {**metadata, "format": FORMAT, "format_version": FORMAT_VERSION, "shape": list(look.shape)}
    try:
        text = json.dumps(record, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise JaxstyleError(f"the look's metadata must be JSON-serialisable (str, numbers, lists, dicts): {e}") from e
    filesafety.write_atomically(path, lambda f: np.savez_compressed(f, look=look, metadata=np.asarray(text)))
    return path


def load_look(path) -> tuple[np.ndarray, dict[str, Any]]:
    """The grid `[gh, gw, gd, 3, 4]` (float32) and metadata of a look file `save_look` wrote."""
    path = Path(path)
    if not path.is_file():
        raise JaxstyleError(f"{path}: no such file; give a look (.npz) or a LUT (.cube) ({MAKE_ONE})")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted(data.files)
            if "look" not in keys or "metadata" not in keys:
                raise JaxstyleError(f"{path} is not a jaxstyle look: it holds {', '.join(keys) or 'nothing'}, a look "
                                    f"holds 'look' and 'metadata'; {MAKE_ONE}")
            look, text = data["look"], data["metadata"]
    except JaxstyleError:
        raise
    except (AttributeError, TypeError, OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise JaxstyleError(f"{path} is not a jaxstyle look (not a readable .npz file); {MAKE_ONE}") from None
    try:
        metadata = json.loads(str(text))
    except ValueError:
        metadata = None
    if text.shape != () or not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise JaxstyleError(f"{path} is not a jaxstyle look: its 'metadata' is not a look's; {MAKE_ONE}")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise JaxstyleError(f"{path} is a look of a newer format ({metadata['format_version']}) than this "
                            f"jaxstyle {__version__} reads ({FORMAT_VERSION}): upgrade jaxstyle")
    _check_grid(look, str(path))
    return look.astype(np.float32), metadata


def _check_grid(look: np.ndarray, where: str) -> None:
    if (look.ndim != 5 or look.shape[-2:] != (3, 4) or min(look.shape[:3]) < 2
            or not np.issubdtype(look.dtype, np.floating)):
        raise JaxstyleError(f"{where}: a look is a float grid [gh, gw, gd, 3, 4] with at least 2 nodes an axis, "
                            f"got {look.dtype} {list(look.shape)}; {MAKE_ONE}")
    if not np.all(np.isfinite(look)):
        raise JaxstyleError(f"{where}: the look holds NaN or infinite values; make it again")


def look_metadata(result: Any, *, content: str, style: str) -> dict[str, Any]:
    """What a look file keeps of the run (`single.Result`) that solved it: the jaxstyle
    version, the settings, the photos' names and sizes, the grid's spacing."""
    cfg = result.config
    return {"jaxstyle": __version__, "content": str(content), "style": str(style), "config": cfg.to_dict(),
            "grid": {"cell": cfg.grid.cell, "depth": cfg.grid.depth}, "size": list(result.image.shape[:2]),
            "working_size": list(result.working_size or result.image.shape[:2])}


def read_any(path) -> tuple[np.ndarray, dict[str, Any]]:
    """A look file: a `.cube` LUT `[N, N, N, 3]` (metadata: its name) or else a grid `.npz`
    (`load_look`)."""
    path = Path(path)
    if path.suffix.lower() == CUBE_SUFFIX:
        return cube.read_cube(path), {"format": "cube"}
    return load_look(path)


def apply_look(look, photo) -> np.ndarray:
    """A look applied to a photo `[H, W, 3]` at its own size -> `[H, W, 3]` in [0, 1]: a grid
    `[gh, gw, gd, 3, 4]` sliced under it, or a LUT `[N, N, N, 3]` looked up."""
    look = np.asarray(look)
    if look.ndim == 5:
        return grid.slice_grid_host(look, photo)
    if look.ndim == 4:
        return cube.apply_cube_host(look, photo)
    raise JaxstyleError(f"a look is a grid [gh, gw, gd, 3, 4] or a LUT [N, N, N, 3], got shape {list(look.shape)}")


def fit_result_cube(content: np.ndarray, result: np.ndarray, *, size: int = cube.CUBE_SIZE
                    ) -> tuple[np.ndarray, float]:
    """The LUT `[size, size, size, 3]` that best reproduces `result` from `content` (both the
    photo's full size, `[H, W, 3]`; fitted on about `cube.FIT_PIXELS` of their pixels) and the
    PSNR (dB) of the LUT applied to the whole content against the whole result."""
    from jaxstyle.metrics import psnr

    pixels = cube.fit_pixels(content, result)
    lut = np.asarray(cube.fit_cube(*pixels, size=size))
    return lut, float(psnr(cube.apply_cube_host(lut, content), result))


def output_suffix(photo: Path, fmt: str | None) -> str:
    """The suffix of the result of `photo`: `fmt` (png, jpg, jpeg) when given, else the photo's own."""
    suffix = f".{fmt.lower().lstrip('.')}" if fmt else photo.suffix.lower()
    if suffix not in writing.SAVE_FORMATS:
        given = f"--format {fmt}" if fmt else f"{photo} ({photo.suffix or 'no suffix'})"
        raise JaxstyleError(f"{given}: results are written as {', '.join(s[1:] for s in writing.SAVE_FORMATS)}; "
                            "pass --format png (or jpg)")
    return suffix


def apply_files(look_path, photos: Sequence[Any], outdir, *, fmt: str | None = None, force: bool = False,
                bits: int | None = None, jpeg_quality: int = 95, on_photo: PhotoFn | None = None) -> list[Path]:
    """What `jaxstyle apply` does: the look in `look_path` (`.npz` or `.cube`) applied to each
    photo at its own size, written to `outdir/<stem>.<suffix>` (the photo's suffix or `fmt`) with
    the photo's ICC profile and EXIF, as `transfer` writes a result.

    Every refusal comes before any photo is written: an unreadable look or photo, `outdir`
    not a folder, two photos with one output, an output over an input (never), an existing
    output (without `force`), a depth or quality that cannot be written. Returns the outputs.
    """
    look_path = Path(look_path)
    look, made_by = read_any(look_path)
    if not photos:
        raise JaxstyleError("no photos given: apply LOOK PHOTO... -o DIR")
    folder = Path(outdir)
    if folder.exists() and not folder.is_dir():
        raise JaxstyleError(f"{folder} exists and is not a folder; choose another output folder (-o)")
    sources = [Path(p) for p in photos]
    inputs = [look_path, *sources]
    targets: dict[Path, Path] = {}
    for source in sources:
        reading.photo_size(source)  # a missing or unreadable photo is refused here, from its header
        target = folder / f"{source.stem}{output_suffix(source, fmt)}"
        writing.check_write_options(bits, jpeg_quality, target.suffix)
        if target in targets:
            raise JaxstyleError(f"{targets[target]} and {source} would both be written to {target}: apply them "
                                "in two runs with two output folders")
        if any(filesafety.same_file(target, p) for p in inputs):
            raise JaxstyleError(f"refusing to write {target} over an input: choose another -o "
                                "(--force never replaces an input)")
        if target.exists() and not force:
            raise JaxstyleError(f"{target} exists: pass --force to replace it, or choose another -o")
        targets[target] = source
    folder.mkdir(parents=True, exist_ok=True)
    filesafety.check_writable(folder / "probe", what="results in")
    metadata = {"jaxstyle": __version__, "look": str(look_path), "look_made_by": made_by}
    written = []
    for index, (target, source) in enumerate(targets.items()):
        start = time.perf_counter()
        photo = reading.read_photo(source)
        image = apply_look(look, photo.pixels)
        writing.save_image(image, target, metadata={**metadata, "content": str(source)}, overwrite=force,
                      protect=inputs, quality=jpeg_quality, bits=writing.output_bits(bits, photo, target),
                      icc_profile=photo.icc_profile, exif=photo.exif)
        written.append(target)
        if on_photo is not None:
            on_photo(index, len(targets), source, target, time.perf_counter() - start)
    return written

