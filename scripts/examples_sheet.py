"""Contact sheet of the DPST example pairs: content | style | original | ours (one column per run).

Reads the pairs from `--examples` (inN.png, tarN.png, final_N.png, as in the paper's
repository; academic, non-commercial use) and our outputs from each `--run LABEL=FOLDER`,
whose files are named `pairN_hand.png` (what `scripts/automask_eval.py --out FOLDER` writes;
`--mode` picks another suffix). Every tile is scaled to `--height` px.

    python scripts/examples_sheet.py --run "ours default=runs/default" --run "ours fast=runs/fast" \
        --out docs/examples_sheet.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

from automask_eval import PAIRS  # noqa: E402

from jaxstyle import io  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", default="../shared/dpst-examples")
    parser.add_argument("--pairs", type=int, nargs="+", default=list(PAIRS))
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=FOLDER",
                        help="a column of our outputs (repeat for several)")
    parser.add_argument("--mode", default="hand", help="output suffix: pairN_MODE.png")
    parser.add_argument("--height", type=int, default=128, help="tile height in px")
    parser.add_argument("--out", required=True, help="image to write (.jpg keeps the sheet small)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = []
    for item in args.run:
        label, sep, folder = item.partition("=")
        if not sep:
            raise SystemExit(f"--run expects LABEL=FOLDER, got {item!r}")
        runs.append((label, Path(folder)))
    folder = Path(args.examples)
    rows = []
    for n in args.pairs:
        content = io.load_image(folder / f"in{n}.png")
        tiles = [content, io.load_image(folder / f"tar{n}.png"), io.load_image(folder / f"final_{n}.png")]
        labels = [f"{n}: content", "style", "original (paper code)"]
        for label, path in runs:
            tiles.append(io.load_image(path / f"pair{n}_{args.mode}.png"))
            labels.append(label)
        rows.append(io.side_by_side(tiles, height=args.height, labels=labels))
    # JPEG, not a 256-colour PNG: palette quantisation bands skies and petals, which would
    # look like the colour blotches this sheet is meant to show the absence of.
    io.save_image(io.stack_rows(rows), args.out, overwrite=True, quality=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
