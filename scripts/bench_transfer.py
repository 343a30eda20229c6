"""Time jaxstyle's style transfer: seconds per iteration by size, and whole preset runs.

1. Per iteration: for each width in `--sizes` (the bundled sample pair resized, 384x256 px
   originally; 512 is upsampled), stage 1 (no photorealism term) and stage 2 (with it),
   each with the `--config` preset's optimiser settings, the iterations given by
   `--iterations` and no tolerance stop, run by `jaxstyle.optimize.minimize` in chunks of
   `--chunk-size`. The first chunk compiles the step and is excluded: seconds per
   iteration are measured over the later chunks (the driver waits for each chunk's losses),
   and the compile time (first chunk minus its iterations at the steady rate) is reported
   on its own. Stage 2 starts from stage 1's result, as in `jaxstyle.stylize`.
2. End to end: `jaxstyle.stylize` with each preset in `--presets` at `--preset-width`:
   seconds per stage (set-up, stage 1, stage 2, smoothing) and in total, iterations run
   (the presets stop on a tolerance) and steps computed (whole chunks: the driver computes
   and discards the steps of a chunk that fall after a stop), compile included as a user
   sees it.

3. Fresh processes: `jaxstyle transfer` on the bundled sample files with each preset in
   `--cli-presets` at `--preset-width`, timed from the outside (wall clock, Python and JAX
   start-up, image reading and writing included), as a user runs it: first with an empty
   compilation cache (`$JAXSTYLE_COMPILE_CACHE` pointed at a new temporary folder, a first
   run), then again with the cache that run filled (every later run of those shapes).

Each repeat starts from empty JAX caches (`jax.clear_caches()`), so compile is measured
every time; the bundled weights stay loaded in the process after the first load.

    python scripts/bench_transfer.py --json bench_transfer.json
    python scripts/bench_transfer.py --sizes 64 --iterations 4 4 --chunk-size 2 --repeats 1 \\
        --presets fast --cli-presets fast --preset-width 64 --set stage1.iterations=2 \\
        --set stage2.iterations=2  # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import _bench_common as common
from jaxstyle import reading
from jaxstyle.config import load_config, parse_overrides
from jaxstyle.objective import Objective, prepare_targets
from jaxstyle.single import stylize
from jaxstyle.weights import resolve_weights

STAGES = ("stage1", "stage2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 512], help="image widths (px; none: skip)")
    parser.add_argument("--iterations", type=int, nargs=2, default=[30, 30], metavar=("STAGE1", "STAGE2"),
                        help="iterations per stage for the per-iteration timing")
    parser.add_argument("--chunk-size", type=int, default=5,
                        help="iterations per device call (the first chunk, with the compile, is excluded)")
    parser.add_argument("--config", default="default", help="preset whose loss/optimiser settings the "
                        "per-iteration timing uses")
    parser.add_argument("--presets", nargs="*", default=["default", "fast"],
                        help="presets to run end to end (none: skip)")
    parser.add_argument("--cli-presets", nargs="*", default=["default", "fast"],
                        help="presets to run as `jaxstyle transfer` in fresh processes (none: skip)")
    parser.add_argument("--cli-repeats", type=int, default=1,
                        help="repeats of each fresh-process pair (cold cache, then warm)")
    parser.add_argument("--preset-width", type=int, default=256, help="image width for the preset runs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset setting for the end-to-end runs (e.g. stage1.iterations=2)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the per-iteration timing")
    parser.add_argument("--preset-repeats", type=int, default=1, help="repeats of each end-to-end preset run")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here")
    args = parser.parse_args(argv)
    for n in args.iterations:
        if n < 2 * args.chunk_size:
            parser.error(f"--iterations must be at least 2 x --chunk-size ({2 * args.chunk_size}) so that "
                         "steady-state chunks remain after the compiling one")
    return args


def per_iteration(width: int, cfg, weights, args: argparse.Namespace) -> dict[str, Any]:
    """Compile time and steady seconds per iteration of both stages at `width`, over repeats."""
    content, style = common.sample_inputs(width)
    c, s = jnp.asarray(content), jnp.asarray(style)
    prepare = jax.jit(prepare_targets, static_argnames=("cfg",))
    runs = []
    for _ in range(args.repeats):
        jax.clear_caches()
        start = time.perf_counter()
        targets = jax.block_until_ready(prepare(weights, c, s, cfg=cfg.loss))
        run: dict[str, Any] = {"targets_first_call_s": time.perf_counter() - start}
        x = c
        for name, n, use_photo in (("stage1", args.iterations[0], False), ("stage2", args.iterations[1], True)):
            opt = dataclasses.replace(getattr(cfg, name), iterations=n, tol=0.0, chunk_size=args.chunk_size)
            state, _, record = common.timed_minimize(Objective(cfg.loss, use_photo), x, (weights, targets), opt)
            run[name] = record
            x = state.best_x
        runs.append(run)
        print(f"  {width} px: stage 1 {common.fmt(run['stage1']['seconds_per_iteration'], 3, 1e3)} ms/it, "
              f"stage 2 {common.fmt(run['stage2']['seconds_per_iteration'], 3, 1e3)} ms/it",
              file=sys.stderr, flush=True)
    summary = {"targets_first_call_s": common.summarize(r["targets_first_call_s"] for r in runs)}
    for name in STAGES:
        summary[name] = {key: common.summarize(r[name][key] for r in runs)
                         for key in ("seconds_per_iteration", "compile_s", "wall_s", "first_chunk_s")}
        summary[name]["iterations"] = runs[0][name]["iterations"]
        summary[name]["linesearch"] = getattr(cfg, name).linesearch
        summary[name]["method"] = getattr(cfg, name).method
    return {"width": width, "height": content.shape[0], "style_shape": list(style.shape[:2]),
            "summary": summary, "runs": runs}


def _whole_chunks(iterations: int, chunk_size: int, budget: int) -> int:
    """Steps `minimize` computes for `iterations` run: whole chunks, the last one cut to the
    budget, so only steps past an early (tolerance) stop are computed and discarded."""
    return min(-(-iterations // chunk_size) * chunk_size, budget)


def end_to_end(preset: str, args: argparse.Namespace) -> dict[str, Any]:
    """`jaxstyle.stylize` with `preset` on the sample pair at `--preset-width`, over repeats."""
    content, style = common.sample_inputs(args.preset_width)
    cfg = load_config(preset, parse_overrides(args.overrides))
    runs = []
    for _ in range(args.preset_repeats):
        jax.clear_caches()
        result = stylize(content, style, config=cfg, max_side=max(content.shape[:2]))
        iterations = {name: len(losses) for name, losses in result.history.items()}
        runs.append({"seconds": dict(result.seconds), "iterations": iterations,
                     "executed_steps": {name: _whole_chunks(n, getattr(cfg, name).chunk_size,
                                                              getattr(cfg, name).iterations)
                                        for name, n in iterations.items()},
                     "status": dict(result.status),
                     "final_best_loss": {name: float(min(losses)) if losses else None
                                         for name, losses in result.history.items()}})
        print(f"  {preset}: {result.seconds['total']:.1f} s, iterations {runs[-1]['iterations']}",
              file=sys.stderr, flush=True)
    keys = sorted({k for r in runs for k in r["seconds"]})
    return {"preset": preset, "width": args.preset_width, "height": content.shape[0], "mode": cfg.mode,
            "budget": {"stage1": cfg.stage1.iterations, "stage2": cfg.stage2.iterations},
            "overrides": parse_overrides(args.overrides),
            "summary": {k: common.summarize(r["seconds"].get(k) for r in runs) for k in keys},
            "runs": runs}


def fresh_processes(preset: str, args: argparse.Namespace) -> dict[str, Any]:
    """`jaxstyle transfer` with `preset` in new processes: a cold compilation cache, then warm."""
    script = Path(sys.executable).with_name("jaxstyle")
    content, style = reading.sample_paths()
    sets = [x for pair in args.overrides for x in ("--set", pair)]
    runs = []
    for repeat in range(args.cli_repeats):
        with tempfile.TemporaryDirectory(prefix="jaxstyle-bench-") as tmp:
            env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": str(Path(tmp) / "xla")}
            env.pop("JAX_COMPILATION_CACHE_DIR", None)
            for cache in ("cold", "warm"):
                out = Path(tmp) / f"{cache}.png"
                cmd = [str(script), "transfer", str(content), str(style), "-o", str(out), "--config", preset,
                       "--max-side", str(args.preset_width), "-q", *sets]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                seconds = time.perf_counter() - t0
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
                runs.append({"repeat": repeat, "cache": cache, "seconds": seconds})
                print(f"  {preset} (fresh process, {cache} compilation cache): {seconds:.1f} s",
                      file=sys.stderr, flush=True)
    return {"preset": preset, "width": args.preset_width, "overrides": parse_overrides(args.overrides),
            "summary": {cache: common.summarize(r["seconds"] for r in runs if r["cache"] == cache)
                        for cache in ("cold", "warm")},
            "runs": runs}


def print_report(result: dict[str, Any]) -> str:
    lines = [f"# jaxstyle transfer benchmark\n\n{common.machine_line(result['machine'], result['runtime'])}\n"]
    if result["per_iteration"]:
        it = result["settings"]["iterations"]
        lines.append(f"Per iteration ({result['settings']['config']} preset's optimiser, {it[0]} + {it[1]} "
                     f"iterations, chunks of {result['settings']['chunk_size']}, first chunk excluded; "
                     f"median [min-max] of {result['settings']['repeats']}):\n")
        rows = []
        for row in result["per_iteration"]:
            s1, s2 = row["summary"]["stage1"], row["summary"]["stage2"]
            rows.append([f"{row['height']} x {row['width']}",
                         common.fmt_summary(s1["seconds_per_iteration"], 3, 1e3),
                         common.fmt_summary(s2["seconds_per_iteration"], 3, 1e3),
                         common.fmt_summary(s1["compile_s"]), common.fmt_summary(s2["compile_s"]),
                         common.fmt_summary(row["summary"]["targets_first_call_s"])])
        lines.append(common.markdown_table(
            ["H x W", "stage 1 ms/it", "stage 2 ms/it", "stage 1 compile s", "stage 2 compile s",
             "targets (1st call) s"], rows))
    if result["end_to_end"]:
        lines.append(f"\nEnd to end (jaxstyle.stylize, compile included; median [min-max] of "
                     f"{result['settings']['preset_repeats']}):\n")
        rows = []
        for row in result["end_to_end"]:
            sm = row["summary"]
            its = row["runs"][0]["iterations"]
            finish = "smooth" if "smooth" in sm else "finish"
            rows.append([row["preset"], f"{row['height']} x {row['width']}", row["mode"],
                         " + ".join(f"{its.get(k, 0)}/{row['budget'][k]}" for k in STAGES),
                         " + ".join(str(row["runs"][0]["executed_steps"].get(k, 0)) for k in STAGES),
                         common.fmt_summary(sm.get("setup")), common.fmt_summary(sm.get("stage1")),
                         common.fmt_summary(sm.get("stage2")), common.fmt_summary(sm.get(finish)),
                         common.fmt_summary(sm.get("total"))])
        lines.append(common.markdown_table(
            ["preset", "H x W", "mode", "iterations run / budget", "steps computed", "set-up s", "stage 1 s",
             "stage 2 s", "smoothing s", "total s"], rows, align=["l", "r", "l"] + ["r"] * 7))
    if result.get("fresh_process"):
        lines.append("\nFresh processes (`jaxstyle transfer -q` on the bundled sample files, wall clock; a first run "
                     "with an empty compilation cache, then the same run again; median [min-max] of "
                     f"{result['settings']['cli_repeats']}):\n")
        rows = [[row["preset"], f"{row['width']} px wide", common.fmt_summary(row["summary"]["cold"]),
                 common.fmt_summary(row["summary"]["warm"])] for row in result["fresh_process"]]
        lines.append(common.markdown_table(["preset", "size", "first run s", "later runs s"], rows,
                                           align=["l", "r", "r", "r"]))
    text = "\n".join(lines)
    print(text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = common.describe_machine()
    runtime = common.jax_runtime()
    print(common.machine_line(machine, runtime), file=sys.stderr, flush=True)
    cfg = load_config(args.config)
    weights = None
    per_iter = []
    if args.sizes:
        weights = jax.device_put(resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback))
        for width in args.sizes:
            per_iter.append(per_iteration(width, cfg, weights, args))
    e2e = [end_to_end(preset, args) for preset in args.presets]
    fresh = [fresh_processes(preset, args) for preset in args.cli_presets]
    result = {"machine": machine, "runtime": runtime,
              "settings": {"config": args.config, "iterations": args.iterations, "chunk_size": args.chunk_size,
                           "repeats": args.repeats, "preset_repeats": args.preset_repeats, "cli_repeats": args.cli_repeats,
                           "preset_width": args.preset_width, "overrides": args.overrides},
              "per_iteration": per_iter, "end_to_end": e2e, "fresh_process": fresh}
    result["markdown"] = print_report(result)
    if args.json:
        print(f"wrote {common.write_json(args.json, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
