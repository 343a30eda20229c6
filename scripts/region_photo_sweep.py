"""Choose `loss.region_photo_scale` on pairs that are not the evaluation's.

For each `--pair CONTENT:STYLE` (names `inN` / `tarN` are files of `--examples`, anything
else a path), the automatic masks are derived (`jaxstyle.automask.auto_masks`); pairs where
they find one region are skipped (the scale only acts with several). Then one stylisation
without masks and one with the automatic masks per `--scales` value, all with the same
preset (`--config`, `--set`), each scored by `jaxstyle.metrics.laplacian_residual`
(photorealism) and `jaxstyle.metrics.gram_distance` under the automatic regions (how well
each region took its style; no hand-made masks needed). The rule printed at the end: the
smallest scale whose mean residual over the pairs is at most the no-mask runs' mean.

The pairs used in `docs/quality.md` recombine contents and styles of the paper's examples
into pairs that `scripts/automask_eval.py` does not score, so the scale is not chosen on the
six pairs it is then judged on:

    python scripts/region_photo_sweep.py --config fast --scales 1 2 4 6 8 \\
        --pair in4:tar1 --pair in20:tar4 --pair in13:tar4 --pair in1:tar20 --json docs/bench/region_photo_sweep.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

import _bench_common as common
from jaxstyle import io, masks, metrics
from jaxstyle.automask import auto_masks
from jaxstyle.config import load_config
from jaxstyle.stylize import stylize
from jaxstyle.weights import resolve_weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", default="../shared/dpst-examples", help="folder of inN.png / tarN.png")
    parser.add_argument("--pair", dest="pairs", action="append", required=True, metavar="CONTENT:STYLE")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 4.0, 6.0, 8.0])
    parser.add_argument("--max-side", type=int, default=256, help="longer side of both photos (px)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the automatic masks")
    parser.add_argument("--config", default="fast", help="stylisation preset or .toml file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting (e.g. loss.photo_weight=1e5); repeatable")
    parser.add_argument("--json", default=None, metavar="PATH", help="write every number here")
    return parser.parse_args(argv)


def _path(name: str, folder: Path) -> Path:
    return folder / f"{name}.png" if (folder / f"{name}.png").exists() else Path(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(args.examples)
    weights = jax.device_put(resolve_weights("vgg16"))
    base = common.parse_overrides(args.overrides)
    gram = jax.jit(metrics.gram_distance)
    residual = jax.jit(metrics.laplacian_residual)
    results = []
    for pair in args.pairs:
        content_name, _, style_name = pair.partition(":")
        content = io.load_image(_path(content_name, folder), max_side=args.max_side)
        style = io.load_image(_path(style_name, folder), max_side=args.max_side)
        auto = auto_masks(weights, content, style, seed=args.seed)
        if len(auto.labels) < 2:
            print(f"{pair}: one automatic region, skipped", file=sys.stderr)
            continue
        colours = (masks.labels_to_color(auto.content, auto.labels), masks.labels_to_color(auto.style, auto.labels))
        record: dict[str, Any] = {"pair": pair, "regions": len(auto.labels), "runs": {}}
        for name, given, scale in [("none", (None, None), 1.0)] + [
                (f"auto x{s:g}", colours, s) for s in args.scales]:
            cfg = load_config(args.config, {**base, "loss.region_photo_scale": scale})
            image = stylize(content, style, content_mask=given[0], style_mask=given[1], config=cfg,
                            weights=weights, max_side=args.max_side).image
            run = {"scale": scale, "laplacian_residual": float(residual(content, image)),
                   "gram_distance_auto_regions": float(gram(weights, image, style, auto.content, auto.style))}
            record["runs"][name] = run
            # Each scale is a new static setting, so nothing compiled is reused; dropping it keeps
            # the process from running out of memory for JIT code (it did after 18 runs).
            jax.clear_caches()
            print(f"{pair} {name:8s} residual {run['laplacian_residual']:.3g}  "
                  f"gram(auto regions) {run['gram_distance_auto_regions']:.4f}", file=sys.stderr)
        results.append(record)
    if not results:
        print("no pair had several automatic regions", file=sys.stderr)
        return 1

    names = list(results[0]["runs"])
    mean = {n: {k: float(np.mean([r["runs"][n][k] for r in results]))
                for k in ("laplacian_residual", "gram_distance_auto_regions")} for n in names}
    print("| run | mean residual | vs none | mean Gram dist. (auto regions) |\n|---|---|---|---|")
    for n in names:
        ratio = mean[n]["laplacian_residual"] / mean["none"]["laplacian_residual"]
        print(f"| {n} | {mean[n]['laplacian_residual']:.3g} | {ratio:.3f} | {mean[n]['gram_distance_auto_regions']:.4f} |")
    chosen = next((s for s in sorted(args.scales)
                   if mean[f"auto x{s:g}"]["laplacian_residual"] <= mean["none"]["laplacian_residual"]), None)
    print(f"smallest scale with mean residual <= no masks': {chosen}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results, "mean": mean,
                                               "chosen": chosen}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
