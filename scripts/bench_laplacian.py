"""Time the matting Laplacian: JAX explicit and matrix-free forms against scipy.sparse.

For each square size: set-up (build) time and matvec time, each the median of
`--repeats` runs after a compile and a warm-up call (`block_until_ready`), with compile
time reported separately; scipy builds the CSR with the same formula vectorised in numpy
(float64, as the original code) and multiplies in float32 like the JAX forms. It also
times one VGG-19 forward + backward pass (random weights, features up to relu5_1, grad
of a sum of squares) to report "matrix-free matvec / VGG-19 fwd+bwd" (target < 1/3),
and "scipy build / explicit JAX build" (target >= 10x).

    python scripts/bench_laplacian.py --json bench_laplacian.json
    python scripts/bench_laplacian.py --sizes 64 --repeats 1 --scipy-repeats 1 --vgg-size 64   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import laplacian as lap
from jaxstyle.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGWeights, features, init_params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048],
                        help="square image sizes (pixels per side)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median)")
    parser.add_argument("--radius", type=int, default=lap.DEFAULT_RADIUS)
    parser.add_argument("--eps", type=float, default=lap.DEFAULT_EPS)
    parser.add_argument("--channels", type=int, default=3, help="channels of the vector v")
    parser.add_argument("--scipy-repeats", type=int, default=3,
                        help="timed runs of the (slow) scipy build and matvec (median)")
    parser.add_argument("--skip-scipy-above", type=int, default=1024, metavar="N",
                        help="skip scipy for sizes > N (its build at 2048 needs ~10 GB and minutes)")
    parser.add_argument("--vgg-size", type=int, default=1024,
                        help="size of the VGG-19 fwd+bwd reference pass (0: skip)")
    parser.add_argument("--json", type=str, default=None, metavar="PATH", help="write results here")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` (blocked until ready), after one warm-up call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compile_jit(fn: Callable, *args) -> tuple[Callable, float]:
    """`jax.jit(fn)` traced and compiled for `args`; returns (compiled, seconds)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def time_jax_form(form: str, content: jax.Array, v: jax.Array, args: argparse.Namespace) -> dict:
    """Compile, build and matvec times of one JAX form; also returns L v for cross-checks."""
    build = lap.matting_laplacian if form == "sparse" else lap.matting_operator

    def build_fn(c):
        return build(c, radius=args.radius, eps=args.eps)

    build_c, build_compile = compile_jit(build_fn, content)
    setup = median_seconds(lambda: build_c(content), args.repeats)
    op = build_c(content)
    matvec_c, matvec_compile = compile_jit(lambda o, x: o.matvec(x), op, v)
    matvec = median_seconds(lambda: matvec_c(op, v), args.repeats)
    nbytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(op))
    return {"build_compile_s": build_compile, "setup_s": setup, "matvec_compile_s": matvec_compile,
            "matvec_s": matvec, "operator_bytes": nbytes, "_lv": np.asarray(matvec_c(op, v), np.float64)}


def scipy_laplacian(content: np.ndarray, radius: int, eps: float):
    """Levin's L as a scipy CSR matrix, vectorised over windows in float64 numpy."""
    import scipy.sparse as sp

    h, w, _ = content.shape
    n = (2 * radius + 1) ** 2
    size = 2 * radius + 1
    image = content.astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))  # [h', w', 3, s, s]
    colours = windows.reshape(h - 2 * radius, w - 2 * radius, 3, n).transpose(0, 1, 3, 2).reshape(-1, n, 3)
    mean = colours.mean(axis=1, keepdims=True)
    centred = colours - mean                                                  # [k, n, 3]
    cov = np.einsum("kpi,kpj->kij", centred, centred) / n
    inv = np.linalg.inv(cov + eps / n * np.eye(3))
    whitened = np.einsum("kij,kqj->kqi", inv, centred)                         # Delta (I_q - mu): [k, n, 3]
    block = np.eye(n) - (1.0 + np.einsum("kpi,kqi->kpq", centred, whitened)) / n  # [k, n, n]
    index = np.arange(h * w).reshape(h, w)
    pixels = np.lib.stride_tricks.sliding_window_view(index, (size, size)).reshape(-1, n)  # [k, n]
    rows = np.repeat(pixels, n, axis=1).ravel()
    cols = np.tile(pixels, (1, n)).ravel()
    return sp.coo_matrix((block.ravel(), (rows, cols)), shape=(h * w, h * w)).tocsr()


def time_scipy(content: np.ndarray, v: np.ndarray, args: argparse.Namespace) -> dict:
    def build():
        return scipy_laplacian(content, args.radius, args.eps).astype(np.float32)

    setup = median_seconds(build, args.scipy_repeats)
    matrix = build()
    flat = v.reshape(-1, v.shape[-1]).astype(np.float32)
    matvec = median_seconds(lambda: matrix @ flat, args.scipy_repeats)
    return {"setup_s": setup, "matvec_s": matvec, "nnz": int(matrix.nnz),
            "_lv": (matrix @ flat).reshape(v.shape).astype(np.float64)}


