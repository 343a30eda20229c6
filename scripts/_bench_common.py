"""Helpers shared by the benchmarks (`bench.py`, `bench_transfer.py`, `profile_iteration.py`)
and `pairs.py`.

Timing: wall-clock `time.perf_counter` around work that is made to finish
(`jax.block_until_ready`, or a host read), after a warm-up where compile time is
reported on its own. Repeats are summarised as min / median / max. Inputs are the
bundled sample pair (`jaxstyle.reading.sample_paths`, 384x256 px) resized to a given width,
float32 `[H, W, 3]` RGB in [0, 1].

Importing this module does not initialise a JAX backend (a benchmark's parent process
must not claim the GPU its worker processes use); `jax_runtime()` does.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PACKAGES = ("jaxstyle", "jax", "jaxlib", "numpy", "optax", "flax", "torch", "scipy")


# ----------------------------------------------------------------------------- statistics


def summarize(values: Iterable[float | None]) -> dict[str, Any]:
    """{min, median, max, n, values} of the finite numbers in `values` (None/NaN skipped)."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not kept:
        return {"min": None, "median": None, "max": None, "n": 0, "values": []}
    return {"min": min(kept), "median": statistics.median(kept), "max": max(kept), "n": len(kept),
            "values": kept}


def time_call(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1) -> tuple[dict[str, Any], Any]:
    """Wall seconds of `fn()` blocked until ready: the first call (compile included) and a
    summary over `repeats` calls after `warmup` further untimed ones.

    Returns ({first_s, steady: summarize(...), compile_s = first_s - steady median (0 when
    repeats is 0)}, the last call's output).
    """
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    for _ in range(warmup):
        del out
        out = jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        del out  # one result alive at a time
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    steady = summarize(times)
    compile_s = max(0.0, first - steady["median"]) if times else 0.0
    return {"first_s": first, "steady": steady, "compile_s": compile_s}, out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None where either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)


# ----------------------------------------------------------------------------- inputs


def sample_inputs(width: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled sample pair, each resized to `width` px wide (aspect kept; upsampled above
    384 px): float32 `[H, W, 3]` content and style."""
    from jaxstyle import reading, sizing

    out = []
    for path in reading.sample_paths():
        image = reading.load_image(path)
        h, w = image.shape[:2]
        size = (max(1, round(h * width / w)), width)
        out.append(image if size == (h, w) else sizing.resize_image(image, size))
    return out[0], out[1]


# ----------------------------------------------------------------------------- optimiser timing


def timed_minimize(fun: Callable, x0: Any, args: Any, cfg: Any) -> tuple[Any, list[float], dict[str, Any]]:
    """`jaxstyle.optimize.minimize` with a timestamp at each chunk boundary.

    The driver syncs with the host at the end of each chunk (it reads the losses), so
    chunk k ends at a known time. The first chunk includes compiling the step; the
    steady per-iteration time is measured over the later chunks (None with one chunk), and
    `compile_s` is the first chunk's time minus its iterations at the steady rate. The
    `finalize_s` tail evaluates the last iterate (plus compiling that evaluation).

    Returns (state, loss history, record with iterations, executed_steps, wall_s,
    first_chunk_s, compile_s, seconds_per_iteration, finalize_s, chunk_size).
    """
    import jax

    from jaxstyle.optimize import minimize

    marks: list[float] = []
    jax.block_until_ready((x0, args))
    start = time.perf_counter()
    state, history = minimize(fun, x0, args, cfg, callback=lambda progress, _state: marks.append(time.perf_counter()))
    jax.block_until_ready(state)
    end = time.perf_counter()
    chunk = cfg.chunk_size
    per_iter = None
    if len(marks) >= 2:
        per_iter = (marks[-1] - marks[0]) / (chunk * (len(marks) - 1))
    first = marks[0] - start if marks else None
    compile_s = None if first is None or per_iter is None else max(0.0, first - chunk * per_iter)
    record = {
        "iterations": int(state.step), "executed_steps": chunk * len(marks), "chunk_size": chunk,
        "wall_s": end - start, "first_chunk_s": first, "compile_s": compile_s,
        "seconds_per_iteration": per_iter, "finalize_s": (end - marks[-1]) if marks else None,
        "best_loss": float(state.best_loss), "last_loss": float(state.last_loss),
    }
    return state, history, record


# ----------------------------------------------------------------------------- memory


def peak_rss_mb() -> float:
    """This process's lifetime peak resident set (ru_maxrss, KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float | None:
    """This process's current resident set (VmRSS) in MiB; None where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_machine() -> dict[str, Any]:
    """CPU model, cores, load, memory, OS, Python and package versions, date (UTC).

    Reads only files and package metadata: it imports neither JAX nor torch.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "cpu_usable": usable,
        "load_average_1_5_15": None if load is None else [round(x, 2) for x in load],
        "memory_total_gb": _memory_total_gb(),
        "os": platform.platform(), "python": platform.python_version(),
        "versions": {name: _version(name) for name in PACKAGES},
        "env": {k: os.environ[k] for k in ("JAX_PLATFORMS", "XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE",
                                           "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES") if k in os.environ},
    }


