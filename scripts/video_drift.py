"""Whether a long shot's chained warm starts drift. Within a shot, `jaxstyle video` solves each
keyframe from the looks of the keyframes before it (`video.carry_looks`, `video.Atlas`, held near
them by `grid.anchor`); over many keyframes the look could walk away from what the preset makes
of the frame.

A 320x180 clip pans `--pan` px a frame across the demo photo and back (`bench_video.make_clip`,
ping-pong over `--room` px, so the window returns to where it began every `--room / --pan` frames)
for `--seconds`, a keyframe every `--keyframe-every` s. Each keyframe is solved as
`stylize_video` solves it (warm, recorded from its calls) and again from the preset's start
(cold). Reported per keyframe, in 0-255 units, mean absolute difference of the looks sliced under
the keyframe's frame: warm against cold; for keyframes whose window is where the first
keyframe's was, each arm against its first keyframe (a look that drifted does not come back); and
each arm's region Gram distance to the style (resized to `--max-side`), matting residual and edge
SSIM at the frame's size (`jaxstyle.metrics.evaluate_triple`).

    python scripts/video_drift.py --max-side 256 --seconds 20 --json docs/bench/video_drift.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--max-side", type=int, default=256, help="Working size of the solves.")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=30)
    parser.add_argument("--pan", type=int, default=2, help="Px a frame the window moves.")
    parser.add_argument("--room", type=int, default=300, help="Px the window pans over before it turns back.")
    parser.add_argument("--keyframe-every", type=float, default=1.0)
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args()

    import numpy as np

    import _bench_common as common
    import bench_video as bv
    from jaxstyle import metrics, reading, sizing, video
    from jaxstyle.compile_cache import enable_compile_cache
    from jaxstyle.weights import embedded_vgg16

    enable_compile_cache()
    report = {"machine": common.describe_machine(), "conv_gflops": round(common.conv_gflops(), 1),
              "settings": {k: v for k, v in vars(args).items() if k != "json"}}
    print(f"XLA conv: {report['conv_gflops']} GFLOP/s", flush=True)
    solve = video.make_solver(reading.demo_paths()[1], config=args.config, max_side=args.max_side)
    calls = []

    def recording(pixels, start=None, hold=None):
        look = solve(pixels, start, hold)
        calls.append((pixels, start is not None, look))
        return look

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "pan.mp4"
        photo = bv.source_photo(None, (180, 320), args.room)
        offsets = bv.make_clip(photo[:, :320 + args.room], clip, size=(180, 320), frames=round(args.seconds * args.rate),
                               rate=args.rate, pan=args.pan)
        summary = video.stylize_video(clip, Path(tmp) / "out.mp4", recording, every=args.keyframe_every, force=True)

    def sliced(look, pixels):
        frame = np.round(np.asarray(pixels) * 255).astype(np.uint8)
        return np.asarray(video.slice_frame(look, frame, np.zeros(2, np.float32)), np.float32)

    weights = embedded_vgg16()
    style = reading.load_image(reading.demo_paths()[1])
    scale = args.max_side / max(style.shape[:2])
    style = sizing.resize_image(style, (round(style.shape[0] * scale), round(style.shape[1] * scale)))
    step = round(args.keyframe_every * args.rate)
    rows, firsts = [], {}
    for i, (pixels, warm, look) in enumerate(calls):
        cold = solve(pixels)
        images = {"warm": sliced(look, pixels), "cold": sliced(cold, pixels)}
        row = {"keyframe": i, "frame": i * step, "offset": offsets[i * step], "warm_start": warm,
               "warm_vs_cold": float(np.mean(np.abs(images["warm"] - images["cold"])))}
        for arm, image in images.items():
            scores = metrics.evaluate_triple(weights, np.asarray(pixels, np.float32), style, image / 255)
            row.update({f"{arm}_{k}": scores[k] for k in ("gram_distance", "laplacian_residual", "edge_ssim")})
        if offsets[i * step] == offsets[0]:
            if i == 0:
                firsts = images
            else:
                row.update({f"{arm}_vs_first": float(np.mean(np.abs(images[arm] - firsts[arm]))) for arm in images})
        rows.append(row)
        print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    for key in dict.fromkeys(k for r in rows for k in r if k.startswith(("warm_", "cold_")) and k != "warm_start"):
        values = [r[key] for r in rows[1:] if key in r]
        print(f"mean over keyframes 1-{len(rows) - 1}, {key}: {np.mean(values):.4g}", flush=True)
    report.update({"keyframes": summary["keyframes"], "rows": rows})
    if args.json:
        common.write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
