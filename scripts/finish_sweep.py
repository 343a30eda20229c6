"""Score other final filters on saved stage-2 images, without re-running the optimisation.

`scripts/automask_eval.py --out DIR` saves each result's last stage before the final filter as
`DIR/pairN_MODE_prefilter.npy`. This script reloads the pair as that run did (both photos with
the longer side at `--max-side`, the hand-made masks of `--examples`), applies each variant of
the final filter (`jaxstyle.stylize`'s own finishing step with the `[smooth]` settings of
`--config` changed by the variant's `KEY=VALUE` list) and scores the result with
`jaxstyle.metrics.evaluate_triple` (hand-made regions; the original's `final_N.png` as the
reference for LPIPS). Prints per-variant means and writes every number to `--json`.

    python scripts/finish_sweep.py --runs runs/default --variant filter: \\
        --variant refine:refine=true --variant refine_eps004:refine=true,refine_eps=0.004
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxstyle import io, masks, metrics
from jaxstyle.config import load_config
from jaxstyle.stylize import _finish_jit
from jaxstyle.weights import resolve_weights

PAIRS = (1, 4, 9, 13, 20, 39)
KEYS = ("edge_ssim", "laplacian_residual", "gram_distance", "lab_w2", "lpips")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="an automask_eval.py --out folder")
    parser.add_argument("--mode", default="hand", choices=("hand", "auto", "none"))
    parser.add_argument("--examples", default="../shared/dpst-examples")
    parser.add_argument("--pairs", type=int, nargs="+", default=list(PAIRS))
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("--config", default="default", help="preset whose [smooth] the variants change")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME:KEY=VALUE,...",
                        help="a named change of the [smooth] settings; 'NAME:' alone keeps them")
    parser.add_argument("--json", default=None, metavar="PATH")
    return parser.parse_args(argv)


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, body = text.partition(":")
    changes = {}
    for item in filter(None, body.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant expects NAME:KEY=VALUE,..., got {text!r}")
        changes[key.strip()] = tomllib.loads(f"v = {value}")["v"]
    return name, changes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder, runs = Path(args.examples), Path(args.runs)
    base = load_config(args.config)
    variants = {name: dataclasses.replace(base, smooth=dataclasses.replace(base.smooth, **changes))
                for name, changes in map(parse_variant, args.variant)}
    weights = jax.device_put(resolve_weights("vgg16"))
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for n in args.pairs:
        content = io.load_image(folder / f"in{n}.png", max_side=args.max_side)
        style = io.load_image(folder / f"tar{n}.png", max_side=args.max_side)
        hand = masks.parse_mask_pair(folder / f"in{n}_mask.png", folder / f"tar{n}_mask.png",
                                     content_shape=content.shape[:2], style_shape=style.shape[:2])
        reference = io.resize_image(io.load_image(folder / f"final_{n}.png"), content.shape[:2])
        stage = np.load(runs / f"pair{n}_{args.mode}_prefilter.npy")
        for name, cfg in variants.items():
            image = np.asarray(_finish_jit(stage, content, cfg))
            record = metrics.evaluate_triple(weights, content, style, image, content_mask=hand.content,
                                             style_mask=hand.style, reference=reference)
            scores[name].append({"pair": n, **record})
            print(f"pair {n:2d} {name:20s} " + "  ".join(f"{k} {record[k]:.5g}" for k in KEYS), flush=True)
    print("\n| variant | " + " | ".join(KEYS) + " |\n|---|" + "---:|" * len(KEYS))
    for name, rows in scores.items():
        print(f"| {name} | " + " | ".join(f"{np.mean([r[k] for r in rows]):.5g}" for k in KEYS) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": str(runs), "mode": args.mode, "variants": {
            name: dataclasses.asdict(cfg.smooth) for name, cfg in variants.items()}, "scores": scores}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
