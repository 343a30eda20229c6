"""How much of each result a global 3D LUT reproduces: PSNR of LUT(content) against the result.

For the paper's pairs stylised by `scripts/pairs.py run --out DIR` (results `DIR/pairN_MODE.png`),
fits the `.cube` that `jaxstyle transfer --cube` writes (`jaxstyle.look.fit_result_cube`, at each
`--sizes`) from the content at the result's size and reports, per pair, the PSNR of the LUT
applied to the content against the result (dB), with the mean and the worst pair.

    python scripts/pairs.py run --config default --max-side 700 --working-side 512 --modes hand --out runs/def
    python scripts/lut_psnr.py runs/def --json docs/bench/lut_psnr.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from jaxstyle import look, reading

PAIRS = (1, 4, 9, 13, 20, 39)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a `pairs.py run --out` folder")
    parser.add_argument("--examples", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "dpst-examples")
    parser.add_argument("--mode", default="hand", help="the masks arm whose results are read")
    parser.add_argument("--sizes", type=int, nargs="+", default=[17, 33, 65])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for n in PAIRS:
        result = reading.load_image(args.results / f"pair{n}_{args.mode}.png")
        content = reading.load_image(args.examples / f"in{n}.png", max_side=max(result.shape[:2]))
        if content.shape != result.shape:
            raise SystemExit(f"pair {n}: content {content.shape} and result {result.shape} differ in size")
        row = {"pair": n, **{f"psnr_db_{size}": round(look.fit_result_cube(content, result, size=size)[1], 2)
                            for size in args.sizes}}
        rows.append(row)
        print("pair {pair:>2}: ".format(**row) + "  ".join(f"{s}: {row[f'psnr_db_{s}']:.2f} dB" for s in args.sizes),
              flush=True)
    for size in args.sizes:
        values = [r[f"psnr_db_{size}"] for r in rows]
        print(f"LUT {size}: mean {statistics.mean(values):.2f} dB, worst {min(values):.2f} dB")
    if args.json:
        args.json.write_text(json.dumps({"results": str(args.results), "mode": args.mode, "pairs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
