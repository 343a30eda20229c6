"""The command line's persistent XLA compilation cache.

A run compiles about a dozen XLA programs (the VGG passes, each stage's step, the filters),
a large share of a short run such as `fast`'s. With JAX's persistent
compilation cache, a later run with the same shapes and settings loads them from disk
instead. The command line turns it on; the library leaves JAX's global configuration alone
(a program that embeds jaxstyle sets `jax_compilation_cache_dir` itself).

Where: `$JAXSTYLE_COMPILE_CACHE` if set (`off`, `0`, `no`, `false` or an empty string switch
it off), else `cache_dir() / "xla"` (`~/.cache/jaxstyle/xla`; without a home folder, a private
folder in the temporary directory, see `jaxstyle.cachedirs.cache_dir`). A cache directory set through
JAX's own `JAX_COMPILATION_CACHE_DIR` wins, and so does a threshold set through
`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` (default here: programs compiling in under
0.5 s are not written). JAX treats the cache as trusted code, so the
folder is created private (0700) and one that other users can write to, or that belongs
to someone else, is not used. It grows by about 1 MB per image size and preset (JAX evicts
nothing: a size cap needs the `filelock` package); deleting the folder is always safe.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from jaxstyle.cachedirs import cache_dir
from jaxstyle.errors import JaxstyleError

ENV = "JAXSTYLE_COMPILE_CACHE"
OFF_VALUES = ("", "0", "off", "no", "false", "none")
# Programs that compile faster than this are not worth a file (XLA:CPU compiles tiny
# element-wise programs in milliseconds).
MIN_COMPILE_SECONDS = 0.5
MIN_COMPILE_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"  # JAX's own; a user's setting wins


def compile_cache_path(environ: dict[str, str] | None = None) -> Path | None:
    """The folder the CLI would use, or None when `$JAXSTYLE_COMPILE_CACHE` switches it off."""
    environ = os.environ if environ is None else environ
    if ENV in environ:
        value = environ[ENV].strip()
        return None if value.lower() in OFF_VALUES else Path(os.path.expanduser(value))
    return cache_dir() / "xla"


def unsafe_reason(path: Path) -> str | None:
    """Why `path` must not hold a compilation cache (None: it may)."""
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"{path} belongs to another user"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"other users can write to {path} (chmod 700 it to use it)"
    return None


def enable_compile_cache(environ: dict[str, str] | None = None) -> tuple[Path | None, str | None]:
    """Point JAX's persistent compilation cache at `compile_cache_path()`.

    Returns `(folder in use or None, why not or None)`. Leaves an already configured JAX
    cache in place (and returns it). Never raises: a cache is an optimisation.
    """
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current), None
    try:
        path = compile_cache_path(environ)
    except JaxstyleError as e:  # e.g. no home folder and no usable temporary one
        return None, str(e)
    if path is None:
        return None, f"switched off by ${ENV}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        reason = unsafe_reason(path)
    except OSError as e:
        reason = f"cannot create {path}: {e.strerror or e}"
    if reason is not None:
        return None, reason
    jax.config.update("jax_compilation_cache_dir", str(path))
    if MIN_COMPILE_ENV not in os.environ:  # JAX read a user's value from the process environment
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path, None


__all__ = ["ENV", "MIN_COMPILE_ENV", "MIN_COMPILE_SECONDS", "compile_cache_path", "enable_compile_cache",
           "unsafe_reason"]
