"""jaxstyle against the PyTorch baseline, on the same inputs and machine, in one run.

For each width in `--sizes` (the bundled sample pair resized, no masks; 384x256 px
originally, 512 is upsampled) and each repeat, every implementation runs in a fresh
subprocess (`python scripts/bench.py --worker ...` printing JSON), so JAX and torch never
share a process and each peak resident set (ru_maxrss) is that implementation's own.
Runs alternate implementations within a repeat so that drifting machine load hits all.

Both implementations minimise the same objective (`jaxstyle.objective` with `LossConfig()`
defaults, from the same bundled VGG-16) with L-BFGS of the same memory (`--memory-size`)
for the same iterations (`--iterations`, stage 1 without and stage 2 with the
photorealism term, stage 2 from stage 1's result):
- jaxstyle: `jaxstyle.optimize.minimize`, by default without line search (step 1 along
  the L-BFGS direction; optax scales its first step by min(1, 1/|g|_2)), in chunks of
  `--chunk-size`;
- torch (`scripts/baselines/torch_dpst.py`): `torch.optim.LBFGS` with each mode in
  `--torch-line-search`: "none" (lr 1, first step scaled by min(1, 1/|g|_1); one
  evaluation per iteration, the like-for-like comparison) and "strong_wolfe" (torch's line
  search, several evaluations per iteration).

Measured per run: set-up (weights load + device_put; Laplacian; targets), jaxstyle's
compile time (targets and each stage's step, first call minus a steady call) apart from
its steady set-up, seconds per iteration of each stage (jaxstyle: after the first,
compiling chunk; torch: after one untimed forward/backward warm-up), end-to-end seconds
(set-up with compile or warm-up, plus both stages), peak resident memory of the process
(and of the device on GPU), and the final objective value (jaxstyle: its result, the best
iterate, evaluated with `Objective`; torch: its final iterate). Ratios pair the runs of
one size and repeat: torch/jax for times and memory (> 1: jaxstyle faster or smaller),
jax/torch for the final loss (< 1: jaxstyle lower); each reported as median [min-max].

On a machine with a GPU the same command compares JAX's GPU backend with torch on CUDA
(detected in the workers: jax.default_backend(), torch.cuda.is_available()); JAX in the
torch worker is pinned to the CPU so that it never claims GPU memory. Threads: torch gets
os.cpu_count() intra-op threads (`--torch-threads`), XLA uses all cores by default (limit
it with XLA_FLAGS, which the workers inherit); both are recorded. Time on an idle machine:
on a loaded one torch's OpenMP threads spin and its times vary several-fold.

    python scripts/bench.py --json bench.json --markdown bench.md
    python scripts/bench.py --sizes 64 --iterations 2 2 --chunk-size 1 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _bench_common as common

SCRIPTS = Path(__file__).resolve().parent
RESULT_PREFIX = "BENCH_WORKER_RESULT "
STAGES = ("stage1", "stage2")
TORCH_LINE_SEARCHES = ("none", "strong_wolfe")
JAX_LINESEARCHES = ("none", "zoom")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="image widths (px)")
    parser.add_argument("--iterations", type=int, nargs=2, default=[20, 20], metavar=("STAGE1", "STAGE2"))
    parser.add_argument("--repeats", type=int, default=3, help="runs per implementation and size")
    parser.add_argument("--memory-size", type=int, default=20, help="L-BFGS history of both")
    parser.add_argument("--chunk-size", type=int, default=5,
                        help="jaxstyle iterations per device call; the first chunk (compile) is excluded "
                             "from its seconds per iteration")
    parser.add_argument("--jax-linesearch", choices=JAX_LINESEARCHES, default="none")
    parser.add_argument("--torch-line-search", nargs="+", choices=TORCH_LINE_SEARCHES,
                        default=list(TORCH_LINE_SEARCHES), help="torch L-BFGS modes to run")
    parser.add_argument("--no-torch", action="store_true", help="run jaxstyle only")
    parser.add_argument("--torch-device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default os.cpu_count(), as XLA; set XLA_FLAGS to "
                             "limit XLA's)")
    parser.add_argument("--setup-repeats", type=int, default=2,
                        help="steady calls timed after the first (compiling) one for jaxstyle's set-up")
    parser.add_argument("--worker-timeout", type=float, default=3600.0, help="seconds per worker process")
    parser.add_argument("--json", default=None, metavar="PATH", help="write all results here")
    parser.add_argument("--markdown", default=None, metavar="PATH", help="write the tables here")
    # internal: one run in this process
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--line-search", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.setup_repeats < 1:
        parser.error("--setup-repeats must be at least 1")
    if args.worker is None:
        for n in args.iterations:
            if n < 2 * args.chunk_size:
                parser.error(f"--iterations must be at least 2 x --chunk-size ({2 * args.chunk_size}): "
                             "jaxstyle's seconds per iteration come from the chunks after the first")
    return args


# ----------------------------------------------------------------------------- workers


def jax_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One jaxstyle run at `args.width`; see the module docstring for what is measured."""
    import functools

    import jax
    import jax.numpy as jnp

    from jaxstyle import laplacian as lap
    from jaxstyle.objective import LossConfig, Objective, prepare_targets
    from jaxstyle.optimize import OptimConfig, resolve_loop
    from jaxstyle.weights import embedded_vgg16

    runtime = common.jax_runtime()
    content, style = common.sample_inputs(args.width)
    rss_start = common.rss_mb()
    loss_cfg = LossConfig()

    start = time.perf_counter()
    weights = jax.block_until_ready(jax.device_put(embedded_vgg16()))
    weights_s = time.perf_counter() - start
    c, s = jax.block_until_ready((jnp.asarray(content), jnp.asarray(style)))

    form = lap.resolve_form(c.shape, loss_cfg.laplacian_radius, loss_cfg.laplacian_form)
    build = jax.jit(functools.partial(lap.build_laplacian, radius=loss_cfg.laplacian_radius,
                                      eps=loss_cfg.laplacian_eps, form=form))
    laplacian, _ = common.time_call(lambda: build(c), repeats=args.setup_repeats, warmup=0)
    prepare = jax.jit(functools.partial(prepare_targets, cfg=loss_cfg))
    targets_t, targets = common.time_call(lambda: prepare(weights, c, s), repeats=args.setup_repeats, warmup=0)

    stages: dict[str, Any] = {}
    x = c
    for name, n, use_photo in (("stage1", args.iterations[0], False), ("stage2", args.iterations[1], True)):
        opt = OptimConfig(method="lbfgs", iterations=n, memory_size=args.memory_size,
                          linesearch=args.line_search, tol=0.0, chunk_size=args.chunk_size)
        state, _, record = common.timed_minimize(Objective(loss_cfg, use_photo), x, (weights, targets), opt)
        record["evaluations_per_iteration"] = 1.0 if opt.linesearch == "none" else None
        record["loop"] = resolve_loop(opt)
        stages[name] = record
        x = state.best_x

    objective = Objective(loss_cfg, True)
    evaluate = jax.jit(lambda image, a: objective(image, a))
    final, terms = evaluate(state.best_x, (weights, targets))
    final_last, _ = evaluate(state.x, (weights, targets))
    lap_steady = laplacian["steady"]["median"]
    targets_steady = targets_t["steady"]["median"]
    return {
        "impl": "jax", "line_search": args.line_search, "width": args.width, "height": content.shape[0],
        "runtime": runtime, "threads": os.cpu_count(), "threads_note": "XLA default (all cores)",
        "laplacian_form": form,
        "setup": {"weights_s": weights_s, "laplacian": laplacian, "targets_incl_laplacian": targets_t,
                  "laplacian_s": lap_steady,
                  "targets_s": max(0.0, targets_steady - lap_steady),  # derived: full targets - Laplacian alone
                  "steady_s": weights_s + targets_steady,
                  "compile_s": targets_t["compile_s"]},
        "stage1": stages["stage1"], "stage2": stages["stage2"],
        "compile_s": targets_t["compile_s"] + sum(stages[k]["compile_s"] or 0.0 for k in STAGES),
        "end_to_end_s": weights_s + targets_t["first_s"] + sum(stages[k]["wall_s"] for k in STAGES),
        "final_loss": float(final), "final_loss_last_iterate": float(final_last),
        "final_terms": {k: float(v) for k, v in terms.items()},
        "rss_start_mb": rss_start, "peak_rss_mb": common.peak_rss_mb(),
        "peak_device_mb": common.jax_device_peak_mb(),
    }


