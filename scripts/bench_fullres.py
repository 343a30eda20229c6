"""Full-resolution delivery: `jaxstyle transfer` on photos of 1 to 24 megapixels, against the same
run delivered at the working size, in one run.

The content is a real photo (the bundled sample content, or `--content`) resized (Lanczos) to each
size in `--megapixels`, written as a JPEG; the style is the bundled sample style. Each run is a new
process running the command line in-process, as a user would (`jaxstyle transfer ... --config
PRESET --max-side W`), with the compilation cache on and warmed by the baseline run, so the
rows compare running time, not compiling. Per run: the seconds of each phase (from the result's
own metadata: setup, stages, smoothing, upsample), end to end, and the peak resident memory
(ru_maxrss of that process). The baseline of each preset is the same photo at the working size
(no upsampling); `ratio` is end to end over the baseline's.

    python scripts/bench_fullres.py --presets fast default --megapixels 1 4 12 24 --max-side 256 --json docs/bench/fullres.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import json, resource, sys, time
from jaxstyle.cli import app
from jaxstyle import writing
start = time.perf_counter()
app(sys.argv[2:], standalone_mode=False)
wall = time.perf_counter() - start
out = sys.argv[sys.argv.index("-o") + 1]
meta = writing.read_metadata(out)
with open(sys.argv[1], "w") as f:
    json.dump({"wall": wall, "seconds": meta["seconds"], "size": meta["size"], "working_size": meta["working_size"],
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, f)
"""


def make_photo(source: Path, megapixels: float, path: Path) -> tuple[int, int]:
    """`source` resized to about `megapixels` (aspect kept), written as a JPEG; returns (H, W)."""
    from PIL import Image

    with Image.open(source) as im:
        w, h = im.size
        scale = (megapixels * 1e6 / (w * h)) ** 0.5
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(path, quality=92)
    return size[1], size[0]


def run(preset: str, content: Path, style: Path, folder: Path, max_side: int, label: str, cache: Path) -> dict:
    stats, out = folder / f"{label}.json", folder / f"{label}.jpg"
    command = [sys.executable, "-c", WORKER, str(stats), "transfer", str(content), str(style), "-o", str(out),
               "--config", preset, "--max-side", str(max_side), "-q", "--force"]
    env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": str(cache)}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(stats.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["fast"])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[1, 4, 12, 24])
    parser.add_argument("--max-side", type=int, default=256, help="working size (the optimisation's longer side)")
    parser.add_argument("--content", type=Path, help="photo to resize (default: the bundled sample content)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from jaxstyle import reading

    content_src, style = (Path(p) for p in reading.sample_paths())
    content_src = args.content or content_src
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache = folder / "xla"
        for preset in args.presets:
            small = folder / "working.jpg"
            from PIL import Image

            with Image.open(content_src) as im:
                w, h = im.size
                s = args.max_side / max(w, h)
                im.convert("RGB").resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS).save(small, quality=92)
            base = run(preset, small, style, folder, args.max_side, f"{preset}-base", cache)
            base = run(preset, small, style, folder, args.max_side, f"{preset}-base", cache)  # compiled: cached
            rows.append({"preset": preset, "megapixels": base["size"][0] * base["size"][1] / 1e6, **base,
                         "ratio": 1.0, "baseline": True})
            print(f"{preset} baseline: {base}", file=sys.stderr)
            for mp in args.megapixels:
                path = folder / f"content-{mp:g}mp.jpg"
                make_photo(content_src, mp, path)
                r = run(preset, path, style, folder, args.max_side, f"{preset}-{mp:g}mp", cache)
                rows.append({"preset": preset, "megapixels": r["size"][0] * r["size"][1] / 1e6, **r,
                             "ratio": r["wall"] / base["wall"], "baseline": False})
                print(f"{preset} {mp:g} MP: {r}", file=sys.stderr)
    print(f"`jaxstyle transfer --max-side {args.max_side}`, new process each, compilation cache warm; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{'preset':8s} {'MP':>6s} {'size':>11s} {'upsample s':>10s} {'end to end s':>12s} {'x base':>7s} "
          f"{'peak RSS MB':>11s}")
    for r in rows:
        size = f"{r['size'][1]}x{r['size'][0]}"
        print(f"{r['preset']:8s} {r['megapixels']:6.2f} {size:>11s} {r['seconds'].get('upsample', 0.0):10.2f} "
              f"{r['wall']:12.1f} {r['ratio']:7.2f} {r['peak_rss_mb']:11.0f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
                                         "cores": os.cpu_count(), "max_side": args.max_side, "rows": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
