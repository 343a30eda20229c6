"""Where the plain command's seconds go on a photo after the first: `jaxstyle transfer PHOTO STYLE
-o OUT.jpg` (the default preset) in a new process, its compilation cache filled by a first photo.

1. The first photo (`--first-mp`, 4:3) fills an empty compilation cache (not reported).
2. The next photo (`--mp`, 3:2), in a new process with JAX's compile log on: wall seconds, the
   phases from the result's metadata, and the seconds JAX spent tracing, lowering and compiling
   or loading programs from the cache (summed from its log).
3. In this process, after the command: the default preset's stage objectives (value and
   gradient with respect to the grid, and value alone) at the working sizes the command used, on
   the bundled sample pair resized to them (median of `--repeats` after compile); the steps times
   those, and the evaluations of the loss terms the command makes besides (`--log` printing:
   one at each report of `chunk_size` steps, and two at each stage's close).

    python scripts/profile_command.py --json docs/bench/command_profile.json
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import _bench_common as common  # noqa: E402
import bench_command  # noqa: E402

JAX_LOG = re.compile(r"Finished (tracing|jaxpr to MLIR module conversion|XLA compilation) .*? in ([0-9.]+) sec")


def jax_seconds(log: str) -> dict[str, float]:
    """Seconds JAX reports for tracing, lowering and compiling (or loading from the cache)."""
    total = {"tracing": 0.0, "jaxpr to MLIR module conversion": 0.0, "XLA compilation": 0.0}
    for kind, seconds in JAX_LOG.findall(log):
        total[kind] += float(seconds)
    return {"tracing": total["tracing"], "lowering": total["jaxpr to MLIR module conversion"],
            "compile_or_load": total["XLA compilation"]}


def timed(fn, *args, repeats: int) -> float:
    """Median seconds of `fn(*args)` after a first (compiling) call (`_bench_common.time_call`)."""
    return common.time_call(lambda: fn(*args), repeats=repeats, warmup=0)[0]["steady"]["median"]


def stage_costs(working: tuple[int, int], repeats: int) -> list[dict]:
    """Per stage of the default preset at the working size `working` (H, W): its size, steps,
    value-and-gradient and value seconds, and the loss-term evaluations the command adds."""
    import jax
    import jax.numpy as jnp

    from jaxstyle import grid, pipeline, sizing
    from jaxstyle.config import load_config
    from jaxstyle.objective import prepare_targets
    from jaxstyle.weights import embedded_vgg16

    config = load_config("default")
    weights = jax.device_put(embedded_vgg16())
    content, style = common.sample_inputs(working[1])
    rows = []
    for stage in pipeline.plan(config):
        shape = pipeline.scaled_shape((*working, 3), stage.scale) if stage.scale < 1 else working
        c, s = (jnp.asarray(sizing.resize_image(image, shape)) for image in (content, style))  # style: the same size
        loss = config.loss if stage.scale >= 1 else config.loss.with_updates(photo_weight=0.0)
        targets = {**prepare_targets(weights, c, s, cfg=loss), "guide": c}
        look = grid.fit_grid(c, c, pipeline.grid_shape(config, c.shape))
        objective = stage.objective(config)
        both = jax.jit(jax.value_and_grad(lambda g, o=objective, t=targets: o(g, (weights, t))[0]))
        value = jax.jit(lambda g, o=objective, t=targets: o(g, (weights, t))[0])
        steps = stage.opt.iterations
        extra = math.ceil(steps / stage.opt.chunk_size) + 2  # a report a chunk, and the close
        row = {"stage": stage.name, "size": list(shape), "steps": steps, "term_evaluations": extra,
               "value_and_grad_s": timed(both, look, repeats=repeats),
               "value_s": timed(value, look, repeats=repeats)}
        row["steps_s"] = steps * row["value_and_grad_s"]
        row["terms_s"] = extra * row["value_s"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first-mp", type=float, default=12.0)
    parser.add_argument("--mp", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    from jaxstyle import reading

    report = {"machine": common.describe_machine(), "conv_gflops": common.conv_gflops()}
    print(f"XLA convolution: {report['conv_gflops']:.0f} GFLOP/s", flush=True)
    source, style = (Path(p) for p in reading.demo_paths())
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp), Path(tmp) / "xla"
        first, second = folder / "photo1.jpg", folder / "photo2.jpg"
        bench_command.make_photo(source, args.first_mp, bench_command.ASPECTS["cold"], first)
        bench_command.make_photo(source, args.mp, bench_command.ASPECTS["second"], second)
        bench_command.run(None, first, style, folder, "first", cache)
        env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": str(cache), "JAX_LOG_COMPILES": "1"}
        stats, out = folder / "second.json", folder / "second_out.jpg"
        command = [sys.executable, "-c", bench_command.WORKER, str(stats), "transfer", str(second), str(style),
                   "-o", str(out)]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        import json

        result = json.loads(stats.read_text())
    report.update({"wall": wall, "seconds": result["seconds"], "size": result["size"],
                   "working_size": result["working_size"], "jax": jax_seconds(done.stderr + done.stdout)})
    report["stages"] = stage_costs(tuple(result["working_size"]), args.repeats)
    steps = sum(r["steps_s"] for r in report["stages"])
    terms = sum(r["terms_s"] for r in report["stages"])
    jax_total = sum(report["jax"].values())
    print(f"second photo {result['size'][1]}x{result['size'][0]}, working {result['working_size'][1]}x"
          f"{result['working_size'][0]}: {wall:.1f} s end to end; phases "
          + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    for r in report["stages"]:
        print(f"  {r['stage']} at {r['size'][1]}x{r['size'][0]}: {r['steps']} steps x {r['value_and_grad_s']:.3f} s = "
              f"{r['steps_s']:.1f} s; {r['term_evaluations']} evaluations of the terms x {r['value_s']:.3f} s = "
              f"{r['terms_s']:.1f} s")
    print(f"  steps {steps:.1f} s, loss terms {terms:.1f} s, JAX tracing {report['jax']['tracing']:.1f} + lowering "
          f"{report['jax']['lowering']:.1f} + compiling or loading {report['jax']['compile_or_load']:.1f} = "
          f"{jax_total:.1f} s; the rest {wall - steps - terms - jax_total:.1f} s (Python, imports, reading, "
          f"setup's work, slicing at full size, writing)")
    if args.json:
        common.write_json(args.json, report)


if __name__ == "__main__":
    main()
