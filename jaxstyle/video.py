"""Video: the look solved at keyframes and carried to every frame with the camera (PyAV).

Frames are decoded as 8-bit RGB `[H, W, 3]` (float32 in [0, 1] for a solve); a look is a grid
`[gh, gw, gd, 3, 4]` (`jaxstyle.grid`), of one shape for every frame of a video (one frame
size, one working size).

Keyframes are the first frame, a frame `every` seconds after the last keyframe, and a shot
change (4 x 4 block means of small grey thumbnails of consecutive frames differing by more than
`cut` on average). Each keyframe's look is solved with the preset (`stylize`, at the working
size), the first of each shot from the preset's start, the others from the shot's looks so far,
kept in the content's own coordinates (`Atlas`: each keyframe's look written where it saw the
content), and held near them (`grid.anchor`) where a keyframe saw the content, so that
neighbouring keyframes' looks stay alike and content keeps its look when the camera comes back
to it; content no keyframe saw starts from the preset's start, as in a cold solve. The camera's
translation is followed frame to frame (phase correlation of the thumbnails), so each keyframe's
look is sliced under a frame moved with the content it was solved on: a pan does not drag the
content through the look's spatial variations. Between two keyframes a frame gets both looks,
blended linearly in time, each pixel's share weighted by how centrally each keyframe saw its
content and 0 for one that did not see it (`blend_frame`); nothing is blended across a shot
change, and frames after the last keyframe keep its look. Zooms and rotations of the camera are
not followed.

Two readers walk the input file: the lead decodes ahead to find the next keyframe and hands its
pixels to be solved; the trail decodes every frame again, slices, encodes, and remuxes the audio
packets unchanged. Memory holds two looks, the atlas (at most three views wide) and a frame or
two whatever the clip's length; the price is decoding the video twice. Frame times (pts and time
base), frame rate and rotation (solved upright, written back as the same display matrix) are
kept; streams other than the first video and first audio stream are dropped.

The output is written to `OUTPUT.partial<suffix>` next to it and renamed at the end; on Ctrl-C
the encoder is flushed and that file, playable, stays (`partial_path`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import grid
from jaxstyle.errors import Interrupted, JaxstyleError

__all__ = [
    "Atlas", "ENCODER_OPTIONS", "FrameLook", "Step", "VideoInfo", "atlas_read", "atlas_start", "atlas_write",
    "blend_frame", "blend_weight", "block_mean", "carry_looks", "check_paths", "check_solver_config", "frame_time",
    "held_nodes", "lead_keyframes", "make_solver", "move_look", "partial_path", "pick_keyframes", "probe", "render",
    "slice_frame", "stored_look", "stylize_video", "thumbnail", "to_pixels", "track", "translation", "upright",
]

# Output suffix -> video encoder (FFmpeg's name) and its options: H.264 at a quality that
# leaves no visible loss. x264's "veryfast" coded a panning clip with several times the input's own
# frame-to-frame noise after undoing the motion; "faster" does not (docs/looks.md).
ENCODERS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264"}
ENCODER_OPTIONS = {"crf": "18", "preset": "faster"}
KEYFRAME_EVERY = 2.0  # s
# Shot change: mean absolute difference (in [0, 1]) of consecutive grey thumbnails above this.
CUT = 0.12
CUT_BLOCK = 4  # px of the thumbnail: shot changes are judged on its 4 x 4 block means
THUMB_WIDTH = 128  # px: the camera is followed, and shots told apart, on grey frames this wide
# A phase correlation peak (its share of the whole correlation) below this is no one motion.
MIN_PEAK = 0.05
UPSAMPLE = 20  # the correlation's peak is searched 1/UPSAMPLE px apart before a parabola refines it
# The fine search weighs the correlation's frequencies by a Gaussian of this width (cycles a px): a
# thumbnail's highest frequencies are aliased, and whitened they pull the peak toward whole pixels.
PEAK_SIGMA = 0.1
# Between two keyframes a pixel's share of each look is weighted by how centrally that keyframe
# saw its content: from 0 at the keyframe's edges to 1 this share of the frame inside them.
SEEN_FEATHER = 0.25
TIME_SLACK = 1e-3  # s: frame times are rounded to their time base

# solve(frame [H, W, 3], start=None, hold=None) -> look [gh, gw, gd, 3, 4]; `start`: a look to
# solve from, `hold` [gh, gw]: how much of each node starts from it and how firmly it is held
# there (`stylize`'s start_hold)
Solve = Callable[..., np.ndarray]
# Called after each frame is written: (frames written, frames in the file or 0 if unknown,
# keyframes solved, seconds spent solving, seconds in all).
FrameFn = Callable[[int, int, int, float, float], None]


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What `probe` reads of a video: the first video stream's size, frame rate (frames/s),
    frame count (0 when the container does not say), length (s), rotation (degrees counter-
    clockwise, as displayed) and codec, and the first audio stream's codec (None: no audio)."""

    width: int
    height: int
    rate: float
    frames: int
    seconds: float
    rotation: int
    codec: str
    audio: str | None


