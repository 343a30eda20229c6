"""The command as people run it: `jaxstyle transfer PHOTO STYLE -o OUT.jpg [--config PRESET]`, in
a new process each time, on photos of 1, 12 and 24 megapixels, for each preset side by side in
one run, with the ratios to a baseline preset.

Per preset, with a compilation cache of its own that starts empty:
  cold    the first photo (`--cold-mp`, 4:3), compiles included;
  second  a photo of another size and aspect right after it (3:2), as a user's next photo;
  then each of `--megapixels` (16:9, 1:1 and 2:3 in turn) with the cache warm.
The command runs as people type it (progress and loss terms printed, to a pipe). Per run: wall
seconds from the process's start to its exit (Python start and imports included), the phases from the result's metadata, peak resident memory (ru_maxrss). Photos
are the bundled demo content resized (Lanczos) and written as JPEGs; the style is the demo
style. The machine's speed (XLA convolution GFLOP/s) is measured in the same run.

    python scripts/bench_command.py --presets default fast grid --json docs/bench/command.json
    python scripts/bench_command.py --presets plain docs/bench/default_until_2026-12-07.toml fast \
        --first-only docs/bench/default_until_2026-12-07.toml --json docs/bench/command.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as common  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ASPECTS = {"cold": (4, 3), "second": (3, 2)}
LATER_ASPECTS = [(16, 9), (1, 1), (2, 3)]

WORKER = """
import json, resource, sys
from jaxstyle.cli import app
from jaxstyle import writing
app(sys.argv[2:], standalone_mode=False)
out = sys.argv[sys.argv.index("-o") + 1]
meta = writing.read_metadata(out)
with open(sys.argv[1], "w") as f:
    json.dump({"seconds": meta["seconds"], "size": meta["size"], "working_size": meta["working_size"],
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, f)
"""


def make_photo(source: Path, megapixels: float, aspect: tuple[int, int], path: Path) -> tuple[int, int]:
    """`source` cropped to `aspect` (width:height), resized to about `megapixels`, as a JPEG; (H, W)."""
    from PIL import Image

    with Image.open(source) as im:
        im = im.convert("RGB")
        w, h = im.size
        aw, ah = aspect
        cw, ch = (w, round(w * ah / aw)) if w * ah <= h * aw else (round(h * aw / ah), h)
        left, top = (w - cw) // 2, (h - ch) // 2
        im = im.crop((left, top, left + cw, top + ch))
        height = round((megapixels * 1e6 * ah / aw) ** 0.5)
        size = (round(height * aw / ah), height)
        im.resize(size, Image.Resampling.LANCZOS).save(path, quality=92)
    return size[1], size[0]


def run(preset: str | None, content: Path, style: Path, folder: Path, label: str, cache: Path) -> dict:
    stats, out = folder / f"{label}.json", folder / f"{label}.jpg"
    command = [sys.executable, "-c", WORKER, str(stats), "transfer", str(content), str(style), "-o", str(out)]
    if preset is not None:
        command += ["--config", preset]
    env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": str(cache)}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stdout}\n{done.stderr}")
    return {"wall": wall, **json.loads(stats.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["default", "fast", "grid"],
                        help="presets to run ('plain': no --config, the command as people run it)")
    parser.add_argument("--baseline", default=None, help="preset the ratios divide by (default: the first)")
    parser.add_argument("--cold-mp", type=float, default=12.0)
    parser.add_argument("--second-mp", type=float, default=8.0)
    parser.add_argument("--megapixels", type=float, nargs="*", default=[1, 24])
    parser.add_argument("--first-only", nargs="*", default=[], metavar="PRESET",
                        help="presets run on the first photo only (slow baselines)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from jaxstyle import reading

    machine = common.describe_machine()
    gflops = common.conv_gflops()
    print(f"XLA convolution: {gflops:.0f} GFLOP/s", file=sys.stderr)
    source, style = (Path(p) for p in reading.demo_paths())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = {"cold": (args.cold_mp, ASPECTS["cold"]), "second": (args.second_mp, ASPECTS["second"])}
        for mp, aspect in zip(args.megapixels, LATER_ASPECTS * len(args.megapixels)):
            photos[f"{mp:g}mp"] = (mp, aspect)
        paths = {}
        for name, (mp, aspect) in photos.items():
            paths[name] = folder / f"{name}.jpg"
            make_photo(source, mp, aspect, paths[name])
        for preset in args.presets:
            cache = folder / f"xla-{Path(preset).stem}"  # empty: the first run compiles everything
            for name in (["cold"] if preset in args.first_only else photos):
                label = f"{Path(preset).stem}-{name}"
                r = run(None if preset == "plain" else preset, paths[name], style, folder, label, cache)
                rows.append({"preset": preset, "photo": name, "megapixels": r["size"][0] * r["size"][1] / 1e6, **r})
                print(f"{label}: {r['wall']:.1f} s, {r['size'][1]}x{r['size'][0]}, working "
                      f"{r['working_size'][1]}x{r['working_size'][0]}, peak {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
    baseline = args.baseline or args.presets[0]
    base = {r["photo"]: r["wall"] for r in rows if r["preset"] == baseline}
    for r in rows:
        r["ratio"] = common.ratio(r["wall"], base.get(r["photo"]))
    print(f"`jaxstyle transfer PHOTO STYLE -o OUT.jpg --config PRESET`, a new process each; "
          f"{machine['cpu_model']}, {machine['cpu_usable']} cores, XLA convolution {gflops:.0f} GFLOP/s")
    print(common.markdown_table(
        ["preset", "photo", "size", "working", "end to end s", f"x {baseline}", "stages s", "peak RSS MB"],
        [[r["preset"], r["photo"], f"{r['size'][1]}x{r['size'][0]}", f"{r['working_size'][1]}x{r['working_size'][0]}",
          f"{r['wall']:.1f}", common.fmt(r["ratio"], 2),
          " + ".join(f"{v:.1f}" for k, v in r["seconds"].items() if k.startswith("stage")),
          f"{r['peak_rss_mb']:.0f}"] for r in rows]))
    if args.json:
        common.write_json(args.json, {"machine": machine, "conv_gflops": gflops, "baseline": baseline,
                                      "settings": {k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items()},
                                      "rows": rows})


if __name__ == "__main__":
    main()
