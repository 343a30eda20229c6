"""`jaxstyle video`: flicker against per-frame transfer, speed of the carried look at 1080p, and
memory against the clip's length, in one run.

Clips are made here from a real photo (the bundled demo content, or `--photo`), resized so that a
window of the clip's size can pan across it, and written as H.264 (crf 18) with PyAV: the window
moves `--pan` px a frame to the right, then back (a ping-pong), so every frame's motion is known.

1. Flicker (`--flicker-size`, `--flicker-frames`, `--motion`): each clip through
   `jaxstyle.video.stylize_video` (keyframes every `--keyframe-every` s, followed camera, blended
   looks), and every frame transferred on its own (`stylize`, the look sliced under its own frame),
   both encoded the same way. Clips: `pan` (above) and `zoom` (the centre of the photo, magnified
   by `--zoom` a frame, then back, each frame resampled with Lanczos). Reported: the mean absolute
   difference of consecutive decoded frames after undoing the known motion (a zoom: the earlier
   frame resampled with Lanczos into the later one's coordinates, 8 px margins dropped), pixel by
   pixel and as 8 x 8 px block means (the pan is read pixel by pixel, the zoom as means), for the
   content clip itself, the video command, the same with every keyframe solved from the preset's
   start (`warm_start=False`, as before warm starts), per-frame transfer, and the first keyframe's look on
   every frame (what the look alone makes of the clip's own frame-to-frame change: a look that
   raises contrast raises it too); the ratios the issue asks for (video / per-frame <= 1/4,
   video / content <= 1.5); and "look": the same measure of each output minus its input frame,
   the part the look adds. `--lossless` encodes clips and outputs losslessly, so the encoder's
   noise (large on a zoom) is not measured as flicker.
2. Speed and memory (`--seconds`, at `--size`, default 1920x1080 at 30 frames/s): each clip through
   `stylize_video` in a fresh process; reported: keyframes, the seconds spent solving them, the
   frames per second of everything else (decode twice, follow the camera, slice, encode), and the
   process's peak resident memory (ru_maxrss). Per-frame transfer's rate at that size is timed on
   `--per-frame-frames` frames in the same run (the full-size result of `stylize`).
3. The machine's XLA convolution speed (`_bench_common.conv_gflops`), to compare runs.

With `--figure PNG`, a contact sheet of the flicker clip: `--figure-frames` frames evenly spaced, a
row each for the content clip, per-frame transfer and `jaxstyle video` (the README's picture).

    python scripts/bench_video.py --json docs/bench/video.json

takes, on a 2-core CPU, about (keyframes x one solve at the working size) for each clip plus
`--flicker-frames` solves; `--max-side 256` makes each solve about 4x cheaper.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

WORKER = """
import json, resource, sys, time
from jaxstyle import video
from jaxstyle.compile_cache import enable_compile_cache
enable_compile_cache()
args = json.loads(sys.argv[1])
if args.get("preset"):
    video.ENCODER_OPTIONS["preset"] = args["preset"]
