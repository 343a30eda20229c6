"""`jaxstyle video` (`jaxstyle.video`): keyframes, the camera followed, looks blended and
sliced, and the file: frame times, frame rate, rotation and audio kept, bad input refused
before any solve, Ctrl-C leaving a playable partial file.

Clips are made here with PyAV (48x32 or 64x48, at most 24 frames). Most tests solve keyframes
with `flat_look`, a numpy stand-in (one affine colour map that depends on the frame's mean
colour), so no optimisation runs; the command-line test and the flicker test solve with the
tiny preset of tests/test_look.py (the same working size, so the same compiled programs).
"""

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import synthetic_photo, tiny_toml
from jaxstyle import cli, grid, video, writing
from jaxstyle.errors import Interrupted, JaxstyleError

av = pytest.importorskip("av")

runner = CliRunner()
RATE = 12
# Without the flat-area term: the pan test checks the carrying of looks against solving every frame,
# and with the term the tiny 48 px solves of every frame agree far better (per-frame flicker 0.0173
# -> 0.0061, carried 0.0033 -> 0.0020: 0.33 of per-frame with 1 s keyframes). The shipped preset's
# ratio on a real clip is measured by scripts/bench_video.py (docs/looks.md).
TINY = tiny_toml(tables="[grid]\nflat = 0.0\n")


def write_clip(path: Path, frames, *, rate: int = RATE, audio: str | None = None, rotation: int = 0) -> Path:
    """An H.264 clip of `frames` (uint8 `[H, W, 3]`), pts 0, 1, 2, ... in 1/rate, with
    `audio` (an encoder's name) of the same length, and a display rotation."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        sound = container.add_stream(audio, rate=8000, layout="mono") if audio else None
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            step = sound.codec_context.frame_size or 400
            fmt = sound.codec_context.format.name
            for start in range(0, 8000 * len(frames) // rate, step):
                wave = 0.2 * np.sin(np.arange(start, start + step) / 3.0)
                data = (wave * 127 + 128).astype(np.uint8) if fmt == "u8" else wave.astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(data[None], format=fmt, layout="mono")
                chunk.sample_rate, chunk.pts = 8000, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


def gradient_frames(n: int = 12, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Smooth frames that brighten from one to the next."""
    y, x = np.mgrid[0:h, 0:w]
    return [np.stack([40 + 2 * x + 5 * i, 60 + 2 * y, np.full_like(x, 120 + 4 * i)], -1).astype(np.uint8)
            for i in range(n)]


def flat_look(pixels: np.ndarray, start: np.ndarray | None = None, hold: np.ndarray | None = None) -> np.ndarray:
    """The stand-in solve: every node `out = 0.8 (c - 1/2) + 1/2 + (0.1, 0, -0.1)` shifted by a
    tenth of the frame's mean colour, on a 3 x 4 x 2 grid."""
    look = np.zeros((3, 4, 2, 3, 4), np.float32)
    look[..., :3] = 0.8 * np.eye(3)
    look[..., 3] = grid.CENTRE + np.asarray([0.1, 0.0, -0.1]) + 0.1 * (pixels.mean((0, 1)) - 0.5)
    return look


def never(pixels, start=None, hold=None):
    raise AssertionError("a keyframe was solved")


def decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(stream)]
    return [f for f, _ in frames], [t for _, t in frames]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.dts is not None]


def steps_of(frames, times=None):
    """`track` over float frames held in memory (their thumbnails as the file path makes them)."""
    times = times or [i / RATE for i in range(len(frames))]
    thumbs = (video.thumbnail(av.VideoFrame.from_ndarray(np.round(f * 255).astype(np.uint8), format="rgb24"))
              for f in frames)
    return video.track(((t, th, f) for t, th, f in zip(times, thumbs, frames)), size=frames[0].shape[:2])


# ----------------------------------------------------------------------------- keyframes and motion


def test_keyframes_every_interval_and_at_shot_changes():
    def steps(cuts):
        return [video.Step(index=i, time=i / 10, position=(0.0, 0.0), cut=i in cuts) for i in range(25)]

    assert [k.index for k in video.pick_keyframes(steps(()), every=1.0)] == [0, 10, 20]
    keys = list(video.pick_keyframes(steps({13}), every=1.0))
    assert [(k.index, k.cut) for k in keys] == [(0, False), (10, False), (13, True), (23, False)]


