"""Where the set-up time goes: jaxstyle against the PyTorch baseline, part by part.

`scripts/bench.py` reports set-up (weights, Laplacian, targets) as three numbers per
implementation. This script splits them further, on the same demo inputs, in one process,
each part timed steady (median of `--repeats` after one untimed call; compile excluded):

- weights: sha256 of the bundled checkpoint, the restricted unpickling, the conversion to
  the canonical tree, `jax.device_put` (torch: `load_vgg16`, which reads the same tree);
- Laplacian: jaxstyle's explicit build, jitted; torch: the scipy CSR build and its
  conversion to a torch sparse tensor;
- targets: the content pass (VGG to relu4_2), the style pass (VGG to relu5_1 and masked
  Grams), each separately, and jaxstyle's whole `prepare_targets` as the CLI runs it.

It also counts the floating-point operations of the two VGG passes (XLA's cost analysis of
the compiled passes) and reports the rate each implementation reaches on them, which bounds
the set-up ratio: both must run those convolutions once per image.

    python scripts/profile_setup.py --json docs/bench/setup_profile.json --markdown docs/bench/setup_profile.md
    python scripts/profile_setup.py --widths 64 --repeats 1        # smoke test
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

import _bench_common as common  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--repeats", type=int, default=5, help="steady calls per part (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    parser.add_argument("--no-torch", action="store_true", help="profile jaxstyle only")
    parser.add_argument("--json", default=None, metavar="PATH")
    parser.add_argument("--markdown", default=None, metavar="PATH")
    return parser.parse_args(argv)


def steady(fn: Callable[[], Any], repeats: int, block: Callable[[Any], Any] = lambda x: x) -> float:
    """Median seconds of `fn()` after one untimed call; `block` waits for the result."""
    block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile_jax(content: np.ndarray, style: np.ndarray, repeats: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from jaxstyle import laplacian as lap
    from jaxstyle import losses, masks, weights
    from jaxstyle.objective import LossConfig, prepare_targets
    from jaxstyle.vgg import features

    cfg = LossConfig()
    path = weights.lpips_checkpoint_path()
    raw = path.read_bytes()
    parts: dict[str, float] = {}
    parts["weights: sha256"] = steady(lambda: weights.sha256_file(path), repeats)
    parts["weights: restricted unpickle"] = steady(lambda: weights.safe_unpickle(raw), repeats)

    def canonical():
        weights._lpips_tree.cache_clear()  # noqa: SLF001
        return weights.embedded_vgg16()

    parts["weights: whole load (sha256 + unpickle + tree)"] = steady(canonical, repeats)
    host = weights.embedded_vgg16()
    parts["weights: device_put"] = steady(lambda: jax.device_put(host), repeats, jax.block_until_ready)
    w = jax.device_put(host)
    c, s = jnp.asarray(content), jnp.asarray(style)

    build = jax.jit(functools.partial(lap.build_laplacian, radius=cfg.laplacian_radius, eps=cfg.laplacian_eps))
    parts["laplacian: explicit build"] = steady(lambda: build(c), repeats, jax.block_until_ready)

    content_pass = jax.jit(lambda w, x: features(w, x, cfg.content_layers, pooling=cfg.pooling))
    ones = jnp.ones((*style.shape[:2], 1), jnp.float32)

    def style_fn(w, x, m):
        feats = features(w, x, cfg.style_layers, pooling=cfg.pooling)
        region = masks.propagate_masks(m, arch=w.arch, layers=cfg.style_layers)
        return {k: losses.masked_grams(feats[k], region[k])[0] for k in cfg.style_layers}

    style_pass = jax.jit(style_fn)
    parts["targets: content pass (to relu4_2)"] = steady(lambda: content_pass(w, c), repeats, jax.block_until_ready)
    parts["targets: style pass (to relu5_1, Grams)"] = steady(lambda: style_pass(w, s, ones), repeats,
                                                             jax.block_until_ready)
    prepare = jax.jit(functools.partial(prepare_targets, cfg=cfg))
    parts["targets: prepare_targets (as run, incl. Laplacian)"] = steady(lambda: prepare(w, c, s), repeats,
                                                                         jax.block_until_ready)
    flops = sum(float(_flops(jax.jit(f).lower(*a).compile())) for f, a in
                ((content_pass, (w, c)), (style_pass, (w, s, ones))))
    passes = parts["targets: content pass (to relu4_2)"] + parts["targets: style pass (to relu5_1, Grams)"]
    setup = (parts["weights: whole load (sha256 + unpickle + tree)"] + parts["weights: device_put"]
             + parts["targets: prepare_targets (as run, incl. Laplacian)"])
    return {"parts": parts, "vgg_passes_flops": flops, "vgg_passes_s": passes,
            "vgg_passes_gflops_per_s": flops / passes / 1e9, "setup_s": setup}


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older JAX: one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def profile_torch(content: np.ndarray, style: np.ndarray, repeats: int, threads: int | None,
                  flops: float) -> dict[str, Any]:
    import os

    sys.path.insert(0, str(SCRIPTS / "baselines"))
    import torch
    import torch_dpst

    torch.set_num_threads(threads or os.cpu_count() or 1)
    parts: dict[str, float] = {}
    parts["weights: load_vgg16"] = steady(lambda: torch_dpst.load_vgg16("cpu"), repeats)
    vgg = torch_dpst.load_vgg16("cpu")
    parts["laplacian: scipy build"] = steady(lambda: torch_dpst.matting_laplacian(content), repeats)
    matrix = torch_dpst.matting_laplacian(content)
    parts["laplacian: to torch sparse"] = steady(lambda: torch_dpst.to_torch_csr(matrix, "cpu"), repeats)
    c = torch_dpst._image_tensor(content, "cpu")  # noqa: SLF001
    s = torch_dpst._image_tensor(style, "cpu")  # noqa: SLF001
    with torch.no_grad():
        parts["targets: content pass (to relu4_2)"] = steady(lambda: vgg(c, torch_dpst.CONTENT_LAYERS), repeats)
        parts["targets: style pass (to relu5_1)"] = steady(lambda: vgg(s, torch_dpst.STYLE_LAYERS), repeats)
    parts["targets: prepare_targets (as run)"] = steady(
        lambda: torch_dpst.prepare_targets(vgg, content, style, None, None, device="cpu"), repeats)
    passes = parts["targets: content pass (to relu4_2)"] + parts["targets: style pass (to relu5_1)"]
    setup = (parts["weights: load_vgg16"] + parts["laplacian: scipy build"] + parts["laplacian: to torch sparse"]
             + parts["targets: prepare_targets (as run)"])
    return {"parts": parts, "vgg_passes_s": passes, "vgg_passes_gflops_per_s": flops / passes / 1e9,
            "setup_s": setup, "threads": torch.get_num_threads(), "version": torch.__version__}


def render(result: dict[str, Any]) -> str:
    lines = ["# Set-up profile: jaxstyle vs the PyTorch baseline", "",
             common.machine_line(result["machine"]), "",
             "Steady seconds per part (median of "
             f"{result['settings']['repeats']}; compile and first calls excluded), demo pair.", ""]
    for row in result["rows"]:
        jx, th = row["jax"], row.get("torch")
        lines += [f"## {row['height']} x {row['width']}", "",
                  "| part | jaxstyle s | share of jaxstyle set-up |", "|---|---:|---:|"]
        for name, value in jx["parts"].items():
            lines.append(f"| {name} | {value:.4f} | {value / jx['setup_s']:.0%} |")
        lines.append(f"| **set-up (whole load + device_put + prepare_targets)** | **{jx['setup_s']:.4f}** | |")
        if th is not None:
            lines += ["", "| part | torch s | share of torch set-up |", "|---|---:|---:|"]
            for name, value in th["parts"].items():
                lines.append(f"| {name} | {value:.4f} | {value / th['setup_s']:.0%} |")
            lines.append(f"| **set-up (weights + Laplacian + targets)** | **{th['setup_s']:.4f}** | |")
        lines += ["", f"VGG passes for the targets: {jx['vgg_passes_flops'] / 1e9:.1f} GFLOP; jaxstyle "
                  f"{jx['vgg_passes_gflops_per_s']:.1f} GFLOP/s"
                  + (f", torch {th['vgg_passes_gflops_per_s']:.1f} GFLOP/s" if th else "") + "."]
        if th is not None:
            lines += [f"Set-up ratio torch / jaxstyle: {th['setup_s'] / jx['setup_s']:.2f}x. Even with every "
                      f"other part free, jaxstyle's set-up cannot go below its two VGG passes, so the ratio is "
                      f"at most {th['setup_s'] / jx['vgg_passes_s']:.2f}x at this rate.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = common.describe_machine()
    rows = []
    for width in args.widths:
        content, style = common.demo_inputs(width)
        jx = profile_jax(content, style, args.repeats)
        row = {"width": width, "height": content.shape[0], "jax": jx}
        if not args.no_torch:
            row["torch"] = profile_torch(content, style, args.repeats, args.threads, jx["vgg_passes_flops"])
        rows.append(row)
        print(f"  done {width}", file=sys.stderr, flush=True)
    result = {"machine": machine, "settings": {"widths": args.widths, "repeats": args.repeats,
                                               "threads": args.threads}, "rows": rows}
    text = render(result)
    result["markdown"] = text
    print(text)
    if args.json:
        common.write_json(args.json, result)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