solve = video.make_solver(args["style"], config=args["config"], max_side=args["max_side"])
summary = video.stylize_video(args["clip"], args["output"], solve, every=args["every"], force=True)
summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(summary))
"""


def pan_offsets(frames: int, pan: int, room: int) -> list[int]:
    """The window's left edge in each frame: `pan` px a frame to the right, then back, within `room`."""
    period = 2 * max(1, room // pan)
    out = []
    for t in range(frames):
        k = t % period
        out.append(pan * (k if k <= period // 2 else period - k))
    return out


CLIP_OPTIONS = {"crf": "18", "preset": "ultrafast"}  # the test clips' own H.264
LOSSLESS = {"qp": "0", "preset": "ultrafast"}  # x264's lossless mode (in 4:2:0)


def encode(frames, path: Path, *, size: tuple[int, int], rate: int, options: dict = CLIP_OPTIONS) -> float:
    """`frames` (uint8 `[H, W, 3]`, `size` (H, W), any iterable) as H.264 with `options`, pts 0, 1, 2,
    ... in 1/rate; returns the seconds it took."""
    import av

    start = time.perf_counter()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate, options=dict(options))
        (stream.height, stream.width), stream.pix_fmt = size, "yuv420p"
        for t, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return time.perf_counter() - start


def make_clip(photo, path: Path, *, size: tuple[int, int], frames: int, rate: int, pan: int) -> list[int]:
    """A clip of `frames` windows `size` (H, W) of `photo` (uint8, wide enough), H.264 crf 18;
    returns each frame's window offset (px)."""
    h, w = size
    offsets = pan_offsets(frames, pan, photo.shape[1] - w)
    encode((photo[:h, x:x + w] for x in offsets), path, size=size, rate=rate)
    return offsets


def zoom_scales(frames: int, zoom: float, top: float) -> list[float]:
    """Each frame's magnification: `zoom` more a frame (1, 1 + zoom, ...) up to `top`, then back."""
    period = 2 * max(1, round((top - 1) / zoom))
    return [1 + zoom * (k if k <= period // 2 else period - k) for k in (t % period for t in range(frames))]


def make_zoom_clip(photo, path: Path, *, size: tuple[int, int], frames: int, rate: int, zoom: float) -> list[float]:
    """A clip of `frames` frames `size` (H, W): the centre of `photo` (uint8, the clip's aspect)
    magnified by each of `zoom_scales`, resampled with Lanczos, H.264 crf 18; returns the scales."""
    import numpy as np
    from PIL import Image

    h, w = size
    ph, pw = photo.shape[:2]
    scales = zoom_scales(frames, zoom, 1.5)
    source = Image.fromarray(photo)
    boxes = ((pw / 2 - pw / (2 * s), ph / 2 - ph / (2 * s), pw / 2 + pw / (2 * s), ph / 2 + ph / (2 * s))
             for s in scales)
    encode((np.asarray(source.resize((w, h), Image.Resampling.LANCZOS, box=box)) for box in boxes), path,
           size=size, rate=rate)
    return scales


def source_photo(path: str | None, size: tuple[int, int], room: int):
    """The photo resized (Lanczos) to the clip's height, and wide enough for `room` px of pan."""
    import numpy as np
    from PIL import Image

    from jaxstyle import reading

    with Image.open(path or reading.demo_paths()[0]) as im:
        im = im.convert("RGB")
        scale = max(size[0] / im.height, (size[1] + room) / im.width)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        return np.asarray(im)


def decoded(path: Path):
    import av
    import numpy as np

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.float32) / 255 for f in container.decode(video=0)]


def pan_pairs(frames, offsets):
    """Each frame and the one before it after undoing the known horizontal pan: `(later,
    earlier)` over the columns both show."""
    for t in range(1, len(frames)):
        d = offsets[t] - offsets[t - 1]  # content moves -d px
        a, b = frames[t], frames[t - 1]
        w = a.shape[1]
        yield (a[:, :w - d], b[:, d:]) if d >= 0 else (a[:, -d:], b[:, :w + d])


def zoom_pairs(frames, scales, margin: int = 8):
    """Each frame and the one before it after undoing the known zoom about the centre: the earlier
    frame resampled (Lanczos, as the clip was made) where each pixel of the later one was; `margin`
    px at the edges dropped (what the earlier frame does not show, and the filter's reach)."""
    import numpy as np
    from PIL import Image

    h, w = frames[0].shape[:2]
    m = margin
    for t in range(1, len(frames)):
        r = scales[t - 1] / scales[t]  # later frame's pixel -> earlier frame's, about the centre
        box = (w / 2 * (1 - r), h / 2 * (1 - r), w / 2 * (1 + r), h / 2 * (1 + r))
        earlier = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(frames[t - 1][..., c]))
                                       .resize((w, h), Image.Resampling.LANCZOS, box=box)) for c in range(3)], -1)
        yield frames[t][m:-m, m:-m], earlier[m:-m, m:-m]


def difference(pairs, block: int = 1) -> float:
    """Mean absolute difference of aligned consecutive frames (`pan_pairs`, `zoom_pairs`), pixel by
    pixel, or as `block` x `block` px means."""
    import numpy as np

    return float(np.mean([np.mean(np.abs(block_means(a, block) - block_means(b, block))) for a, b in pairs]))


