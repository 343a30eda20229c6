"""Start-up time of the command line: `jaxstyle --version` and `jaxstyle --help` in new processes.

Each command runs `--repeats` times (default 5) as a fresh process, interleaved with
`python -c pass` (the interpreter's own start-up, for scale) so that drifting machine load
hits all of them alike; the table gives the median, min and max wall seconds of each.
The goal: both commands under 0.5 s (they must not import JAX).

    python scripts/bench_startup.py [--repeats 5] [--json docs/bench/startup.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 0.5


def console_script() -> str:
    """The `jaxstyle` beside this interpreter (a virtual environment's), else the one on PATH."""
    beside = Path(sys.executable).with_name("jaxstyle")
    found = str(beside) if beside.is_file() else shutil.which("jaxstyle")
    if found is None:
        sys.exit("no jaxstyle command found: pip install -e . first")
    return found


def wall_seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--json", help="also write the numbers as JSON to this file")
    args = parser.parse_args()
    script = console_script()
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "jaxstyle --version": [script, "--version"],
                "jaxstyle --help": [script, "--help"]}
    for argv in commands.values():  # warm the file-system cache: the runs measure start-up, not disk
        wall_seconds(argv)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, argv in commands.items():
            times[name].append(wall_seconds(argv))

    rows = {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs_s": t}
            for name, t in times.items()}
    print(f"{'command':22s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for name, row in rows.items():
        goal = "" if name.startswith("python") else ("  ok" if row["median_s"] < GOAL_S else f"  over {GOAL_S} s")
        print(f"{name:22s} {row['median_s']:9.3f} {row['min_s']:7.3f} {row['max_s']:7.3f}{goal}")
    if args.json:
        report = {"repeats": args.repeats, "goal_s": GOAL_S, "python": platform.python_version(),
                  "machine": platform.machine(), "commands": rows}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
