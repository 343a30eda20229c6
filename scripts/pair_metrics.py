"""Stylise DPST example pairs with one setting and print every metric, with Gram distance by layer.

For each pair N of `--examples` (inN.png, tarN.png and their masks, as in the paper's
repository; academic and non-commercial use only): both photos loaded with the longer side at
`--max-side`, the hand-made masks parsed, `jaxstyle.stylize` run with `--config` and the `--set`
overrides, then `jaxstyle.metrics.evaluate_triple` on the result (hand-made regions) and
`jaxstyle.metrics.gram_distance_by_layer`. One JSON line per pair on stdout (seconds end to end,
each stage's stop reason and iterations, edge SSIM, residual, Gram distance, Lab W2, per-layer Gram distances), then the means.

    python scripts/pair_metrics.py 9 --set loss.style_normalization=target --set loss.style_weight=3e7
    python scripts/pair_metrics.py 9 --score final    # the original's final_N.png, scored the same way
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import io, metrics
from jaxstyle.config import load_config
from jaxstyle.stylize import load_inputs, stylize
from jaxstyle.vgg import STYLE_LAYERS
from jaxstyle.weights import embedded_vgg16

KEYS = ("seconds", "edge_ssim", "laplacian_residual", "gram_distance", "lab_w2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=int, nargs="+", help="pair numbers N")
    parser.add_argument("--examples", default="../shared/dpst-examples", help="folder with inN.png, tarN.png, ...")
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("--config", default="default", help="preset name or .toml file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--score", choices=("final", "stage1", "content"), default=None,
                        help="score the original's final_N.png / stage1_N.png, or the content photo, "
                             "instead of stylising")
    parser.add_argument("--out", default=None, help="folder for the results (PNG)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = dict(kv.split("=", 1) for kv in args.overrides)
    cfg = load_config(args.config, overrides)
    weights = jax.device_put(embedded_vgg16())
    root = Path(args.examples)
    rows = []
    for n in args.pairs:
        c, s, cm, sm, _ = load_inputs(root / f"in{n}.png", root / f"tar{n}.png", root / f"in{n}_mask.png",
                                      root / f"tar{n}_mask.png", max_side=args.max_side)
        start = time.perf_counter()
        run = {}
        if args.score == "content":
            out = c
        elif args.score:
            out = io.resize_image(io.load_image(root / f"{args.score}_{n}.png"), c.shape[:2])
        else:
            result = stylize(c, s, content_mask=cm, style_mask=sm, config=cfg, weights=weights)
            out = result.image
            run = {"status": result.status, "iterations": {k: len(v) for k, v in result.history.items()}}
        seconds = time.perf_counter() - start
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            io.save_image(out, Path(args.out) / f"pair{n}.png", overwrite=True)
        arrays = [jnp.asarray(a) for a in (c, s, out, cm, sm)]
        scores = metrics.evaluate_triple(weights, *arrays[:3], content_mask=arrays[3], style_mask=arrays[4])
        by_layer = metrics.gram_distance_by_layer(weights, arrays[2], arrays[1], arrays[3], arrays[4])
        row = {"pair": n, "seconds": round(seconds, 1), **run, **{k: float(scores[k]) for k in KEYS[1:]},
               "gram_by_layer": dict(zip(STYLE_LAYERS, np.round(np.asarray(by_layer), 4).tolist()))}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if len(rows) > 1:
        print(json.dumps({"mean": {k: float(np.mean([r[k] for r in rows])) for k in KEYS}}), flush=True)


if __name__ == "__main__":
    main()
