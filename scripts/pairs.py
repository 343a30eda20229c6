"""Evaluate jaxstyle on the example pairs of Deep Photo Style Transfer (Luan et al., CVPR 2017).

The pairs come from `--examples` (default: ../shared/dpst-examples beside this checkout), the
paper's repository's files: inN.png (content), tarN.png (style), inN_mask.png / tarN_mask.png
(hand-made masks) and the original implementation's stage1_N.png and final_N.png (academic,
non-commercial use; never copied into this repository). A pair is N, the paper's pair N, or
CONTENT:STYLE, a recombination such as in4:tar1 (a name that is not a PNG of `--examples` is a
path); a recombined pair has no hand-made masks and no original outputs. Photos are loaded
with the longer side at `--max-side`; metrics are `jaxstyle.metrics` with the bundled VGG-16.

Subcommands:
  run     Each pair with each mode: "none", "auto" (`jaxstyle.automask.auto_masks`) or "hand"
          masks stylised with one setting (`--config`, `--iterations`, `--set`); "final",
          "stage1" (the original's outputs) or "content" (the photo itself) scored as they
          are. Every arm gets the Gram distance under the hand-made and under the automatic
          regions, the matting-Laplacian residual, every metric of
          `jaxstyle.metrics.evaluate_triple` (its own regions; LPIPS etc. against final_N.png)
          and with --by-layer the Gram distance per layer. Also the automatic masks'
          agreement with the hand-made ones (below). Writes a markdown table, `--json`, the
          images and each stylised arm's last stage before the final filter (`--out`:
          PAIR_MODE.png, PAIR_MODE_prefilter.npy), and a contact sheet of both kinds of
          masks (`--sheet`). `--masks-only`: masks, agreement and sheet, no stylisation.
  table   Per-pair quality table of `run --json` files against the original (means at the
          bottom); `--layout modes`: regions, agreement, Gram and residual per arm.
  finish  Other final filters on a `run --out` folder's pre-filter images, without
          re-running the optimisation: each `--variant NAME:KEY=VALUE,...` changes `[smooth]`
          (KEY) or another section (SECTION.KEY, e.g. upsample.fit_sigma_range). With
          `--working-side` (as the run had) the filtered image is carried to `--max-side` by
          the upsampling stage and scored there.
  sweep   Choose `loss.region_photo_scale`: per pair with several automatic regions, one
          run without masks and one with the automatic masks per `--scales` value; prints
          the smallest scale whose mean residual is at most the unmasked runs'.
  sheet   Contact sheet: content | style | original | one column per `--run LABEL=FOLDER`.

Agreement of automatic and hand-made masks: each automatic label is mapped to the hand-made
label it overlaps most (one mapping for both images, overlap as a share of each image); the
mean IoU of the hand-made regions with their mapped automatic labels over both images (1: the
same regions or a refinement of them; splitting a hand-made region is not penalised, merging
two is).

    python scripts/pairs.py run --modes hand --config default --out runs/default --json runs/default.json
    python scripts/pairs.py run --config fast --out runs/fast --json runs/fast.json   # none, auto, hand
    python scripts/pairs.py run --masks-only --sheet docs/automask_sheet.png         # about a minute
    python scripts/pairs.py run --pairs 9 --modes final stage1 content --by-layer    # the original's outputs
    python scripts/pairs.py run --pair in4:tar1 --modes none auto --config fast      # a recombined pair
    python scripts/pairs.py run --pairs 9 --max-side 64 --iterations 2 --modes hand  # smoke test
    python scripts/pairs.py table --run default=docs/bench/examples_default.json \\
        --run fast=docs/bench/examples_fast.json
    python scripts/pairs.py table --layout modes --run fast=docs/bench/examples_fast.json
    python scripts/pairs.py finish --runs runs/default --variant filter: --variant refine:refine=true \\
        --variant refine_eps004:refine=true,refine_eps=0.004
    python scripts/pairs.py finish --config fast --runs runs/fast700 --max-side 700 --working-side 256 \\
        --variant fit05: --variant fit01:upsample.fit_sigma_range=0.1
    python scripts/pairs.py sweep --config fast --scales 1 2 4 6 8 --pair in4:tar1 --pair in20:tar4 \\
        --pair in13:tar4 --pair in1:tar20 --json docs/bench/region_photo_sweep.json
    python scripts/pairs.py sheet --run "ours default=runs/default" --run "ours fast=runs/fast" \\
        --out docs/examples_sheet.jpg
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

import _bench_common as common
from jaxstyle import masks, metrics, reading, sheets, sizing, writing
from jaxstyle.automask import auto_masks
from jaxstyle.config import Config, load_config, parse_overrides
from jaxstyle.errors import JaxstyleError
from jaxstyle.pipeline import finish, upsample
from jaxstyle.single import Result, stylize
from jaxstyle.vgg import STYLE_LAYERS, VGGWeights
from jaxstyle.weights import resolve_weights

DEFAULT_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "dpst-examples"
PAIRS = (1, 4, 9, 13, 20, 39)
# The development set of recombined pairs (automatic masks): every content with four styles of the
# other pairs, like and unlike (a flower under a church interior, a city under a sunset).
RECOMBINED = tuple(f"in{c}:tar{s}" for c, styles in ((1, (4, 9, 13, 39)), (4, (1, 9, 20, 39)), (9, (1, 4, 13, 20)),
                                                      (13, (1, 4, 20, 39)), (20, (1, 9, 13, 39)), (39, (4, 9, 13, 20)))
                   for s in styles)
STYLISED = ("auto", "none", "hand")  # masks given to jaxstyle.stylize
SCORED = ("final", "stage1", "content")  # images scored as they are
ARMS = STYLISED + SCORED
ORIGINALS = ("final", "stage1")  # the original implementation's outputs, FILE_N.png
OVERLAY_ALPHA = 0.55  # share of the mask colour in the drawn regions
MASK_SHEET_HEIGHT = 96  # px per tile in the masks contact sheet
QUALITY_METRICS = (("edge_ssim", "edge SSIM", "{:.3f}"), ("laplacian_residual", "residual", "{:.5f}"),
                   ("residual_p999", "residual p99.9", "{:.4f}"), ("gram_distance", "Gram dist.", "{:.3f}"),
                   ("lab_w2", "Lab W2", "{:.1f}"))
HIGHER_IS_BETTER = ("edge_ssim",)  # the worst row takes the minimum of these, the maximum of the rest
FINISH_KEYS = ("edge_ssim", "laplacian_residual", "gram_distance", "lab_w2", "lpips")

_gram = jax.jit(metrics.gram_distance)
_gram_by_layer = jax.jit(metrics.gram_distance_by_layer)
_residual = jax.jit(metrics.laplacian_residual)
_residual_map = jax.jit(metrics.laplacian_residual_map)
_finish = jax.jit(finish, static_argnames=("config", "stage"))  # the pipeline's own final step
_upsample = jax.jit(upsample, static_argnames=("config", "stage"))  # and its last stage


# ----------------------------------------------------------------------------- pairs


@dataclasses.dataclass(frozen=True)
class PairFiles:
    """What `--examples` holds for one pair."""

    content: Path
    style: Path
    masks: tuple[Path, Path] | None  # hand-made (content, style), when both exist
    originals: dict[str, Path]  # "final" / "stage1" -> the original's output, when it exists


@dataclasses.dataclass(frozen=True)
class Pair:
    """One pair at the working size: float32 `[H, W, 3]` content, `[Hs, Ws, 3]` style."""

    key: int | str  # N, or "CONTENT:STYLE"
    files: PairFiles
    content: np.ndarray
    style: np.ndarray
    hand: masks.MaskPair | None  # the hand-made masks at these sizes

    @property
    def stem(self) -> str:
        """File-name stem of this pair's outputs: pair9, pair_in4-tar1."""
        return pair_stem(self.key)


