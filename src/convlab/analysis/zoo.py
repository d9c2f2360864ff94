"""The zoo at a glance: every registered model with its parameters and multiply-adds."""

from __future__ import annotations

from convlab.analysis.inspector import summary
from convlab.errors import ConvlabError
from convlab.models import get_model_info, list_models


def zoo_table(names: list[str] | None = None) -> list[dict]:
    """One dict per registered model: name, family, year, paper, default input size, params, macs.

    Figures come from a meta-device forward pass at the default input size (no weights allocated),
    so the whole zoo takes seconds. A model that cannot be summarised is listed with its error
    instead of hiding the rest of the zoo.
    """
    infos = list_models() if names is None else [get_model_info(name) for name in names]
    rows = []
    for info in infos:
        row = {
            "name": info.name,
            "family": info.family,
            "year": info.year,
            "paper": info.paper,
            "input_size": list(info.input_size),
            "num_classes": info.num_classes,
            "params": None,
            "macs": None,
        }
        try:
            totals = summary(info.name).totals
            row["params"], row["macs"] = totals.params, totals.macs
        except (ConvlabError, RuntimeError, ValueError, TypeError, NotImplementedError) as error:
            row["error"] = str(error).splitlines()[0] if str(error) else type(error).__name__
        rows.append(row)
    return rows