@dataclasses.dataclass(frozen=True)
class Step:
    """One frame as `track` sees it: its index in decoding order, time (s), position (the
    content's displacement `(dy, dx)` in px since the first frame, summed frame to frame),
    whether it starts a new shot, and what the caller attached (its pixels, say)."""

    index: int
    time: float
    position: tuple[float, float]
    cut: bool
    payload: Any = None


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise JaxstyleError("video needs PyAV: pip install av") from None
    return av


def _open_input(path: Path) -> Any:
    av = _av()
    if not path.is_file():
        raise JaxstyleError(f"{path}: no such file; give a video file (.mp4, .mov, .mkv, ...)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise JaxstyleError(f"{path} is not a video FFmpeg can read ({e}); check the file, or convert it "
                            "with ffmpeg -i INPUT OUT.mp4") from None
    if not container.streams.video:
        container.close()
        raise JaxstyleError(f"{path} has no video stream: give a video file")
    container.streams.video[0].thread_type = "AUTO"
    return container


def probe(path) -> VideoInfo:
    """Read `path`'s header and first frame; a file FFmpeg cannot read, with no video stream, or
    whose first frame does not decode is refused (`JaxstyleError`)."""
    av = _av()
    path = Path(path)
    with _open_input(path) as container:
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except (av.FFmpegError, OSError) as e:
            raise JaxstyleError(f"{path}: its video does not decode ({e}); check the file, or convert it "
                                "with ffmpeg -i INPUT OUT.mp4") from None
        if first is None:
            raise JaxstyleError(f"{path}: its video stream holds no frames; give another video")
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        seconds = float(stream.duration * stream.time_base) if stream.duration else (
            container.duration / 1e6 if container.duration else 0.0)
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        return VideoInfo(width=first.width, height=first.height, rate=rate, frames=int(stream.frames or 0),
                         seconds=seconds, rotation=int(round((first.rotation or 0) / 90)) * 90 % 360,
                         codec=stream.codec_context.name, audio=audio)


def to_pixels(frame: Any) -> np.ndarray:
    """A decoded frame as float32 `[H, W, 3]` RGB in [0, 1]."""
    return frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0


def thumbnail(frame: Any) -> np.ndarray:
    """A decoded frame as a small grey image in [0, 1] (at most `THUMB_WIDTH` px wide), for
    following the camera and finding shot changes."""
    width = min(THUMB_WIDTH, frame.width)
    height = max(1, round(frame.height * width / frame.width))
    small = frame.reformat(width=width, height=height, format="gray")
    return small.to_ndarray().astype(np.float32) / 255.0


def block_mean(image: np.ndarray, block: int = CUT_BLOCK) -> np.ndarray:
    """`[h, w]` averaged over `block x block` cells (rows and columns left over dropped)."""
    b = max(1, min(block, *image.shape))
    h, w = image.shape[0] // b * b, image.shape[1] // b * b
    return image[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))


