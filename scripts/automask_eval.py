"""Automatic masks vs hand-made masks vs no masks, on the DPST example pairs.

For each pair N of `--examples` (files inN.png, tarN.png, inN_mask.png, tarN_mask.png, as in
the paper's repository; the pairs are the paper's, academic and non-commercial use only):

1. Masks. Both photos are loaded with their longer side at `--max-side`. The hand-made
   masks are parsed (`jaxstyle.masks.parse_mask_pair`); the automatic ones come from
   `jaxstyle.automask.auto_masks`. Their agreement: each automatic label is mapped to the
   hand-made label it overlaps most (one mapping for both images, each image's overlap
   measured as a share of that image); `agreement` is the mean IoU of the hand-made
   regions with their mapped automatic labels over both images (1 = the same regions, or
   a refinement of them; splitting a hand-made region is not penalised, merging two is).
2. Unless `--masks-only`: three stylisations with the same settings (`--config`,
   `--iterations`, `--set`), with the automatic masks, without masks and with the hand-made
   masks, each scored by `jaxstyle.metrics.gram_distance` measured WITH THE HAND-MADE
   REGIONS (how well each hand-made region took its region's style; lower is better) and
   `jaxstyle.metrics.laplacian_residual` (photorealism; lower is better). Each result also
   gets every metric of `jaxstyle.metrics.evaluate_triple` with its own mode's regions (and
   the hand-made ones for "none"), against the original implementation's final output
   `final_N.png` as the reference when the folder has it (PSNR, SSIM, LPIPS to it), and the
   iterations each stage ran. `--modes hand` alone is the per-pair run of a preset.
3. A contact sheet (`--sheet`): per pair, the content and the style with the automatic
   regions drawn over them, then with the hand-made ones (mask colours blended with the
   photo).

Outputs: a markdown table on stdout, `--json` with every number, the stylised images in
`--out` (unless --masks-only) with each one's last stage before the final filter
(`pairN_MODE_prefilter.npy`, for `scripts/finish_sweep.py`), the sheet.

    python scripts/automask_eval.py --masks-only --sheet docs/automask_sheet.png  # masks only, ~1 min
    python scripts/automask_eval.py --json automask_eval.json --out automask_out   # full: long on CPU
    python scripts/automask_eval.py --pairs 1 --iterations 5 --out /tmp/am          # smoke test
    python scripts/automask_eval.py --modes hand --config fast --json fast.json     # one preset, hand masks
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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

PAIRS = (1, 4, 9, 13, 20, 39)
MODES = ("auto", "none", "hand")
OVERLAY_ALPHA = 0.55  # share of the mask colour in the drawn regions
SHEET_HEIGHT = 96  # px per tile in the contact sheet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", default="../shared/dpst-examples",
                        help="folder with inN.png, tarN.png, inN_mask.png, tarN_mask.png")
    parser.add_argument("--pairs", type=int, nargs="+", default=list(PAIRS), help="pair numbers N")
    parser.add_argument("--max-side", type=int, default=256, help="longer side of both photos (px)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the automatic masks")
    parser.add_argument("--max-regions", type=int, default=6, help="upper bound on automatic regions")
    parser.add_argument("--masks-only", action="store_true",
                        help="masks, agreement and sheet; no stylisation")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="which masks to stylise with (default: all three)")
    parser.add_argument("--config", default="default", help="stylisation preset or .toml file")
    parser.add_argument("--iterations", type=int, default=None,
                        help="iterations per stage (overrides the preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset setting (e.g. loss.style_weight=1000)")
    parser.add_argument("--out", default=None, help="folder for the stylised images")
    parser.add_argument("--json", default=None, metavar="PATH", help="write every number here")
    parser.add_argument("--sheet", default=None, metavar="PNG", help="write the masks contact sheet here")
    return parser.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = common.parse_overrides(args.overrides)
    if args.iterations is not None:
        out.update({"stage1.iterations": args.iterations, "stage2.iterations": args.iterations})
    return out


def agreement(auto: masks.MaskPair, hand: masks.MaskPair) -> float:
    """Mean IoU of the hand-made regions with the automatic labels mapped onto them (both images)."""
    auto_ids = [auto.content.argmax(-1), auto.style.argmax(-1)]
    hand_ids = [hand.content.argmax(-1), hand.style.argmax(-1)]
    ka, kh = len(auto.labels), len(hand.labels)
    overlap = np.zeros((ka, kh))
    for a, h in zip(auto_ids, hand_ids):
        overlap += np.histogram2d(a.ravel(), h.ravel(), bins=(ka, kh), range=((0, ka), (0, kh)))[0] / a.size
    mapping = overlap.argmax(1)  # automatic label -> hand-made label
    ious = []
    for a, h in zip(auto_ids, hand_ids):
        mapped = mapping[a]
        for label in np.unique(h):
            ious.append(np.sum((mapped == label) & (h == label)) / np.sum((mapped == label) | (h == label)))
    return float(np.mean(ious))


def overlay(image: np.ndarray, pair_stack: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """The photo `[H, W, 3]` with its regions' colours blended in."""
    colours = masks.labels_to_color(pair_stack, labels).astype(np.float32) / 255.0
    return (OVERLAY_ALPHA * colours + (1.0 - OVERLAY_ALPHA) * image).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(args.examples)
    weights = jax.device_put(resolve_weights("vgg16"))
    cfg = None if args.masks_only else load_config(args.config, _overrides(args))
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    gram = jax.jit(metrics.gram_distance)
    residual = jax.jit(metrics.laplacian_residual)
    results, rows = [], []
    for n in args.pairs:
        content = io.load_image(folder / f"in{n}.png", max_side=args.max_side)
        style = io.load_image(folder / f"tar{n}.png", max_side=args.max_side)
        hand = masks.parse_mask_pair(folder / f"in{n}_mask.png", folder / f"tar{n}_mask.png",
                                     content_shape=content.shape[:2], style_shape=style.shape[:2])
        start = time.perf_counter()
        auto = auto_masks(weights, content, style, seed=args.seed, max_regions=args.max_regions)
        record: dict[str, Any] = {
            "pair": n, "size": list(content.shape[:2]), "style_size": list(style.shape[:2]),
            "auto_labels": list(auto.labels), "hand_labels": list(hand.labels),
            "auto_regions": len(auto.labels), "hand_regions": len(hand.labels),
            "agreement": agreement(auto, hand), "auto_seconds": time.perf_counter() - start,
            "auto_notes": list(auto.notes)}
        print(f"pair {n}: {len(auto.labels)} automatic region(s) vs {len(hand.labels)} hand-made, "
              f"agreement {record['agreement']:.2f} ({record['auto_seconds']:.1f} s)", file=sys.stderr)
        rows.append(io.side_by_side(
            [overlay(content, auto.content, auto.labels), overlay(style, auto.style, auto.labels),
             overlay(content, hand.content, hand.labels), overlay(style, hand.style, hand.labels)],
            height=SHEET_HEIGHT,
            labels=[f"{n}: auto content", f"auto style ({len(auto.labels)})", "hand-made content",
                    f"hand-made style ({len(hand.labels)})"]))
        if cfg is not None:
            given = {"auto": (masks.labels_to_color(auto.content, auto.labels),
                              masks.labels_to_color(auto.style, auto.labels)),
                     "none": (None, None),
                     "hand": (folder / f"in{n}_mask.png", folder / f"tar{n}_mask.png")}
            final = folder / f"final_{n}.png"
            reference = io.resize_image(io.load_image(final), content.shape[:2]) if final.exists() else None
            if reference is not None and "original" not in record:
                record["original"] = metrics.evaluate_triple(weights, content, style, reference,
                                                             content_mask=hand.content, style_mask=hand.style)
            regions = {"auto": (auto.content, auto.style), "none": (hand.content, hand.style),
                       "hand": (hand.content, hand.style)}
            for mode in args.modes:
                content_mask, style_mask = given[mode]
                result = stylize(content, style, content_mask=content_mask, style_mask=style_mask,
                                 config=cfg, weights=weights, max_side=args.max_side)
                image = result.image
                hand_gram = gram(weights, image, style, hand.content, hand.style)
                record[mode] = {
                    "gram_distance_hand_regions": float(hand_gram),
                    "laplacian_residual": float(residual(content, image)),
                    "seconds": result.seconds.get("total"), "stage_seconds": result.seconds,
                    "status": result.status,
                    "iterations": {stage: len(losses) for stage, losses in result.history.items()},
                    "metrics": metrics.evaluate_triple(weights, content, style, image,
                                                       content_mask=regions[mode][0],
                                                       style_mask=regions[mode][1], reference=reference)}
                if out_dir is not None:
                    io.save_image(image, out_dir / f"pair{n}_{mode}.png", overwrite=True)
                    # The last stage's image before the final filter, for scripts/finish_sweep.py.
                    np.save(out_dir / f"pair{n}_{mode}_prefilter.npy", result.stages[list(result.stages)[-1]])
                print(f"  {mode:5s} gram(hand regions) {record[mode]['gram_distance_hand_regions']:.4f}  "
                      f"laplacian residual {record[mode]['laplacian_residual']:.3g}  "
                      f"({record[mode]['seconds']:.0f} s)", file=sys.stderr)
        results.append(record)

    print(table(results))
    if args.json:
        settings = {"max_side": args.max_side, "seed": args.seed, "max_regions": args.max_regions,
                    "config": None if cfg is None else cfg.to_dict(), "pairs": args.pairs}
        Path(args.json).write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    if args.sheet:
        save_small_png(io.stack_rows(rows), args.sheet)
    return 0


def save_small_png(image: np.ndarray, path: str | Path) -> None:
    """A float `[H, W, 3]` sheet as a 256-colour PNG (a third of the size; fine for a contact sheet)."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(pixels).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: regions and agreement per pair, and the metrics per mode when stylised."""
    modes = [m for m in MODES if results and all(m in r for r in results)]
    head = "| pair | auto regions | hand regions | agreement |"
    rule = "|---|---|---|---|"
    head += "".join(f" gram {m} | residual {m} | seconds {m} |" for m in modes)
    rule += "---|---|---|" * len(modes)
    lines = [head, rule]
    for r in results:
        line = f"| {r['pair']} | {r['auto_regions']} | {r['hand_regions']} | {r['agreement']:.2f} |"
        line += "".join(f" {r[m]['gram_distance_hand_regions']:.4f} | {r[m]['laplacian_residual']:.3g} | "
                        f"{r[m]['seconds']:.0f} |" for m in modes)
        lines.append(line)
    if modes:
        lines += ["", "Means: " + ", ".join(
            f"{m}: gram {np.mean([r[m]['gram_distance_hand_regions'] for r in results]):.4f}, "
            f"residual {np.mean([r[m]['laplacian_residual'] for r in results]):.3g}" for m in modes)]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
