"""User-facing errors.

`JaxstyleError` marks a problem with the user's input or environment (a bad image,
a mask that does not fit, missing weights). Its message says what went wrong and
what to do next; the CLI prints it on one line and exits with code 2. Anything
else that escapes is an internal failure (exit code 1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["DivergenceError", "Interrupted", "JaxstyleError", "WeightsError", "did_you_mean"]


class JaxstyleError(ValueError):
    """A problem with the user's input or environment, with advice in the message."""


class WeightsError(JaxstyleError):
    """Weights are missing, corrupt, unsafe or of the wrong shape."""


class DivergenceError(JaxstyleError):
    """The optimisation produced NaN/Inf or blew up."""


class Interrupted(JaxstyleError):
    """Ctrl-C during a run; `best_image` holds the best image so far (`[H, W, 3]`) or None."""

    def __init__(self, message: str, best_image: Any = None) -> None:
        super().__init__(message)
        self.best_image = best_image


def did_you_mean(name: str, choices: Iterable[str], *, prefix: str = "") -> str:
    """A ' (did you mean X?)' hint for an unknown name, or '' when nothing is close.

    `prefix` is put before the suggestion, e.g. 'loss.' for a dotted setting name.
    """
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""