def parse_pair(spec: str) -> int | str:
    """`--pairs` item: N (the paper's pair N) or CONTENT:STYLE."""
    if spec.isdigit():
        return int(spec)
    content, sep, style = spec.partition(":")
    if not (sep and content and style):
        raise argparse.ArgumentTypeError(f"a pair is N (the paper's pair N) or CONTENT:STYLE (e.g. in4:tar1), "
                                         f"got {spec!r}")
    return spec


def pair_stem(key: int | str) -> str:
    if isinstance(key, int):
        return f"pair{key}"
    content, _, style = key.partition(":")
    return f"pair_{Path(content).stem}-{Path(style).stem}"


def pair_files(key: int | str, folder: Path) -> PairFiles:
    if isinstance(key, int):
        mask_files = (folder / f"in{key}_mask.png", folder / f"tar{key}_mask.png")
        originals = {name: folder / f"{name}_{key}.png" for name in ORIGINALS}
        return PairFiles(folder / f"in{key}.png", folder / f"tar{key}.png",
                         mask_files if all(p.exists() for p in mask_files) else None,
                         {name: p for name, p in originals.items() if p.exists()})

    def find(name: str) -> Path:
        return folder / f"{name}.png" if (folder / f"{name}.png").exists() else Path(name)

    content, _, style = key.partition(":")
    return PairFiles(find(content), find(style), None, {})


