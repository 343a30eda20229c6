"""How much of `jaxstyle video`'s frame-to-frame difference is the H.264 encoder's, by x264 preset.

A 320x180 clip pans 2 px a frame across the demo photo (`bench_video.make_clip`, crf 18); one look
is solved on its first frame (`default`, `--max-side`) and sliced under every decoded frame moved
with the known pan (`video.slice_frame`), so the look itself follows the content exactly. Reported,
after undoing the pan (`bench_video.flicker`): the input clip's own difference, the sliced frames'
before encoding, and after encoding them with each preset at crf 18, with the file's size and the
preset's encoding rate on `--frames` frames of a 1920x1080 pan.

    python scripts/video_encoder_flicker.py --json docs/bench/video_encoder_flicker.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["veryfast", "faster", "fast", "medium"])
    parser.add_argument("--crf", default="18")
    parser.add_argument("--max-side", type=int, default=256, help="Working size of the look's solve.")
    parser.add_argument("--frames", type=int, default=30, help="Frames of each clip.")
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args()

    import numpy as np

    import _bench_common as common
    import bench_video as bv
    from jaxstyle import reading, video

    report: dict = {"machine": common.describe_machine(), "conv_gflops": round(common.conv_gflops(), 1),
                    "settings": {k: v for k, v in vars(args).items() if k != "json"}, "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo = bv.source_photo(None, (180, 320), 2 * args.frames)
        clip = folder / "pan.mp4"
        offsets = bv.make_clip(photo, clip, size=(180, 320), frames=args.frames, rate=30, pan=2)
        decoded = [np.round(f * 255).astype(np.uint8) for f in bv.decoded(clip)]
        solve = video.make_solver(reading.demo_paths()[1], config="default", max_side=args.max_side)
        look = solve(decoded[0].astype(np.float32) / 255)
        sliced = [np.asarray(video.slice_frame(look, f, np.array([0.0, -float(o)], np.float32)))
                  for f, o in zip(decoded, offsets)]
        report["input"] = bv.flicker([f / 255 for f in decoded], offsets)
        report["sliced"] = bv.flicker([f / 255 for f in sliced], offsets)
        print(f"input clip {report['input']:.5f}, the look carried, before encoding {report['sliced']:.5f}")
        big = bv.source_photo(None, (1080, 1920), 4 * args.frames)
        large = [np.ascontiguousarray(big[:1080, 4 * t:4 * t + 1920]) for t in range(args.frames)]
        for preset in args.presets:
            options = {"crf": args.crf, "preset": preset}
            path = folder / f"{preset}.mp4"
            bv.encode(sliced, path, size=(180, 320), rate=30, options=options)
            difference = bv.flicker(bv.decoded(path), offsets)
            seconds = bv.encode(large, folder / "large.mp4", size=(1080, 1920), rate=30, options=options)
            row = {"flicker": difference, "over_input": difference / report["input"], "bytes": os.path.getsize(path),
                   "fps_1080p": args.frames / seconds}
            report["presets"][preset] = row
            print(f"{preset}: {difference:.5f} ({row['over_input']:.2f}x the input's), {row['bytes']} bytes, "
                  f"1080p {row['fps_1080p']:.1f} frames/s", flush=True)
    if args.json:
        common.write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
