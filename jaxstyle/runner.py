"""The resumable manifest runner behind `jaxstyle batch`: buckets, resume, summary, progress
bar, `jax.distributed`.

Hosts: items are independent, so processes split a manifest and each runs its share on its
own devices (a local mesh). That is ordinary multi-controller JAX and needs no cross-host
collectives for independent work. `initialize_distributed` joins the processes with
`jax.distributed`; process p takes the items whose manifest index i has
`i % process_count == p` (strided: `jaxstyle.manifest.process_share`), writes its own
outputs, and merges its entries into OUTDIR/summary.json under a file lock.

Manifests (`jaxstyle.manifest.read_manifest`, which describes the fields) are run in
buckets: items are grouped by their full config, content and style shape (after the common
size cap) and label count (rounded up to a power of two); one bucket compiles once and runs
through `jaxstyle.batch.stylize_batch` in batches of `batch_size` (the last padded by
repeating an item). Items whose output exists are skipped, so a rerun resumes. An item
whose output is one of its own inputs fails before any work, with or without `force`; two
rows that write one file refuse the whole manifest before any work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from jaxstyle import filesafety, job, writing
from jaxstyle.batch import stylize_batch
from jaxstyle.config import Config, load_config
from jaxstyle.errors import JaxstyleError
from jaxstyle.manifest import ManifestItem, check_distinct_outputs, process_share, read_manifest, safe_output_path
from jaxstyle.masks import parse_mask_pair
from jaxstyle.optimize import Progress
from jaxstyle.vgg import VGGWeights
from jaxstyle.weights import resolve_weights, weights_identity

try:  # POSIX advisory locks for the shared summary; absent on Windows (one process there)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

SUMMARY_NAME = "summary.json"
LOCK_NAME = ".summary.lock"
STATUSES = ("done", "skipped", "failed")
# Items loaded but not yet run (their full-size photos held) are at most this many batches.
MAX_PENDING_BATCHES = 2
# Environment variables for multi-process runs. jax itself reads only the coordinator's;
# the other two are read here (jax does not).
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"


# ----------------------------------------------------------------------------- hosts


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise JaxstyleError(f"${name} must be a whole number, got {value!r}") from None


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> tuple[int, int]:
    """Join a multi-process run with `jax.distributed.initialize`; returns (process index, count).

    Arguments win over the environment: $JAX_COORDINATOR_ADDRESS ("host:port" of process 0;
    jax reads it too), $JAX_NUM_PROCESSES and $JAX_PROCESS_ID (read here; jax does not).
    With none of the three set nothing is initialised (one process: (0, 1)). Call before
    anything touches a JAX backend. Each process then works on its own devices; see the
    module docstring for how work is split and why no cross-host collectives are needed.
    """
    coordinator = coordinator or os.environ.get(COORDINATOR_ENV) or None
    num_processes = num_processes if num_processes is not None else _env_int(NUM_PROCESSES_ENV)
    process_id = process_id if process_id is not None else _env_int(PROCESS_ID_ENV)
    settings = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if all(v is None for v in settings.values()) or jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    missing = [flag for flag, v in settings.items() if v is None]
    if missing:
        raise JaxstyleError(f"a multi-process run needs --coordinator, --num-processes and --process-id "
                            f"(or ${COORDINATOR_ENV}, ${NUM_PROCESSES_ENV}, ${PROCESS_ID_ENV}); missing "
                            f"{', '.join(missing)}")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise JaxstyleError(f"process id must be in 0..{num_processes - 1} and the process count at least 1, "
                            f"got --process-id {process_id} --num-processes {num_processes}")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return jax.process_index(), jax.process_count()


# ----------------------------------------------------------------------------- running a manifest


@dataclasses.dataclass
class ManifestReport:
    """What `run_manifest` did in this process: counts of its items, and the merged summary."""

    done: int
    skipped: int
    failed: int
    summary_path: Path
    summary: dict[str, Any]


@dataclasses.dataclass
class _Loaded:
    item: ManifestItem
    output: Path
    full: job.Content  # the content photo at its own size (capped at max_output_side), ICC profile, EXIF
    content: np.ndarray  # [H, W, 3] at the working size
    style: np.ndarray  # [Hs, Ws, 3]
    content_mask: np.ndarray | None  # [H, W, k]
    style_mask: np.ndarray | None  # [Hs, Ws, k]
    notes: tuple[str, ...]


class _Bar:
    """Items finished out of the total, with throughput and ETA, on one stderr line."""

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO | None):
        self.total, self.stream = total, stream
        self.finished = self.processed = 0
        self.started: float | None = None
        self.tty = stream is not None and stream.isatty()
        self.detail = ""

    def begin(self) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def advance(self, finished: int, processed: int = 0) -> None:
        self.finished += finished
        self.processed += processed
        self.detail = ""
        self.draw(always=True)

    def stage(self, name: str, p: Progress) -> None:
        self.detail = f" | {name} {p.iteration}/{p.total}"
        self.draw(always=False)

    def draw(self, *, always: bool) -> None:
        if self.stream is None or not (self.tty or always):
            return
        filled = self.WIDTH * self.finished // max(self.total, 1)
        text = f"batch {self.finished}/{self.total} [{'#' * filled}{'.' * (self.WIDTH - filled)}]"
        if self.started is not None and self.processed:
            rate = self.processed / (time.perf_counter() - self.started)
            eta = (self.total - self.finished) / rate
            text += f" {rate:.3g} items/s, ETA {_clock(eta)}"
        text += self.detail
        self.stream.write(f"\r{text}\033[K" if self.tty else f"{text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _labels_bucket(k: int) -> int:
    """Label count rounded up to a power of two (bounds the number of compiled shapes)."""
    return 1 << max(0, k - 1).bit_length()


def run_manifest(manifest: str | os.PathLike[str], outdir: str | os.PathLike[str], *,
                 config: str = "default", overrides: Mapping[str, Any] | None = None,
                 max_side: int | None = None, iterations: int | None = None, batch_size: int | None = None,
                 max_output_side: int | None = None, bits: int | None = None, jpeg_quality: int = 95,
                 force: bool = False,
                 weights: VGGWeights | None = None, strategy: str = "auto",
                 process_index: int | None = None, process_count: int | None = None,
                 progress: bool = True, stream: TextIO | None = None) -> ManifestReport:
    """Stylise every item of `manifest` (this process's share) into `outdir`.

    Settings: `config` (preset name or TOML path), then `overrides` (dotted keys), then
    `max_side`, `max_output_side` and `iterations` (both stages), then the item's own overrides.
    Results are written with `bits` per channel (16: .png outputs only; another output fails
    alone, before any work; None: a .png output has its photo's depth, a JPEG 8 bits) and
    `jpeg_quality`. Items whose
    output exists are skipped unless `force`; an item whose output is one of its inputs
    fails (`force` never writes over an input). A bad item (unreadable or missing file, a mask
    that does not fit, an output outside `outdir`, divergence) fails alone, with its reason
    in OUTDIR/summary.json, which is merged with earlier runs' and other processes' entries
    after every batch. `batch_size` defaults to the number of local devices; `strategy` is
    passed to `stylize_batch`.
    `process_index`/`process_count` default to `jax.process_index()`/`jax.process_count()`.
    With `progress`, a progress bar goes to `stream` (default: stderr).
    Raises `JaxstyleError` when the manifest or the base config is unusable, or two rows write
    one file (`jaxstyle.manifest.check_distinct_outputs`), before anything is written.
    """
    manifest = Path(manifest)
    outdir = Path(outdir)
    items = read_manifest(manifest)
    settings = dict(overrides or {})
    if max_side is not None:
        settings["max_side"] = max_side
    if max_output_side is not None:
        settings["max_output_side"] = max_output_side
    writing.check_write_options(bits, jpeg_quality)  # a .jpg item with 16 bits fails alone, below
    if iterations is not None:
        settings.update({"stage1.iterations": iterations, "stage2.iterations": iterations})
    base_config = load_config(config, settings)  # a bad config or flag fails the whole run (exit 2)
    batch_size = batch_size or jax.local_device_count()
    if batch_size < 1:
        raise JaxstyleError(f"batch size must be at least 1, got {batch_size}")
    if outdir.exists() and not outdir.is_dir():
        raise JaxstyleError(f"{outdir} exists and is not a folder; choose another output folder (-o)")
    check_distinct_outputs(items, outdir)  # every process checks the whole manifest, so all refuse alike
    outdir.mkdir(parents=True, exist_ok=True)
    filesafety.check_writable(outdir / SUMMARY_NAME, what="the summary in the output folder")
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    share = process_share(items, index, count)

    configs: dict[str, Config] = {"{}": base_config}
    weights_cache: dict[tuple[str, bool], VGGWeights] = {}
    records: dict[str, dict[str, Any]] = {}
    buckets: dict[tuple, list[_Loaded]] = {}
    bar = _Bar(len(share), (stream or sys.stderr) if progress else None)
    meta = {"manifest": str(manifest.resolve()), "config": config, "process_count": count}

    def record(item: ManifestItem, status: str, **extra: Any) -> None:
        records[item.key] = {"index": item.index, "line": item.line, "output": item.output,
                             "content": _str(item.content), "style": _str(item.style),
                             "content_mask": _str(item.content_mask), "style_mask": _str(item.style_mask),
                             "status": status, "process": index, **extra}

    def item_config(item: ManifestItem) -> Config:
        key = json.dumps(item.overrides, sort_keys=True)
        if key not in configs:
            configs[key] = load_config(config, {**settings, **item.overrides})
        return configs[key]

    def get_weights(cfg: Config) -> VGGWeights:
        if weights is not None:
            return weights
        key = (cfg.backbone, cfg.allow_fallback)
        if key not in weights_cache:
            weights_cache[key] = resolve_weights(cfg.backbone, allow_fallback=cfg.allow_fallback)
        return weights_cache[key]

    def run(cfg: Config, labels: int, group: list[_Loaded]) -> None:
        bar.begin()
        t0 = time.perf_counter()
        try:
            padded = group + [group[-1]] * (batch_size - len(group))
            result = stylize_batch(*_stack(group, labels, batch_size), config=cfg, weights=get_weights(cfg),
                                   strategy=strategy, progress=bar.stage,
                                   contents_full=[g.full.photo.pixels for g in padded])
            images = result.images
        except (JaxstyleError, RuntimeError) as e:  # e.g. out of device memory: this batch fails, not the run
            for loaded in group:
                record(loaded.item, "failed", reason=f"{type(e).__name__}: {e}")
            bar.advance(len(group), len(group))
            _merge_summary(outdir, records, meta)
            return
        each = (time.perf_counter() - t0) / len(group)
        # the batch's phases shared by its items, and each item's own reading
        shared = {k: v / len(group) for k, v in result.seconds.items()}
        for i, loaded in enumerate(group):
            notes = list(loaded.notes + result.notes[i])
            if result.failed[i]:
                record(loaded.item, "failed", reason=result.failed[i], stages=result.status[i], notes=notes)
                continue
            try:
                loaded.output.parent.mkdir(parents=True, exist_ok=True)
                inputs = _inputs(loaded.item)
                seconds = {**shared, "setup": shared.get("setup", 0.0) + loaded.full.seconds,
                           "total": each + loaded.full.seconds}
                metadata = job.result_metadata(
                    job.describe(*inputs.values()), size=images[i].shape, working_size=loaded.content.shape,
                    config=cfg, status=result.status[i], seconds=seconds, notes=notes,
                    weights=weights_identity(get_weights(cfg)))
                job.write_result(images[i], loaded.output, loaded.full, metadata, overwrite=True,
                                 protect=[p for p in inputs.values() if p is not None], bits=bits,
                                 jpeg_quality=jpeg_quality)
            except (JaxstyleError, OSError) as e:
                record(loaded.item, "failed", reason=str(e), stages=result.status[i], notes=notes)
                continue
            record(loaded.item, "done", seconds=round(each, 3), stages=result.status[i], notes=notes)
        bar.advance(len(group), len(group))
        _merge_summary(outdir, records, meta)

    try:
        for item in share:
            if item.problem:
                record(item, "failed", reason=item.problem)
                bar.advance(1)
                continue
            try:
                output = safe_output_path(outdir, item.output)
                job.refuse_input_as_output(output, _inputs(item), what=f"output {item.output!r}",
                                           instead="give the item another output name")
                if bits == 16 and output.suffix.lower() != ".png":
                    raise JaxstyleError(f"output {item.output!r}: 16-bit results are written as PNG only; "
                                        "name it .png, or run without --bits 16")
                if output.exists() and not force:
                    record(item, "skipped")
                    bar.advance(1)
                    continue
                cfg = item_config(item)
                photo = job.read_content(item.content, max_output_side=cfg.max_output_side)  # one check, one read
                content, style, cmask, smask, notes = job.working_inputs(
                    photo, item.style, item.content_mask, item.style_mask, config=cfg)
            except (JaxstyleError, OSError) as e:
                record(item, "failed", reason=str(e))
                bar.advance(1)
                continue
            labels = _labels_bucket(1 if cmask is None else cmask.shape[-1])
            key = (cfg, content.shape, style.shape, labels)
            buckets.setdefault(key, []).append(_Loaded(item, output, photo, content, style, cmask, smask, notes))
            if len(buckets[key]) == batch_size:
                run(cfg, labels, buckets.pop(key))
            elif sum(map(len, buckets.values())) > MAX_PENDING_BATCHES * batch_size:  # bound the photos held
                fullest = max(buckets, key=lambda k: len(buckets[k]))
                run(fullest[0], fullest[3], buckets.pop(fullest))
        for (cfg, _, _, labels), group in list(buckets.items()):
            run(cfg, labels, group)
    except KeyboardInterrupt:  # keep what finished; a rerun skips it
        _merge_summary(outdir, records, meta)
        raise
    finally:
        bar.close()
    summary = _merge_summary(outdir, records, meta)
    statuses = [r["status"] for r in records.values()]
    return ManifestReport(done=statuses.count("done"), skipped=statuses.count("skipped"),
                          failed=statuses.count("failed"), summary_path=outdir / SUMMARY_NAME, summary=summary)


def _inputs(item: ManifestItem) -> dict[str, Path | None]:
    """The item's input files by field (`job.INPUT_FIELDS`)."""
    return {name: getattr(item, name) for name in job.INPUT_FIELDS}


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _stack(group: list[_Loaded], labels: int, batch_size: int):
    """contents, styles, content masks, style masks of a bucket, padded to `batch_size` items
    and `labels` label channels (zero channels, as `parse_mask_pair(num_labels=...)` pads)."""
    group = group + [group[-1]] * (batch_size - len(group))
    contents = np.stack([g.content for g in group])
    styles = np.stack([g.style for g in group])
    if all(g.content_mask is None for g in group):
        return contents, styles, None, None
    cms, sms = [], []
    for g in group:
        if g.content_mask is None:
            pair = parse_mask_pair(None, None, content_shape=g.content.shape[:2], style_shape=g.style.shape[:2],
                                   num_labels=labels)
            cm, sm = pair.content, pair.style
        else:
            extra = labels - g.content_mask.shape[-1]
            cm, sm = (np.pad(m, ((0, 0), (0, 0), (0, extra))) for m in (g.content_mask, g.style_mask))
        cms.append(cm)
        sms.append(sm)
    return contents, styles, np.stack(cms), np.stack(sms)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (shared by the processes of a multi-process run)."""
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def read_summary(outdir: str | os.PathLike[str]) -> dict[str, Any]:
    """OUTDIR/summary.json ({} when there is none yet)."""
    path = Path(outdir) / SUMMARY_NAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise JaxstyleError(f"{path} is unreadable ({e}); move it away to start a fresh summary") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise JaxstyleError(f"{path} is not a jaxstyle batch summary; move it away or choose another output folder")
    return data


def _merge_summary(outdir: Path, records: Mapping[str, dict[str, Any]], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `records` (by item key) into OUTDIR/summary.json, atomically and under a lock.

    Entries of other items (other processes, earlier runs) are kept; this run's replace theirs.
    """
    path = outdir / SUMMARY_NAME
    with _locked(outdir / LOCK_NAME):
        entries = {e["key"]: e for e in read_summary(outdir).get("items", [])}
        entries.update({key: {"key": key, **r} for key, r in records.items()})
        items = sorted(entries.values(), key=lambda e: (e.get("index", math.inf), e["key"]))
        counts = {s: sum(e["status"] == s for e in items) for s in STATUSES}
        summary = {**meta, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "counts": counts, "items": items}
        text = json.dumps(summary, indent=2) + "\n"
        # as the images are written
        filesafety.write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
    return summary


__all__ = [
    "COORDINATOR_ENV", "LOCK_NAME", "NUM_PROCESSES_ENV", "PROCESS_ID_ENV", "STATUSES", "SUMMARY_NAME",
    "ManifestReport", "initialize_distributed", "read_summary", "run_manifest",
]
