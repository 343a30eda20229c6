"""Evaluate stylised photos from files: one (content, style, output) triple, a manifest or a
folder of them; contact sheets with the numbers; loss curves from a `--log` file.

Conventions: images are float32 `[H, W, 3]` RGB in [0, 1] (numpy, on the host); masks are
files or arrays as `jaxstyle.masks.parse_mask_pair` takes them. The metrics are those of
`jaxstyle.metrics.evaluate_triple` (keys `METRIC_KEYS`, plus `REFERENCE_KEYS` with a
reference), returned as Python floats.

Sizes. The output's size is the working size (capped by `max_side`, if given): the content,
the content mask and the reference are resized to it (Lanczos for images, nearest
neighbour for masks), which requires the same framing (aspect ratio within
`masks.RESIZE_TOLERANCE`, or one scale within a pixel); the style keeps its own size,
capped by `max_side`, and the style mask is fitted to the style.

PSNR of identical images is +inf (a float). JSON has no infinity, so `to_json` writes
non-finite numbers as the strings "inf", "-inf" and "nan".

Many items (`evaluate_manifest`):
  - a CSV file with a header, or a JSON-lines file (`.jsonl`, `.ndjson`, `.json`, or text
    starting with '{'), one item per row, fields `content`, `style`, `output` (required),
    `content_mask`, `style_mask`, `reference`, `name` (optional); paths relative to the
    manifest's folder;
  - or a folder whose image files are named `NAME_ROLE.EXT`, ROLE one of `content`,
    `style`, `output` (required), `content_mask`, `style_mask`, `reference` (optional),
    EXT any image suffix; files not following the scheme are ignored.
A row that cannot be evaluated (a missing field or file, a mask that does not fit) is
reported in its item's `error`; the other rows still run.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle import reading, sheets, sizing
from jaxstyle.errors import JaxstyleError, did_you_mean
from jaxstyle.manifest import PROBLEM, read_rows
from jaxstyle.masks import RESIZE_TOLERANCE, parse_mask_pair
from jaxstyle.metrics import METRIC_KEYS, REFERENCE_KEYS, evaluate_triple
from jaxstyle.vgg import VGGWeights

ImageInput = str | os.PathLike | np.ndarray

REQUIRED_FIELDS = ("content", "style", "output")
OPTIONAL_FIELDS = ("content_mask", "style_mask", "reference")
PATH_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
MANIFEST_FIELDS = PATH_FIELDS + ("name",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")
# Longest role first, so that NAME_content_mask is not read as NAME_content + "_mask".
_FOLDER_NAME = re.compile(r"^(?P<name>.+)_(?P<role>content_mask|style_mask|content|style|output|reference)$")

# What each number measures (the table's last column).
METRIC_DESCRIPTIONS: dict[str, str] = {
    "ssim": "structure kept: luma SSIM of output vs content (1 = same)",
    "edge_ssim": "edges kept: SSIM of Sobel edge maps, output vs content (1 = same)",
    "laplacian_residual": "photorealism: matting-Laplacian energy per pixel (0 = locally affine)",
    "gram_distance": "style match: relative Gram distance to the style, per region (0 = same)",
    "lab_w2": "colour match: Lab Gaussian W2 distance to the style, per region (0 = same)",
    "psnr": "vs reference: PSNR in dB (inf = identical)",
    "ssim_reference": "vs reference: RGB SSIM (1 = identical)",
    "lpips": "vs reference: LPIPS, VGG-16 (0 = identical)",
}
# Contact-sheet captions: which numbers go under which image, and their short names.
_SHEET_CAPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "content": (("ssim", "ssim"), ("edge_ssim", "edge")),
    "style": (("gram_distance", "gram"), ("lab_w2", "w2")),
    "output": (("laplacian_residual", "lap"),),
    "reference": (("psnr", "psnr"), ("ssim_reference", "ssim"), ("lpips", "lpips")),
}
SHEET_HEIGHT = 160
_SHEET_LOAD_FACTOR = 4  # sheet images are loaded at most this many times the row height
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
LOG_TERMS = ("loss", "content", "style", "tv", "photo")
# `metrics.evaluate_triple`'s peak memory, in float32 RGB copies of the output (12 bytes a pixel):
# the process grew by 2.05-2.15 KB an output pixel between 512 and 1536 px (`jaxstyle evaluate
# --max-side`, 2-core CPU); rounded up
EVAL_COPIES = 200


# ----------------------------------------------------------------------------- one triple


def evaluate_files(content: ImageInput, style: ImageInput, output: ImageInput, *,
                   content_mask: ImageInput | None = None, style_mask: ImageInput | None = None,
                   reference: ImageInput | None = None, max_side: int | None = None,
                   weights: VGGWeights | str | None = None) -> dict[str, float]:
    """Metrics of one (content, style, output) triple given as files (or arrays).

    The output's size (capped by `max_side`) is the working size: content, content mask and
    reference are resized to it; the style is capped by `max_side` (module docstring).
    `weights`: a `VGGWeights`, a backbone name or weights path for `resolve_weights`, or None
    (VGG-16). Returns `{key: float}` with `METRIC_KEYS`, and `REFERENCE_KEYS` when a
    reference is given, exactly as `jaxstyle.metrics.evaluate_triple`.
    """
    check_evaluation_memory(output, style, max_side=max_side)
    out = _as_image(output, max_side)
    hw = out.shape[:2]
    content_image = _fit_to(_as_image(content, None), hw, "content")
    style_image = _as_image(style, max_side)
    masks: dict[str, np.ndarray] = {}
    if content_mask is not None or style_mask is not None:
        pair = parse_mask_pair(content_mask, style_mask, content_shape=hw, style_shape=style_image.shape[:2])
        masks = {"content_mask": pair.content, "style_mask": pair.style}
    reference_image = None if reference is None else _fit_to(_as_image(reference, None), hw, "reference")
    return evaluate_triple(_weights(weights), content_image, style_image, out, reference=reference_image,
                           **masks)


def check_evaluation_memory(output: ImageInput, style: ImageInput, *, max_side: int | None = None) -> None:
    """Refuse, before any work, an evaluation whose size (the output's and the style's, capped by
    `max_side`) would not fit in the memory available."""
    def size(image: ImageInput) -> tuple[int, int]:
        h, w = reading.image_size(image) or (1, 1)  # no two sides: the loader says what it expected
        return sizing.fit_max_side(h, w, max_side) if max_side else (h, w)

    out, style_hw = size(output), size(style)
    sizing.check_memory(out, copies=EVAL_COPIES, extra_pixels=style_hw[0] * style_hw[1], option="max-side",
                        what=f"evaluating {output if isinstance(output, (str, os.PathLike)) else 'the output'}")


def _weights(weights: VGGWeights | str | None) -> VGGWeights:
    if isinstance(weights, VGGWeights):
        return weights
    from jaxstyle.weights import resolve_weights

    return resolve_weights(weights or "vgg16")


def _as_image(image: ImageInput, max_side: int | None) -> np.ndarray:
    """A file or array as float32 `[H, W, 3]`, the longer side capped at `max_side`."""
    if isinstance(image, (str, os.PathLike)):
        return reading.load_image(image, max_side=max_side)
    array = reading.to_numpy_image(image)
    if max_side is not None and max(array.shape[:2]) > max_side:
        array = sizing.resize_image(array, sizing.fit_max_side(*array.shape[:2], max_side))
    return array


def _fit_to(image: np.ndarray, hw: tuple[int, int], what: str) -> np.ndarray:
    """`image` resized to `hw` (the output's size); an error when the framing differs."""
    h, w = image.shape[:2]
    th, tw = hw
    if (h, w) == (th, tw):
        return image
    same_aspect = abs((w / h) / (tw / th) - 1.0) <= RESIZE_TOLERANCE
    lo, hi = max((th - 1) / h, (tw - 1) / w), min((th + 1) / h, (tw + 1) / w)
    if not (same_aspect or lo <= hi):
        raise JaxstyleError(f"{what} is {w}x{h} but the output is {tw}x{th}: their aspect ratios differ "
                            f"({w / h:.3f} vs {tw / th:.3f}), so they do not show the same view; pass the "
                            f"{what} the output was made from (or crop both the same way)")
    return sizing.resize_image(image, hw)


# ----------------------------------------------------------------------------- many triples


def evaluate_manifest(path: str | os.PathLike, *, max_side: int | None = None,
                      weights: VGGWeights | str | None = None,
                      on_item: Callable[[int, int, dict[str, Any]], None] | None = None,
                      ) -> list[dict[str, Any]]:
    """Evaluate every item of a CSV / JSON-lines manifest or a folder (module docstring).

    Returns one dict per item, in order: `name`, `line` (manifest line, None for a folder),
    the resolved paths (`content`, `style`, `output`, `content_mask`, `style_mask`,
    `reference`; None when absent), `metrics` (`{key: float}`, None on failure) and `error`
    (why the item failed, else None). `on_item(index, total, item)` is called after each.
    Raises `JaxstyleError` only when the manifest or folder itself is unusable.
    """
    items = read_items(path)
    vgg = _weights(weights)
    results = []
    for index, item in enumerate(items):
        if item["error"] is None:
            paths = {k: item[k] for k in OPTIONAL_FIELDS}
            try:
                item["metrics"] = evaluate_files(item["content"], item["style"], item["output"],
                                                 max_side=max_side, weights=vgg, **paths)
            except (JaxstyleError, OSError) as e:  # this row is bad; the others still run
                item["error"] = str(e)
        results.append(item)
        if on_item is not None:
            on_item(index, len(items), item)
    return results


def read_items(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The items of a manifest file or a folder, unevaluated (`metrics` None).

    A row with a problem of its own (missing or unknown field, a non-string path) has it in
    `error`; a manifest that cannot be read at all raises `JaxstyleError`.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        items = _folder_items(path)
    elif path.is_file():
        items = _manifest_items(path)
    else:
        raise JaxstyleError(f"manifest {path} does not exist; pass a CSV or JSON-lines file, or a "
                            "folder of NAME_content/NAME_style/NAME_output images")
    if not items:
        raise JaxstyleError(_no_items_message(path))
    return items


def _no_items_message(path: Path) -> str:
    if path.is_dir():
        return (f"folder {path} has no images named NAME_content.*, NAME_style.*, NAME_output.* "
                "(optionally NAME_content_mask.*, NAME_style_mask.*, NAME_reference.*); rename "
                "them so, or pass a manifest file")
    return (f"manifest {path} has no items; add one line per item (CSV header: "
            f"{','.join(MANIFEST_FIELDS)})")


def _new_item(name: str, line: int | None) -> dict[str, Any]:
    return {"name": name, "line": line, **{k: None for k in PATH_FIELDS}, "metrics": None, "error": None}


def _manifest_items(path: Path) -> list[dict[str, Any]]:
    rows = read_rows(path, fields=MANIFEST_FIELDS, required=REQUIRED_FIELDS,
                     example='{"content": "c.jpg", "style": "s.jpg", "output": "o.png"}')
    return [_row_item(line, row, path.parent) for line, row in rows]


def _row_item(line: int, row: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """One manifest row as an item; its problem, if any, in `error` (prefixed with the line)."""
    name, output = row.get("name"), row.get("output")
    if not (isinstance(name, str) and name):
        name = Path(output).stem if isinstance(output, str) and output else f"line {line}"
    item = _new_item(name, line)

    def problem(message: str) -> dict[str, Any]:
        item["error"] = f"line {line}: {message}"
        return item

    if PROBLEM in row:
        return problem(row[PROBLEM])
    unknown = [k for k in row if k not in MANIFEST_FIELDS]
    if unknown:
        return problem(f"unknown field {unknown[0]!r}{did_you_mean(unknown[0], MANIFEST_FIELDS)}; "
                       f"fields are {', '.join(MANIFEST_FIELDS)}")
    if row.get("name") not in (None, "") and not isinstance(row.get("name"), str):
        return problem(f"name must be a string, got {row['name']!r}")
    for field in PATH_FIELDS:
        value = row.get(field)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            return problem(f"{field} must be a path (a string), got {value!r}")
        p = Path(value).expanduser()
        item[field] = str(p if p.is_absolute() else base / p)
    missing = [field for field in REQUIRED_FIELDS if item[field] is None]
    if missing:
        return problem(f"no {', '.join(missing)} path")
    if (item["content_mask"] is None) != (item["style_mask"] is None):
        return problem("give both content_mask and style_mask, or neither")
    return item


def _folder_items(folder: Path) -> list[dict[str, Any]]:
    found: dict[str, dict[str, list[Path]]] = {}
    for p in sorted(folder.iterdir()):
        match = _FOLDER_NAME.match(p.stem)
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and match:
            found.setdefault(match["name"], {}).setdefault(match["role"], []).append(p)
    items = []
    for name, roles in sorted(found.items()):
        item = _new_item(name, None)
        problems = []
        for role, paths in roles.items():
            if len(paths) > 1:
                problems.append(f"several {name}_{role} files ({', '.join(p.name for p in paths)}): keep one")
            item[role] = str(paths[0])
        missing = [f"{name}_{role}.*" for role in REQUIRED_FIELDS if role not in roles]
        if missing:
            problems.append(f"no {', '.join(missing)} file in {folder}")
        if ("content_mask" in roles) != ("style_mask" in roles):
            problems.append(f"give both {name}_content_mask.* and {name}_style_mask.*, or neither")
        item["error"] = "; ".join(problems) or None
        items.append(item)
    return items


# ----------------------------------------------------------------------------- reporting


def format_value(value: float) -> str:
    """A metric with 3 significant digits ('0.912', '1.23e-05', 'inf')."""
    return f"{value:.3g}"


def metrics_table(metrics: Mapping[str, float]) -> str:
    """One triple's metrics as aligned lines: key, value, what it measures."""
    width = max(len(k) for k in metrics)
    return "\n".join(f"{key:<{width}}  {format_value(value):>9}  {METRIC_DESCRIPTIONS.get(key, '')}"
                     for key, value in metrics.items())


def items_table(items: Sequence[Mapping[str, Any]]) -> str:
    """Many items as a table: one line per item (name and each metric, '-' when absent);
    a failed item shows its error instead of numbers."""
    keys = METRIC_KEYS + (REFERENCE_KEYS if any((i["metrics"] or {}).keys() & set(REFERENCE_KEYS)
                                                for i in items) else ())
    name_width = max([4] + [len(str(i["name"])) for i in items])
    widths = [max(len(k), 9) for k in keys]
    lines = [f"{'name':<{name_width}}  " + "  ".join(f"{k:>{w}}" for k, w in zip(keys, widths))]
    for item in items:
        if item["metrics"] is None:
            lines.append(f"{item['name']:<{name_width}}  error: {item['error']}")
            continue
        cells = [format_value(item["metrics"][k]) if k in item["metrics"] else "-" for k in keys]
        lines.append(f"{item['name']:<{name_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def to_json(data: Any) -> str:
    """Strict JSON (no NaN/Infinity tokens): non-finite floats become "inf", "-inf", "nan"."""
    return json.dumps(_json_safe(data), indent=2, allow_nan=False)


def sheet_captions(metrics: Mapping[str, float], name: str | None = None) -> dict[str, str]:
    """Caption under each image of a contact-sheet row: `{role: 'ssim 0.912 edge 0.871'}`.

    Each number goes under the image it compares the output with (structure under the
    content, style under the style, photorealism under the output, similarity under the
    reference); the output's caption ends with `name` when given.
    """
    captions = {role: " ".join(f"{short} {format_value(metrics[key])}" for key, short in pairs if key in metrics)
                for role, pairs in _SHEET_CAPTIONS.items()}
    if name:
        captions["output"] = f"{captions['output']} ({name})".strip()
    return captions


def contact_sheet(rows: Sequence[Mapping[str, Any]], metrics: Sequence[Mapping[str, float] | None], *,
                  height: int = SHEET_HEIGHT, gap: int = 4) -> np.ndarray:
    """Contact sheet: per item a row content | style | output | reference, numbers under each.

    Args:
      rows: per item a mapping with `content`, `style`, `output` and optionally `reference`
        (paths or `[H, W, 3]` arrays) and `name`; e.g. `evaluate_manifest`'s items.
      metrics: per item its metrics (`evaluate_files`' dict); items with None (failed) are skipped.
      height: each image's height in the sheet, pixels.
    Returns float32 `[sum of row heights + gaps, widest row, 3]`; rows without a reference
    are narrower (padded with white by `sheets.stack_rows`).
    """
    if len(rows) != len(metrics):
        raise JaxstyleError(f"contact_sheet got {len(rows)} rows but {len(metrics)} metric dicts; give one per row")
    strips = []
    for row, values in zip(rows, metrics):
        if values is None:
            continue
        roles = [r for r in ("content", "style", "output", "reference") if row.get(r) is not None]
        captions = sheet_captions(values, row.get("name"))
        images = [_as_image(row[r], height * _SHEET_LOAD_FACTOR) for r in roles]
        strips.append(sheets.side_by_side(images, height=height, gap=gap, labels=[captions[r] for r in roles]))
    if not strips:
        raise JaxstyleError("no evaluated items to put on a contact sheet (every item failed)")
    return sheets.stack_rows(strips, gap=gap)


# ----------------------------------------------------------------------------- loss curves


def read_log(log_path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """A `jaxstyle transfer --log` JSON-lines file as `{stage: {"iteration": [n], term: [n]}}`.

    Terms are those of `LOG_TERMS` present in the file (loss, content, style, tv, photo),
    stages in the order they first appear.
    """
    path = Path(log_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JaxstyleError(f"log {path}: no such file; write one with 'jaxstyle transfer --log FILE'") from None
    except (OSError, UnicodeDecodeError) as e:
        raise JaxstyleError(f"cannot read log {path}: {e}") from None
    records: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise JaxstyleError(f"log {path}, line {number}: not valid JSON ({e.msg}); pass the file "
                                "written by 'jaxstyle transfer --log'") from None
        if not isinstance(record, dict) or "iteration" not in record or "loss" not in record:
            raise JaxstyleError(f"log {path}, line {number}: expected an object with 'stage', 'iteration' "
                                "and 'loss'; pass the file written by 'jaxstyle transfer --log'")
        records.setdefault(str(record.get("stage", "")), []).append(record)
    if not records:
        raise JaxstyleError(f"log {path} is empty; was the run stopped before its first report?")
    curves = {}
    for stage, rs in records.items():
        terms = [t for t in LOG_TERMS if all(t in r for r in rs)]
        curves[stage] = {"iteration": np.array([r["iteration"] for r in rs], np.int64),
                         **{t: np.array([float(r[t]) for r in rs], np.float64) for t in terms}}
    return curves


def plot_log(log_path: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Plot the loss and its terms per iteration, one panel per stage (log scale); returns the path.

    Needs matplotlib, an optional extra: `pip install jaxstyle[plot]`. Values <= 0 (an
    unused term) are left out of the log-scale curves.
    """
    out = Path(out_png)
    if out.suffix.lower() not in PLOT_SUFFIXES:
        raise JaxstyleError(f"plot file {out} must end in {', '.join(PLOT_SUFFIXES)}")
    if out.exists() and out.resolve() == Path(log_path).resolve():
        raise JaxstyleError(f"refusing to write the plot over the log {log_path}: choose another file")
    if not out.parent.is_dir():
        raise JaxstyleError(f"the folder of {out} does not exist: create it first")
    curves = read_log(log_path)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise JaxstyleError("plotting needs matplotlib, an optional extra: pip install 'jaxstyle[plot]' "
                            "(or pip install matplotlib)") from None
    figure = Figure(figsize=(5 * len(curves), 4), layout="constrained")
    axes = figure.subplots(1, len(curves), squeeze=False)[0]
    for ax, (stage, curve) in zip(axes, curves.items()):
        for term in LOG_TERMS:
            if term not in curve:
                continue
            values = curve[term]
            positive = values > 0
            if positive.any():
                ax.plot(curve["iteration"][positive], values[positive], label=term,
                        color=f"C{LOG_TERMS.index(term)}", linewidth=2.0 if term == "loss" else 1.0)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss (weighted terms)")
        ax.set_title(stage or "run")
        ax.legend()
    figure.savefig(out)
    return out


__all__ = [
    "METRIC_DESCRIPTIONS", "contact_sheet", "evaluate_files", "evaluate_manifest", "format_value",
    "items_table", "metrics_table", "plot_log", "read_items", "read_log", "sheet_captions", "to_json",
]
