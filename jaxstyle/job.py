"""One photo job: the file-level steps every command takes for one content photo.

Images are float32 `[H, W, 3]` RGB in [0, 1].

- `refuse_input_as_output`: the one rule that nothing is written over an input (`filesafety.same_file`:
  the same path, a symbolic or a hard link); `check_new_file` (and `check_output` for the
  result) adds the suffix, folder, existing-file and writable checks, all before any work.
- `read_content`: the content photo read once, at its own size capped at `max_output_side`,
  after one memory check from the file's header (`single.check_result_memory`).
- `working_inputs`: the content, style and masks at the working size (`single.load_inputs`),
  for a caller that solves them itself (`jaxstyle batch` stacks them into buckets).
- `describe` and `result_metadata`: the one schema of what is saved in a result.
- `write_result`: the protected atomic write (`writing.save_image`) that keeps the photo's ICC
  profile, EXIF and depth.
- `open_job`, `solve`, `write_interrupted`, `finish`: those steps around `stylize.stylize` for
  one photo, as `jaxstyle transfer` (`cli.run_transfer`) takes them; `run_job` runs them as one
  file-to-file call. `jaxstyle batch` (`runner.run_manifest`) takes `read_content`,
  `working_inputs`, `result_metadata` and `write_result` around `batch.stylize_batch`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle import filesafety, reading, single, sizing, writing
from jaxstyle._version import __version__
from jaxstyle.config import Config, load_config
from jaxstyle.errors import Interrupted, JaxstyleError
from jaxstyle.filesafety import PathLike
from jaxstyle.vgg import VGGWeights
from jaxstyle.weights import resolve_weights, weights_identity

INPUT_FIELDS = ("content", "style", "content_mask", "style_mask")
DEFAULT_JPEG_QUALITY = 95


def refuse_input_as_output(output: PathLike, inputs: Mapping[str, PathLike | None], *,
                           what: str = "the result", instead: str = "choose another -o") -> None:
    """Raise `JaxstyleError` when `output` is one of `inputs` ({field: path or None}; fields other
    than `INPUT_FIELDS` name other files the job writes, e.g. "result") by `filesafety.same_file`; `what`
    names the output and `instead` what to do, in the caller's words."""
    for field, path in inputs.items():
        if path is not None and filesafety.same_file(Path(output), Path(path)):
            if field in INPUT_FIELDS:
                raise JaxstyleError(f"refusing to write {what} over the input {path} (the {field.replace('_', ' ')}): "
                                    f"{instead} (--force never replaces an input)")
            raise JaxstyleError(f"refusing to write {what} over the {field} {path}: {instead}")


def check_new_file(path: PathLike, protect: Mapping[str, PathLike | None], *, name: str, what: str,
                   suffixes: Sequence[str], option: str, force: bool = False) -> Path:
    """Refuse, before any work, a file a job writes that it cannot: a suffix not in `suffixes`, a
    missing folder, a file in `protect` (`refuse_input_as_output`), an existing file without
    `force`, a folder it cannot write. Messages call it `name` ("output", "--cube") beside its path,
    or `what` ("the result"), and say to choose another `option` ("-o", "--cube")."""
    target = Path(path)
    if target.suffix.lower() not in suffixes:
        ends = suffixes[0] if len(suffixes) == 1 else f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"
        raise JaxstyleError(f"{name} {path} must end in {ends}")
    if not target.parent.is_dir():
        raise JaxstyleError(f"the folder of {name} {path} does not exist: create it first")
    refuse_input_as_output(target, protect, what=what, instead=f"choose another {option}")
    if target.exists() and not force:
        raise JaxstyleError(f"{path} exists: pass --force to replace it, or choose another {option}")
    filesafety.check_writable(target, what=what)
    return target


@dataclasses.dataclass(frozen=True)
class Content:
    """The content photo as `read_content` gives it: `photo` (pixels at the result's size, ICC
    profile, EXIF, depth), `notes` for the user and the `seconds` the reading took."""

    photo: reading.Photo
    notes: tuple[str, ...]
    seconds: float


def read_content(path: PathLike, *, max_output_side: int = 0) -> Content:
    """Read the content photo once at its own size (EXIF rotation applied), its longer side capped
    at `max_output_side` (0: no cap), after one memory check from its header."""
    start = time.perf_counter()
    single.check_result_memory(path, max_output_side=max_output_side)
    photo = reading.read_photo(path)
    pixels = photo.pixels
    if max_output_side and max(pixels.shape[:2]) > max_output_side:
        pixels = sizing.resize_image(pixels, sizing.fit_max_side(*pixels.shape[:2], max_output_side))
        photo = dataclasses.replace(photo, pixels=pixels)
    notes = (reading.transparency_note("content", path),) if photo.transparent else ()
    return Content(photo, notes, time.perf_counter() - start)


