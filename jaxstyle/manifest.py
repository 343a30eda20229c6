"""Manifest files shared by `jaxstyle batch` and `jaxstyle evaluate`: CSV or JSON lines.

A manifest is either CSV with a header row naming its columns and one row per line (a
quoted cell cannot span lines), or JSON lines (one object per line; chosen by the suffix
`.jsonl`, `.ndjson`, `.json`, or by text starting with `{`). `read_rows` returns
`(line number, {field: value})` per non-empty row and leaves the meaning of the fields to
the caller. Problems with the file itself (missing, unreadable, a bad header, nothing
parseable) raise `JaxstyleError`; a problem confined to one row comes back as that row,
`{"_problem": message}`, so the other rows still count.

The batch manifest (`read_manifest`, run by `jaxstyle.runner`): CSV with a header naming
`content`, `style` and optionally `content_mask`, `style_mask`, `output`, `overrides`; or
JSON lines with those fields. Paths are relative to the manifest's folder. `overrides` is a
JSON object of dotted config keys (`{"stage2.iterations": 50}`) applied after the run's
config and flags.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

from jaxstyle import writing
from jaxstyle.errors import JaxstyleError, did_you_mean

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")
PROBLEM = "_problem"
MANIFEST_FIELDS = ("content", "style", "content_mask", "style_mask", "output", "overrides")
REQUIRED_FIELDS = ("content", "style")
DEFAULT_OUTPUT_SUFFIX = ".png"

Row = tuple[int, dict[str, Any]]


def read_rows(path: str | os.PathLike[str], *, fields: Sequence[str], required: Sequence[str],
              example: str) -> list[Row]:
    """The rows of the manifest at `path` (see the module docstring).

    Args:
      fields: the column names a CSV header may use.
      required: the columns a CSV header must have.
      example: a one-line example object for JSON-lines messages, e.g. '{"content": "c.jpg"}'.
    """
    path = Path(path)
    if not path.is_file():
        raise JaxstyleError(f"manifest {path} does not exist (or is not a file); pass a CSV or JSON-lines file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise JaxstyleError(f"cannot read manifest {path}: {e}") from None
    if path.suffix.lower() in JSON_LINES_SUFFIXES or text.lstrip().startswith("{"):
        return _json_rows(text, path, example)
    return _csv_rows(text, path, fields, required)


def _csv_rows(text: str, path: Path, fields: Sequence[str], required: Sequence[str]) -> list[Row]:
    """One row per line: each line is parsed on its own, so a quote left open spoils only its
    own line (the CSV module would read on to the end of the file, swallowing the rows after)."""
    lines = re.split(r"\r\n|\n|\r", text)
    header = [name.strip() for name in _csv_cells(lines[0])] if lines else []
    if not any(header):
        raise JaxstyleError(f"manifest {path} is empty; its first line must be a header such as "
                            f"'{','.join(fields)}'")
    for name in header:
        if name not in fields:
            raise JaxstyleError(f"manifest {path}: unknown column {name!r}{did_you_mean(name, fields)}; "
                                f"columns are {', '.join(fields)}")
    missing = [name for name in required if name not in header]
    if missing:
        raise JaxstyleError(f"manifest {path}: the header has no {' or '.join(missing)} column; "
                            f"header found: {','.join(header)}")
    rows: list[Row] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            cells = _csv_cells(line, strict=True)
        except csv.Error as e:
            rows.append((number, {PROBLEM: f"malformed CSV ({e}): a quoted cell must end with a quote on "
                                           "the same line (write a quote inside it as two quotes)"}))
            continue
        if len(cells) > len(header):
            rows.append((number, {PROBLEM: "more cells than the header has names"}))
            continue
        cleaned = {name: (cells[i] if i < len(cells) else "").strip() for i, name in enumerate(header)}
        if any(cleaned.values()):
            rows.append((number, cleaned))
    return rows


def _csv_cells(line: str, *, strict: bool = False) -> list[str]:
    """The cells of one CSV line ([] for an empty one)."""
    return next(csv.reader([line], strict=strict), [])


def _json_rows(text: str, path: Path, example: str) -> list[Row]:
    """One object per line; a bad line is that row's problem, unless no line is an object at all."""
    if text.lstrip().startswith("["):
        raise JaxstyleError(f"manifest {path} holds a JSON array; write JSON lines instead: one object per "
                            f"line, e.g. {example}")
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            rows.append((number, {PROBLEM: f"not valid JSON ({e.msg}); write one JSON object per line, "
                                           f"e.g. {example}"}))
            continue
        if not isinstance(row, dict):
            row = {PROBLEM: f"expected a JSON object, got {type(row).__name__}"}
        rows.append((number, row))
    if rows and all(PROBLEM in row for _, row in rows):
        number, row = rows[0]
        raise JaxstyleError(f"manifest {path} is not JSON lines: line {number}: {row[PROBLEM]}")
    return rows


# ----------------------------------------------------------------------------- batch manifests


