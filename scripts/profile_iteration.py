"""Where one optimisation step's time goes: the objective's value and gradient against VGG alone.

On the sample pair at each width: median seconds (of `--repeats`, after compile) of the jitted
value-and-gradient of (a) the full stage-2 objective (content, masked style, TV and matting
Laplacian terms), (b) the VGG-16 trunk alone (a sum of squares of the same taps), (c) the VGG
forward pass alone; and XLA's FLOP count of (a) and (b), so the rate of each is known. The
L-BFGS update itself is not included (a few vector operations on the image).

    python scripts/profile_iteration.py --markdown docs/bench/iteration_profile.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import _bench_common as common  # noqa: E402

from jaxstyle.objective import LossConfig, Objective, prepare_targets  # noqa: E402
from jaxstyle.vgg import features  # noqa: E402
from jaxstyle.weights import embedded_vgg16  # noqa: E402


def median_seconds(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flops(fn, *args) -> float:
    analysis = fn.lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", float("nan")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--markdown", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    weights = jax.device_put(embedded_vgg16())
    cfg = LossConfig()
    layers = tuple(dict.fromkeys(cfg.style_layers + cfg.content_layers))
    objective = Objective(cfg, True)
    full = jax.jit(jax.value_and_grad(lambda x, a: objective(x, a)[0]))
    trunk = jax.jit(jax.value_and_grad(
        lambda x, w: sum(jnp.sum(jnp.square(v)) for v in features(w, x, layers).values())))
    forward = jax.jit(lambda x, w: features(w, x, layers))
    lines = ["# One optimisation step: where the time goes", "", common.machine_line(common.describe_machine()), "",
             f"Median of {args.repeats} calls after compile; GFLOP as XLA counts them (2 per multiply-add).", "",
             "| H x W | objective value+grad ms | GFLOP | GFLOP/s | VGG-16 alone value+grad ms | share of the step "
             "| VGG forward ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    for width in args.widths:
        content, style = (jnp.asarray(a) for a in common.sample_inputs(width))
        targets = jax.jit(lambda w, c, s: prepare_targets(w, c, s, cfg=cfg))(weights, content, style)
        t_full = median_seconds(full, content, (weights, targets), repeats=args.repeats)
        t_trunk = median_seconds(trunk, content, weights, repeats=args.repeats)
        t_fwd = median_seconds(forward, content, weights, repeats=args.repeats)
        f_full = flops(full, content, (weights, targets))
        lines.append(f"| {content.shape[0]} x {content.shape[1]} | {1e3 * t_full:.0f} | {f_full / 1e9:.1f} | "
                     f"{f_full / t_full / 1e9:.0f} | {1e3 * t_trunk:.0f} | {t_trunk / t_full:.0%} | {1e3 * t_fwd:.0f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
