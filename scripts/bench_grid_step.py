"""What the grid's flat-area term costs a step: the default preset's stage-2 objective (value
and gradient with respect to the grid) with `grid.flat` as the preset has it against 0, in one run.

On the sample pair at `--width` px wide, the grid fitted to the content; median seconds of
`--repeats` calls of each after compile, the two timed in alternation so that the machine's
drift falls on both; the ratio and the machine's XLA convolution GFLOP/s beside them.

    python scripts/bench_grid_step.py --json docs/bench/grid_step.json
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import jax

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import _bench_common as common  # noqa: E402

from jaxstyle import grid, pipeline  # noqa: E402
from jaxstyle.config import load_config  # noqa: E402
from jaxstyle.objective import prepare_targets  # noqa: E402
from jaxstyle.weights import embedded_vgg16  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    config = load_config("default")
    weights = jax.device_put(embedded_vgg16())
    content, style = (jax.numpy.asarray(a) for a in common.sample_inputs(args.width))
    targets = {**prepare_targets(weights, content, style, cfg=config.loss), "guide": content}
    look = grid.fit_grid(content, content, grid.grid_shape(content.shape[:2], cell=config.grid.cell,
                                                            depth=config.grid.depth))
    without = dataclasses.replace(config, grid=dataclasses.replace(config.grid, flat=0.0))
    arms = {"flat": config, "without": without}
    stage2 = pipeline.plan(config)[-1]  # the pipeline's own objective for each arm
    steps = {}
    for name, arm in arms.items():
        objective = stage2.objective(arm)
        steps[name] = jax.jit(jax.value_and_grad(lambda g, a, o=objective: o(g, a)[0]))
        jax.block_until_ready(steps[name](look, (weights, targets)))  # compile
    times = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(step(look, (weights, targets)))
            times[name].append(time.perf_counter() - start)
    gflops = common.conv_gflops()
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {"machine": common.describe_machine(), "conv_gflops": gflops, "size": list(content.shape[:2]),
              "grid": dataclasses.asdict(config.grid), "seconds": times, "median_s": medians,
              "ratio": medians["flat"] / medians["without"]}
    print(f"{content.shape[0]} x {content.shape[1]}, XLA conv {gflops:.0f} GFLOP/s: step with grid.flat="
          f"{config.grid.flat:g} {medians['flat']:.3f} s, without {medians['without']:.3f} s, "
          f"ratio {result['ratio']:.3f}")
    if args.json:
        common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
