"""Manifest files shared by `jaxstyle batch` and `jaxstyle evaluate`: CSV or JSON lines.

A manifest is either CSV with a header row naming its columns, or JSON lines (one object
per line; chosen by the suffix `.jsonl`, `.ndjson`, `.json`, or by text starting with
`{`). `read_rows` returns `(line number, {field: value})` per non-empty row and leaves the
meaning of the fields to the caller. Problems with the file itself (missing, unreadable, a
bad header, nothing parseable) raise `JaxstyleError`; a problem confined to one row comes
back as that row, `{"_problem": message}`, so the other rows still count.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import Any

from jaxstyle.errors import JaxstyleError, did_you_mean

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")
PROBLEM = "_problem"

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
    reader = csv.DictReader(StringIO(text, newline=""))
    header = [(name or "").strip() for name in (reader.fieldnames or [])]
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
    reader.fieldnames = header
    rows: list[Row] = []
    for row in reader:
        if row.get(None):  # more cells than header names
            rows.append((reader.line_num, {PROBLEM: "more cells than the header has names"}))
            continue
        cleaned = {k: (v or "").strip() for k, v in row.items()}
        if any(cleaned.values()):
            rows.append((reader.line_num, cleaned))
    return rows


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


__all__ = ["JSON_LINES_SUFFIXES", "PROBLEM", "read_rows"]
