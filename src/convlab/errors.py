"""User-facing errors: one sentence that says what was wrong and what is accepted.

The CLI prints a ConvlabError as a single line (no traceback) and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConvlabError(Exception):
    """An error caused by the user's input, with a message meant to be read as it is."""


class TrainingDiverged(ConvlabError):
    """A run stopped because its loss went non-finite (NaN or infinity): too high a learning rate, most
    often. A sweep records such a configuration as diverged and goes on with the next."""


def closest_names(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The accepted names nearest to ``name`` (by spelling), best first."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:  # also try prefix matches: "resnet" -> resnet18, resnet34, ...
        close = [c for c in choices if c.startswith(name)][:n]
    return close


def unknown_name_error(
    kind: str, name: str, choices: Iterable[str], see: str = "convlab models"
) -> ConvlabError:
    """``Unknown model 'resnt18'; did you mean resnet18? Accepted: ...``; a listing of more than 20
    names is cut, pointing to the command ``see`` that shows them all."""
    choices = sorted(choices)
    close = closest_names(name, choices)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    listing = ", ".join(choices)
    if len(choices) > 20:
        listing = ", ".join(choices[:20]) + f", ... ({len(choices)} in all; see `{see}`)"
    return ConvlabError(f"Unknown {kind} '{name}'{hint} Accepted: {listing}.")
