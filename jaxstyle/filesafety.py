"""File safety: what may be written where, and writing it so that a failure leaves nothing behind.

A result never replaces one of the inputs unless forced, nor an existing file unless told to
(`check_target`); a folder that cannot take a new file is refused before a long run
(`check_writable`); every write is atomic (a temporary file in the target directory, then
`os.replace`: `write_atomically`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxstyle.errors import JaxstyleError

PathLike = str | os.PathLike[str]

__all__ = ["PathLike", "check_target", "check_writable", "same_file", "write_atomically"]


def same_file(a: Path, b: Path) -> bool:
    """Whether paths `a` and `b` name one file (the same path, a symbolic or a hard link); for paths
    that do not both exist, whether they resolve to the same place."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_target(path: Path, *, overwrite: bool, force: bool, protect: Sequence[PathLike]) -> None:
    """Refuse to replace an input (without `force`) or an existing file (without `overwrite`)."""
    if path.is_dir():
        raise JaxstyleError(f"{path} is a directory; give a file name such as {path / 'out.png'}")
    if not path.parent.is_dir():
        raise JaxstyleError(f"{path}: the directory {path.parent} does not exist; create it first")
    for p in protect:
        if same_file(path, Path(p)):
            if force:
                return
            raise JaxstyleError(f"{path} is one of the inputs ({p}); choose another output (-o) "
                                "or pass --force (force=True) to replace it")
    if path.exists() and not (overwrite or force):
        raise JaxstyleError(f"{path} already exists; choose another output (-o) or pass "
                            "--overwrite (overwrite=True)")


def check_writable(path: PathLike, *, what: str = "output") -> None:
    """Raise `JaxstyleError` now, not after a long run, when `path` cannot be written as
    `jaxstyle.writing.save_image` writes it: a new file in its folder (created and removed here), renamed over it."""
    path = Path(path)
    probe = path.with_name(f".{path.name}.{secrets.token_hex(4)}.probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise JaxstyleError(f"cannot write {what} {path}: {e.strerror or e} in the folder {path.parent}; "
                            "choose another folder or fix its permissions") from None
    probe.unlink()


def write_atomically(path: Path, write: Any) -> None:
    """Call `write(file)` on a new temporary file next to `path`, then rename it over `path`.

    Errors name `path`, never the temporary file."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:  # O_EXCL: never reuse someone's file; mode 0o666 lets the umask decide permissions
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno is None:  # not a system call's error (an encoder's, say): keep its message
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
