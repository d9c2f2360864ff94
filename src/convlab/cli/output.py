"""What several commands print the same way."""

from __future__ import annotations

import shutil
import textwrap

# Narrower than this, a wrapped sentence is more indent than words; wider, a line is hard to read back.
NARROWEST, WIDEST = 40, 120


def print_wrapped(label: str, text: str) -> None:
    """``label: text`` wrapped to the terminal's width (80 columns where there is none), continuation lines
    indented under the text, so that a long sentence (the precision --amp auto chose, and why) reads as one
    paragraph in an 80-column terminal instead of breaking mid-word at its edge."""
    width = min(max(shutil.get_terminal_size((80, 24)).columns, NARROWEST), WIDEST)
    indent = " " * (len(label) + 2)
    print(
        textwrap.fill(
            text, width, initial_indent=f"{label}: ", subsequent_indent=indent, break_on_hyphens=False
        )
    )