def flicker(frames, offsets, block: int = 1) -> float:
    """`difference` of consecutive frames after undoing the known horizontal pan."""
    return difference(pan_pairs(frames, offsets), block)


def block_means(image, block: int):
    """`image [H, W, C]` averaged over `block` x `block` px (the rows and columns left over dropped)."""
    h, w, c = image.shape
    h, w = h - h % block, w - w % block
    return image[:h, :w].reshape(h // block, block, w // block, block, c).mean(axis=(1, 3))


def write_figure(path: str, clips: dict[str, list], *, frames: int, height: int = 144) -> None:
    """A row per clip (label -> decoded frames), the same `frames` evenly spaced frames in each."""
    import numpy as np

    from jaxstyle import sheets, writing

    count = min(len(f) for f in clips.values())
    picks = np.linspace(0, count - 1, frames).round().astype(int)
    rows = [sheets.side_by_side([clip[i] for i in picks], height=height,
                                labels=[f"{label}, frame {i}" for i in picks]) for label, clip in clips.items()]
    writing.save_image(sheets.stack_rows(rows, gap=8), path, overwrite=True, quality=90)


def per_frame_clip(clip: Path, output: Path, style: str, *, config: str, max_side: int | None, rate: int) -> float:
    """Every frame of `clip` transferred on its own (the look sliced under its own frame), written
    as `stylize_video` writes; returns the seconds a frame."""
    import av
    import numpy as np

    from jaxstyle import video

    solve = video.make_solver(style, config=config, max_side=max_side)
    start, count = time.perf_counter(), 0
    with av.open(str(clip)) as source, av.open(str(output), "w") as sink:
        stream = sink.add_stream("libx264", rate=rate, options=dict(video.ENCODER_OPTIONS))
        vin = source.streams.video[0]
        stream.width, stream.height, stream.pix_fmt = vin.width, vin.height, "yuv420p"
        for frame in source.decode(vin):
            pixels = frame.to_ndarray(format="rgb24")
            out = video.slice_frame(solve(pixels.astype(np.float32) / 255), pixels, np.zeros(2, np.float32))
            new = av.VideoFrame.from_ndarray(np.asarray(out), format="rgb24")
            new.pts = count
            sink.mux(stream.encode(new))
            count += 1
        sink.mux(stream.encode(None))
    return (time.perf_counter() - start) / max(count, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", help="Photo the clips pan across (default: the bundled demo content).")
    parser.add_argument("--style", help="Style photo (default: the bundled demo style).")
    parser.add_argument("--config", default="default", help="Preset the keyframes are solved with.")
    parser.add_argument("--max-side", type=int, default=None,
                        help="Working size of the solves (default: the preset's).")
    parser.add_argument("--keyframe-every", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=30, help="Frames per second of the clips.")
    parser.add_argument("--pan", type=int, default=2, help="Px a frame the window moves.")
    parser.add_argument("--zoom", type=float, default=0.005,
                        help="Magnification a frame of the zoom clip (up to 1.5x, then back).")
    parser.add_argument("--motion", nargs="*", choices=["pan", "zoom"], default=["pan", "zoom"],
                        help="Flicker clips to run (none: no flicker runs).")
    parser.add_argument("--speed-presets", nargs="+",
                        help="x264 presets to time the speed clips with, one after the other (default: jaxstyle's).")
    parser.add_argument("--flicker-size", default="320x180", help="WxH of the flicker clip.")
    parser.add_argument("--flicker-frames", type=int, default=90)
    parser.add_argument("--per-frame", action=argparse.BooleanOptionalAction, default=True,
                        help="Also transfer every frame of the flicker clips on its own (a solve a frame).")
    parser.add_argument("--size", default="1920x1080", help="WxH of the speed and memory clips.")
    parser.add_argument("--seconds", type=float, nargs="*", default=[10, 60],
                        help="Lengths of the speed clips (none: no speed and memory runs).")
    parser.add_argument("--per-frame-frames", type=int, default=2,
                        help="Frames per-frame transfer is timed on at --size.")
    parser.add_argument("--lossless", action="store_true",
                        help="Encode the flicker clips and every output losslessly (x264 qp 0), so that the "
                             "encoder adds nothing to the differences measured.")
    parser.add_argument("--json", help="Also write the results here.")
    parser.add_argument("--figure", help="Write a contact sheet of the flicker clips here (PNG or JPEG).")
    parser.add_argument("--figure-frames", type=int, default=4, help="Frames a row in --figure.")
    args = parser.parse_args()

    import numpy as np

    import _bench_common as common
    from jaxstyle import reading, video
    from jaxstyle.compile_cache import enable_compile_cache

    enable_compile_cache()  # the solves' programs are compiled once, by the first of them
    if args.lossless:
        for options in (CLIP_OPTIONS, video.ENCODER_OPTIONS):
            options.clear()
            options.update(LOSSLESS)

    style = args.style or reading.demo_paths()[1]
    report: dict = {"machine": common.describe_machine(), "conv_gflops": round(common.conv_gflops(), 1),
                    "settings": {k: v for k, v in vars(args).items() if k != "json"}}
    print(f"XLA conv: {report['conv_gflops']} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        # 1. flicker, on each clip of known motion
        fw, fh = (int(n) for n in args.flicker_size.split("x"))
        solve = video.make_solver(style, config=args.config, max_side=args.max_side)
        for motion in args.motion:
            clip = folder / f"{motion}.mp4"
            if motion == "pan":
                photo = source_photo(args.photo, (fh, fw), args.pan * args.flicker_frames)
                offsets = make_clip(photo, clip, size=(fh, fw), frames=args.flicker_frames, rate=args.rate,
                                    pan=args.pan)
                pairs = functools.partial(pan_pairs, offsets=offsets)
                how = f"pan {args.pan} px/frame"
            else:
                photo = source_photo(args.photo, (2 * fh, 2 * fw), 0)[:2 * fh, :2 * fw]
                scales = make_zoom_clip(photo, clip, size=(fh, fw), frames=args.flicker_frames, rate=args.rate,
                                        zoom=args.zoom)
                pairs = functools.partial(zoom_pairs, scales=scales)
                how = f"zoom x{1 + args.zoom:g}/frame to x{max(scales):.2f}"
            carried = video.stylize_video(clip, folder / f"{motion}_video.mp4", solve, every=args.keyframe_every,
                                          force=True)
            # each keyframe solved from the preset's start rather than the previous keyframe's look
            cold = video.stylize_video(clip, folder / f"{motion}_video_cold.mp4", solve, every=args.keyframe_every,
                                       force=True, warm_start=False)
            # the first keyframe's look on every frame: what the look alone makes of the clip's own change
            video.stylize_video(clip, folder / f"{motion}_one_look.mp4", solve, every=1e9, cut=1.0, force=True)
            arms = [("content", ""), ("video", "_video"), ("video_cold", "_video_cold"), ("one_look", "_one_look")]
            numbers = {"keyframes": carried["keyframes"], "solve_seconds": carried["solve_seconds"],
                       "solve_seconds_cold": cold["solve_seconds"]}
            if args.per_frame:
                numbers["per_frame_seconds_a_frame"] = per_frame_clip(
                    clip, folder / f"{motion}_per_frame.mp4", style, config=args.config, max_side=args.max_side,
                    rate=args.rate)
                arms.append(("per_frame", "_per_frame"))
            clips = {name: decoded(folder / f"{motion}{suffix}.mp4") for name, suffix in arms}
            # pixel by pixel, and as 8 x 8 px means (colour changes over areas); the pan is read pixel by
            # pixel, the zoom as means (resampling loses the photo's finest detail); "look": the same
            # for each output minus its input frame, the part of the difference the look adds
            numbers["pixels"] = {name: difference(pairs(frames)) for name, frames in clips.items()}
            numbers["blocks"] = {name: difference(pairs(frames), 8) for name, frames in clips.items()}
            numbers["measure"] = "pixels" if motion == "pan" else "blocks"
            block = 1 if motion == "pan" else 8
            numbers["look"] = {name: difference(pairs([o - c for o, c in zip(frames, clips["content"])]), block)
                               for name, frames in clips.items() if name != "content"}
            numbers.update(numbers[numbers["measure"]])
            if args.figure and motion == "pan" and args.per_frame:
                write_figure(args.figure, {"content": clips["content"], "per-frame transfer": clips["per_frame"],
                                           "jaxstyle video": clips["video"]}, frames=args.figure_frames)
            numbers["video_over_content"] = numbers["video"] / max(numbers["content"], 1e-12)
            numbers["video_cold_over_content"] = numbers["video_cold"] / max(numbers["content"], 1e-12)
            numbers["one_look_over_content"] = numbers["one_look"] / max(numbers["content"], 1e-12)
            line = (f"flicker ({fw}x{fh}, {args.flicker_frames} frames, {how}, {numbers['measure']}): content "
                    f"{numbers['content']:.5f}, video {numbers['video']:.5f}, keyframes solved cold "
                    f"{numbers['video_cold']:.5f}, one look {numbers['one_look']:.5f}")
            if args.per_frame:
                numbers["video_over_per_frame"] = numbers["video"] / numbers["per_frame"]
                numbers["look_video_over_per_frame"] = numbers["look"]["video"] / numbers["look"]["per_frame"]
                line += (f", per-frame {numbers['per_frame']:.5f}; video/per-frame "
                         f"{numbers['video_over_per_frame']:.3f} (<= 0.25)")
            report["flicker" if motion == "pan" else f"flicker_{motion}"] = numbers
            print(f"{line}; video/content {numbers['video_over_content']:.2f} (<= 1.5), one look/content "
                  f"{numbers['one_look_over_content']:.2f}", flush=True)
            for key in ("pixels", "blocks", "look"):
                print(f"  {key}: " + ", ".join(f"{k} {v:.5f}" for k, v in numbers[key].items()), flush=True)
            if args.per_frame:
                print(f"  the look's part, video/per-frame: {numbers['look_video_over_per_frame']:.3f}", flush=True)

        # 2. speed and memory at --size
        w, h = (int(n) for n in args.size.split("x"))
        photo = source_photo(args.photo, (h, w), 8 * args.pan * args.rate)
        report["speed"] = []
        for seconds, preset in [(s, p) for s in args.seconds for p in args.speed_presets or [None]]:
            frames = round(seconds * args.rate)
            clip = folder / f"speed_{seconds:g}s.mp4"
            make_clip(photo, clip, size=(h, w), frames=frames, rate=args.rate, pan=args.pan)
            job = {"style": style, "config": args.config, "max_side": args.max_side, "clip": str(clip),
                   "output": str(folder / f"speed_{seconds:g}s_out.mp4"), "every": args.keyframe_every,
                   "preset": preset}
            done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(job)], capture_output=True, text=True,
                                  check=True)
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            carry_s = summary["seconds"] - summary["solve_seconds"]
            row = {"seconds_of_video": seconds, "encoder_preset": preset or video.ENCODER_OPTIONS["preset"],
                   "frames": summary["frames"], "keyframes": summary["keyframes"],
                   "solve_seconds": round(summary["solve_seconds"], 1), "carry_seconds": round(carry_s, 1),
                   "carry_fps": summary["frames"] / carry_s, "peak_rss_mb": round(summary["peak_rss_mb"])}
            report["speed"].append(row)
            clip.unlink()
            print(f"{w}x{h} {seconds:g} s ({row['frames']} frames, x264 {row['encoder_preset']}): "
                  f"{row['keyframes']} keyframes solved in "
                  f"{row['solve_seconds']} s; carry and slice {row['carry_fps']:.2f} frames/s; peak RSS "
                  f"{row['peak_rss_mb']} MiB", flush=True)

        # per-frame transfer's rate at --size
        if args.seconds and args.per_frame_frames:
            from jaxstyle.single import stylize

            still = photo[:h, :w].astype(np.float32) / 255
            stylize(still, style, config=args.config, max_side=args.max_side)  # compiles
            start = time.perf_counter()
            for _ in range(args.per_frame_frames):
                stylize(still, style, config=args.config, max_side=args.max_side)
            per_frame_fps = args.per_frame_frames / (time.perf_counter() - start)
            report["per_frame_fps"] = per_frame_fps
            print(f"per-frame transfer at {w}x{h}: {per_frame_fps:.4f} frames/s", flush=True)
    if args.json:
        common.write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
