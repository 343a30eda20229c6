"""Where jaxstyle keeps its caches: converted weights (`jaxstyle.weights`) and compiled
programs (`jaxstyle.compile_cache`), each in a subfolder of `cache_dir()`.

`$JAXSTYLE_CACHE`, else `$XDG_CACHE_HOME/jaxstyle`, else `~/.cache/jaxstyle`; without a home
folder, a private folder (0700) of this user in the temporary directory.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from jaxstyle.errors import WeightsError

__all__ = ["CACHE_ENV", "cache_dir"]

CACHE_ENV = "JAXSTYLE_CACHE"


def cache_dir() -> Path:
    """`$JAXSTYLE_CACHE`, else `$XDG_CACHE_HOME/jaxstyle`, else `~/.cache/jaxstyle`.

    Without a home folder ($HOME unset and a user id with no passwd entry, as in some
    containers): a private folder in the temporary directory, `jaxstyle-cache-UID`, created
    0700; one that is not a private folder of this user is refused (set $JAXSTYLE_CACHE).
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.path.expanduser(os.environ[CACHE_ENV]))
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.path.expanduser(os.environ["XDG_CACHE_HOME"])) / "jaxstyle"
    home = os.path.expanduser("~")  # "~" itself when there is no home folder
    if home != "~":
        return Path(home) / ".cache" / "jaxstyle"
    return _temporary_cache_dir()


def _temporary_cache_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = Path(tempfile.gettempdir()) / f"jaxstyle-cache-{uid if uid is not None else 'user'}"
    why = f"there is no home folder ($HOME is unset and user id {uid} has no passwd entry)"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as e:
        raise WeightsError(f"{why} and the cache folder {path} cannot be made ({e.strerror or e}); "
                           f"set ${CACHE_ENV} to a folder of yours") from None
    if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid) or info.st_mode & 0o077:
        raise WeightsError(f"{why} and {path} is not a private folder of yours (another user may have made "
                           f"it); set ${CACHE_ENV} to a folder of yours")
    return path