def working_inputs(content: Content, style: PathLike, content_mask: Any = None, style_mask: Any = None, *,
                   config: Config, max_side: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, tuple[str, ...]]:
    """(content `[h, w, 3]`, style `[hs, ws, 3]`, content mask `[h, w, K]` or None, style mask
    `[hs, ws, K]` or None, notes) at the working size (`max_side`, default `config.max_side`),
    as `stylize.stylize` makes them from the same photo."""
    images = single.load_inputs(content.photo.pixels, style, content_mask, style_mask,
                           max_side=max_side or config.max_side, buckets=config.buckets)
    return (*images[:4], (*content.notes, *images[4]))


def describe(content: PathLike, style: PathLike, content_mask: PathLike | None = None,
             style_mask: PathLike | None = None, *, masks: str = "given") -> dict[str, Any]:
    """The inputs of a job as a result's metadata names them."""
    paths = dict(zip(INPUT_FIELDS, (content, style, content_mask, style_mask)))
    return {**{k: None if p is None else str(p) for k, p in paths.items()}, "masks": masks}


def result_metadata(described: Mapping[str, Any], *, size: tuple[int, ...], config: Config,
                    status: Any, weights: Mapping[str, Any], working_size: tuple[int, ...] | None = None,
                    seconds: Mapping[str, float] | None = None, notes: tuple[str, ...] | list[str] = (),
                    **extra: Any) -> dict[str, Any]:
    """What is saved in a result (JSON-friendly): its inputs (`describe`), the version, its size
    and working size, the settings, why each stage stopped, the seconds of each phase, the notes,
    the weights that made it (`weights.weights_identity`) and `extra` fields."""
    metadata = {**described, "jaxstyle": __version__, "size": list(size[:2]), "config": config.to_dict(),
                "status": status, "notes": list(notes), "weights": dict(weights)}
    if working_size is not None:
        metadata["working_size"] = list(working_size[:2])
    if seconds is not None:
        metadata["seconds"] = {k: round(float(v), 3) for k, v in seconds.items()}
    return {**metadata, **extra}