def load_pair(key: int | str, folder: Path, max_side: int | None) -> Pair:
    files = pair_files(key, folder)
    content = reading.load_image(files.content, max_side=max_side)
    style = reading.load_image(files.style, max_side=max_side)
    hand = None
    if files.masks is not None:
        hand = masks.parse_mask_pair(*files.masks, content_shape=content.shape[:2], style_shape=style.shape[:2])
    return Pair(key, files, content, style, hand)


def original(pair: Pair, name: str) -> np.ndarray | None:
    """The original's `name` output ("final", "stage1") resized to the content's size, or None."""
    path = pair.files.originals.get(name)
    return None if path is None else sizing.resize_image(reading.load_image(path), pair.content.shape[:2])


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


# ----------------------------------------------------------------------------- stylise and score


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`--set` items, then `--iterations` for both stages."""
    out = parse_overrides(args.overrides)
    if args.iterations is not None:
        out.update({"stage1.iterations": args.iterations, "stage2.iterations": args.iterations})
    return out


def stylisation_weights(cfg: Config, metric_weights: VGGWeights) -> VGGWeights:
    """The metrics' bundled VGG-16, unless the preset names another backbone."""
    if cfg.backbone == "vgg16":
        return metric_weights
    return jax.device_put(resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback))


def stylise(pair: Pair, mode: str, auto: masks.MaskPair, cfg: Config, weights: VGGWeights,
            max_side: int | None) -> Result:
    """`jaxstyle.stylize` of `pair` with no masks, the automatic ones or the hand-made files."""
    given: tuple[Any, Any] = (None, None)
    if mode == "auto":
        given = (masks.labels_to_color(auto.content, auto.labels), masks.labels_to_color(auto.style, auto.labels))
    elif mode == "hand":
        given = pair.files.masks
    return stylize(pair.content, pair.style, content_mask=given[0], style_mask=given[1], config=cfg,
                   weights=weights, max_side=max_side)


def score(weights: VGGWeights, pair: Pair, image: np.ndarray, regions: masks.MaskPair, auto: masks.MaskPair, *,
          reference: np.ndarray | None = None, triple: bool = True, by_layer: bool = False) -> dict[str, Any]:
    """Scores of `image` `[H, W, 3]` as the result of `pair`.

    Gram distance under the hand-made regions (when the pair has them) and under the
    automatic ones, the matting-Laplacian residual; with `triple` every metric of
    `evaluate_triple` under `regions` (and against `reference`); with `by_layer` the Gram
    distance per style layer under `regions`.
    """
    out: dict[str, Any] = {}
    if pair.hand is not None:
        out["gram_distance_hand_regions"] = float(_gram(weights, image, pair.style, pair.hand.content, pair.hand.style))
    out["gram_distance_auto_regions"] = float(_gram(weights, image, pair.style, auto.content, auto.style))
    out["laplacian_residual"] = float(_residual(pair.content, image))
    # speckles show in the worst windows first: the 99.9th percentile of each window's residual
    out["residual_p999"] = float(np.percentile(np.asarray(_residual_map(pair.content, image)), 99.9))
    if triple:
        out["metrics"] = metrics.evaluate_triple(weights, pair.content, pair.style, image, content_mask=regions.content,
                                                 style_mask=regions.style, reference=reference)
    if by_layer:
        values = np.asarray(_gram_by_layer(weights, image, pair.style, regions.content, regions.style))
        out["gram_by_layer"] = dict(zip(STYLE_LAYERS, np.round(values, 4).tolist()))
    return out