def torch_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One run of the PyTorch baseline at `args.width`."""
    sys.path.insert(0, str(SCRIPTS / "baselines"))
    import torch
    import torch_dpst

    from jaxstyle.objective import LossConfig

    device = args.torch_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    content, style = common.sample_inputs(args.width)
    rss_start = common.rss_mb()
    threads = args.torch_threads or os.cpu_count() or 1
    result = torch_dpst.run_baseline(content, style, None, None, iterations=tuple(args.iterations),
                                     memory_size=args.memory_size, threads=threads, device=device,
                                     line_search=args.line_search)
    result.pop("image")
    cfg = LossConfig()
    same = torch_dpst.DEFAULT_WEIGHTS == {"content": cfg.content_weight, "style": cfg.style_weight,
                                          "tv": cfg.tv_weight, "photo": cfg.photo_weight}
    setup = result["setup_seconds"]
    for name in STAGES:
        stage = result[name]
        stage["evaluations_per_iteration"] = stage["evaluations"] / max(stage["iterations"], 1)
    cuda = {}
    if device.startswith("cuda"):
        cuda = {"cuda_device": torch.cuda.get_device_name(), "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    return {
        "impl": "torch", "line_search": args.line_search, "width": args.width, "height": content.shape[0],
        "device": device, "threads": result["threads"], "torch_version": torch.__version__, **cuda,
        "weights_match_jaxstyle_defaults": same,
        "setup": {"weights_s": setup["weights"], "laplacian_s": setup["laplacian"], "targets_s": setup["targets"],
                  "warmup_s": setup["warmup"],
                  "steady_s": setup["weights"] + setup["laplacian"] + setup["targets"]},
        "stage1": result["stage1"], "stage2": result["stage2"],
        "compile_s": setup["warmup"],  # torch's counterpart: one untimed forward + backward
        "end_to_end_s": setup["total"] + result["stage1"]["seconds"] + result["stage2"]["seconds"],
        "final_loss": result["final_loss"], "final_terms": result["final_terms"],
        "rss_start_mb": rss_start, "peak_rss_mb": common.peak_rss_mb(),
        "peak_rss_during_run_mb": result["peak_rss_mb"], "peak_device_mb": result.get("peak_device_mb"),
    }


# ----------------------------------------------------------------------------- orchestration


def _run_worker(impl: str, line_search: str, width: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, "--width", str(width),
               "--line-search", line_search, "--iterations", *map(str, args.iterations),
               "--memory-size", str(args.memory_size), "--chunk-size", str(args.chunk_size),
               "--setup-repeats", str(args.setup_repeats), "--torch-device", args.torch_device]
    if args.torch_threads:
        command += ["--torch-threads", str(args.torch_threads)]
    env = dict(os.environ)
    if impl == "torch":
        env["JAX_PLATFORMS"] = "cpu"  # jaxstyle helpers only: never claim the GPU torch uses
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.worker_timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "line_search": line_search, "width": width,
                "error": f"timed out after {args.worker_timeout:.0f} s"}
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        return {"impl": impl, "line_search": line_search, "width": width, "returncode": done.returncode,
                "error": (done.stderr or done.stdout)[-3000:]}
    record = json.loads(lines[-1][len(RESULT_PREFIX):])
    record["process_wall_s"] = wall
    return record


def _label(impl: str, line_search: str) -> str:
    return f"{impl} ({'no line search' if line_search == 'none' else line_search})"


def metrics(record: dict[str, Any]) -> dict[str, float | None]:
    """The compared numbers of one worker record (None where it failed)."""
    if "error" in record:
        return {}
    setup = record["setup"]
    out = {"setup_s": setup["steady_s"], "weights_s": setup["weights_s"], "laplacian_s": setup["laplacian_s"],
           "targets_s": setup["targets_s"], "compile_s": record["compile_s"],
           "end_to_end_s": record["end_to_end_s"], "peak_rss_mb": record["peak_rss_mb"],
           "peak_rss_delta_mb": (record["peak_rss_mb"] - record["rss_start_mb"]
                                 if record.get("rss_start_mb") is not None else None),
           "peak_device_mb": record.get("peak_device_mb"), "final_loss": record["final_loss"]}
    for name in STAGES:
        out[f"{name}_s_per_it"] = record[name]["seconds_per_iteration"]
        out[f"{name}_evals_per_it"] = record[name].get("evaluations_per_iteration")
    return out


TIME_METRICS = ("setup_s", "laplacian_s", "stage1_s_per_it", "stage2_s_per_it", "end_to_end_s")
MEMORY_METRICS = ("peak_rss_mb", "peak_device_mb")


def aggregate(runs: list[dict[str, Any]], sizes: list[int], modes: list[tuple[str, str]],
              repeats: int) -> dict[str, Any]:
    """min/median/max per (size, implementation) and of the paired ratios against jax."""
    by_key = {(r["width"], r["impl"], r["line_search"], r["repeat"]): metrics(r) for r in runs}
    per_impl, ratios = [], []
    jax_mode = next(m for m in modes if m[0] == "jax")
    for width in sizes:
        height = next((r["height"] for r in runs if r["width"] == width and "height" in r), None)
        for impl, ls in modes:
            rows = [by_key.get((width, impl, ls, k), {}) for k in range(repeats)]
            names = sorted({name for row in rows for name in row})
            errors = [r["error"].strip().splitlines()[-1] for r in runs
                      if (r["width"], r["impl"], r["line_search"]) == (width, impl, ls) and "error" in r]
            per_impl.append({"width": width, "height": height, "impl": impl, "line_search": ls,
                             "failed": sum(1 for row in rows if not row), "errors": errors,
                             "stats": {name: common.summarize(row.get(name) for row in rows) for name in names}})
        for impl, ls in modes:
            if impl == "jax":
                continue
            stats = {}
            for name in TIME_METRICS + MEMORY_METRICS + ("final_loss",):
                values = []
                for k in range(repeats):
                    j = by_key.get((width, *jax_mode, k), {})
                    t = by_key.get((width, impl, ls, k), {})
                    values.append(common.ratio(j.get(name), t.get(name)) if name == "final_loss"
                                  else common.ratio(t.get(name), j.get(name)))
                stats[name] = common.summarize(values)
            ratios.append({"width": width, "height": height, "against": _label(impl, ls), "stats": stats})
    return {"per_impl": per_impl, "ratios": ratios}


def render(result: dict[str, Any]) -> str:
    """The markdown report: machine, settings, one table per implementation and size, ratios."""
    s = result["settings"]
    agg = result["aggregate"]
    runtime = next((r["runtime"] for r in result["runs"] if r.get("impl") == "jax" and "runtime" in r), None)
    torch_run = next((r for r in result["runs"] if r.get("impl") == "torch" and "error" not in r), None)
    xla_flags = result["machine"]["env"].get("XLA_FLAGS")
    lines = ["# jaxstyle vs PyTorch DPST baseline", "",
             f"Machine: {common.machine_line(result['machine'], runtime)}.",
             f"Threads: XLA {'XLA_FLAGS=' + repr(xla_flags) if xla_flags else 'default (all cores)'}; "
             + (f"torch {torch_run['torch_version']}, {torch_run['threads']} intra-op threads, device "
                f"{torch_run['device']}." if torch_run else "torch not run."),
             f"Settings: sample pair (no masks), L-BFGS memory {s['memory_size']}, {s['iterations'][0]} + "
             f"{s['iterations'][1]} iterations, jaxstyle line search {s['jax_linesearch']} (chunks of "
             f"{s['chunk_size']}); median [min-max] over {s['repeats']} runs, each in a fresh process.", ""]
    rows = []
    for row in agg["per_impl"]:
        st = row["stats"]
        get = st.get
        rows.append([f"{row['height']} x {row['width']}", _label(row["impl"], row["line_search"]),
                     common.fmt_summary(get("setup_s")), common.fmt_summary(get("laplacian_s")),
                     common.fmt_summary(get("compile_s")),
                     common.fmt_summary(get("stage1_s_per_it"), 3, 1e3),
                     common.fmt_summary(get("stage2_s_per_it"), 3, 1e3),
                     f"{common.fmt_summary(get('stage1_evals_per_it'), 2)} / "
                     f"{common.fmt_summary(get('stage2_evals_per_it'), 2)}",
                     common.fmt_summary(get("end_to_end_s")), common.fmt_summary(get("peak_rss_mb"), 4),
                     common.fmt_summary(get("peak_rss_delta_mb"), 4), common.fmt_summary(get("peak_device_mb"), 4),
                     common.fmt_summary(get("final_loss"), 5)]
                    + ([f"{row['failed']} failed ({'; '.join(sorted(set(row['errors'])))})"]
                       if row["failed"] else []))
    headers = ["H x W", "implementation", "set-up s", "Laplacian s", "compile/warm-up s", "stage 1 ms/it",
               "stage 2 ms/it", "evals/it (1 / 2)", "end-to-end s", "peak RSS MB", "RSS growth MB",
               "peak device MB", "final loss"]
    lines.append(common.markdown_table(headers, [r[:len(headers)] for r in rows],
                                       align=["l", "l"] + ["r"] * (len(headers) - 2)))
    failed = [r for r in rows if len(r) > len(headers)]
    if failed:
        lines.append("\nFailed runs: " + "; ".join(f"{r[0]} {r[1]}: {r[-1]}" for r in failed))
    if agg["ratios"]:
        lines += ["", "Ratios, run by run (times and memory: torch / jax, > 1 means jaxstyle is faster or "
                  "smaller; final loss: jax / torch, < 1 means jaxstyle reached a lower objective):", ""]
        rows = []
        for row in agg["ratios"]:
            st = row["stats"]
            rows.append([f"{row['height']} x {row['width']}", row["against"]]
                        + [common.fmt_summary(st[name]) for name in TIME_METRICS + MEMORY_METRICS]
                        + [common.fmt_summary(st["final_loss"], 4)])
        lines.append(common.markdown_table(
            ["H x W", "jax vs", "set-up", "Laplacian", "stage 1 s/it", "stage 2 s/it", "end-to-end",
             "peak RSS", "peak device", "final loss"], rows, align=["l", "l"] + ["r"] * 8))
    lines += ["", "Notes: jaxstyle's set-up is steady state (weights + targets incl. Laplacian, compile "
              "excluded and given under compile/warm-up together with each stage's step compile); torch's "
              "is its first call in the worker (weights + scipy Laplacian + targets, so it includes torch's "
              "one-time kernel set-up; its warm-up forward/backward is under compile/warm-up): the set-up "
              "ratio favours jaxstyle (docs/log/bench/setup_profile.md has both in steady state). "
              "End-to-end = set-up with compile (or warm-up) + both stages. Peak RSS is "
              "ru_maxrss of the worker process (imports included; both import JAX, torch's pinned to CPU); RSS "
              "growth is that peak minus the resident set after imports and loading the images. "
              "jaxstyle's final loss is at its best iterate, torch's at its last; jaxstyle's stage 2 "
              "starts from stage 1's best iterate, torch's from its last. The first L-BFGS step is "
              "scaled by min(1, 1/|g|_2) in optax and min(1, 1/|g|_1) in torch, and torch skips curvature "
              "pairs with y's <= 1e-10, so 'no line search' is the same method, not identical iterates."]
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    machine = common.describe_machine()
    modes = [("jax", args.jax_linesearch)] + ([] if args.no_torch else
                                              [("torch", ls) for ls in args.torch_line_search])
    runs = []
    total = len(args.sizes) * args.repeats * len(modes)
    for width in args.sizes:
        for k in range(args.repeats):
            for impl, ls in modes:
                print(f"[{len(runs) + 1}/{total}] {width} px, repeat {k + 1}: {_label(impl, ls)}",
                      file=sys.stderr, flush=True)
                record = _run_worker(impl, ls, width, args)
                record["repeat"] = k
                if "error" in record:
                    print(f"  failed: {record['error'][-500:]}", file=sys.stderr, flush=True)
                else:
                    print(f"  end-to-end {record['end_to_end_s']:.1f} s, stage 1 "
                          f"{common.fmt(record['stage1']['seconds_per_iteration'], 3, 1e3)} ms/it, stage 2 "
                          f"{common.fmt(record['stage2']['seconds_per_iteration'], 3, 1e3)} ms/it, final loss "
                          f"{record['final_loss']:.5g}, peak RSS {record['peak_rss_mb']:.0f} MB",
                          file=sys.stderr, flush=True)
                runs.append(record)
    settings = {k: getattr(args, k) for k in ("sizes", "iterations", "repeats", "memory_size", "chunk_size",
                                              "jax_linesearch", "torch_line_search", "no_torch", "torch_device",
                                              "torch_threads", "setup_repeats")}
    result = {"machine": machine, "machine_after": common.describe_machine()["load_average_1_5_15"],
              "settings": settings, "runs": runs, "aggregate": aggregate(runs, args.sizes, modes, args.repeats)}
    result["markdown"] = render(result)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        args.line_search = args.line_search or "none"
        record = jax_worker(args) if args.worker == "jax" else torch_worker(args)
        print(RESULT_PREFIX + json.dumps(record, default=common.json_default), flush=True)
        return 0
    result = orchestrate(args)
    print(result["markdown"])
    if args.json:
        print(f"wrote {common.write_json(args.json, result)}")
    if args.markdown:
        Path(args.markdown).write_text(result["markdown"] + "\n")
        print(f"wrote {args.markdown}")
    return 0 if all("error" not in r for r in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