def write_result(image: Any, output: PathLike, content: Content, metadata: Mapping[str, Any], *,
                 protect: list[PathLike], overwrite: bool, bits: int | None = None,
                 jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> Path:
    """Write a result atomically (`writing.save_image`), never over a path in `protect`, with
    `metadata`, the content photo's ICC profile and EXIF, and `bits` (None: `writing.output_bits`)."""
    photo = content.photo
    return writing.save_image(image, output, metadata=metadata, overwrite=overwrite, protect=protect,
                         quality=jpeg_quality, bits=writing.output_bits(bits, photo, output),
                         icc_profile=photo.icc_profile, exif=photo.exif)


def check_output(output: PathLike, inputs: Mapping[str, PathLike | None], *, force: bool = False,
                 bits: int | None = None, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> Path:
    """Refuse, before any work, a result file that cannot be written (`check_new_file`: .png,
    .jpg or .jpeg, never an input) or a bit depth or quality its suffix cannot take."""
    out = check_new_file(output, inputs, name="output", what="the result", suffixes=tuple(writing.SAVE_FORMATS),
                         option="-o", force=force)
    writing.check_write_options(bits, jpeg_quality, out.suffix)
    return out


@dataclasses.dataclass
class Job:
    """One photo job, checked and its content read (`open_job`): what `solve`, `write_interrupted`
    and `finish` need. `described` (the inputs, as `describe` names them) may gain fields before
    anything is written."""

    output: Path
    inputs: dict[str, PathLike | None]
    config: Config
    content: Content
    described: dict[str, Any]
    bits: int | None
    jpeg_quality: int
    force: bool

    @property
    def protect(self) -> list[PathLike]:
        """The files the job reads, which it never writes."""
        return [p for p in self.inputs.values() if p is not None]


def open_job(content: PathLike, style: PathLike, output: PathLike, *, content_mask: PathLike | None = None,
             style_mask: PathLike | None = None, config: Config, masks: str = "given", bits: int | None = None,
             jpeg_quality: int = DEFAULT_JPEG_QUALITY, force: bool = False) -> Job:
    """Check the result file (`check_output`), then read the content photo once (`read_content`)."""
    inputs = dict(zip(INPUT_FIELDS, (content, style, content_mask, style_mask)))
    out = check_output(output, inputs, force=force, bits=bits, jpeg_quality=jpeg_quality)
    photo = read_content(content, max_output_side=config.max_output_side)
    return Job(out, inputs, config, photo, describe(content, style, content_mask, style_mask, masks=masks), bits,
               jpeg_quality, force)


def solve(job: Job, weights: VGGWeights, *, content_mask: Any = None, style_mask: Any = None,
          max_side: int | None = None, **options: Any) -> Any:
    """`stylize.stylize` on the job's content photo as read (not checked or read again) and its
    style; masks default to the job's files; `options` are stylize's progress options."""
    masks = (job.inputs["content_mask"], job.inputs["style_mask"]) if content_mask is None else (content_mask,
                                                                                                 style_mask)
    return single.stylize(job.content.photo.pixels, job.inputs["style"], content_mask=masks[0], style_mask=masks[1],
                     config=job.config, weights=weights, max_side=max_side, content_is_full_size=True, **options)


def write_interrupted(job: Job, best_image: Any, status: str, *, weights: Mapping[str, Any]) -> Path:
    """Write the best image of an interrupted solve beside the result, OUTPUT.interrupted.ext."""
    saved = job.output.with_name(f"{job.output.stem}.interrupted{job.output.suffix}")
    metadata = result_metadata(job.described, size=np.shape(best_image), config=job.config, status=status,
                               weights=weights)
    return write_result(best_image, saved, job.content, metadata, protect=job.protect, overwrite=True,
                        bits=job.bits, jpeg_quality=job.jpeg_quality)


def finish(job: Job, result: Any, *, weights: Mapping[str, Any], notes: tuple[str, ...] = (),
           **extra: Any) -> dict[str, Any]:
    """Write the result of `solve` with its metadata (`result_metadata`, `notes` and `extra`
    fields added); returns the metadata."""
    fields = solved_fields(result, job.content)
    fields["notes"] = (*fields["notes"], *notes)
    metadata = result_metadata(job.described, **fields, weights=weights, **extra)
    write_result(result.image, job.output, job.content, metadata, protect=job.protect, overwrite=job.force,
                 bits=job.bits, jpeg_quality=job.jpeg_quality)
    return metadata


def run_job(content: PathLike, style: PathLike, output: PathLike, *, content_mask: PathLike | None = None,
            style_mask: PathLike | None = None, config: Config | str = "default",
            overrides: Mapping[str, Any] | None = None, max_side: int | None = None,
            bits: int | None = None, jpeg_quality: int = DEFAULT_JPEG_QUALITY, force: bool = False,
            weights: VGGWeights | None = None, **options: Any) -> Any:
    """Stylise one photo file into `output`, the steps `jaxstyle transfer` takes: `open_job`
    (checks, one read of the content), `solve` (`options`: stylize's progress options), `finish`
    (the write). On Ctrl-C the best image so far is written by `write_interrupted`, and
    `Interrupted` raised. Returns the `single.Result`."""
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    if max_side is not None:
        cfg = dataclasses.replace(cfg, max_side=max_side)
    job = open_job(content, style, output, content_mask=content_mask, style_mask=style_mask, config=cfg, bits=bits,
                   jpeg_quality=jpeg_quality, force=force)
    weights = weights if weights is not None else resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)
    identity = weights_identity(weights)
    try:
        result = solve(job, weights, **options)
    except Interrupted as stop:
        if stop.best_image is not None:
            write_interrupted(job, stop.best_image, str(stop), weights=identity)
        raise
    finish(job, result, weights=identity)
    return result


def solved_fields(result: Any, content: Content) -> dict[str, Any]:
    """The `result_metadata` fields of a `single.Result` from `content`: its sizes, settings,
    status, seconds (the reading counted as setup) and notes."""
    seconds = dict(result.seconds)
    for phase in ("setup", "total"):
        seconds[phase] = seconds.get(phase, 0.0) + content.seconds
    return {"size": result.image.shape, "working_size": result.working_size or result.image.shape,
            "config": result.config, "status": result.status, "seconds": seconds,
            "notes": (*content.notes, *result.notes)}


__all__ = [
    "Content", "Job", "check_new_file", "check_output", "describe", "finish", "open_job", "read_content",
    "refuse_input_as_output", "result_metadata", "run_job", "solve", "solved_fields", "working_inputs",
    "write_interrupted", "write_result",
]