def test_track_finds_a_cut_and_follows_a_pan():
    photo = synthetic_photo(32, 48 + 2 * 8, 5)
    frames = [photo[:, 2 * t:2 * t + 48] for t in range(8)]
    frames[5:] = [1.0 - f for f in frames[5:]]  # a new shot from frame 5
    steps = list(steps_of(frames))
    assert [s.cut for s in steps] == [i == 5 for i in range(8)]
    dx = np.diff([s.position[1] for s in steps])
    np.testing.assert_allclose(np.delete(dx, 4), -2.0, atol=0.1)  # the content moves 2 px left a frame
    np.testing.assert_allclose([s.position[0] for s in steps], 0.0, atol=0.1)


def test_track_follows_a_pan_of_a_fraction_of_a_thumbnail_pixel_without_drift():
    # 2 px a frame seen through a 2.5x smaller thumbnail: 0.8 thumbnail px, where a parabola through
    # the whole-pixel peak read 0.85 and the position drifted a pixel every 20 frames
    from PIL import Image

    wide = Image.fromarray(np.round(synthetic_photo(180, 320 + 2 * 30, 2) * 255).astype(np.uint8))
    frames = [np.asarray(wide.crop((2 * t, 0, 2 * t + 320, 180)), np.float32) / 255 for t in range(30)]
    x = [s.position[1] for s in steps_of(frames)]
    np.testing.assert_allclose(np.diff(x), -2.0, atol=0.1)
    assert abs(x[-1] - (-2.0 * 29)) < 0.5  # no drift: within half a pixel after 29 frames


