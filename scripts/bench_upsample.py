"""Time the full-resolution output step (`jaxstyle.upsample`) at photo sizes.

For each size in `--megapixels` the bundled sample content (384x256 px) is resized up (Lanczos)
to that many pixels; its working-size copy (`--working-size` px on the long side) is
recoloured to the sample style (`jaxstyle.color.linear_color_transfer`) to stand in for a
stylised result. The parent prepares these inputs and saves them as .npy files, then each
(size, path) runs in a fresh subprocess, so that every peak resident set (ru_maxrss) is
that run's own: inputs loaded, compile, one first call and `--repeats` timed calls.

Paths:
- `jit`: `jax.jit(upsample_affine)` on device arrays (the pure function, tiles in a
  `fori_loop`); compile time from `lower().compile()`, seconds per call blocked until ready;
- `host`: `upsample_affine_host` (numpy in and out, the tile loop on the host over one
  compiled tile program); compile time = first call - median call.

Reported per run: seconds (median [min-max] of the timed calls), compile seconds, peak RSS
and the RSS with the inputs loaded (MiB). The target: 12 MP in at most 10 s on a 2-core CPU.

    python scripts/bench_upsample.py --json bench_upsample.json
    python scripts/bench_upsample.py --megapixels 0.5 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import _bench_common as common

RESULT_PREFIX = "BENCH_UPSAMPLE_RESULT "
PATHS = ("jit", "host")
TARGET_MP, TARGET_S = 12.0, 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[1.0, 4.0, 12.0])
    parser.add_argument("--working-size", type=int, default=512, help="long side of the working size (px)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--tile", type=int, default=None,
                        help="output tile side (default: the module's, per path)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the first (median)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    parser.add_argument("--worker-timeout", type=float, default=1800.0, help="seconds per worker process")
    parser.add_argument("--worker", default=None, metavar="NPZ_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS, default="jit", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- inputs


def prepare_inputs(megapixels: float, working_size: int, folder: Path) -> dict[str, Any]:
    """Write content_full.npy `[H, W, 3]` and content_small.npy `[h, w, 3]` (float32) to `folder`."""
    from jaxstyle import reading, sizing

    demo = reading.load_image(reading.sample_paths()[0])
    aspect = demo.shape[1] / demo.shape[0]
    width = round(math.sqrt(megapixels * 1e6 * aspect))
    height = round(width / aspect)
    full = sizing.resize_image(demo, (height, width))
    scale = min(1.0, working_size / max(height, width))
    small = sizing.resize_image(full, (max(1, round(height * scale)), max(1, round(width * scale))))
    np.save(folder / "content_full.npy", full)
    np.save(folder / "content_small.npy", small)
    return {"full_hw": [height, width], "small_hw": list(small.shape[:2]),
            "megapixels": height * width / 1e6}


# ----------------------------------------------------------------------------- worker


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    import jax

    from jaxstyle import reading, upsample
    from jaxstyle.color import linear_color_transfer

    folder = Path(args.worker)
    full = np.load(folder / "content_full.npy")
    small = np.load(folder / "content_small.npy")
    style = reading.load_image(reading.sample_paths()[1], max_side=args.working_size)
    result = np.asarray(linear_color_transfer(small, style))  # stands in for a stylised result
    rss_inputs = common.rss_mb()
    record: dict[str, Any] = {"path": args.path, "full_hw": list(full.shape[:2]),
                              "small_hw": list(small.shape[:2]), "megapixels": full.shape[0] * full.shape[1] / 1e6,
                              "runtime": common.jax_runtime(), "rss_inputs_mb": rss_inputs}
    if args.path == "jit":
        tile = args.tile or upsample.DEFAULT_TILE
        arrays = jax.device_put((full, small, result))
        del full
        start = time.perf_counter()
        compiled = jax.jit(upsample.upsample_affine, static_argnames="tile").lower(*arrays, tile=tile).compile()
        record["compile_s"] = time.perf_counter() - start
        timing, out = common.time_call(lambda: compiled(*arrays), repeats=args.repeats, warmup=0)
    else:
        tile = args.tile or 256
        timing, out = common.time_call(lambda: upsample.upsample_affine_host(full, small, result, tile=tile),
                                       repeats=args.repeats, warmup=0)
        record["compile_s"] = timing["compile_s"]
    record.update(tile=tile, first_s=timing["first_s"], seconds=timing["steady"],
                  output_shape=list(out.shape), peak_rss_mb=common.peak_rss_mb())
    return record


# ----------------------------------------------------------------------------- orchestration


def run_one(folder: Path, path: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(folder), "--path", path,
               "--working-size", str(args.working_size), "--repeats", str(args.repeats)]
    if args.tile:
        command += ["--tile", str(args.tile)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.worker_timeout,
                              env=dict(os.environ), check=False)
    except subprocess.TimeoutExpired:
        return {"path": path, "error": f"timed out after {args.worker_timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        return {"path": path, "returncode": done.returncode, "error": (done.stderr or done.stdout)[-3000:]}
    record = json.loads(lines[-1][len(RESULT_PREFIX):])
    record["process_wall_s"] = time.perf_counter() - start
    return record


def table(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        if "error" in r:
            rows.append([f"{r.get('megapixels', 0):.1f}", r["path"], "error", "-", "-", "-", "-"])
            continue
        h, w = r["full_hw"]
        hs, ws = r["small_hw"]
        rows.append([f"{r['megapixels']:.1f} ({w}x{h})", f"{r['path']} (tile {r['tile']})", f"{ws}x{hs}",
                     common.fmt_summary(r["seconds"]), common.fmt(r["compile_s"]),
                     common.fmt(r["peak_rss_mb"], 4), common.fmt(r["rss_inputs_mb"], 4)])
    return common.markdown_table(["MP (WxH)", "path", "working", "seconds", "compile s", "peak RSS MiB",
                                  "RSS inputs MiB"], rows, align=["l", "l", "r", "r", "r", "r", "r"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(run_worker(args), default=common.json_default), flush=True)
        return 0
    machine = common.describe_machine()
    records = []
    with tempfile.TemporaryDirectory(prefix="bench_upsample_") as tmp:
        for megapixels in args.megapixels:
            folder = Path(tmp) / f"{megapixels:g}mp"
            folder.mkdir()
            inputs = prepare_inputs(megapixels, args.working_size, folder)
            for path in args.paths:
                record = run_one(folder, path, args)
                record.setdefault("megapixels", inputs["megapixels"])
                records.append(record)
                print(f"{inputs['megapixels']:.1f} MP {path}: "
                      + (record["error"].splitlines()[-1] if "error" in record
                         else f"{record['seconds']['median']:.2f} s, compile {record['compile_s']:.2f} s, "
                              f"peak RSS {record['peak_rss_mb']:.0f} MiB"), flush=True)
    target = [r for r in records if "error" not in r and r["megapixels"] >= TARGET_MP * 0.95]
    summary = {"target": f"{TARGET_MP:g} MP in <= {TARGET_S:g} s",
               "met": all(r["seconds"]["median"] <= TARGET_S for r in target) if target else None}
    print(common.machine_line(machine))
    print(table(records))
    verdict = {True: "met", False: "NOT met", None: "not measured"}[summary["met"]]
    print(f"target {summary['target']} (median seconds): {verdict}")
    if args.json:
        common.write_json(args.json, {"machine": machine, "args": vars(args), "records": records,
                                      "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
