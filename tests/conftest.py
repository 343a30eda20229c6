"""Shared fixtures: the bundled weights (loaded once) and small synthetic photos.

The suite's time is mostly XLA compiling (tiny images, many shapes and configs), so the tests
share JAX's persistent compilation cache: identical programs compiled by both xdist workers, or
by the default and the `-m slow` run, are compiled once. It lives in
`$JAXSTYLE_TEST_XLA_CACHE` (default: a per-user folder in the system temp directory); set the
variable to an empty string to switch it off. Command-line runs in subprocesses get it through
`$JAXSTYLE_COMPILE_CACHE`.
"""

import os
import tempfile

import numpy as np
import pytest


OLD_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _fast_compiles() -> None:
    """Compile at XLA's backend optimisation level 0 with its older CPU fusion emitters (unless
    XLA_FLAGS sets a level): the default suite's programs are tiny, so code generation costs more
    than it saves (timings: docs/benchmarks.md, "The test suite"). Not for `-m slow`: its real
    solves run long enough that unoptimised loops cost more than the compiles, and its bit-exact
    comparisons of whole CLI runs are written for the optimised programs. Runs once, in the first
    process; xdist's workers inherit the variable."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" in flags:
        return
    wanted = ["--xla_backend_optimization_level=0"]
    if _xla_accepts(OLD_EMITTERS):
        wanted.append(OLD_EMITTERS)
    os.environ["XLA_FLAGS"] = " ".join([flags, *wanted]).strip()


def _xla_accepts(flag: str) -> bool:
    """Whether this jaxlib's XLA knows `flag`: an unknown flag in XLA_FLAGS aborts the process, and
    XLA's flags come and go between releases, so a child process tries it (about a second)."""
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
    probe = "import jax.numpy as jnp; jnp.ones(2).block_until_ready()"
    try:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _enable_compilation_cache() -> None:
    user = os.getuid() if hasattr(os, "getuid") else "user"  # Windows' temp folder is per user already
    default = os.path.join(tempfile.gettempdir(), f"jaxstyle-test-xla-cache-{user}")
    path = os.environ.get("JAXSTYLE_TEST_XLA_CACHE", default)
    # Command-line runs in subprocesses use the same cache (or none), never the user's own.
    os.environ.setdefault("JAXSTYLE_COMPILE_CACHE", path or "off")
    if not path:
        return
    os.makedirs(path, mode=0o700, exist_ok=True)
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.3)


_enable_compilation_cache()


def pytest_configure(config: pytest.Config) -> None:
    # Runs in every xdist worker with the same options, before any test module imports; XLA reads
    # the flags when its CPU backend starts, at the first computation.
    if "slow" not in config.getoption("markexpr", "").replace("not slow", ""):
        _fast_compiles()


@pytest.fixture(scope="session")
def vgg16():
    import jax

    from jaxstyle.weights import embedded_vgg16

    return jax.device_put(embedded_vgg16())


def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth two-region 'photo': a sky-like gradient above a textured ground, float32 [h, w, 3]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    horizon = 0.5 + 0.1 * np.sin(6 * x + seed)
    sky = np.stack([0.4 + 0.3 * y, 0.6 + 0.2 * y, 0.9 - 0.1 * x], -1)
    ground = np.stack([0.5 + 0.2 * np.sin(9 * x), 0.35 + 0.1 * np.cos(7 * y), 0.2 + 0.05 * x], -1)
    ground = ground + 0.05 * rng.standard_normal((h, w, 1))
    img = np.where((y < horizon)[..., None], sky, ground)
    return np.clip(img, 0, 1).astype(np.float32)


def two_region_mask(h: int, w: int, seed: int = 0) -> np.ndarray:
    """One-hot [h, w, 2]: the 'sky' and 'ground' of `synthetic_photo` with the same seed."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    sky = y < 0.5 + 0.1 * np.sin(6 * x + seed)
    return np.stack([sky, ~sky], -1).astype(np.float32)


def pixel_config(**changes):
    """A `Config` that solves for the pixels: two stages at the working size from the content, no
    grid, no aspect buckets, the final filter on, and the loss and L-BFGS settings' own defaults
    (the original's weights, 1000 steps a stage). `Config()` is the default preset, a grid solve."""
    from jaxstyle.config import Config, GridConfig, SmoothConfig
    from jaxstyle.objective import LossConfig
    from jaxstyle.optimize import OptimConfig

    pixels = dict(mode="two_stage", buckets=False, init="content", init_feather=0, loss=LossConfig(),
                  stage1=OptimConfig(), stage2=OptimConfig(), smooth=SmoothConfig(), grid=GridConfig())
    return Config(**{**pixels, **changes})


SHALLOW = {1: ('["relu1_2"]', '["relu1_1", "relu1_2"]'),
           3: ('["relu2_2"]', '["relu1_1", "relu2_1", "relu3_1"]')}


def tiny_toml(base: str = "default", *, side: int = 48, depth: int = 1, steps: int = 3, chunk: int = 2,
              zero_tol: bool = False, pixels: bool = False, top: str = "", tables: str = "") -> str:
    """A preset file for command-line tests: `base` at `side` px with `steps` L-BFGS steps a stage and
    the VGG layers up to relu`depth`_x (1 or 3), no aspect buckets. `pixels`: the pixel solve the
    file-level tests were written for (two stages, the final filter at radius 3, no grid; `default`
    solves on a grid). `top`: more top-level lines; `tables`: more TOML tables, appended."""
    content, style = SHALLOW[depth]
    stage = f"iterations = {steps}\nchunk_size = {chunk}\n" + ("tol = 0.0\n" if zero_tol else "")
    text = (f'base = "{base}"\nmax_side = {side}\nbuckets = false\n'
            + ('mode = "two_stage"\n' if pixels else "") + (f"{top}\n" if top else "")
            + f"[loss]\ncontent_layers = {content}\nstyle_layers = {style}\n"
            + f"[stage1]\n{stage}[stage2]\n{stage}"
            + ("[smooth]\nenabled = true\nradius = 3\n[grid]\nenabled = false\n" if pixels else ""))
    return text + tables