def moved_nodes(look: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The look with its nodes moved by whole nodes (down, right), the edge nodes repeated."""
    gh, gw = look.shape[:2]
    look = look[np.clip(np.arange(gh) - rows, 0, gh - 1)]
    return look[:, np.clip(np.arange(gw) - columns, 0, gw - 1)]


def test_slice_frame_is_slice_grid_host_and_moves_the_look_with_the_content():
    rng = np.random.default_rng(0)
    look = np.asarray(grid.identity_grid((3, 5, 4))) + 0.1 * rng.normal(size=(3, 5, 4, 3, 4)).astype(np.float32)
    frame = (rng.random((32, 48, 3)) * 255).astype(np.uint8)
    still = video.slice_frame(look, frame, np.zeros(2, np.float32))
    reference = np.round(grid.slice_grid_host(look, frame / np.float32(255)) * 255)
    assert np.abs(np.asarray(still, int) - reference).max() <= 1  # rounding only
    node = (32 / 2, 48 / 4)  # px between nodes
    for rows, columns in [(0, 1), (-1, 2)]:
        moved = video.slice_frame(look, frame, np.asarray([rows * node[0], columns * node[1]], np.float32))
        expected = video.slice_frame(moved_nodes(look, rows, columns), frame, np.zeros(2, np.float32))
        assert np.abs(np.asarray(moved, int) - np.asarray(expected)).max() <= 1
        assert np.abs(np.asarray(moved, int) - np.asarray(still)).max() > 10  # it did move


def test_blend_frame_shares_by_time_and_by_what_each_keyframe_saw():
    rng = np.random.default_rng(1)
    frame = (30 + rng.random((32, 48, 3)) * 170).astype(np.uint8)
    look0 = np.asarray(grid.identity_grid((3, 4, 2)))
    look1 = look0 + np.asarray([0.1, 0.0, 0.0, 0.0])  # +0.1 on every offset: nothing clips
    zero = np.zeros(2, np.float32)
    one = [np.asarray(video.slice_frame(g, frame, zero), float) for g in (look0, look1)]
    for weight in (0.0, 0.25, 1.0):  # both keyframes saw everything: a blend in time
        blended = video.blend_frame(look0, look1, frame, zero, zero, np.float32(weight))
        assert np.abs(np.asarray(blended) - ((1 - weight) * one[0] + weight * one[1])).max() <= 1
    # The next keyframe is 24 px to the right: it never saw the left half of this frame, which
    # keeps the earlier look; elsewhere each look's share is weighted by how centrally its
    # keyframe saw the content (0 at its edges, 1 from SEEN_FEATHER of the frame inside them).
    half = video.blend_frame(look0, look1, frame, zero, np.asarray([0.0, 24.0], np.float32), np.float32(0.5))
    half = np.asarray(half, float)

    def seen(n, s):
        pos = np.arange(n) + 0.5 - s
        return np.clip(np.minimum(pos, n - pos) / (video.SEEN_FEATHER * n), 0, 1)

    trust0, trust1 = (0.5 * np.outer(seen(32, 0), seen(48, s)) for s in (0, 24))
    share = (trust1 / (trust0 + trust1))[..., None]
    assert np.abs(half - ((1 - share) * one[0] + share * one[1])).max() <= 1
    assert np.abs(half[:, :24] - one[0][:, :24]).max() <= 1 and share[:, 36:44].min() > 0.5


def test_carry_looks_blends_in_time_and_holds_across_a_cut():
    solved = []

    def solve(pixels):
        solved.append(pixels)
        return np.full((2, 2, 2, 3, 4), pixels, np.float32)

    def steps():  # each step's payload: the value its look takes when it is a keyframe
        return (video.Step(index=i, time=i / 4, position=(0.0, 0.0), cut=i == 6, payload=float(i)) for i in range(9))

    keys = video.pick_keyframes(steps(), every=1.0)  # keyframes 0, 4 and 6 (a cut)
    looks = list(video.carry_looks(steps(), keys, solve))
    blended = [(1 - f.weight) * f.look0 + f.weight * (0 if f.look1 is None else f.look1) for f in looks]
    expected = [0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 6.0, 6.0, 6.0]  # 4 -> 6 is a cut: held, not blended
    np.testing.assert_allclose([b[0, 0, 0, 0, 0] for b in blended], expected)
    assert [f.weight for f in looks] == [0.0, 0.25, 0.5, 0.75, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert solved == [0.0, 4.0, 6.0]  # each keyframe once
    assert all(f.shift0 == (0.0, 0.0) for f in looks)


def test_keyframes_within_a_shot_start_from_the_previous_look_moved_with_the_content():
    """With the frames' size, a keyframe after the first of its shot is solved from the keyframe
    before it's look moved with the content (here one node spacing down); the first keyframe and
    a shot's first are solved from the preset's start."""
    starts, holds = [], []

    def solve(pixels, start=None, hold=None):
        starts.append(start)
        holds.append(hold)
        look = np.full((3, 3, 2, 3, 4), pixels, np.float32)
        return look + np.arange(3, dtype=np.float32)[:, None, None, None, None]  # rows 0, 1, 2 apart

    def steps():  # 4 px down a frame; rows of nodes 16 px apart in a 32 x 48 frame
        return (video.Step(index=i, time=i / 4, position=(4.0 * i, 0.0), cut=i == 6, payload=float(i))
                for i in range(9))

    list(video.carry_looks(steps(), video.pick_keyframes(steps(), every=1.0), solve, size=(32, 48)))
    assert [s is None for s in starts] == [True, False, True]  # keyframes 0, 4 and 6 (a cut)
    np.testing.assert_allclose(starts[1][:, 0, 0, 0, 0], [0.0, 0.0, 1.0])  # rows 0, 0, 1 of keyframe 0's look
    np.testing.assert_array_equal(starts[1], video.move_look(solve(0.0), (16.0, 0.0), (32, 48)))
    # held where keyframe 0 saw the content: not the top row (16 px above its view), fully below it
    np.testing.assert_array_equal(holds[1], [[0.0] * 3, [1.0] * 3, [1.0] * 3])


@pytest.mark.parametrize("shift, rows, columns", [
    ((0.0, 0.0), [1, 1, 1, 1, 1], [1] * 7),
    ((8.0, 0.0), [0, 1, 1, 1, 1], [1] * 7),  # the top node: one spacing above the view
    ((4.0, -12.0), [0.5, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0.5, 0]),
])
def test_held_nodes_are_those_the_moved_look_was_solved_on(shift, rows, columns):
    """Nodes 8 px apart over a 32 x 48 frame: 1 inside the look's own view, falling to 0 one
    spacing beyond it."""
    np.testing.assert_allclose(video.held_nodes((5, 7), shift, (32, 48)), np.outer(rows, columns))


@pytest.mark.parametrize("shift", [(0.0, 0.0), (8.0, -16.0), (-24.0, 40.0)])
def test_a_moved_look_slices_as_the_look_moved_by_the_shift(shift):
    """For shifts of whole node spacings (8 px here), `move_look` then slicing in place gives what
    slicing the look with that shift gives, everywhere (both clamp at the edges); no shift is
    no change."""
    rng = np.random.default_rng(0)
    look = rng.normal(0.5, 0.2, (5, 7, 4, 3, 4)).astype(np.float32)
    frame = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    moved = video.move_look(look, shift, (32, 48))
    assert moved.shape == look.shape and moved.dtype == np.float32
    here = np.asarray(video.slice_frame(moved, frame, np.zeros(2, np.float32)), int)
    there = np.asarray(video.slice_frame(look, frame, np.asarray(shift, np.float32)), int)
    assert np.abs(here - there).max() <= 1  # 8-bit rounding
    if shift == (0.0, 0.0):
        np.testing.assert_array_equal(moved, look)


@pytest.mark.parametrize("first, then", [((0.0, 0.0), (8.0, -16.0)), ((3.0, 5.0), (-2.5, 11.75))])
def test_an_atlas_of_one_keyframe_reads_as_its_look_moved_and_held(first, then):
    """One look in the atlas, read at another camera position: `move_look` by the difference and
    `held_nodes` (whole and fractional node spacings; nodes 8 px apart over 32 x 48)."""
    look = np.random.default_rng(1).normal(0.5, 0.2, (5, 7, 2, 3, 4)).astype(np.float32)
    start, hold = video.atlas_read(video.atlas_start(look, first, (32, 48)), then, (5, 7))
    shift = (then[0] - first[0], then[1] - first[1])
    np.testing.assert_allclose(start, video.move_look(look, shift, (32, 48)), atol=1e-6)
    np.testing.assert_allclose(hold, video.held_nodes((5, 7), shift, (32, 48)), atol=1e-6)


def test_the_atlas_gives_back_the_look_of_content_the_camera_returns_to():
    """Looks A, B, C solved with the camera 0, 24 and 48 px along (3 and 6 node spacings of 8 px):
    back at 0, the nodes only A saw read A, the others the latest look that saw them, all held;
    one view's width past its last view the atlas forgets, and it stays three views wide."""
    size, nodes = (32, 48), (5, 7)
    look = {name: np.full((*nodes, 2, 3, 4), value, np.float32) for name, value in (("A", 1), ("B", 2), ("C", 3))}
    atlas = video.atlas_start(look["A"], (0.0, 0.0), size)
    for name, x in (("B", 24.0), ("C", 48.0)):
        atlas = video.atlas_write(atlas, look[name], (0.0, x))
    start, hold = video.atlas_read(atlas, (0.0, 0.0), nodes)
    np.testing.assert_array_equal(start[0, :, 0, 0, 0], [3, 2, 2, 2, 1, 1, 1])  # columns 0, 1-3, 4-6
    np.testing.assert_array_equal(hold, np.ones(nodes))
    for x in (96.0, 144.0, 192.0):  # on past C, 6 spacings a step
        atlas = video.atlas_write(atlas, look["B"], (0.0, x))
        assert atlas.values.shape[1] <= 3 * (nodes[1] - 1) + 1 and atlas.seen.shape == atlas.values.shape[:2]
    _, hold = video.atlas_read(atlas, (0.0, 0.0), nodes)
    np.testing.assert_array_equal(hold, np.zeros(nodes))


PAN = 2  # px a frame
PAN_FRAMES = 36  # 3 s at 12 frames/s


def as_bytes(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255).astype(np.uint8)


def pan_flicker(outs) -> float:
    """Mean absolute difference of consecutive frames of a `PAN` clip, the pan undone."""
    w = outs[0].shape[1]
    return float(np.mean([np.mean(np.abs(outs[t][:, :w - PAN] - outs[t - 1][:, PAN:])) for t in range(1, len(outs))]))


@pytest.fixture(scope="module")
def pan(tmp_path_factory):
    """A window 48x32 panning `PAN` px a frame across a photo; the tiny preset's solve; the
    flicker of transferring every frame on its own."""
    h, w = 32, 48
    photo = synthetic_photo(h, w + PAN * PAN_FRAMES, 5)
    frames = [photo[:, PAN * t:PAN * t + w] for t in range(PAN_FRAMES)]
    solve = video.make_solver(synthetic_photo(h, w, 3)[..., ::-1], config=_tiny_config(tmp_path_factory.mktemp("pan")))
    per_frame = [video.slice_frame(solve(f), as_bytes(f), np.zeros(2, np.float32)) / 255 for f in frames]
    return frames, solve, pan_flicker(per_frame)


@pytest.mark.parametrize("every, warm", [(1.0, False), (1.0, True), (2.0, True)])
def test_flicker_on_a_pan_is_a_quarter_of_per_frame_transfer(pan, every, warm):
    """The pan clip with keyframes every 1 s (frames 0, 12, 24: blends where both saw the
    content) and every 2 s (the default: frames 0 and 24, 48 px apart, so each part of the view
    is handed from one look to the other as it enters), each keyframe solved from the preset's
    start or (`warm`) from the one before's look: the flicker is at most a quarter of every frame
    solved on its own."""
    frames, solve, theirs = pan
    keys = video.pick_keyframes(steps_of(frames), every=every)
    looks = video.carry_looks(steps_of(frames), keys, solve, size=frames[0].shape[:2] if warm else None)
    carried = [video.render(as_bytes(how.step.payload), how) / 255 for how in looks]
    ours = pan_flicker(carried)
    assert ours <= theirs / 4, (ours, theirs)


def _tiny_config(folder: Path) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY)
    return path