@dataclasses.dataclass(frozen=True)
class ManifestItem:
    """One row of a manifest. Paths are resolved against the manifest's folder.

    key: the item's name in summary.json (its output name, or "line N" when it has none).
    problem: why the row itself is unusable (then the item fails without being run).
    """

    index: int
    line: int
    content: Path | None
    style: Path | None
    content_mask: Path | None = None
    style_mask: Path | None = None
    output: str = ""
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    problem: str | None = None

    @property
    def key(self) -> str:
        return self.output or f"line {self.line}"


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestItem]:
    """Parse a CSV or JSON-lines manifest (see the module docstring).

    Raises `JaxstyleError` when the manifest itself is unusable (missing, unreadable, no
    header or a bad one, invalid JSON, no items). Problems with one row (a missing field,
    bad overrides) are recorded in that item's `problem` instead, so the other items still
    run. Rows that write one file are found against the output folder: `check_distinct_outputs`.
    """
    path = Path(path)
    rows = read_rows(path, fields=MANIFEST_FIELDS, required=REQUIRED_FIELDS,
                     example='{"content": "a.jpg", "style": "b.jpg"}')
    items = [_item(i, line, row, path.parent) for i, (line, row) in enumerate(rows)]
    if not items:
        raise JaxstyleError(f"manifest {path} has no items; add one line per pair "
                            "(CSV header: content,style[,content_mask,style_mask,output,overrides])")
    return items


def _item(index: int, line: int, row: Mapping[str, Any], base: Path) -> ManifestItem:
    def problem(message: str) -> ManifestItem:
        output = row.get("output") if isinstance(row.get("output"), str) else ""
        return ManifestItem(index, line, None, None, output=output, problem=f"line {line}: {message}")

    if PROBLEM in row:
        return problem(row[PROBLEM])
    unknown = [k for k in row if k not in MANIFEST_FIELDS]
    if unknown:
        return problem(f"unknown field {unknown[0]!r}{did_you_mean(unknown[0], MANIFEST_FIELDS)}")
    paths: dict[str, Path | None] = {}
    for name in ("content", "style", "content_mask", "style_mask"):
        value = row.get(name)
        if value in (None, ""):
            paths[name] = None
        elif not isinstance(value, str):
            return problem(f"{name} must be a path (a string), got {value!r}")
        else:
            p = Path(value).expanduser()
            paths[name] = p if p.is_absolute() else base / p
    for name in REQUIRED_FIELDS:
        if paths[name] is None:
            return problem(f"no {name} path")
    output = row.get("output") or f"{paths['content'].stem}-{paths['style'].stem}{DEFAULT_OUTPUT_SUFFIX}"
    if not isinstance(output, str):
        return problem(f"output must be a file name, got {output!r}")
    overrides = row.get("overrides") or {}
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as e:
            return problem(f"overrides are not valid JSON ({e.msg}); write e.g. {{\"stage2.iterations\": 50}}")
    if not isinstance(overrides, dict):
        return problem(f"overrides must be a JSON object of dotted keys, got {overrides!r}")
    return ManifestItem(index, line, **paths, output=output, overrides=overrides)


def check_distinct_outputs(items: Sequence[ManifestItem], outdir: Path) -> None:
    """Raise `JaxstyleError` when two rows of a manifest, good or bad, write one file in
    `outdir`: the same name, or two names that lead to one file (through a symbolic link
    inside it), compared as `safe_output_path` resolves them. A row whose output name is
    unusable is left out: it fails alone."""
    first: dict[str, ManifestItem] = {}
    for item in items:
        try:
            target = safe_output_path(outdir, item.output)
        except JaxstyleError:
            continue
        other = first.setdefault(os.path.normcase(target), item)
        if other is not item:
            names = (f"{other.output!r}" if other.output == item.output
                     else f"{other.output!r} and {item.output!r}, which name one file")
            raise JaxstyleError(f"lines {other.line} and {item.line} of the manifest both write {names}; give "
                                "each row its own output name")


def process_share(items: Sequence[ManifestItem], process_index: int, process_count: int) -> list[ManifestItem]:
    """The items process `process_index` runs: manifest indices i with i % process_count == process_index."""
    return [item for item in items if item.index % process_count == process_index]


def safe_output_path(outdir: Path, name: str) -> Path:
    """OUTDIR/name, refusing names that leave OUTDIR (absolute, '..', or through a symlink)
    and suffixes `jaxstyle.writing.save_image` cannot write."""
    pure = PurePath(name)
    if not name or pure.is_absolute() or pure.drive or pure.root:
        raise JaxstyleError(f"output {name!r} must be a relative file name inside the output folder")
    if ".." in pure.parts:
        raise JaxstyleError(f"output {name!r} contains '..'; outputs must stay inside the output folder")
    if pure.suffix.lower() not in writing.SAVE_FORMATS:
        raise JaxstyleError(f"output {name!r} must end in one of {', '.join(writing.SAVE_FORMATS)}")
    root = outdir.resolve()
    target = (outdir / pure).resolve()
    if not target.is_relative_to(root):
        raise JaxstyleError(f"output {name!r} leads outside the output folder (to {target}) through a "
                            "symbolic link; choose another name")
    return target


__all__ = [
    "DEFAULT_OUTPUT_SUFFIX", "JSON_LINES_SUFFIXES", "MANIFEST_FIELDS", "ManifestItem", "PROBLEM", "REQUIRED_FIELDS",
    "check_distinct_outputs", "process_share", "read_manifest", "read_rows", "safe_output_path",
]
