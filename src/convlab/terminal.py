"""How a line of convlab's output is laid out in a terminal: wrapped at word boundaries to its width.

A terminal breaks a long line at its edge, mid-word; textwrap breaks it between words and indents the
continuation, so a sentence (the precision --amp auto chose and why, a run's first lines, an epoch's
figures) reads as one paragraph in 80 columns. Logs and pipes keep every line whole, for grep.
"""

from __future__ import annotations

import shutil
import textwrap

# Narrower than this, a wrapped sentence is more indent than words; wider, a line is hard to read back.
NARROWEST, WIDEST = 40, 120


def terminal_width(columns: int | None = None) -> int:
    """``columns`` (or the terminal's, 80 where there is none), kept between NARROWEST and WIDEST."""
    if columns is None:
        columns = shutil.get_terminal_size((80, 24)).columns
    return min(max(int(columns), NARROWEST), WIDEST)


def wrap_line(text: str, columns: int | None = None, indent: str = "  ", first: str = "") -> str:
    """``first + text`` broken between words to ``columns``, each continuation line starting with ``indent``;
    a line that fits is returned as it is (its double spaces too)."""
    width = terminal_width(columns)
    if len(first) + len(text) <= width:
        return first + text
    return textwrap.fill(text, width, initial_indent=first, subsequent_indent=indent, break_on_hyphens=False)
