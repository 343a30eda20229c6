"""Working sizes and the memory budget: how big a photo is worked on, and whether its full size fits.

Sizes are `(H, W)`. Images are float32 `[H, W, C]` (or `[H, W]`) in [0, 1] (numpy, on the
host); Pillow's own sizes are `(W, H)` and stay inside this module.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from PIL import Image

from jaxstyle.errors import JaxstyleError

__all__ = [
    "BYTES_PER_COPY_PIXEL", "FULL_SIZE_COPIES", "available_memory", "bucket_shape", "check_memory", "check_side",
    "fit_max_side", "resize_image",
]


def check_side(n: Any, name: str) -> None:
    """Refuse `n` unless it is a positive integer (a side in pixels); the message names `name`."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise JaxstyleError(f"{name} must be a positive integer, got {n!r}")


def fit_max_side(h: int, w: int, max_side: int) -> tuple[int, int]:
    """`(h, w)` scaled down (aspect kept, rounded, each >= 1) so that max(h, w) <= max_side."""
    check_side(h, "h")
    check_side(w, "w")
    check_side(max_side, "max_side")
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
    check_side(h, "height")
    check_side(w, "width")
    if image.shape[:2] == (h, w):
        return np.clip(image, 0.0, 1.0)
    channels = image[..., None] if image.ndim == 2 else image
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., c]))
                               .resize((w, h), Image.Resampling.LANCZOS), dtype=np.float32)
                    for c in range(channels.shape[-1])], axis=-1)  # [h, w, C]
    out = np.clip(out, 0.0, 1.0)
    return out[..., 0] if image.ndim == 2 else out