def time_vgg(size: int, args: argparse.Namespace) -> dict:
    """One VGG-19 forward + backward (to the image) up to relu5_1, random weights."""
    weights = VGGWeights(params=init_params(jax.random.PRNGKey(args.seed), "vgg19"), arch="vgg19")
    layers = tuple(dict.fromkeys(STYLE_LAYERS + CONTENT_LAYERS))
    image = jax.random.uniform(jax.random.PRNGKey(args.seed + 1), (size, size, 3), jnp.float32)

    def energy(w, x):
        return sum(jnp.sum(jnp.square(a)) for a in features(w, x, layers).values())

    grad_c, compile_s = compile_jit(jax.grad(energy, argnums=1), weights, image)
    return {"size": size, "compile_s": compile_s, "fwd_bwd_s": median_seconds(lambda: grad_c(weights, image),
                                                                             args.repeats)}


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def bench_size(size: int, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed + size)
    content_np = rng.random((size, size, 3)).astype(np.float32)
    v_np = rng.random((size, size, args.channels)).astype(np.float32)
    content, v = jnp.asarray(content_np), jnp.asarray(v_np)
    row: dict = {"size": size}
    row["sparse"] = time_jax_form("sparse", content, v, args)
    row["matrix_free"] = time_jax_form("matrix_free", content, v, args)
    row["matrix_free_vs_sparse_rel_err"] = relative_error(row["matrix_free"]["_lv"], row["sparse"]["_lv"])
    if size <= args.skip_scipy_above:
        row["scipy"] = time_scipy(content_np, v_np, args)
        row["sparse_vs_scipy_rel_err"] = relative_error(row["sparse"]["_lv"], row["scipy"]["_lv"])
        row["scipy_build_over_jax_sparse_build"] = row["scipy"]["setup_s"] / row["sparse"]["setup_s"]
        row["scipy_matvec_over_jax_sparse_matvec"] = row["scipy"]["matvec_s"] / row["sparse"]["matvec_s"]
        row["scipy_matvec_over_jax_matrix_free_matvec"] = (row["scipy"]["matvec_s"]
                                                           / row["matrix_free"]["matvec_s"])
    for form in ("sparse", "matrix_free", "scipy"):
        row.get(form, {}).pop("_lv", None)
    return row


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:9.2f}"


def print_table(rows: list[dict], vgg: dict | None, vgg_ratio: float | None) -> None:
    head = (f"{'size':>5} | {'jax build':>9} {'(compile)':>9} {'jax matvec':>10} | {'mf build':>9} "
            f"{'(compile)':>9} {'mf matvec':>9} | {'scipy bld':>9} {'scipy mv':>9} | "
            f"{'scipy/jax build':>15} {'scipy/jax mv':>12} {'mf/sparse mv':>12}   (ms)")
    print(head)
    print("-" * len(head))
    for row in rows:
        s, m, sc = row["sparse"], row["matrix_free"], row.get("scipy", {})
        build_ratio = row.get("scipy_build_over_jax_sparse_build")
        mv_ratio = row.get("scipy_matvec_over_jax_sparse_matvec")
        print(f"{row['size']:>5} | {ms(s['setup_s'])} {ms(s['build_compile_s'])} {ms(s['matvec_s']):>10} | "
              f"{ms(m['setup_s'])} {ms(m['build_compile_s'])} {ms(m['matvec_s'])} | "
              f"{ms(sc.get('setup_s'))} {ms(sc.get('matvec_s'))} | "
              f"{'-' if build_ratio is None else f'{build_ratio:.1f}x':>15} "
              f"{'-' if mv_ratio is None else f'{mv_ratio:.1f}x':>12} "
              f"{m['matvec_s'] / s['matvec_s']:>12.2f}")
    if vgg is not None:
        print(f"\nVGG-19 fwd+bwd at {vgg['size']}: {ms(vgg['fwd_bwd_s']).strip()} ms "
              f"(compile {vgg['compile_s']:.1f} s); matrix-free matvec / VGG-19 fwd+bwd = {vgg_ratio:.4f} "
              f"(target < 0.333)")
    for row in rows:
        if "scipy_build_over_jax_sparse_build" in row:
            print(f"size {row['size']}: scipy build / explicit JAX build = "
                  f"{row['scipy_build_over_jax_sparse_build']:.1f}x (target >= 10x); rel. error vs scipy "
                  f"{row['sparse_vs_scipy_rel_err']:.1e}, matrix-free vs explicit "
                  f"{row['matrix_free_vs_sparse_rel_err']:.1e}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device.platform} ({device.device_kind}); radius {args.radius}, "
          f"eps {args.eps}, v with {args.channels} channels, median of {args.repeats}", flush=True)
    rows = []
    for size in args.sizes:
        rows.append(bench_size(size, args))
        print(f"  done {size}x{size}", file=sys.stderr, flush=True)
    vgg, vgg_ratio, mf_at_vgg = None, None, None
    if args.vgg_size:
        vgg = time_vgg(args.vgg_size, args)
        at_size = [row for row in rows if row["size"] == args.vgg_size]
        if at_size:
            mf_at_vgg = at_size[0]["matrix_free"]["matvec_s"]
        else:
            rng = np.random.default_rng(args.seed)
            content = jnp.asarray(rng.random((args.vgg_size, args.vgg_size, 3)), jnp.float32)
            v = jnp.asarray(rng.random((args.vgg_size, args.vgg_size, args.channels)), jnp.float32)
            mf_at_vgg = time_jax_form("matrix_free", content, v, args)["matvec_s"]
        vgg_ratio = mf_at_vgg / vgg["fwd_bwd_s"]
    print_table(rows, vgg, vgg_ratio)
    if args.json:
        result = {"jax_version": jax.__version__, "platform": device.platform, "device": device.device_kind,
                  "radius": args.radius, "eps": args.eps, "channels": args.channels, "repeats": args.repeats,
                  "scipy_repeats": args.scipy_repeats,
                  "scipy_note": "CSR built in float64 numpy, cast to float32; matvec in float32",
                  "sizes": rows, "vgg19": vgg, "matrix_free_matvec_at_vgg_size_s": mf_at_vgg,
                  "matrix_free_matvec_over_vgg19_fwd_bwd": vgg_ratio}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