# ----------------------------------------------------------------------------- the file


def test_round_trip_keeps_frames_times_rate_and_audio(tmp_path):
    source = write_clip(tmp_path / "in.mp4", gradient_frames(), audio="aac")
    output = tmp_path / "out.mp4"
    summary = video.stylize_video(source, output, flat_look, every=0.5)
    assert summary["frames"] == 12 and summary["keyframes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]  # no partial file left
    frames_in, times_in = decoded(source)
    frames_out, times_out = decoded(output)
    assert len(frames_out) == 12 and times_out == times_in
    info_in, info_out = video.probe(source), video.probe(output)
    assert (info_out.rate, info_out.width, info_out.height) == (info_in.rate, 64, 48)
    assert audio_packets(output) == audio_packets(source)  # remuxed unchanged
    for i in (0, 3, 6, 11):  # each frame has the look of the keyframes around it (here all alike)
        expected = flat_look(frames_in[i] / 255.0)[0, 0, 0]
        want = np.clip((frames_in[i] / 255.0 - 0.5) @ expected[:, :3].T + expected[:, 3], 0, 1)
        assert np.abs(frames_out[i] / 255.0 - want).mean() < 0.02


def test_rotation_is_kept_and_keyframes_are_solved_upright(tmp_path):
    """A video stored 64x48 and displayed a quarter turn round: keyframes (0 and 3) are solved
    upright, and the second starts from the first's look as solved, upright (the camera still:
    one textured frame repeated, so the tracked shift is codec noise, not a ramp's guess)."""
    still = (synthetic_photo(48, 64) * 255).astype(np.uint8)
    source = write_clip(tmp_path / "in.mp4", [still] * 4, rotation=90)
    seen, looks, starts, holds = [], [], [], []

    def solve(pixels, start=None, hold=None):
        seen.append(pixels.shape)
        starts.append(start)
        holds.append(hold)
        look = flat_look(pixels) + np.arange(12, dtype=np.float32).reshape(3, 4, 1, 1, 1) / 100  # nodes told apart
        looks.append(look)
        return look

    video.stylize_video(source, tmp_path / "out.mp4", solve, every=0.25)
    assert seen == [(64, 48, 3)] * 2  # stored 64x48, displayed a quarter turn round
    assert starts[0] is None
    np.testing.assert_allclose(starts[1], looks[0], atol=1e-3)  # nodes differ by 0.01 to 0.11; a still camera
    assert holds[1].shape == (3, 4) and holds[1].min() > 0.99  # upright; nothing moved out of view
    assert video.probe(tmp_path / "out.mp4").rotation == 90


def _refusals(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", gradient_frames(3))
    (tmp_path / "taken.mp4").write_bytes(b"")
    (tmp_path / "folder.mp4").mkdir()
    (tmp_path / "text.mp4").write_text("not a video")
    with av.open(str(tmp_path / "sound.m4a"), "w") as container:  # audio only
        sound = container.add_stream("aac", rate=8000, layout="mono")
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 8000, 0
        container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    write_clip(tmp_path / "u8.mkv", gradient_frames(3), audio="pcm_u8")
    return clip


@pytest.mark.parametrize("source, output, options, message", [
    ("missing.mp4", "out.mp4", {}, "no such file"),
    ("text.mp4", "out.mp4", {}, "is not a video FFmpeg can read"),
    ("sound.m4a", "out.mp4", {}, "has no video stream"),
    ("in.mp4", "in.mp4", {"force": True}, "refusing to write"),
    ("in.mp4", "taken.mp4", {}, "exists: pass --force"),
    ("in.mp4", "out.avi", {}, "must end in .mp4, .mov, .mkv"),
    ("in.mp4", "nowhere/out.mp4", {}, "does not exist: create it first"),
    ("in.mp4", "folder.mp4", {"force": True}, "is a folder"),
    ("in.mp4", "out.mp4", {"every": 0.0}, "--keyframe-every must be a positive"),
    ("u8.mkv", "out.mp4", {}, "cannot write this video with its audio (pcm_u8)"),
], ids=["missing", "not a video", "no video stream", "over the input", "exists", "suffix", "no folder",
        "a folder", "no keyframes", "audio the container cannot hold"])
def test_bad_input_is_refused_before_any_solve(tmp_path, source, output, options, message):
    _refusals(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(JaxstyleError) as refused:
        video.stylize_video(tmp_path / source, tmp_path / output, never, **options)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_ctrl_c_leaves_a_playable_partial_file(tmp_path):
    source = write_clip(tmp_path / "in.mp4", gradient_frames(), audio="aac")
    calls = []

    def solve(pixels, start=None, hold=None):  # keyframes 0, 3, 6, 9; the third is first needed by frame 4
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return flat_look(pixels)

    output = tmp_path / "out.mp4"
    with pytest.raises(Interrupted, match="out.partial.mp4"):
        video.stylize_video(source, output, solve, every=0.25)
    assert not output.exists()
    frames, times = decoded(video.partial_path(output))
    assert len(frames) == 4 and times == decoded(source)[1][:4]


def test_cli_video(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))  # the bundled VGG-16
    photo = synthetic_photo(32, 48 + 8, 5)
    source = write_clip(tmp_path / "in.mp4", [np.round(photo[:, t:t + 48] * 255).astype(np.uint8) for t in range(8)])
    writing.save_image(synthetic_photo(32, 48, 3)[..., ::-1], tmp_path / "style.png")
    result = runner.invoke(cli.app, ["video", str(source), str(tmp_path / "style.png"), "-o", str(tmp_path / "out.mkv"),
                                     "-c", str(_tiny_config(tmp_path)), "--keyframe-every", "0.5"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "frames/s" in result.stderr and "8 frames, 2 keyframes" in result.stderr
    assert len(decoded(tmp_path / "out.mkv")[0]) == 8


@pytest.mark.slow
def test_cli_video_automatic_masks(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSTYLE_CACHE", str(tmp_path / "cache"))
    photo = synthetic_photo(32, 48 + 8, 5)
    source = write_clip(tmp_path / "in.mp4", [np.round(photo[:, t:t + 48] * 255).astype(np.uint8) for t in range(8)])
    writing.save_image(synthetic_photo(32, 48, 3)[..., ::-1], tmp_path / "style.png")
    result = runner.invoke(cli.app, ["video", str(source), str(tmp_path / "style.png"), "-o", str(tmp_path / "out.mp4"),
                                     "-c", str(_tiny_config(tmp_path)), "--masks", "auto", "-q"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert len(decoded(tmp_path / "out.mp4")[0]) == 8
