"""`convlab models`: the zoo as a table or JSON."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the model zoo",
        description="List every model: family, year, paper, default input size, parameters and "
        "multiply-adds at that size (measured by a forward pass).",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.set_defaults(func=run)


def run(args) -> int:
    # imported here, not at the top: the parser loads every command module, and this import loads torch
    from convlab.analysis.format import print_zoo_table
    from convlab.analysis.zoo import zoo_table

    rows = zoo_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print_zoo_table(rows)
    return 0
