"""Throughput of `jaxstyle.batch.stylize_batch`: images per second at several batch sizes.

For each strategy ("vmap", "map"; see jaxstyle/batch.py) and batch size B, B distinct pairs
(the bundled sample photos, flipped and shifted per item, resized so the longer side is
`--size`) run the whole pipeline (targets, both stages with a fixed iteration budget and no
tolerance stop, smoothing) once to compile, then `--repeats` timed runs (median).
Reported: images/s = B / seconds, the speed-up over B=1 of the same strategy, the compile
(first-call) time, and the plain one-image `jaxstyle.stylize` path as a reference. With
several local devices the batch is sharded over them (B padded to a multiple of the count).

    python scripts/bench_batch.py --json bench_batch.json
    python scripts/bench_batch.py --size 32 --batch-sizes 1 2 --iterations 2 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

import jax
import numpy as np

from jaxstyle import reading
from jaxstyle.batch import resolve_strategy, stylize_batch
from jaxstyle.config import load_config
from jaxstyle.single import stylize
from jaxstyle.weights import resolve_weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="longer side of every image, in pixels")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--strategies", nargs="+", default=["vmap", "map"], choices=["auto", "vmap", "map"])
    parser.add_argument("--iterations", type=int, default=20, help="fixed iterations per stage")
    parser.add_argument("--config", default="default", help="preset name or TOML path")
    parser.add_argument("--linesearch", default=None, choices=["none", "zoom"],
                        help="override the L-BFGS line search of both stages")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (median)")
    parser.add_argument("--no-single", action="store_true", help="skip the one-image stylize reference")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    return parser.parse_args(argv)


def sample_pairs(count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct (content, style) pairs `[count, h, w, 3]` from the bundled sample photos."""
    content_path, style_path = reading.sample_paths()
    content = reading.load_image(content_path, max_side=size)
    style = reading.load_image(style_path, max_side=size)
    contents, styles = [], []
    for i in range(count):
        c = content[:, ::-1] if i % 2 else content
        contents.append(np.roll(c, 3 * (i // 2), axis=1))
        styles.append(np.roll(style[::-1] if i % 2 else style, 5 * i, axis=0))
    return np.stack(contents), np.stack(styles)


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(first-call seconds, median seconds of `repeats` further calls, last result)."""
    start = time.perf_counter()
    result = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), result


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    # One chunk of exactly the budget, so no run (batched or single) steps past it.
    stage_changes = {"iterations": args.iterations, "tol": 0.0, "chunk_size": max(1, args.iterations)}
    if args.linesearch:
        stage_changes["linesearch"] = args.linesearch
    cfg = load_config(args.config)
    cfg = dataclasses.replace(cfg, max_side=args.size,
                              stage1=dataclasses.replace(cfg.stage1, **stage_changes),
                              stage2=dataclasses.replace(cfg.stage2, **stage_changes))
    weights = jax.device_put(resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback))
    contents, styles = sample_pairs(max(args.batch_sizes), args.size)
    info = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.local_devices()],
            "device_count": jax.local_device_count(), "size": list(contents.shape[1:3]),
            "style_size": list(styles.shape[1:3]), "iterations_per_stage": args.iterations,
            "config": args.config, "mode": cfg.mode, "linesearch": cfg.stage2.linesearch,
            "repeats": args.repeats, "jax": jax.__version__}
    print(f"# {info['backend']} x{info['device_count']}, {contents.shape[2]}x{contents.shape[1]} px, "
          f"{args.iterations} iterations per stage, mode {cfg.mode}, line search {cfg.stage2.linesearch}",
          file=sys.stderr)
    rows = []
    if not args.no_single:
        first, seconds, _ = timed(lambda: stylize(contents[0], styles[0], config=cfg, weights=weights).image,
                                  args.repeats)
        rows.append({"strategy": "single (stylize)", "batch": 1, "seconds": seconds, "images_per_s": 1 / seconds,
                     "first_call_s": first})
    for strategy in args.strategies:
        base = None
        for b in args.batch_sizes:
            def run():
                result = stylize_batch(contents[:b], styles[:b], config=cfg, weights=weights, strategy=strategy)
                return np.asarray(result.images), result

            first, seconds, (_, result) = timed(run, args.repeats)
            rate = b / seconds
            base = rate if base is None else base
            rows.append({"strategy": strategy, "resolved": resolve_strategy(strategy, cfg.stage2), "batch": b,
                         "seconds": seconds, "images_per_s": rate, "speedup_vs_batch1": rate / base,
                         "first_call_s": first,
                         "stage_seconds": {k: round(v, 4) for k, v in result.seconds.items()}})
            print(f"  {strategy} B={b}: {rate:.3g} images/s", file=sys.stderr)
    print(f"{'strategy':18s} {'B':>3s} {'s/run':>8s} {'img/s':>8s} {'speed-up':>9s} {'1st call s':>10s}")
    for r in rows:
        speedup = f"{r['speedup_vs_batch1']:.2f}x" if "speedup_vs_batch1" in r else "-"
        print(f"{r['strategy']:18s} {r['batch']:3d} {r['seconds']:8.3f} {r['images_per_s']:8.3f} "
              f"{speedup:>9s} {r['first_call_s']:10.2f}")
    report = {"info": info, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
