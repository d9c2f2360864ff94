"""What several commands print the same way."""

from __future__ import annotations

from convlab.terminal import wrap_line


def print_wrapped(label: str, text: str) -> None:
    """``label: text`` wrapped to the terminal's width (convlab.terminal), continuation lines indented
    under the text, so that a long sentence (the precision --amp auto chose, and why) reads as one
    paragraph in an 80-column terminal instead of breaking mid-word at its edge."""
    print(wrap_line(text, indent=" " * (len(label) + 2), first=f"{label}: "))
