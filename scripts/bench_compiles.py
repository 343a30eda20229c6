"""XLA compiles of a cold `jaxstyle transfer`: how many programs, and their seconds, against a baseline.

Each run is a fresh process with the persistent compilation cache off, on the sample pair with
the content resized to the working size (so both deliver the same size), running the command
line in-process (`jaxstyle.cli.app`) with a `jax.monitoring` listener that counts
`/jax/core/compile/backend_compile_duration` events (one per XLA compile) and sums them,
besides the tracing and lowering time. The baseline is another git revision, checked out
into a temporary worktree and imported from there (same interpreter, same packages). Runs
alternate between the two checkouts, so drifting machine load hits both; the report gives
the medians and the ratios (this checkout / baseline).

    python scripts/bench_compiles.py --baseline d40688a --config fast --repeats 3 --json docs/bench/compiles.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = {"compile": "/jax/core/compile/backend_compile_duration",
          "trace": "/jax/core/compile/jaxpr_trace_duration",
          "lower": "/jax/core/compile/jaxpr_to_mlir_module_duration"}

WORKER = """
import json, sys, time
import jax.monitoring
counts, seconds = {}, {}
names = json.loads(sys.argv[2])
def listen(event, duration, **_):
    for key, name in names.items():
        if event == name:
            counts[key] = counts.get(key, 0) + 1
            seconds[key] = seconds.get(key, 0.0) + duration
jax.monitoring.register_event_duration_secs_listener(listen)
from jaxstyle.cli import app
start = time.perf_counter()
try:
    app(sys.argv[3:], standalone_mode=False)
finally:
    wall = time.perf_counter() - start
    with open(sys.argv[1], "w") as f:
        json.dump({"counts": counts, "seconds": seconds, "wall": wall}, f)
"""


def run_once(checkout: Path, args: argparse.Namespace, folder: Path, label: str, index: int) -> dict:
    """One cold transfer in a fresh process importing jaxstyle from `checkout`."""
    stats = folder / f"{label}-{index}.json"
    out = folder / f"{label}-{index}.png"
    content, style = str(folder / "content.png"), str(ROOT / "jaxstyle" / "data" / "sample_style.jpg")
    command = [sys.executable, "-c", WORKER, str(stats), json.dumps(EVENTS), "transfer", content, style,
               "-o", str(out), "--config", args.config, "--max-side", str(args.max_side), "-q"]
    env = {**os.environ, "PYTHONPATH": str(checkout), "JAXSTYLE_COMPILE_CACHE": "off", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=folder)
    if done.returncode != 0 or not out.is_file():
        raise SystemExit(f"{label} run failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(stats.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="git revision to compare with (e.g. d40688a)")
    parser.add_argument("--config", default="fast")
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the runs and medians here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = folder / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.baseline],
                       check=True, capture_output=True)
        # The installed package maps jaxstyle.configs to this checkout's configs/; the baseline
        # must read its own presets.
        (base / "jaxstyle" / "configs").symlink_to(base / "configs", target_is_directory=True)
        # the content at the working size: both checkouts deliver the same size (no upsampling)
        from PIL import Image

        with Image.open(ROOT / "jaxstyle" / "data" / "sample_content.jpg") as im:
            scale = args.max_side / max(im.size)
            im.convert("RGB").resize((round(im.size[0] * scale), round(im.size[1] * scale)),
                                     Image.Resampling.LANCZOS).save(folder / "content.png")
        try:
            runs: dict[str, list[dict]] = {"baseline": [], "this": []}
            for i in range(args.repeats):
                for label, checkout in (("baseline", base), ("this", ROOT)):
                    runs[label].append(run_once(checkout, args, folder, label, i))
                    print(f"{label} #{i}: {runs[label][-1]}", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    medians = {label: {"compiles": statistics.median(r["counts"].get("compile", 0) for r in rs),
                       **{f"{k}_s": statistics.median(r["seconds"].get(k, 0.0) for r in rs) for k in EVENTS},
                       "wall_s": statistics.median(r["wall"] for r in rs)} for label, rs in runs.items()}
    ratios = {k: medians["this"][k] / medians["baseline"][k] for k in medians["this"] if medians["baseline"][k]}
    print(f"cold `jaxstyle transfer --config {args.config} --max-side {args.max_side}`, "
          f"median of {args.repeats} fresh processes each, compilation cache off")
    print(f"{'':10s} {'compiles':>9s} {'compile s':>10s} {'trace s':>8s} {'lower s':>8s} {'wall s':>8s}")
    for label in ("baseline", "this"):
        m = medians[label]
        print(f"{label:10s} {m['compiles']:9.0f} {m['compile_s']:10.2f} {m['trace_s']:8.2f} {m['lower_s']:8.2f} "
              f"{m['wall_s']:8.2f}")
    print(f"{'ratio':10s} {ratios.get('compiles', 0):9.2f} {ratios.get('compile_s', 0):10.2f} "
          f"{ratios.get('trace_s', 0):8.2f} {ratios.get('lower_s', 0):8.2f} {ratios.get('wall_s', 0):8.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "baseline": args.baseline,
                                         "config": args.config, "max_side": args.max_side, "runs": runs,
                                         "medians": medians, "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