def overlay(image: np.ndarray, stack: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """The photo `[H, W, 3]` with its regions' colours blended in."""
    colours = masks.labels_to_color(stack, labels).astype(np.float32) / 255.0
    return (OVERLAY_ALPHA * colours + (1.0 - OVERLAY_ALPHA) * image).astype(np.float32)


def masks_row(pair: Pair, auto: masks.MaskPair) -> np.ndarray:
    """Content and style with the automatic regions drawn over them, then with the hand-made ones."""
    tiles = [overlay(pair.content, auto.content, auto.labels), overlay(pair.style, auto.style, auto.labels)]
    labels = [f"{pair.key}: auto content", f"auto style ({len(auto.labels)})"]
    if pair.hand is not None:
        tiles += [overlay(pair.content, pair.hand.content, pair.hand.labels),
                  overlay(pair.style, pair.hand.style, pair.hand.labels)]
        labels += ["hand-made content", f"hand-made style ({len(pair.hand.labels)})"]
    return sheets.side_by_side(tiles, height=MASK_SHEET_HEIGHT, labels=labels)


def save_small_png(image: np.ndarray, path: str | Path) -> None:
    """A float `[H, W, 3]` sheet as a 256-colour PNG (a third of the size; fine for masks)."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(pixels).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


# ----------------------------------------------------------------------------- tables


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of `values`, None if any is missing."""
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def modes_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: regions and agreement per pair, then Gram distance, residual and seconds of each
    arm present in every record (Gram under the hand-made regions, or the automatic ones when
    some pair has no hand-made masks)."""
    arms = [m for m in ARMS if results and all(m in r for r in results)]
    hand = all("hand_regions" in r for r in results)
    gram_key, gram_name = (("gram_distance_hand_regions", "gram") if hand
                           else ("gram_distance_auto_regions", "gram (auto regions)"))
    head = "| pair | auto regions | hand regions | agreement |"
    head += "".join(f" {gram_name} {m} | residual {m} | seconds {m} |" for m in arms)
    lines = [head, "|---|---|---|---|" + "---|---|---|" * len(arms)]
    for r in results:
        line = (f"| {r['pair']} | {r['auto_regions']} | {r.get('hand_regions', '-')} | "
                f"{_fmt(r.get('agreement'), '{:.2f}')} |")
        line += "".join(f" {r[m][gram_key]:.4f} | {r[m]['laplacian_residual']:.3g} | "
                        f"{_fmt(r[m].get('seconds'), '{:.0f}')} |" for m in arms)
        lines.append(line)
    if arms:
        lines += ["", "Means: " + ", ".join(
            f"{m}: gram {np.mean([r[m][gram_key] for r in results]):.4f}, "
            f"residual {np.mean([r[m]['laplacian_residual'] for r in results]):.3g}" for m in arms)]
    return "\n".join(lines)


def quality_table(runs: dict[str, list[dict[str, Any]]], mode: str) -> str:
    """Markdown, one row per pair of the first run: iterations, seconds, edge SSIM, residual, its
    99.9th percentile, region Gram distance and Lab W2 of the original's final output and of each
    run's `mode` arm, LPIPS of each to the original; then the means, and the worst pair's value of
    each column (the lowest edge SSIM, the highest of the others)."""
    labels = list(runs)
    names = " / ".join(labels)
    head = (["pair", "size", f"iterations {names}", f"seconds {names}"]
            + [f"{title} orig / {names}" for _, title, _ in QUALITY_METRICS] + [f"LPIPS to orig {names}"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_pair = {label: {r["pair"]: r for r in records} for label, records in runs.items()}
    columns: dict[str, list[list[float | None]]] = {key: [] for key in [k for k, _, _ in QUALITY_METRICS] + ["lpips"]}
    seconds: list[list[float | None]] = []
    for record in runs[labels[0]]:
        arms = []
        for label in labels:
            other = by_pair[label].get(record["pair"])
            if other is None or mode not in other:
                raise SystemExit(f"run {label!r} has no {mode!r} result for pair {record['pair']}")
            arms.append(other[mode])
        its = " / ".join(" + ".join(str(v) for v in arm["iterations"].values()) if "iterations" in arm else "-"
                         for arm in arms)
        secs = [arm.get("seconds") for arm in arms]
        seconds.append(secs)
        cells = [str(record["pair"]), "x".join(map(str, record["size"])), its,
                 " / ".join(_fmt(s, "{:.0f}") for s in secs)]
        for key, _, fmt in QUALITY_METRICS:
            values = [record.get("original", {}).get(key)] + [arm["metrics"].get(key, arm.get(key)) for arm in arms]
            columns[key].append(values)
            cells.append(" / ".join(_fmt(v, fmt) for v in values))
        lp = [arm["metrics"].get("lpips") for arm in arms]
        columns["lpips"].append(lp)
        cells.append(" / ".join(_fmt(v, "{:.3f}") for v in lp))
        lines.append("| " + " | ".join(cells) + " |")

    def mean(values: list[float | None], key: str) -> float | None:
        return _mean(values)

    def worst(values: list[float | None], key: str) -> float | None:
        pick = min if key in HIGHER_IS_BETTER else max
        return None if any(v is None for v in values) else pick(values)

    def summary(label: str, reduce: Callable[[list[float | None], str], float | None], emphasis: str) -> str:
        """The row of `reduce` over the pairs, column by column (one value per run in each)."""
        def cell(rows: list[list[float | None]], key: str, fmt: str) -> str:
            return " / ".join(_fmt(reduce([row[i] for row in rows], key), fmt) for i in range(len(rows[0])))

        cells = [label, "", "", cell(seconds, "seconds", "{:.0f}")]
        cells += [cell(columns[key], key, f"{emphasis}{fmt}{emphasis}") for key, _, fmt in QUALITY_METRICS]
        cells.append(cell(columns["lpips"], "lpips", "{:.3f}"))
        return "| " + " | ".join(cells) + " |"

    lines += [summary("mean", mean, "**"), summary("worst", worst, "")]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- subcommands


def cmd_run(args: argparse.Namespace) -> int:
    """Stylise and score pairs with each mode; see the module docstring."""
    folder = Path(args.examples)
    modes = list(dict.fromkeys(args.modes))
    weights = jax.device_put(resolve_weights("vgg16"))
    overrides = config_overrides(args)  # checked even with --masks-only
    cfg = None if args.masks_only else load_config(args.config, overrides)
    style_weights = None if cfg is None else stylisation_weights(cfg, weights)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    results, sheet_rows = [], []
    for key in selected_pairs(args):
        pair = load_pair(key, folder, args.max_side)
        start = time.perf_counter()
        auto = auto_masks(weights, pair.content, pair.style, seed=args.seed, max_regions=args.max_regions)
        record: dict[str, Any] = {"pair": key, "size": list(pair.content.shape[:2]),
                                  "style_size": list(pair.style.shape[:2]), "auto_labels": list(auto.labels),
                                  "auto_regions": len(auto.labels)}
        if pair.hand is not None:
            record.update(hand_labels=list(pair.hand.labels), hand_regions=len(pair.hand.labels),
                          agreement=agreement(auto, pair.hand))
        record.update(auto_seconds=time.perf_counter() - start, auto_notes=list(auto.notes))
        print(f"pair {key}: {len(auto.labels)} automatic region(s)"
              + (f" vs {len(pair.hand.labels)} hand-made, agreement {record['agreement']:.2f}" if pair.hand else "")
              + f" ({record['auto_seconds']:.1f} s)", file=sys.stderr)
        if args.sheet:
            sheet_rows.append(masks_row(pair, auto))
        if cfg is not None:
            regions = pair.hand or auto
            reference = original(pair, "final")
            if reference is not None:
                record["original"] = metrics.evaluate_triple(weights, pair.content, pair.style, reference,
                                                             content_mask=regions.content, style_mask=regions.style)
            for mode in modes:
                record_arm(record, pair, mode, auto, reference, cfg, weights, style_weights, args, out_dir)
        results.append(record)

    print(modes_table(results))
    if args.json:
        settings = {"max_side": args.max_side, "working_side": args.working_side, "seed": args.seed, "max_regions": args.max_regions,
                    "config": None if cfg is None else cfg.to_dict(), "pairs": [r["pair"] for r in results],
                    "modes": modes}
        common.write_json(args.json, {"settings": settings, "results": results})
    if args.sheet:
        save_small_png(sheets.stack_rows(sheet_rows), args.sheet)
    return 0


def record_arm(record: dict[str, Any], pair: Pair, mode: str, auto: masks.MaskPair, reference: np.ndarray | None,
               cfg: Config, weights: VGGWeights, style_weights: VGGWeights, args: argparse.Namespace,
               out_dir: Path | None) -> None:
    """Stylise or load `pair`'s `mode` arm, score it into `record[mode]`, save it to `out_dir`."""
    if (mode == "hand" and pair.hand is None) or (mode in ORIGINALS and mode not in pair.files.originals):
        print(f"  {mode}: pair {pair.key} has no {'hand-made masks' if mode == 'hand' else mode + ' output'}, "
              "skipped", file=sys.stderr)
        return
    arm: dict[str, Any] = {}
    prefilter = None
    if mode in STYLISED:
        result = stylise(pair, mode, auto, cfg, style_weights, getattr(args, "working_side", None) or args.max_side)
        image = result.image  # at --max-side: solved at --working-side and carried there
        prefilter = result.stages[list(result.stages)[-1]]
        arm = {"seconds": result.seconds.get("total"), "stage_seconds": result.seconds, "status": result.status,
               "iterations": {stage: len(losses) for stage, losses in result.history.items()}}
    else:
        image = pair.content if mode == "content" else original(pair, mode)
    regions = auto if mode == "auto" else (pair.hand or auto)
    arm.update(score(weights, pair, image, regions, auto, reference=None if mode == "final" else reference,
                     by_layer=args.by_layer))
    record[mode] = arm
    if out_dir is not None:
        writing.save_image(image, out_dir / f"{pair.stem}_{mode}.png", overwrite=True)
        if prefilter is not None:  # the last stage before the final filter, for `finish`
            np.save(out_dir / f"{pair.stem}_{mode}_prefilter.npy", prefilter)
    gram = arm.get("gram_distance_hand_regions", arm["gram_distance_auto_regions"])
    line = (f"  {mode:7s} gram({'hand' if pair.hand else 'auto'} regions) {gram:.4f}  "
            f"laplacian residual {arm['laplacian_residual']:.3g}")
    if "seconds" in arm:
        line += f"  ({arm['seconds']:.0f} s)"
    if "gram_by_layer" in arm:
        line += "  by layer " + " ".join(f"{v:.4f}" for v in arm["gram_by_layer"].values())
    print(line, file=sys.stderr)


def cmd_table(args: argparse.Namespace) -> int:
    """Print the tables of `run --json` files."""
    runs = {label: json.loads(Path(path).read_text())["results"]
            for label, path in parse_labelled(args.run, "--run", "LABEL=FILE")}
    if args.layout == "modes":
        print("\n\n".join((f"{label}:\n\n" if len(runs) > 1 else "") + modes_table(results)
                          for label, results in runs.items()))
    else:
        print(quality_table(runs, args.mode))
    return 0


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME:KEY=VALUE,...` as (NAME, {"smooth.KEY" or "SECTION.KEY": value}); 'NAME:' alone
    changes nothing."""
    name, _, body = text.partition(":")
    try:
        changes = parse_overrides([item for item in body.split(",") if item])
    except JaxstyleError:
        raise SystemExit(f"--variant expects NAME:KEY=VALUE,..., got {text!r}") from None
    return name, {key if "." in key else f"smooth.{key}": value for key, value in changes.items()}


def cmd_finish(args: argparse.Namespace) -> int:
    """Apply and score other final filters on saved pre-filter images."""
    folder, runs = Path(args.examples), Path(args.runs)
    variants = {name: load_config(args.config, changes) for name, changes in map(parse_variant, args.variant)}
    weights = jax.device_put(resolve_weights("vgg16"))
    scores: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for key in selected_pairs(args):
        pair = load_pair(key, folder, args.max_side)
        regions = pair.hand or auto_masks(weights, pair.content, pair.style, seed=args.seed,
                                          max_regions=args.max_regions)
        reference = original(pair, "final")
        stage = np.load(runs / f"{pair.stem}_{args.mode}_prefilter.npy")
        content = pair.content  # the working size's content, as jaxstyle.stylize resized it
        if args.working_side:
            content = sizing.resize_image(content, sizing.fit_max_side(*content.shape[:2], args.working_side))
        for name, cfg in variants.items():
            image = _finish((), (stage, content), config=cfg)
            if args.working_side:
                image = _upsample((), (pair.content, content, image, None), config=cfg)
            image = np.asarray(image)
            record = metrics.evaluate_triple(weights, pair.content, pair.style, image, content_mask=regions.content,
                                             style_mask=regions.style, reference=reference)
            scores[name].append({"pair": key, **record})
            print(f"pair {key!s:>2} {name:20s} " + "  ".join(f"{k} {_fmt(record.get(k), '{:.5g}')}"
                                                             for k in FINISH_KEYS), flush=True)
    print("\n| variant | " + " | ".join(FINISH_KEYS) + " |\n|---|" + "---:|" * len(FINISH_KEYS))
    for name, rows in scores.items():
        print(f"| {name} | " + " | ".join(_fmt(_mean([r.get(k) for r in rows]), "{:.5g}") for k in FINISH_KEYS) + " |")
    if args.json:
        common.write_json(args.json, {"runs": str(runs), "mode": args.mode, "variants": {
            name: {"smooth": dataclasses.asdict(cfg.smooth), "upsample": dataclasses.asdict(cfg.upsample)}
            for name, cfg in variants.items()}, "working_side": args.working_side, "scores": scores})
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Sweep `loss.region_photo_scale` on pairs with several automatic regions."""
    folder = Path(args.examples)
    weights = jax.device_put(resolve_weights("vgg16"))
    base = config_overrides(args)
    style_weights = stylisation_weights(load_config(args.config, base), weights)
    results = []
    for key in selected_pairs(args):
        pair = load_pair(key, folder, args.max_side)
        auto = auto_masks(weights, pair.content, pair.style, seed=args.seed, max_regions=args.max_regions)
        if len(auto.labels) < 2:
            print(f"{key}: one automatic region, skipped", file=sys.stderr)
            continue
        record: dict[str, Any] = {"pair": key, "regions": len(auto.labels), "runs": {}}
        for name, mode, scale in [("none", "none", 1.0)] + [(f"auto x{s:g}", "auto", s) for s in args.scales]:
            cfg = load_config(args.config, {**base, "loss.region_photo_scale": scale})
            image = stylise(pair, mode, auto, cfg, style_weights, args.max_side).image
            run = {"scale": scale, **score(weights, pair, image, auto, auto, triple=False)}
            record["runs"][name] = run
            # Each scale is a new static setting, so nothing compiled is reused: drop it, or the
            # process runs out of memory for compiled code over a long sweep.
            jax.clear_caches()
            print(f"{key} {name:8s} residual {run['laplacian_residual']:.3g}  "
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
        print(f"| {n} | {mean[n]['laplacian_residual']:.3g} | {ratio:.3f} | "
              f"{mean[n]['gram_distance_auto_regions']:.4f} |")
    chosen = next((s for s in sorted(args.scales)
                   if mean[f"auto x{s:g}"]["laplacian_residual"] <= mean["none"]["laplacian_residual"]), None)
    print(f"smallest scale with mean residual <= no masks': {chosen}")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("command", "default_pairs")}
        common.write_json(args.json, {"settings": settings, "results": results, "mean": mean, "chosen": chosen})
    return 0


def cmd_sheet(args: argparse.Namespace) -> int:
    """Draw the examples contact sheet."""
    runs = [(label, Path(path)) for label, path in parse_labelled(args.run, "--run", "LABEL=FOLDER")]
    folder = Path(args.examples)
    rows = []
    for key in selected_pairs(args):
        files = pair_files(key, folder)
        tiles = [reading.load_image(files.content), reading.load_image(files.style)]
        labels = [f"{key}: content", "style"]
        if "final" in files.originals:
            tiles.append(reading.load_image(files.originals["final"]))
            labels.append("original (paper code)")
        for label, path in runs:
            tiles.append(reading.load_image(path / f"{pair_stem(key)}_{args.mode}.png"))
            labels.append(label)
        rows.append(sheets.side_by_side(tiles, height=args.height, labels=labels))
    # JPEG, not a 256-colour PNG: palette quantisation bands skies and petals, which would
    # look like the colour blotches this sheet is meant to show the absence of.
    writing.save_image(sheets.stack_rows(rows), args.out, overwrite=True, quality=90)
    print(f"wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- arguments


def parse_labelled(items: Sequence[str], option: str, form: str) -> list[tuple[str, str]]:
    """`LABEL=VALUE` items as (label, value) pairs."""
    out = []
    for item in items:
        label, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{option} expects {form}, got {item!r}")
        out.append((label, value))
    return out


def selected_pairs(args: argparse.Namespace) -> list[int | str]:
    if getattr(args, "recombined", False):
        return list(dict.fromkeys([*(args.pairs or []), *RECOMBINED]))
    if args.pairs:
        return list(dict.fromkeys(args.pairs))
    if args.default_pairs is None:
        raise SystemExit(f"{args.command}: name the pairs (--pair CONTENT:STYLE or --pairs N ...)")
    return list(args.default_pairs)


def add_pair_args(parser: argparse.ArgumentParser, *, default: Sequence[int] | None, sizes: bool = True) -> None:
    parser.add_argument("--examples", default=str(DEFAULT_EXAMPLES),
                        help="folder with inN.png, tarN.png, inN_mask.png, tarN_mask.png, final_N.png, stage1_N.png "
                             "(default: ../shared/dpst-examples beside this checkout)")
    parser.add_argument("--recombined", action="store_true",
                        help=f"the {len(RECOMBINED)} recombined pairs of the development set (with any --pairs)")
    parser.add_argument("--pairs", type=parse_pair, nargs="+", action="extend", metavar="PAIR",
                        help="pairs: N (the paper's pair N) or CONTENT:STYLE"
                             + (f" (default: {' '.join(map(str, default))})" if default else ""))
    parser.add_argument("--pair", type=parse_pair, dest="pairs", action="append", metavar="PAIR",
                        help="one more pair (repeatable), e.g. --pair in4:tar1")
    parser.set_defaults(default_pairs=None if default is None else list(default))
    if sizes:
        parser.add_argument("--max-side", type=int, default=256, help="longer side of both photos (px)")
        parser.add_argument("--working-side", type=int, default=None,
                            help="solve at this longer side and deliver at --max-side through the upsampling "
                                 "stage (default: solve at --max-side)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the automatic masks")
        parser.add_argument("--max-regions", type=int, default=6, help="upper bound on automatic regions")


def add_config_args(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--config", default=default, help="stylisation preset or .toml file")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per stage (overrides the preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting (e.g. loss.style_weight=1000); repeatable")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary)

    run = command("run", "Stylise and score pairs with each mode (none, auto, hand masks), or score the "
                         "original's outputs (final, stage1) or the content photo.")
    add_pair_args(run, default=PAIRS)
    add_config_args(run, "default")
    run.add_argument("--modes", nargs="+", choices=ARMS, default=list(STYLISED),
                     help="arms: none/auto/hand stylise with those masks; final/stage1 score the original's "
                          "outputs, content the content photo (default: auto none hand)")
    run.add_argument("--masks-only", action="store_true", help="masks, agreement and sheet; no stylisation")
    run.add_argument("--by-layer", action="store_true", help="also the Gram distance per style layer")
    run.add_argument("--out", default=None, help="folder for the images and pre-filter arrays")
    run.add_argument("--json", default=None, metavar="PATH", help="write every number here")
    run.add_argument("--sheet", default=None, metavar="PNG", help="write the masks contact sheet here")

    table = command("table", "Tables of `run --json` files: per-pair quality against the original, or per mode.")
    table.add_argument("--run", action="append", required=True, metavar="LABEL=FILE", help="repeatable")
    table.add_argument("--mode", default="hand", choices=ARMS, help="which arm the quality layout shows")
    table.add_argument("--layout", default="quality", choices=("quality", "modes"),
                       help="quality: per pair against the original; modes: regions, Gram and residual per arm")

    finish = command("finish", "Score other final filters on a `run --out` folder's pre-filter images.")
    add_pair_args(finish, default=PAIRS)
    finish.add_argument("--runs", required=True, help="a `run --out` folder")
    finish.add_argument("--mode", default="hand", choices=STYLISED)
    finish.add_argument("--config", default="default", help="preset whose [smooth] the variants change")
    finish.add_argument("--variant", action="append", required=True, metavar="NAME:KEY=VALUE,...",
                        help="a named change of the [smooth] settings; 'NAME:' alone keeps them")
    finish.add_argument("--json", default=None, metavar="PATH")

    sweep = command("sweep", "Choose loss.region_photo_scale on pairs with several automatic regions.")
    add_pair_args(sweep, default=None)
    add_config_args(sweep, "fast")
    sweep.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 4.0, 6.0, 8.0],
                       help="values of loss.region_photo_scale for the automatic masks (default: 1 2 4 6 8)")
    sweep.add_argument("--json", default=None, metavar="PATH", help="write every number here")

    sheet = command("sheet", "Contact sheet: content | style | original | our outputs (one column per run).")
    add_pair_args(sheet, default=PAIRS, sizes=False)
    sheet.add_argument("--run", action="append", required=True, metavar="LABEL=FOLDER",
                       help="a column of outputs, FOLDER/PAIR_MODE.png (repeatable)")
    sheet.add_argument("--mode", default="hand", help="output suffix: PAIR_MODE.png")
    sheet.add_argument("--height", type=int, default=128, help="tile height in px")
    sheet.add_argument("--out", required=True, help="image to write (.jpg keeps the sheet small)")
    return parser.parse_args(argv)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "table": cmd_table, "finish": cmd_finish, "sweep": cmd_sweep, "sheet": cmd_sheet}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except JaxstyleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
