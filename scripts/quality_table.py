"""Per-pair quality table (markdown) from `scripts/automask_eval.py --json` files: ours vs the original.

Each `--run LABEL=FILE` is one JSON written by `automask_eval.py` (for instance `--modes hand
--config default`); `--mode` picks which arm's numbers to show (hand, auto or none). The
original implementation's final output is scored in each file as `original`; the first
file's is shown. Columns: iterations, seconds, edge SSIM (higher is better), matting-Laplacian
residual, region Gram distance and Lab W2 (lower is better), LPIPS to the original.

    python scripts/quality_table.py --run default=runs/default.json --run fast=runs/fast.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

METRICS = (("edge_ssim", "edge SSIM", "{:.3f}"), ("laplacian_residual", "residual", "{:.5f}"),
           ("gram_distance", "Gram dist.", "{:.3f}"), ("lab_w2", "Lab W2", "{:.1f}"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=FILE")
    parser.add_argument("--mode", default="hand", choices=("hand", "auto", "none"))
    return parser.parse_args(argv)


def table(runs: dict[str, list[dict]], mode: str) -> str:
    labels = list(runs)
    first = runs[labels[0]]
    names = " / ".join(labels)
    head = (["pair", "size", f"iterations {names}", f"seconds {names}"]
            + [f"{title} orig / {names}" for _, title, _ in METRICS] + [f"LPIPS to orig {names}"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    columns: dict[str, list[list[float]]] = {key: [] for key, _, _ in METRICS}
    seconds, lpips = [], []
    for i, record in enumerate(first):
        arms = [runs[label][i][mode] for label in labels]
        assert all(runs[label][i]["pair"] == record["pair"] for label in labels), "pairs differ between runs"
        its = " / ".join(" + ".join(str(v) for v in arm["iterations"].values()) for arm in arms)
        secs = [arm["seconds"] for arm in arms]
        seconds.append(secs)
        cells = [str(record["pair"]), "x".join(map(str, record["size"])), its, " / ".join(f"{s:.0f}" for s in secs)]
        for key, _, fmt in METRICS:
            values = [record["original"][key]] + [arm["metrics"][key] for arm in arms]
            columns[key].append(values)
            cells.append(" / ".join(fmt.format(v) for v in values))
        lp = [arm["metrics"]["lpips"] for arm in arms]
        lpips.append(lp)
        cells.append(" / ".join(f"{v:.3f}" for v in lp))
        lines.append("| " + " | ".join(cells) + " |")
    mean = ["mean", "", "", " / ".join(f"{v:.0f}" for v in np.mean(seconds, 0))]
    for key, _, fmt in METRICS:
        mean.append(" / ".join(f"**{fmt.format(v)}**" for v in np.mean(columns[key], 0)))
    mean.append(" / ".join(f"{v:.3f}" for v in np.mean(lpips, 0)))
    lines.append("| " + " | ".join(mean) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = {}
    for spec in args.run:
        label, _, path = spec.partition("=")
        runs[label] = json.loads(Path(path).read_text())["results"]
    print(table(runs, args.mode))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
