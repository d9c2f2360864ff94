"""The documentation states figures the code must keep: the zoo table in docs/models.md."""

import re
from pathlib import Path

from convlab.analysis.zoo import zoo_table

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_zoo_table_in_the_docs_matches_the_models():
    rows = re.findall(
        r"^\| `(\w+)` \| \w+ \| \d+ \| (\d+)x(\d+)x(\d+) \| ([\d,]+) \|",
        (DOCS / "models.md").read_text(),
        re.M,
    )
    documented = {
        name: (int(c), int(h), int(w), int(params.replace(",", ""))) for name, c, h, w, params in rows
    }
    measured = {r["name"]: (*r["input_size"], r["params"]) for r in zoo_table()}
    assert documented == measured