def translation(previous: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """The content's displacement `(dy, dx)` (px of these images) from `previous` to `current`
    (`[h, w]` grey): `current(p) ~ previous(p - d)`, by phase correlation (Kuglin and Hines
    1975); the whole-pixel peak is then located to a fraction of a pixel by evaluating the
    correlation's Fourier series, low-passed (`PEAK_SIGMA`), on a fine grid around it
    (Guizar-Sicairos et al. 2008) and a parabola through the finest peak; `(0, 0)` when the peak
    is weak (no one motion). A parabola through the whole-pixel peak of the whitened correlation
    is biased toward whole pixels (2 px a frame seen through a 2.5x smaller thumbnail read 2.25),
    and a camera's position adds that bias up frame after frame."""
    h, w = current.shape
    window = np.outer(np.hanning(h), np.hanning(w)) if min(h, w) > 2 else np.ones((h, w))
    f0 = np.fft.fft2((previous - previous.mean()) * window)
    f1 = np.fft.fft2((current - current.mean()) * window)
    cross = f1 * np.conj(f0)
    cross = cross / np.maximum(np.abs(cross), 1e-12)
    surface = np.fft.ifft2(cross).real
    peak = np.unravel_index(int(np.argmax(surface)), surface.shape)
    if surface[peak] < MIN_PEAK:
        return 0.0, 0.0
    whole = [((i + 0.5 * n) % n - 0.5 * n) for i, n in zip(peak, (h, w))]
    fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
    smooth = np.exp(-(fy[:, None] ** 2 + fx[None, :] ** 2) / (2 * PEAK_SIGMA ** 2))
    steps = np.arange(-UPSAMPLE, UPSAMPLE + 1) / UPSAMPLE  # one pixel either side, 1/UPSAMPLE apart
    waves = [np.exp(2j * np.pi * np.outer(c + steps, f)) for c, f in zip(whole, (fy, fx))]
    fine = (waves[0] @ (cross * smooth) @ waves[1].T).real  # the smoothed correlation at whole + steps
    top = np.unravel_index(int(np.argmax(fine)), fine.shape)
    shift = []
    for axis, c in enumerate(whole):
        i = top[axis]
        line = fine[:, top[1]] if axis == 0 else fine[top[0]]
        sub = 0.0
        if 0 < i < len(line) - 1:
            bend = line[i - 1] - 2 * line[i] + line[i + 1]
            sub = 0.5 * (line[i - 1] - line[i + 1]) / bend if bend < 0 else 0.0
        shift.append(c + steps[i] + sub / UPSAMPLE)
    return float(shift[0]), float(shift[1])


def track(frames: Iterable[tuple[float, np.ndarray, Any]], *, size: tuple[int, int], cut: float = CUT
          ) -> Iterator[Step]:
    """Each of `frames`, `(time in s, thumbnail, payload)` in decoding order, as a `Step`: its
    position follows the camera (`translation` of consecutive thumbnails, scaled to the frame's
    `size` (rows, columns)); a shot change is consecutive thumbnails whose `block_mean`s differ
    by more than `cut` on average."""
    previous, position = None, (0.0, 0.0)
    for index, (t, thumb, payload) in enumerate(frames):
        changed = False
        if previous is not None:
            changed = float(np.mean(np.abs(block_mean(thumb) - block_mean(previous)))) > cut
            if not changed:
                dy, dx = translation(previous, thumb)
                position = (position[0] + dy * size[0] / thumb.shape[0], position[1] + dx * size[1] / thumb.shape[1])
        previous = thumb
        yield Step(index=index, time=t, position=position, cut=changed, payload=payload)


def pick_keyframes(steps: Iterable[Step], *, every: float = KEYFRAME_EVERY) -> Iterator[Step]:
    """The keyframes among `steps` (`track`): the first, one `every` seconds after the last
    keyframe, and each shot change."""
    last = None
    for step in steps:
        if last is None or step.cut or step.time >= last + every - TIME_SLACK:
            last = step.time
            yield step


def blend_weight(t: float, k0: Step, k1: Step | None) -> float:
    """The share of the later keyframe's look in the look of a frame at time `t` between `k0`
    and `k1`: linear in time, 0 when there is no later keyframe or it starts a new shot."""
    if k1 is None or k1.cut or k1.time <= k0.time:
        return 0.0
    return min(1.0, max(0.0, (t - k0.time) / (k1.time - k0.time)))


@dataclasses.dataclass(frozen=True)
class FrameLook:
    """What a frame is sliced with: the look of the keyframe before it moved by `shift0` (the
    content's displacement since then, px `(dy, dx)`) and, when `weight` > 0, the next
    keyframe's look moved by `shift1`, blended by `blend_frame`."""

    step: Step
    look0: np.ndarray
    shift0: tuple[float, float]
    look1: np.ndarray | None = None
    shift1: tuple[float, float] = (0.0, 0.0)
    weight: float = 0.0


def _sample(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`values` `[n0, n1, ...]` linearly interpolated at fractional node indices `rows` and `cols`
    (clamped to the nodes) -> `[len(rows), len(cols), ...]`."""
    out = np.asarray(values, np.float32)
    for axis, pos in enumerate((rows, cols)):
        n = out.shape[axis]
        pos = np.clip(pos, 0.0, n - 1.0)
        low = np.minimum(np.floor(pos), max(n - 2, 0)).astype(np.int64)
        f = (pos - low).astype(np.float32).reshape((-1,) + (1,) * (out.ndim - 1 - axis))
        out = (1 - f) * np.take(out, low, axis) + f * np.take(out, np.minimum(low + 1, n - 1), axis)
    return out


def _coverage(pos: np.ndarray, n: int) -> np.ndarray:
    """1 at fractional node indices inside `0 .. n-1`, falling to 0 one node beyond."""
    return np.clip(1.0 - np.maximum(-pos, pos - (n - 1)), 0.0, 1.0).astype(np.float32)


def _node_positions(nodes: tuple[int, int], shift: tuple[float, float], size: tuple[int, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """For a look of `nodes` (`gh`, `gw`) over frames of `size` moved with its content by `shift`
    `(dy, dx)` px: each node's (fractional) index in the look as it was, per axis."""
    return tuple(np.arange(g, dtype=np.float64) - d * (g - 1) / n for g, d, n in zip(nodes, shift, size))


def move_look(look: np.ndarray, shift: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """The look `[gh, gw, gd, 3, 4]` of frames of `size` (rows, columns) moved with their content
    by `shift` `(dy, dx)` px: what `_maps` slices with that shift, resampled onto the nodes
    (linear, clamped at the edges; exact for shifts of whole node spacings). What `atlas_read`
    gives from an atlas of one look."""
    return _sample(look, *_node_positions(look.shape[:2], shift, size))


def held_nodes(nodes: tuple[int, int], shift: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """`[gh, gw]` in [0, 1]: for a look moved by `shift` `(dy, dx)` px (`move_look`) onto frames
    of `size`, 1 at the nodes whose content the look was solved on, falling to 0 one node
    spacing beyond that view (the nodes `move_look` filled from the edge's maps). The hold
    `atlas_read` gives from an atlas of one look."""
    rows, cols = _node_positions(nodes, shift, size)
    return np.outer(_coverage(rows, nodes[0]), _coverage(cols, nodes[1]))


@dataclasses.dataclass(frozen=True)
class Atlas:
    """A shot's looks in the content's own coordinates, so that content keeps its look when the
    camera comes back to it: `values` `[ah, aw, gd, 3, 4]` on nodes spaced as a look's over frames
    of `size` (rows, columns); node (0, 0) sits where node `-origin` of a look solved at camera
    position (0, 0) sits; `seen` `[ah, aw]` in [0, 1]: how much of each node a keyframe saw.
    Built by `atlas_start`, grown by `atlas_write`, read by `atlas_read`; it keeps at most one
    view's width of nodes beyond the last keyframe's view on each side."""

    values: np.ndarray
    seen: np.ndarray
    origin: tuple[float, float]
    size: tuple[int, int]

    def nodes_of(self, position: tuple[float, float], nodes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The atlas node indices (fractional) of the nodes of a look of `nodes` solved at the
        camera `position` (px)."""
        return tuple(pos - o for pos, o in zip(_node_positions(nodes, position, self.size), self.origin))


def atlas_start(look: np.ndarray, position: tuple[float, float], size: tuple[int, int]) -> Atlas:
    """The atlas of a shot's first keyframe: its `look` solved at camera `position` on frames of
    `size`, all seen."""
    look = np.asarray(look, np.float32)
    origin = tuple(float(pos[0]) for pos in _node_positions(look.shape[:2], position, size))  # its nodes 0, 1, ...
    return Atlas(look, np.ones(look.shape[:2], np.float32), origin, tuple(size))


def atlas_read(atlas: Atlas, position: tuple[float, float], nodes: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray]:
    """The start and hold of a keyframe at camera `position` with looks of `nodes` (`gh`, `gw`):
    the atlas at its nodes (clamped at the atlas's edges), and how much of each a keyframe saw
    (falling to 0 one node beyond what any did)."""
    rows, cols = atlas.nodes_of(position, nodes)
    seen = np.pad(atlas.seen, 1)  # nothing seen beyond the atlas
    return _sample(atlas.values, rows, cols), _sample(seen, rows + 1, cols + 1)


def atlas_write(atlas: Atlas, look: np.ndarray, position: tuple[float, float]) -> Atlas:
    """`atlas` with a keyframe's `look` solved at camera `position` written where it saw the
    content (blended over the node beyond its view's edges), grown to hold it and cropped to
    one view's width beyond it."""
    look = np.asarray(look, np.float32)
    nodes = look.shape[:2]
    values, seen, origin = atlas.values, atlas.seen, list(atlas.origin)
    for axis, pos in enumerate(atlas.nodes_of(position, nodes)):
        before = max(0, 1 - int(np.floor(pos[0])))
        after = max(0, int(np.ceil(pos[-1])) + 1 - (values.shape[axis] - 1))
        widths = [(0, 0)] * values.ndim
        widths[axis] = (before, after)
        values = np.pad(values, widths, mode="edge")
        seen = np.pad(seen, widths[:2])
        origin[axis] -= before
    grown = Atlas(values, seen, tuple(origin), atlas.size)
    rows, cols = grown.nodes_of(position, nodes)  # look node i sits at atlas node i + rows[0]
    own = [np.arange(n, dtype=np.float64) - start[0] for n, start in zip(values.shape[:2], (rows, cols))]
    weight = np.outer(_coverage(own[0], nodes[0]), _coverage(own[1], nodes[1]))
    w = weight[:, :, None, None, None]
    values = (1 - w) * values + w * _sample(look, *own)
    seen = np.maximum(seen, weight)
    keep = [slice(max(0, int(np.floor(pos[0])) - (g - 1)), int(np.ceil(pos[-1])) + g)
            for pos, g in zip((rows, cols), nodes)]
    origin = tuple(o + k.start for o, k in zip(grown.origin, keep))
    return Atlas(values[keep[0], keep[1]], seen[keep[0], keep[1]], origin, atlas.size)


def carry_looks(steps: Iterable[Step], keys: Iterator[Step], solve: Solve, *,
                size: tuple[int, int] | None = None) -> Iterator[FrameLook]:
    """What each frame is sliced with (`FrameLook`), for the frames' `steps` (`track`, decoding
    order) and their keyframes `keys` (`pick_keyframes` of the same frames, each payload its
    pixels, solved by `solve`): the looks of the keyframes around the frame, each moved with the
    content, their shares by `blend_weight`. A keyframe is solved when a frame first needs it,
    and only the two keyframes around the current frame are held, with the shot's `Atlas`. With
    the frames' `size` (rows, columns), a keyframe that does not start a shot is solved from the
    shot's looks so far where they saw its content, held there (`solve(pixels, start=...,
    hold=...)`, `atlas_read`), so that neighbouring keyframes' looks stay alike, their blend does
    not flicker, and content keeps its look when the camera comes back to it."""
    atlas: Atlas | None = None

    def solved(key: Step, before: Step | None, look: np.ndarray | None) -> np.ndarray:
        nonlocal atlas
        if size is None or before is None or key.cut:
            look = np.asarray(solve(key.payload), np.float32)
            atlas = None if size is None else atlas_start(look, key.position, size)
            return look
        start, hold = atlas_read(atlas, key.position, look.shape[:2])
        look = np.asarray(solve(key.payload, start=start, hold=hold), np.float32)
        atlas = atlas_write(atlas, look, key.position)
        return look

    k0 = next(keys, None)
    if k0 is None:
        return
    look0 = solved(k0, None, None)
    k1, look1 = next(keys, None), None
    for step in steps:
        while k1 is not None and step.index >= k1.index:
            k0, look0 = k1, solved(k1, k0, look0) if look1 is None else look1
            k1, look1 = next(keys, None), None
        w = blend_weight(step.time, k0, k1)
        shift0 = _minus(step.position, k0.position)
        if w == 0.0:
            yield FrameLook(step, look0, shift0)
            continue
        if look1 is None:
            look1 = solved(k1, k0, look0)
            if look1.shape != look0.shape:
                raise JaxstyleError(f"keyframes' looks differ in shape ({list(look0.shape)} and "
                                    f"{list(look1.shape)}): the frames must share one size")
        yield FrameLook(step, look0, shift0, look1, _minus(step.position, k1.position), w)


def _minus(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] - b[0], a[1] - b[1]


def _maps(look: jax.Array, image: jax.Array, shift: jax.Array) -> jax.Array:
    """The look `[gh, gw, gd, 3, 4]`, moved by `shift` `(dy, dx)` px, sliced under `image`
    `[H, W, 3]` -> per-pixel maps `[H, W, 12]`: `grid.slice_grid`'s, with node positions taken
    `shift` back (clamped at the edges), each pixel gathering only its 2 x 2 x 2 nodes."""
    h, w = image.shape[:2]
    gh, gw, gd = look.shape[:3]

    def corners(pos: jax.Array, nodes: int) -> tuple[jax.Array, jax.Array]:
        pos = jnp.clip(pos, 0.0, nodes - 1.0)
        low = jnp.minimum(jnp.floor(pos), nodes - 2)  # the lower of the two nodes around pos
        return low.astype(jnp.int32), pos - low

    i, fy = corners((jnp.arange(h) + 0.5 - shift[0]) / h * (gh - 1), gh)  # [H]
    j, fx = corners((jnp.arange(w) + 0.5 - shift[1]) / w * (gw - 1), gw)  # [W]
    k, fz = corners(grid.guide(image) * (gd - 1), gd)  # [H, W]
    flat = look.reshape(gh, gw * gd * 12).astype(jnp.float32)
    rows = (1 - fy)[:, None] * flat[i] + fy[:, None] * flat[i + 1]  # [H, gw * gd * 12]
    rows = rows.reshape(h * gw * gd, 12)
    base = (jnp.arange(h, dtype=jnp.int32)[:, None] * gw + j[None, :]) * gd + k  # [H, W]
    maps = 0.0
    for dj, wj in ((0, 1 - fx), (1, fx)):
        for dk, wk in ((0, 1 - fz), (1, fz)):
            maps = maps + (wj[None, :] * wk)[..., None] * jnp.take(rows, base + dj * gd + dk, axis=0)
    return maps


def _seen(shift: jax.Array, h: int, w: int) -> jax.Array:
    """`[H, W]` in [0, 1]: how centrally the keyframe displaced by `shift` saw a frame's pixel's
    content: 0 at and beyond its view's edges (where its look holds only the edge's maps),
    rising to 1 over `SEEN_FEATHER` of the frame inside them."""

    def axis(n: int, s: jax.Array) -> jax.Array:
        pos = jnp.arange(n) + 0.5 - s  # the pixel's position in the keyframe
        inside = jnp.minimum(pos, n - pos)  # px inside the keyframe's edges (< 0: beyond)
        return jnp.clip(inside / (SEEN_FEATHER * n), 0.0, 1.0)

    return axis(h, shift[0])[:, None] * axis(w, shift[1])[None, :]


def _to_bytes(maps: jax.Array, image: jax.Array) -> jax.Array:
    """Per-pixel maps `[H, W, 12]` (the rows of `[A | b]`) applied to `image` `[H, W, 3]` -> uint8."""
    out = grid.apply_maps(maps.reshape(*maps.shape[:2], 3, 4), image)
    return jnp.round(jnp.clip(out, 0.0, 1.0) * 255.0).astype(jnp.uint8)


@jax.jit
def slice_frame(look: jax.Array, frame: jax.Array, shift: jax.Array) -> jax.Array:
    """The look `[gh, gw, gd, 3, 4]`, moved by `shift` `(dy, dx)` px, sliced under the 8-bit
    frame `[H, W, 3]` -> `[H, W, 3]` uint8 (one program a frame size and look shape; `shift`
    (0, 0) gives `grid.slice_grid_host`'s result)."""
    image = frame.astype(jnp.float32) / 255.0
    return _to_bytes(_maps(look, image, shift), image)


@jax.jit
def blend_frame(look0: jax.Array, look1: jax.Array, frame: jax.Array, shift0: jax.Array, shift1: jax.Array,
                weight: jax.Array) -> jax.Array:
    """Two keyframes' looks, each moved by its shift, sliced under the 8-bit frame `[H, W, 3]`
    and blended -> `[H, W, 3]` uint8. A pixel's share of `look1` is `weight` where both
    keyframes showed its content; where only one did, that one's look takes over (`_seen`), so
    content entering or leaving the view keeps the look of the keyframe that saw it."""
    image = frame.astype(jnp.float32) / 255.0
    h, w = frame.shape[:2]
    trust0, trust1 = (1.0 - weight) * _seen(shift0, h, w), weight * _seen(shift1, h, w)
    share = jnp.where(trust0 + trust1 > 0, trust1 / jnp.maximum(trust0 + trust1, 1e-12), weight)[..., None]
    maps = (1.0 - share) * _maps(look0, image, shift0) + share * _maps(look1, image, shift1)
    return _to_bytes(maps, image)


def render(frame: np.ndarray, how: FrameLook) -> np.ndarray:
    """The 8-bit frame `[H, W, 3]` sliced with what `carry_looks` gave it -> `[H, W, 3]` uint8."""
    shift0 = np.asarray(how.shift0, np.float32)
    if how.look1 is None:
        return np.asarray(slice_frame(how.look0, frame, shift0))
    return np.asarray(blend_frame(how.look0, how.look1, frame, shift0, np.asarray(how.shift1, np.float32),
                                  np.float32(how.weight)))


def upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    """A frame `[H, W, 3]` (or a look's or hold's node axes `[gh, gw, ...]`) as displayed: rotated
    by `rotation` degrees counter-clockwise."""
    return np.rot90(pixels, rotation // 90)


def stored_look(look: np.ndarray, rotation: int) -> np.ndarray:
    """A look solved on the upright frame, for the frame as stored: its spatial node axes turned
    back (nodes span each axis symmetrically, so a quarter turn of the grid is exact)."""
    return np.ascontiguousarray(np.rot90(look, -(rotation // 90), axes=(0, 1)))


def make_solver(style, *, config: Any = "default", overrides: Any = None, max_side: int | None = None,
                masks: str = "none", regions: int | None = None, weights: Any = None) -> Solve:
    """A `Solve` for `stylize_video`: the look of the style photo `style` (a path or an image) on a
    frame, solved by `stylize` with the preset `config` at the working size `max_side`; with
    `masks` "auto" each keyframe's masks are found by `automask.auto_masks`; a `start` look
    (upright) is the solve's start instead of the preset's, each node held there by `hold`."""
    from jaxstyle import automask, reading
    from jaxstyle.config import Config, load_config
    from jaxstyle.single import load_inputs, stylize
    from jaxstyle.weights import resolve_weights

    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    check_solver_config(cfg, config)
    if masks not in ("auto", "none"):
        raise JaxstyleError(f"--masks must be auto or none for a video, got {masks!r}")
    if regions is not None and masks != "auto":
        raise JaxstyleError("--regions is for automatic masks: add --masks auto")
    side = max_side or cfg.max_side
    style_image = reading.load_image(style) if isinstance(style, (str, os.PathLike)) else reading.to_numpy_image(style)
    weights = weights if weights is not None else resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)

    def solve(frame: np.ndarray, start: np.ndarray | None = None, hold: np.ndarray | None = None) -> np.ndarray:
        cmask = smask = None
        if masks == "auto":
            content_a, style_a, *_ = load_inputs(frame, style_image, max_side=side, buckets=cfg.buckets)
            pair = automask.auto_masks(weights, content_a, style_a, regions=regions, seed=cfg.seed)
            if len(pair.labels) > 1:  # one region: the plain, unmasked transfer
                cmask, smask = (np.argmax(np.asarray(m), axis=-1).astype(np.int32) for m in (pair.content, pair.style))
        result = stylize(frame, style_image, content_mask=cmask, style_mask=smask, config=cfg, weights=weights,
                         max_side=side, full_size=False, start_look=start, start_hold=hold)
        return result.look

    return solve


def check_solver_config(cfg: Any, name: Any = None) -> None:
    """Refuse a preset whose result is no look to carry (a pixel solve without grid.project)."""
    if not (cfg.grid.enabled or cfg.grid.project):
        raise JaxstyleError(f"the config {name or cfg.name!r} solves the pixels, so it has no look to carry "
                            "to the frames: use the default preset (-c default) or add --set grid.project=true")


def partial_path(output) -> Path:
    """Where `stylize_video` writes before renaming, and what Ctrl-C leaves: OUTPUT.partial<suffix>."""
    output = Path(output)
    return output.with_name(f"{output.stem}.partial{output.suffix}")


def check_paths(source: Path, output: Path, *, force: bool) -> None:
    """Refuse an output `stylize_video` cannot or must not write, before any work."""
    if output.suffix.lower() not in ENCODERS:
        raise JaxstyleError(f"output {output} must end in {', '.join(ENCODERS)} (H.264 video)")
    if not output.parent.is_dir():
        raise JaxstyleError(f"the folder of {output} does not exist: create it first")
    if output.is_dir():
        raise JaxstyleError(f"{output} is a folder; give a file name such as {output / 'out.mp4'}")
    for target in (output, partial_path(output)):
        if target.resolve() == source.resolve() or target.exists() and os.path.samefile(source, target):
            raise JaxstyleError(f"refusing to write {target} over the input {source}: choose another -o "
                                "(--force never replaces an input)")
    if output.exists() and not force:
        raise JaxstyleError(f"{output} exists: pass --force to replace it, or choose another -o")


def _open_output(path: Path, source: Any, info: VideoInfo) -> tuple[Any, Any, Any]:
    """The output container at `path`, its video stream (the input's frame rate, time base and
    rotation) and its audio stream (a copy of the input's, or None), header written: a codec
    or container that cannot be written is refused here, before any solve."""
    av = _av()
    vin = source.streams.video[0]
    ain = source.streams.audio[0] if source.streams.audio else None
    try:
        output = av.open(str(path), "w")
    except (av.FFmpegError, OSError) as e:
        raise JaxstyleError(f"cannot write {path}: {e}; choose another folder or name") from None
    try:
        vout = output.add_stream(ENCODERS[path.suffix.lower()], rate=vin.average_rate or vin.guessed_rate or 25,
                                 options=dict(ENCODER_OPTIONS))
        vout.width, vout.height = info.width, info.height
        # 4:2:0 needs even sides; odd ones are kept whole in 4:4:4.
        vout.pix_fmt = "yuv420p" if info.width % 2 == 0 and info.height % 2 == 0 else "yuv444p"
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        if info.rotation:
            vout.set_display_rotation(info.rotation)
        aout = output.add_stream_from_template(ain) if ain is not None else None
        output.start_encoding()
    except (av.FFmpegError, ValueError) as e:
        output.close()
        path.unlink(missing_ok=True)
        what = f"this video with its audio ({info.audio}) unchanged" if info.audio else "this video"
        raise JaxstyleError(f"the bundled FFmpeg cannot write {what} to a {path.suffix} file ({e}): write .mkv, "
                            "which takes any audio, or convert the audio first (ffmpeg -c:a aac)") from None
    return output, vout, aout


def frame_time(frame: Any, index: int, rate: float) -> float:
    """A decoded frame's time (s): from its pts, else from its index and the frame rate."""
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    return index / rate if rate else float(index)


def _steps(frames: Iterable[Any], info: VideoInfo, cut: float) -> Iterator[Step]:
    """`track` over decoded frames (each step's payload: the frame)."""
    return track(((frame_time(f, i, info.rate), thumbnail(f), f) for i, f in enumerate(frames)),
                 size=(info.height, info.width), cut=cut)


def lead_keyframes(path: Path, info: VideoInfo, *, every: float, cut: float) -> Iterator[Step]:
    """The keyframes of the video at `path` (`pick_keyframes`), each with its pixels, upright, as
    its payload; read by a reader of its own that decodes only as far as the next keyframe."""
    container = _open_input(path)
    try:
        for key in pick_keyframes(_steps(container.decode(container.streams.video[0]), info, cut), every=every):
            yield dataclasses.replace(key, payload=upright(to_pixels(key.payload), info.rotation))
    finally:
        container.close()


def stylize_video(source, output, solve: Solve, *, every: float = KEYFRAME_EVERY, cut: float = CUT,
                  force: bool = False, on_frame: FrameFn | None = None, warm_start: bool = True) -> dict[str, Any]:
    """What `jaxstyle video` does: every frame of the video `source` with the look `solve` gives
    its keyframes (module docstring), written to `output` (.mp4, .mov or .mkv; H.264) with the
    input's frame times, rotation and audio.

    Every refusal (an unreadable input, no video stream, an output over the input or existing
    without `force`, a codec or container that cannot be written) comes before any solve.
    Ctrl-C (or `Interrupted` from a solve) flushes what was encoded to `partial_path(output)`,
    which plays, and raises `Interrupted` saying so. Returns a summary: frames, keyframes, the
    seconds spent solving and in all. `warm_start`: keyframes within a shot are solved from the
    previous keyframe's look (`carry_looks`); without it, each from the preset's start.
    """
    av = _av()
    source, output = Path(source), Path(output)
    if not every > 0 or not math.isfinite(every):
        raise JaxstyleError(f"--keyframe-every must be a positive number of seconds, got {every}")
    if not 0 < cut <= 1:
        raise JaxstyleError(f"the shot-change threshold must be in (0, 1], got {cut}")
    info = probe(source)
    check_paths(source, output, force=force)
    partial = partial_path(output)
    start = time.perf_counter()
    solved = {"keyframes": 0, "seconds": 0.0}

    def timed_solve(pixels: np.ndarray, start: np.ndarray | None = None, hold: np.ndarray | None = None
                    ) -> np.ndarray:
        t0 = time.perf_counter()
        if start is None:
            look = solve(pixels)
        else:  # the start, moved in the stored frame's coordinates, turned upright
            look = solve(pixels, start=upright(start, info.rotation), hold=upright(hold, info.rotation))
        look = stored_look(np.asarray(look, np.float32), info.rotation)
        solved["keyframes"] += 1
        solved["seconds"] += time.perf_counter() - t0
        return look

    trail = _open_input(source)
    written = 0
    try:
        sink, vout, aout = _open_output(partial, trail, info)
    except BaseException:
        trail.close()
        raise
    vin = trail.streams.video[0]
    ain = trail.streams.audio[0] if trail.streams.audio else None

    def frames() -> Iterator[Any]:
        """The trail: the video's frames, decoded; the audio packets muxed as they come."""
        for packet in trail.demux(*(s for s in (vin, ain) if s is not None)):
            if packet.stream is not ain:
                yield from packet.decode()
            elif packet.dts is not None:  # not the demuxer's empty flush packet
                packet.stream = aout
                sink.mux(packet)

    keys = lead_keyframes(source, info, every=every, cut=cut)
    try:
        size = (info.height, info.width) if warm_start else None
        for how in carry_looks(_steps(frames(), info, cut), keys, timed_solve, size=size):
            frame = how.step.payload
            out = av.VideoFrame.from_ndarray(render(frame.to_ndarray(format="rgb24"), how), format="rgb24")
            out.pts, out.time_base = frame.pts, frame.time_base
            sink.mux(vout.encode(out))
            written += 1
            if on_frame is not None:
                on_frame(written, info.frames, solved["keyframes"], solved["seconds"], time.perf_counter() - start)
        sink.mux(vout.encode(None))
    except (KeyboardInterrupt, Interrupted):
        _close_quietly(sink, vout)
        raise Interrupted(f"interrupted: wrote the {written} frames done so far to {partial} (it plays)") from None
    except BaseException:
        sink.close()
        partial.unlink(missing_ok=True)
        raise
    finally:
        keys.close()
        trail.close()
    sink.close()
    os.replace(partial, output)
    return {"frames": written, "keyframes": solved["keyframes"], "solve_seconds": solved["seconds"],
            "seconds": time.perf_counter() - start}


def _close_quietly(sink: Any, vout: Any) -> None:
    """Flush the encoder and close the container (its index written: the file plays)."""
    try:
        sink.mux(vout.encode(None))
    finally:
        sink.close()
