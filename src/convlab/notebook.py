"""What convlab shows in a Jupyter notebook: HTML tables and inline pictures for its results, and whether
it runs in a notebook kernel at all (training then draws a notebook progress line and live curves).

Torch-free and IPython-free at import: the results' ``_repr_html_`` methods only build strings, which
Jupyter asks for and a terminal never does.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where output is rich HTML and not a terminal.
    ``$CONVLAB_NOTEBOOK`` = 0 or 1 overrides the guess (a kernel driving a terminal, or tests)."""
    import os
    import sys

    forced = os.environ.get("CONVLAB_NOTEBOOK")
    if forced in ("0", "1"):
        return forced == "1"
    if "IPython" not in sys.modules:  # never imported: not in IPython, and no reason to import it
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def escape(value: object) -> str:
    return html.escape(str(value))


def html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    footer: Sequence[object] | None = None,
    caption: str | None = None,
    right: Sequence[bool] | None = None,
) -> str:
    """An HTML table; ``right`` marks the columns of figures, aligned right as in the terminal."""
    right = list(right) if right is not None else [False] * len(header)

    def cells(values: Sequence[object], tag: str) -> str:
        return "".join(
            f'<{tag} style="text-align:{"right" if r else "left"}">{escape(v)}</{tag}>'
            for v, r in zip(values, right)
        )

    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    parts.append(f"<thead><tr>{cells(header, 'th')}</tr></thead><tbody>")
    parts += [f"<tr>{cells(row, 'td')}</tr>" for row in rows]
    parts.append("</tbody>")
    if footer is not None:
        parts.append(f"<tfoot><tr>{cells(footer, 'th')}</tr></tfoot>")
    parts.append("</table>")
    return "".join(parts)


def png_html(path: str | Path, alt: str = "", width: int | None = None) -> str:
    """A PNG file as an inline <img> (embedded, so the notebook keeps it when the file moves); nothing when
    the file is missing."""
    path = Path(path)
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}"{size}/>'


def lines_html(lines: Sequence[str]) -> str:
    return "".join(f"<p>{escape(line)}</p>" for line in lines)