def jax_runtime() -> dict[str, Any]:
    """JAX's backend and devices (initialises the backend)."""
    import jax

    devices = jax.devices()
    return {"backend": jax.default_backend(),
            "devices": [f"{d.platform}:{d.device_kind}" for d in devices],
            "device_count": len(devices),
            "default_matmul_precision": jax.config.jax_default_matmul_precision}


def conv_gflops(*, side: int = 128, channels: int = 128, repeats: int = 5) -> float:
    """The machine's speed: XLA's GFLOP/s on a VGG-like 3x3 convolution (`channels` in and out,
    `side` x `side`, forward only, 2 FLOP per multiply-add), the median of `repeats` calls."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((1, side, side, channels), jnp.float32)
    k = jnp.ones((3, 3, channels, channels), jnp.float32) * 1e-3
    conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                              dimension_numbers=("NHWC", "HWIO", "NHWC")))
    stats, _ = time_call(lambda: conv(x, k), repeats=repeats)
    return 2 * side * side * channels * channels * 9 / stats["steady"]["median"] / 1e9


def jax_device_peak_mb() -> float | None:
    """Peak bytes in use on JAX's first device (GPU/TPU allocators), in MiB; None on CPU."""
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return None
    stats = device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


# ----------------------------------------------------------------------------- output


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for numpy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as indented JSON (numpy scalars/arrays converted), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=json_default) + "\n")
    tmp.replace(path)
    return path


def fmt(value: float | None, digits: int = 3, scale: float = 1.0) -> str:
    """A number with `digits` significant digits (after multiplying by `scale`), '-' for None."""
    if value is None:
        return "-"
    return f"{value * scale:.{digits}g}"


def fmt_summary(summary: Mapping[str, Any] | None, digits: int = 3, scale: float = 1.0) -> str:
    """'median [min-max]' of a `summarize` dict ('median' alone for one value, '-' for none)."""
    if not summary or not summary.get("n"):
        return "-"
    mid = fmt(summary["median"], digits, scale)
    if summary["n"] == 1:
        return mid
    return f"{mid} [{fmt(summary['min'], digits, scale)}-{fmt(summary['max'], digits, scale)}]"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
                   align: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table with padded columns; align holds 'l' or 'r' per column
    (default: first column left, the rest right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = align or ["l"] + ["r"] * (len(headers) - 1)

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(row, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
                          for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def machine_line(machine: Mapping[str, Any], runtime: Mapping[str, Any] | None = None) -> str:
    """One line naming the machine, for printed reports."""
    load = machine.get("load_average_1_5_15")
    text = (f"{machine['cpu_model']}, {machine['cpu_usable']}/{machine['cpu_count']} cores, "
            f"load {load[0] if load else '?'}, {machine['date']}")
    if runtime:
        text += f"; jax {machine['versions'].get('jax')} on {', '.join(runtime['devices'])}"
    return text
